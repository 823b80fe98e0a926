#!/usr/bin/env python3
"""flashsale-relay, normal flow: orders confirmed through the real server are delivered exactly once
each (no failure injected), signed, with the documented body; every entry is acknowledged; new
launches are found without a restart; health, metrics and admin authentication; start-up refusals.

Needs build/src/relay/flashsale-relay (or $FLASHSALE_RELAY_BIN) and the server binary."""

import collections
import hashlib
import hmac
import json
import os
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import fsreceiver  # noqa: E402
import fsserver  # noqa: E402
from fsreceiver import ADMIN_TOKEN, SECRET, RelayCase  # noqa: E402
from fsserver import wait_until  # noqa: E402

ORDER_KEYS = ["order_id", "reservation_id", "launch", "sku", "user_id", "qty", "price_cents",
              "payment_ref", "confirmed_at"]


class NormalFlowTest(RelayCase):
    def test_every_order_delivered_once_signed_and_acked(self):
        lid = self.new_launch(["a", "b", "c"])
        # Orders written before the relay starts are delivered too (the group starts at 0).
        before = self.orders.confirm(lid, "a", 90) + self.orders.confirm(lid, "b", 40, qty=2)
        relay = self.relay()
        after = self.orders.confirm(lid, "c", 30) + self.orders.confirm(lid, "a", 40)
        ids = before + after
        self.assertEqual(len(set(ids)), 200)
        self.wait_delivered(ids)
        self.wait_settled(lid, ["a", "b", "c"])
        time.sleep(0.3)  # nothing more may arrive

        got = self.rcv.accepted_ids()
        counts = collections.Counter(got)
        self.assertEqual(set(counts), set(ids))
        self.assertEqual(max(counts.values()), 1, "no failure was injected: exactly once each")
        self.assertEqual(len(self.rcv.records()), 200)

        streams = {}
        for s in ("a", "b", "c"):
            streams.update(self.orders.stream(lid, s))
        for d in self.rcv.records():
            self.assertTrue(d.sig_ok, d.headers.get("flashsale-signature"))
            body = json.loads(d.body)
            self.assertEqual(list(body), ORDER_KEYS, "documented field order")
            f = streams[body["order_id"]]
            for k in ORDER_KEYS:
                want = int(f[k]) if k in ("qty", "price_cents") else f[k]
                self.assertEqual(body[k], want, k)
            self.assertIsInstance(body["qty"], int)
            self.assertEqual(d.headers["idempotency-key"], body["order_id"])
            self.assertEqual(d.headers["flashsale-delivery-attempt"], "1")
            self.assertEqual(d.headers["content-type"], "application/json")
            self.assertTrue(d.headers["user-agent"].startswith("flashsale-relay/"))
        # Orders of SKU b were bought two at a time.
        self.assertTrue(all(json.loads(d.body)["qty"] == 2 for d in self.rcv.records()
                            if json.loads(d.body)["sku"] == "b"))

        for s in ("a", "b", "c"):
            self.assertEqual(self.r.call("EXISTS", "fs:{%s:%s}:delivery" % (lid, s)), 0)
            self.assertEqual(self.r.call("XLEN", "fs:{%s:%s}:dead" % (lid, s)), 0)
            self.assertEqual(self.r.call("XLEN", "fs:{%s:%s}:replay" % (lid, s)), 0)
        m = relay.metrics()
        self.assertEqual(m["fs_relay_delivered_total"], 200)
        self.assertEqual(m['fs_relay_attempts_total{result="2xx"}'], 200)
        self.assertEqual(m["fs_relay_retried_total"], 0)
        self.assertEqual(sum(v for k, v in m.items() if k.startswith("fs_relay_dead_lettered_total")), 0)
        self.assertEqual(m["fs_relay_delivery_latency_seconds_count"], 200)
        # Keep-alive: a handful of connections carried 200 deliveries.
        self.assertLessEqual(m["fs_relay_connects_total"], 16)
        self.assertGreaterEqual(m["fs_relay_connection_reuses_total"], 200 - 16)
        wait_until(lambda: relay.metric("fs_relay_lag_seconds", -1) == 0
                   and relay.metric("fs_relay_backlog", -1) == 0, 5, what="lag 0")
        relay.stop()
        self.assertIn("event=stopped", relay.log_text())
        self.assertNotIn(SECRET, relay.log_text())

    def test_new_launch_found_without_restart_and_lag_reported(self):
        self.rcv.delay = 0.2  # slow receiver: the backlog is visible for a while
        relay = self.relay(env={"FLASHSALE_RELAY_MAX_IN_FLIGHT": "1"})
        wait_until(lambda: relay.metric("fs_relay_lag_seconds", -1) == 0, 5, what="lag probe")
        lid = self.new_launch(["x"])
        ids = self.orders.confirm(lid, "x", 12)
        wait_until(lambda: relay.metric("fs_relay_backlog") >= 3, 5, what="a backlog")
        self.assertGreater(relay.metric("fs_relay_lag_seconds"), 0)
        self.wait_delivered(ids)
        self.assertEqual(collections.Counter(self.rcv.accepted_ids()).most_common(1)[0][1], 1)
        wait_until(lambda: relay.metric("fs_relay_backlog", -1) == 0, 5, what="backlog drained")
        self.assertIn("event=relay_following launch=%s sku=x" % lid, relay.log_text())


    def test_interim_answers_are_skipped(self):
        self.rcv.default = "interim"  # 100 Continue, then 200 OK
        lid = self.new_launch()
        relay = self.relay(env={"FLASHSALE_RELAY_MAX_IN_FLIGHT": "1"})
        ids = self.orders.confirm(lid, "a", 5)
        self.wait_delivered(ids)
        self.wait_settled(lid, ["a"])
        self.assertEqual(len(self.rcv.records()), 5)
        self.assertEqual(relay.metric('fs_relay_attempts_total{result="2xx"}'), 5)
        self.assertEqual(relay.metric("fs_relay_connects_total"), 1, "the connection stays usable")


class ServiceEndpointsTest(RelayCase):
    def test_health_metrics_and_admin_auth(self):
        relay = self.relay()
        self.assertEqual(relay.request("GET", "/healthz").status, 200)
        self.assertEqual(relay.request("GET", "/readyz").status, 200)
        text = relay.request("GET", "/metrics").body
        for name in ("fs_relay_delivered_total", "fs_relay_retried_total",
                     "fs_relay_dead_lettered_total", "fs_relay_attempt_duration_seconds_bucket",
                     "fs_relay_delivery_latency_seconds_bucket", "fs_redis_connected"):
            self.assertIn(name, text)
        path = "/admin/v1/dead-letters"
        self.assertEqual(relay.request("GET", path, auth=None).status, 401)
        r = relay.request("GET", path, auth="not-the-token")
        self.assertEqual(r.status, 401)
        self.assertEqual(r.body["error"], "unauthorized")
        r = relay.request("GET", path)
        self.assertEqual(r.status, 200, r.body)
        self.assertIn("total", r.body)
        r = relay.request("GET", "/admin/v1/launches/bad%20id/skus/a/dead-letters")
        self.assertEqual(r.status, 400)
        r = relay.request("POST", "/admin/v1/launches/L/skus/a/dead-letters/nope/replay")
        self.assertEqual(r.status, 400)
        self.assertEqual(relay.request("GET", "/nope").status, 404)
        self.assertEqual(relay.request("DELETE", "/healthz").status, 405)
        self.assertNotIn(ADMIN_TOKEN, relay.log_text())

    def test_admin_disabled_without_token(self):
        relay = self.relay(admin_token=None)
        r = relay.request("GET", "/admin/v1/dead-letters", auth="anything")
        self.assertEqual(r.status, 403)
        self.assertEqual(r.body["error"], "forbidden")

    def test_readyz_follows_redis(self):
        relay = self.relay(env={"FLASHSALE_REDIS_TIMEOUT_MS": "200"})
        import signal
        os.kill(self.redis.pid, signal.SIGSTOP)
        try:
            wait_until(lambda: relay.request("GET", "/readyz").status == 503, 10, what="not ready")
            self.assertEqual(relay.request("GET", "/healthz").status, 200)
        finally:
            os.kill(self.redis.pid, signal.SIGCONT)
        wait_until(lambda: relay.request("GET", "/readyz").status == 200, 10, what="ready again")
        lid = self.new_launch()
        ids = self.orders.confirm(lid, "a", 5)
        self.wait_delivered(ids)


class StartupTest(unittest.TestCase):
    """Refusals: exit 1 with one clear line on stderr, before doing anything."""

    def run_relay(self, env, args=()):
        e = {k: v for k, v in os.environ.items() if not k.startswith("FLASHSALE_")}
        e.update(env)
        p = subprocess.run([fsreceiver.relay_bin()] + list(args), env=e, capture_output=True,
                           timeout=10, text=True)
        return p.returncode, p.stderr.strip()

    BASE = {"FLASHSALE_RELAY_TARGET": "https://fulfillment.example.com/orders",
            "FLASHSALE_RELAY_SECRET": SECRET, "FLASHSALE_RELAY_LISTEN": "127.0.0.1:1",
            "FLASHSALE_REDIS": "redis://127.0.0.1:1/0"}

    def refused(self, overrides, needle, args=()):
        env = dict(self.BASE)
        for k, v in overrides.items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = v
        rc, err = self.run_relay(env, args)
        self.assertEqual(rc, 1, err)
        self.assertIn(needle, err)
        self.assertEqual(len(err.splitlines()), 1, err)
        self.assertNotIn(SECRET, err)
        return err

    def test_refusals(self):
        self.refused({"FLASHSALE_RELAY_TARGET": None}, "no target configured")
        self.refused({"FLASHSALE_RELAY_TARGET": "http://fulfillment.example.com/orders"},
                     "plain http is allowed only to a loopback host")
        self.refused({"FLASHSALE_RELAY_TARGET": "http://10.0.0.1:8080/orders"}, "loopback")
        self.refused({"FLASHSALE_RELAY_TARGET": "ftp://x/"}, "https://")
        self.refused({"FLASHSALE_RELAY_TARGET": "https://user:pw@host/"}, "credentials")
        self.refused({"FLASHSALE_RELAY_SECRET": None}, "no signing secret")
        self.refused({"FLASHSALE_RELAY_SECRET": "short"}, "at least 16 bytes")
        self.refused({"FLASHSALE_RELAY_MAX_ATTEMPTS": "0"}, "max_attempts")
        self.refused({"FLASHSALE_RELAY_CA_FILE": "/nonexistent/ca.pem"}, "cannot load CA file")
        self.refused({"FLASHSALE_RELAY_TARGET": "http://127.0.0.1:9/x",
                      "FLASHSALE_RELAY_CA_FILE": "/nonexistent/ca.pem"}, "plain http")
        self.refused({"FLASHSALE_RELAY_LISTEN": "nowhere"}, "relay.listen")
        with tempfile.NamedTemporaryFile("w", suffix=".ini") as f:
            f.write("[relay]\nmax_in_flight = 4\nthis line is broken\n")
            f.flush()
            self.refused({}, "line 3", args=["--config", f.name])

    def test_listen_address_taken(self):
        import socket
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen(1)
            self.refused({"FLASHSALE_RELAY_LISTEN": "127.0.0.1:%d" % s.getsockname()[1],
                          "FLASHSALE_RELAY_TARGET": "http://127.0.0.1:9/x"}, "cannot listen")

    def test_help_version_usage(self):
        rc, _ = self.run_relay({}, ["--help"])
        self.assertEqual(rc, 0)
        out = subprocess.run([fsreceiver.relay_bin(), "--help"], capture_output=True, text=True,
                             timeout=10).stdout
        for name in ("FLASHSALE_REDIS", "FLASHSALE_RELAY_TARGET", "FLASHSALE_RELAY_SECRET",
                     "FLASHSALE_RELAY_CA_FILE", "FLASHSALE_RELAY_LISTEN",
                     "FLASHSALE_RELAY_MAX_ATTEMPTS"):
            self.assertIn(name, out)
        rc, _ = self.run_relay({}, ["--version"])
        self.assertEqual(rc, 0)
        rc, _ = self.run_relay({}, ["--bogus"])
        self.assertEqual(rc, 2)


class SignatureTest(unittest.TestCase):
    def test_worked_example_of_docs(self):
        """The example in docs/relay.md, recomputed."""
        body = (b'{"order_id":"o_3J6sUQ2pQ0m2Xl9Y","reservation_id":"r1","launch":"phone-x",'
                b'"sku":"black-256","user_id":"u-42","qty":1,"price_cents":79900,'
                b'"payment_ref":"pay-7","confirmed_at":"2026-11-27T01:02:03.456Z"}')
        secret = "whsec-example-0123456789abcdef"
        mac = hmac.new(secret.encode(), b"1795741323." + body, hashlib.sha256).hexdigest()
        self.assertEqual(mac, EXAMPLE_V1)
        header = "t=1795741323,v1=" + mac
        self.assertTrue(fsreceiver.verify_signature(header, body, [secret], now=1795741323 + 60))
        self.assertFalse(fsreceiver.verify_signature(header, body, [secret], now=1795741323 + 3600))
        self.assertFalse(fsreceiver.verify_signature(header, body + b" ", [secret], now=1795741323))


EXAMPLE_V1 = None  # filled in below from docs/relay.md

if __name__ == "__main__":
    doc = os.path.join(fsreceiver.REPO, "docs", "relay.md")
    with open(doc, encoding="utf-8") as f:
        for line in f:
            if line.startswith("Flashsale-Signature: t=1795741323,v1="):
                EXAMPLE_V1 = line.strip().split("v1=")[1]
    fsserver.main(timeout=55)
