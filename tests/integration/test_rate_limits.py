#!/usr/bin/env python3
"""Rate limits (GCRA in Redis): one shopper hammering two servers is held to rate + burst in total,
limits change live, answers carry RateLimit-Policy / RateLimit, refusals are 429 with Retry-After."""

import os
import re
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import fsserver  # noqa: E402
from fsserver import ServerTestCase, Server, sku, raw_request  # noqa: E402

POLICY = re.compile(r'^"shopper";q=(\d+);w=(\d+)$')
STATE = re.compile(r'^"shopper";r=(\d+);t=(\d+)$')


class RateLimitTest(ServerTestCase):
    # test_headers_of_one_batch holds Redis's writes for 1.5 s (CLIENT PAUSE): with the default
    # 1 s deadline, a write either server happened to send then (each loop writes its counters
    # every second) timed out, and the tests after it found that server still reconnecting (503).
    server_env = {"FLASHSALE_REDIS_TIMEOUT_MS": "10000"}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.b = cls.another_server(env=cls.server_env)

    def launch(self, **rl):
        lid = self.new_launch([sku("a", 1000000, per_user_limit=1000000)])
        if rl:
            r = self.srv.request("PATCH", "/admin/v1/launches/%s/rate_limit" % lid, rl, auth="admin")
            self.assertEqual(r.status, 200, r.body)
        return lid

    def hammer(self, lid, user, seconds, threads=4):
        """Reservations by one shopper as fast as possible, alternating the two servers, for
        `seconds`; returns (admitted, refused, elapsed) where admitted is every non-429 answer."""
        counts = {"ok": 0, "429": 0, "other": []}
        lock = threading.Lock()
        t0 = time.monotonic()
        stop = t0 + seconds

        def worker(i):
            srv = (self.srv, self.b)[i % 2].clone()
            try:
                while time.monotonic() < stop:
                    r = srv.reserve(lid, "a", user)
                    with lock:
                        if r.status == 429:
                            counts["429"] += 1
                        elif r.status == 201:
                            counts["ok"] += 1
                        else:
                            counts["other"].append((r.status, r.body))
            finally:
                srv.close_conn()

        ts = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        self.assertEqual(counts["other"], [])
        return counts["ok"], counts["429"], time.monotonic() - t0

    def test_shopper_held_to_rate_plus_burst_across_two_servers(self):
        rate, burst, seconds = 20, 10, 3.0
        lid = self.launch(shopper_per_sec=rate, shopper_burst=burst)
        admitted, refused, elapsed = self.hammer(lid, "bot-1", seconds)
        expected = burst + rate * elapsed
        sys.stderr.write("admitted %d refused %d in %.2f s (expected %.1f)\n" % (admitted, refused, elapsed, expected))
        self.assertGreater(refused, admitted, "the flood must have been well over the limit")
        self.assertLessEqual(abs(admitted - expected), 0.05 * expected,
                             "admitted %d in %.2f s, expected %.1f +-5%%" % (admitted, elapsed, expected))
        # another shopper is not affected
        self.assertEqual(self.b.reserve(lid, "a", "human-1").status, 201)
        self.check_invariants(lid, ["a"])

    def test_headers_and_refusal(self):
        lid = self.launch(shopper_per_sec=2, shopper_burst=3)
        got = [self.srv.reserve(lid, "a", "u1") for _ in range(4)]
        self.assertEqual([r.status for r in got], [201, 201, 201, 429])
        for i, r in enumerate(got[:3]):
            self.assertEqual(POLICY.match(r.headers["ratelimit-policy"]).groups(), ("3", "2"))
            self.assertEqual(STATE.match(r.headers["ratelimit"]).group(1), str(2 - i))
        refused = got[3]
        self.assertError(refused, 429, "rate_limited")
        self.assertGreaterEqual(int(refused.headers["retry-after"]), 1)
        self.assertEqual(STATE.match(refused.headers["ratelimit"]).group(1), "0")
        # 409 answers decided by Redis carry them too
        lid2 = self.new_launch([sku("z", 0)])
        r = self.srv.request("PATCH", "/admin/v1/launches/%s/rate_limit" % lid2,
                             {"shopper_per_sec": 5, "shopper_burst": 5}, auth="admin")
        self.assertEqual(r.status, 200)
        r = self.srv.reserve(lid2, "z", "u1", idem="k")
        self.assertError(r, 409, "sold_out")
        self.assertIn("ratelimit-policy", r.headers)

    def test_headers_of_one_batch(self):
        """Requests decided in one fs_reserve call get their figures from the server taking each
        request's GCRA steps again (Redis returns the TATs before the batch, docs/redis.md):
        remaining counts down request by request, per shopper, and the refused ones say when."""
        # One loop: one queue per SKU; a Redis deadline and a queue bound past the pause below.
        one = self.another_server(env={"FLASHSALE_THREADS": "1", "FLASHSALE_REDIS_TIMEOUT_MS": "10000",
                                       "FLASHSALE_QUEUE_MAX_WAIT_MS": "10000"})
        lid = self.launch(shopper_per_sec=0.1, shopper_burst=3)  # T = 10 s, tau = 30 s
        # u1 once before: its TAT is then 10 s ahead, and still about 8 s when the batch comes.
        self.assertEqual(STATE.match(one.reserve(lid, "a", "u1").headers["ratelimit"]).group(1), "2")
        api = {"Authorization": "Bearer " + fsserver.DEFAULT_API_KEYS[0]}

        def req(u):
            return raw_request("POST", "/v1/launches/%s/reservations" % lid, {"sku": "a", "user_id": u}, api)

        def batches():
            text = one.request("GET", "/metrics").body
            return int(re.search(r"^fs_reserve_batches_total (\d+)$", text, re.M).group(1))
        users = ["u1", "u2", "u1", "u1", "u2", "u1"]
        conns = [one.raw() for _ in range(len(users) + 1)]
        try:
            before = batches()
            # Redis holds writes for 1.5 s: the first request's call waits there, and the six that
            # come meanwhile queue behind it, to go to Redis together (in an order of the loop's).
            self.r.call("CLIENT", "PAUSE", "1500", "WRITE")
            conns[0].send(req("first"))
            time.sleep(0.1)
            for c, u in zip(conns[1:], users):
                c.send(req(u))
            got = [c.read_response() for c in conns]
        finally:
            for c in conns:
                c.close()
        self.assertEqual(batches() - before, 2, "the six requests went to Redis in one call")
        by_user = {}
        for u, r in zip(users, got[1:]):
            by_user.setdefault(u, []).append(r)
        # u1 (about 8 s ahead, burst 3) gets two more, u2 two: remaining in order of the call,
        # whatever it was; the refused wait about 8 s more (38 s of TAT against tau 30 s).
        for u, admitted in (("u1", ["1", "0"]), ("u2", ["2", "1"])):
            ok = [r for r in by_user[u] if r.status == 201]
            self.assertEqual(sorted((STATE.match(r.headers["ratelimit"]).group(1) for r in ok),
                                    reverse=True), admitted, u)
            for r in by_user[u]:
                if r.status != 201:
                    self.assertError(r, 429, "rate_limited")
                    self.assertEqual(STATE.match(r.headers["ratelimit"]).group(1), "0")
                    self.assertIn(r.headers["retry-after"], ("8", "9", "10"))
        self.assertEqual([r.status for r in by_user["u1"]].count(429), 2)
        self.check_invariants(lid, ["a"])

    def test_live_change_reaches_both_servers(self):
        lid = self.launch(shopper_per_sec=1, shopper_burst=1)
        self.assertEqual(self.srv.reserve(lid, "a", "u").status, 201)
        self.assertEqual(self.b.reserve(lid, "a", "u").status, 429)
        r = self.srv.request("PATCH", "/admin/v1/launches/%s/rate_limit" % lid,
                             {"shopper_burst": 50}, auth="admin")
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.body["rate_limit"], {"shopper_per_sec": 1.0, "shopper_burst": 50,
                                                "address_per_sec": 0.0, "address_burst": 0})
        # effective at once on the other server (the limits live in Redis next to the counters)
        self.assertEqual(self.b.reserve(lid, "a", "u").status, 201)
        r = self.srv.request("PATCH", "/admin/v1/launches/%s/rate_limit" % lid,
                             {"shopper_per_sec": 0}, auth="admin")
        self.assertEqual(r.status, 200)
        got = [self.b.reserve(lid, "a", "u").status for _ in range(60)]
        self.assertEqual(set(got), {201}, "rate 0 turns the limit off")
        self.assertNotIn("ratelimit", self.b.reserve(lid, "a", "u").headers)

    def test_launch_document_and_validation(self):
        lid = "rl-doc-%d" % os.getpid()
        doc = {"name": "x", "hold_seconds": 60, "skus": [sku("a", 10)],
               "rate_limit": {"shopper_per_sec": 2.5, "shopper_burst": 5}}
        r = self.srv.request("PUT", "/admin/v1/launches/%s" % lid, doc, auth="admin")
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.body["rate_limit"]["shopper_per_sec"], 2.5)
        self.assertEqual(r.body["rate_limit"]["shopper_burst"], 5)
        # a later PUT without rate_limit keeps it
        doc.pop("rate_limit")
        r = self.srv.request("PUT", "/admin/v1/launches/%s" % lid, doc, auth="admin")
        self.assertEqual(r.body["rate_limit"]["shopper_burst"], 5)
        for bad in ({"shopper_per_sec": -1}, {"shopper_burst": 1.5}, {"shopper_per_sec": "2"}, {},
                    {"address_burst": 2000000}):
            r = self.srv.request("PATCH", "/admin/v1/launches/%s/rate_limit" % lid, bad, auth="admin")
            self.assertError(r, 400, "invalid_request")
        r = self.srv.request("PATCH", "/admin/v1/launches/nope-%d/rate_limit" % os.getpid(),
                             {"shopper_burst": 1}, auth="admin")
        self.assertError(r, 404, "not_found")
        r = self.srv.request("PATCH", "/admin/v1/launches/%s/rate_limit" % lid,
                             {"shopper_burst": 1}, auth="api")
        self.assertEqual(r.status, 401)


class AddressLimitTest(ServerTestCase):
    """Per-address limits key on the client address: the socket peer, or X-Forwarded-For when the
    peer is a trusted proxy (here 127.0.0.1 is one)."""
    server_env = {"FLASHSALE_TRUSTED_PROXIES": "127.0.0.1"}

    def reserve_from(self, srv, lid, user, xff=None):
        return srv.request("POST", "/v1/launches/%s/reservations" % lid, {"sku": "a", "user_id": user},
                           headers={"X-Forwarded-For": xff} if xff else None)

    def test_many_shoppers_one_address(self):
        lid = self.new_launch([sku("a", 100000, per_user_limit=10)])
        r = self.srv.request("PATCH", "/admin/v1/launches/%s/rate_limit" % lid,
                             {"address_per_sec": 1, "address_burst": 3}, auth="admin")
        self.assertEqual(r.status, 200, r.body)
        got = [self.reserve_from(self.srv, lid, "shopper-%d" % i, "203.0.113.7").status
               for i in range(5)]
        self.assertEqual(got, [201, 201, 201, 429, 429], "one address, many shopper ids")
        r = self.reserve_from(self.srv, lid, "shopper-9", "203.0.113.7")
        self.assertTrue(r.headers["ratelimit-policy"].startswith('"address";q=3;w=3'), r.headers)
        # another address behind the same proxy is not affected
        self.assertEqual(self.reserve_from(self.srv, lid, "shopper-0", "198.51.100.1, 203.0.113.9").status, 201)
        # a client cannot escape by prepending addresses: the right-most untrusted one counts
        self.assertEqual(self.reserve_from(self.srv, lid, "shopper-5", "10.9.9.9, 203.0.113.7").status, 429)

    def test_untrusted_peer_cannot_choose_its_address(self):
        srv = Server(self.redis.url)  # no trusted proxies: X-Forwarded-For is ignored
        try:
            lid = self.new_launch([sku("a", 100000, per_user_limit=10)], srv=srv)
            srv.request("PATCH", "/admin/v1/launches/%s/rate_limit" % lid,
                        {"address_per_sec": 1, "address_burst": 2}, auth="admin")
            got = [self.reserve_from(srv, lid, "s%d" % i, "192.0.2.%d" % i).status for i in range(4)]
            self.assertEqual(got, [201, 201, 429, 429], "every request counts against 127.0.0.1")
        finally:
            srv.stop()


class AdmissionTest(ServerTestCase):
    """FLASHSALE_ADMISSION_PER_SKU: at most that many reservation requests per second per SKU go on
    to Redis (a token bucket per SKU holding one second's worth); the rest is 503 overloaded."""
    server_env = {"FLASHSALE_THREADS": "1", "FLASHSALE_ADMISSION_PER_SKU": "10"}

    def test_cap(self):
        lid = self.new_launch([sku("a", 100000, per_user_limit=100000), sku("b", 100000, per_user_limit=100000)])
        answers = {"201": 0, "overloaded": 0, "other": []}
        t0 = time.monotonic()
        while time.monotonic() - t0 < 2.0:
            r = self.srv.reserve(lid, "a", "u%d" % (answers["201"] + answers["overloaded"]))
            if r.status == 201:
                answers["201"] += 1
            elif r.status == 503 and r.body.get("error") == "overloaded":
                answers["overloaded"] += 1
                self.assertEqual(r.headers.get("retry-after"), "1")
            else:
                answers["other"].append((r.status, r.body))
        elapsed = time.monotonic() - t0
        self.assertEqual(answers["other"], [])
        # one second's worth at the start, then 10/s (+1: the first request, before the SKU was known)
        expected = 10 + 10 * elapsed + 1
        self.assertLessEqual(answers["201"], expected + 1, answers)
        self.assertGreaterEqual(answers["201"], 0.8 * expected, answers)
        self.assertGreater(answers["overloaded"], answers["201"], "the flood was well over the cap")
        # the cap is per SKU
        self.assertEqual(self.srv.reserve(lid, "b", "other").status, 201)


if __name__ == "__main__":
    fsserver.main(timeout=100)
