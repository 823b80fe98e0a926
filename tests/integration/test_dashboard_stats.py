#!/usr/bin/env python3
"""GET /admin/v1/launches/{launch}/stats: every server instance publishes its per-launch
reservation counters to Redis each second, and the endpoint sums them (issue 7)."""

import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import fsserver  # noqa: E402
from fsserver import ServerTestCase, sku  # noqa: E402

OUTCOMES = ["ok", "sold_out", "limit_exceeded", "launch_not_open", "not_found", "overloaded",
            "unavailable", "error", "rate_limited", "rejected"]


def cli_bin():
    return os.path.join(os.path.dirname(fsserver.server_bin()), "cli", "flashsale-cli")


def totals(stats):
    out = {}
    for sec in stats["series"]:
        for k in OUTCOMES:
            out[k] = out.get(k, 0) + sec.get(k, 0)
    return {k: v for k, v in out.items() if v}


class StatsTest(ServerTestCase):
    server_env = {"FLASHSALE_THREADS": "2"}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.srv2 = fsserver.Server(cls.redis.url, env={"FLASHSALE_THREADS": "1"})
        cls.addClassCleanup(cls.srv2.stop)

    def cli_env(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLASHSALE_")}
        env.update(FLASHSALE_URL="http://127.0.0.1:%d" % self.srv.port,
                   FLASHSALE_ADMIN_TOKEN=self.srv.admin_token)
        return env

    def stats(self, lid, query="", srv=None):
        r = (srv or self.srv).request("GET", "/admin/v1/launches/%s/stats%s" % (lid, query))
        self.assertEqual(r.status, 200, r.body)
        return r.body

    def test_sums_instances_and_outcomes(self):
        lid = self.new_launch([sku("a", 3, 1), sku("b", 100, 5)])
        other = self.new_launch([sku("a", 5, 5)])
        expected = {"ok": 0, "sold_out": 0, "limit_exceeded": 0, "launch_not_open": 0, "not_found": 0,
                    "rejected": 0}
        start = time.time()
        for i in range(3):  # a sells out, spread over both servers and their loops
            srv = (self.srv, self.srv2)[i % 2].clone()
            self.assertEqual(srv.reserve(lid, "a", "u%d" % i).status, 201)
            expected["ok"] += 1
        for i in range(4):
            srv = (self.srv, self.srv2)[i % 2].clone()
            self.assertError(srv.reserve(lid, "a", "late%d" % i), 409, "sold_out")
            expected["sold_out"] += 1
        self.assertEqual(self.srv2.reserve(lid, "b", "u0", qty=5).status, 201)
        expected["ok"] += 1
        self.assertError(self.srv.reserve(lid, "b", "u0"), 409, "limit_exceeded")
        expected["limit_exceeded"] += 1
        self.assertError(self.srv.reserve(lid, "nope", "u0"), 404, "not_found")
        expected["not_found"] += 1
        self.assertError(self.srv2.reserve(lid, "b", "u0", qty=0), 400, "invalid_request")
        self.assertError(self.srv.reserve(lid, "b", "u0", auth="wrong-key"), 401, "unauthorized")
        expected["rejected"] += 2
        # other launches are counted apart
        self.assertEqual(self.srv.reserve(other, "a", "u0").status, 201)
        self.assertEqual(self.srv.pause(lid).status, 200)
        self.assertError(self.srv2.reserve(lid, "b", "u9"), 409, "launch_not_open")
        expected["launch_not_open"] += 1
        # confirm/cancel/get are not reservations
        # published within ~1 s after each second ends
        want = {k: v for k, v in expected.items() if v}
        st = fsserver.wait_until(lambda: (lambda s: s if totals(s) == want else None)(self.stats(lid, "?seconds=30")),
                                 6, interval=0.25, what="stats to add up to %r" % want)
        self.assertEqual(st["launch"], lid)
        self.assertEqual(st["seconds"], 30)
        self.assertEqual(len(st["series"]), 30)
        ts = [s["t"] for s in st["series"]]
        self.assertEqual(ts, list(range(ts[0], ts[0] + 30)))
        self.assertLessEqual(ts[-1], time.time())
        self.assertGreaterEqual(ts[-1], int(start) - 1)
        for s in st["series"]:
            self.assertEqual(s["total"], sum(s.get(k, 0) for k in OUTCOMES))
            if s["total"]:
                self.assertGreater(s["p50_ms"], 0)
                self.assertGreaterEqual(s["p99_ms"], s["p50_ms"])
            else:
                self.assertIsNone(s["p99_ms"])
        cur = st["current"]
        self.assertEqual(cur["state"], "paused")
        self.assertEqual({s["sku"]: (s["available"], s["held"], s["sold"]) for s in cur["skus"]},
                         {"a": (0, 3, 0), "b": (95, 5, 0)})
        self.assertEqual(totals(self.stats(other, "?seconds=30")), {"ok": 1})
        # the same answer from the other instance
        self.assertEqual(totals(self.stats(lid, "?seconds=30", srv=self.srv2)), want)
        # the window: everything happened within its last 30 seconds
        w = self.stats(lid, "?seconds=60&window=30")["window"]
        n = sum(want.values())
        self.assertEqual(w["seconds"], 30)
        self.assertEqual(w["requests"], n)
        self.assertAlmostEqual(w["per_second"]["total"], n / 30, places=2)
        self.assertAlmostEqual(w["per_second"]["sold_out"], 4 / 30, places=2)
        self.assertAlmostEqual(w["sold_out_share"], 4 / n, places=3)
        self.assertEqual(w["rate_limited_share"], 0)
        self.assertEqual(w["overloaded_share"], 0)
        self.assertIsNotNone(w["p99_ms"])
        self.assertRegex(w["from"], fsserver.RFC3339_MS_RE)
        # the keys: one hash per launch and second, with a TTL
        keys = self.r.call("KEYS", "fs:stats:{%s}:*" % lid)
        self.assertTrue(keys)
        for k in keys:
            self.assertRegex(k, r"^fs:stats:\{%s\}:\d{10}$" % lid)
            self.assertTrue(0 < self.r.call("TTL", k) <= 660)

    def test_relay_backlog(self):
        lid = self.new_launch([sku("a", 10, per_user_limit=5), sku("b", 10, per_user_limit=5)])
        self.assertIsNone(self.stats(lid)["relay"], "no relay group: null")
        rids = [self.srv.reserve(lid, "a", "u%d" % i).body["reservation_id"] for i in range(3)]
        for i, rid in enumerate(rids):
            self.assertEqual(self.srv.confirm(rid, "u%d" % i).status, 200)
        # what flashsale-relay sets up: a consumer group "relay" on every order stream
        for s in ("a", "b"):
            self.r.call("XGROUP", "CREATE", "fs:{%s:%s}:orders" % (lid, s), "relay", "0", "MKSTREAM")
        self.assertEqual(self.stats(lid)["relay"], {"pending": 0, "unread": 3})
        self.r.call("XREADGROUP", "GROUP", "relay", "r1", "COUNT", "2", "STREAMS",
                    "fs:{%s:a}:orders" % lid, ">")
        self.assertEqual(self.stats(lid)["relay"], {"pending": 2, "unread": 1})
        out = subprocess.run([cli_bin(), "watch", lid, "--iterations", "1"], env=self.cli_env(),
                             capture_output=True, text=True, timeout=20)
        self.assertIn("relay: 2 orders read but not yet delivered, 1 not yet read", out.stdout)

    def test_empty_and_errors(self):
        lid = self.new_launch([sku("a", 3, 1)])
        st = self.stats(lid, "?seconds=5")
        self.assertEqual(len(st["series"]), 5)
        self.assertEqual(st["window"]["requests"], 0)
        self.assertIsNone(st["window"]["p50_ms"])
        self.assertEqual(st["window"]["per_second"]["total"], 0)
        self.assertEqual(len(self.stats(lid)["series"]), 60)
        self.assertError(self.srv.request("GET", "/admin/v1/launches/nope-z/stats"), 404, "not_found")
        for q in ("?seconds=1", "?seconds=601", "?seconds=x", "?window=0", "?window=61"):
            self.assertError(self.srv.request("GET", "/admin/v1/launches/%s/stats%s" % (lid, q)), 400,
                             "invalid_request")
        self.assertError(self.srv.request("GET", "/admin/v1/launches/%s/stats" % lid, auth="api"), 401,
                         "unauthorized")


if __name__ == "__main__":
    fsserver.main(timeout=90)
