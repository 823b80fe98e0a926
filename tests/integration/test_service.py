#!/usr/bin/env python3
"""Service endpoints: /healthz, /readyz, /metrics (Prometheus text; counters move)."""

import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import fsserver  # noqa: E402
from fsserver import sku  # noqa: E402

METRICS = ["fs_http_requests_total", "fs_http_request_duration_seconds", "fs_redis_commands_total",
           "fs_redis_errors_total", "fs_redis_timeouts_total", "fs_reservations_total",
           "fs_http_connections_open", "fs_redis_connected"]
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\d+)?$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """-> ({(name, frozenset(labels.items())): value}, {name: type}); asserts every line parses."""
    samples, types = {}, {}
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(None, 3)
            types[name] = typ.strip()
            continue
        if line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        if not m:
            raise AssertionError("unparseable metrics line %r" % line)
        labels = frozenset(LABEL.findall(m.group(3) or ""))
        samples[(m.group(1), labels)] = float(m.group(4))
    return samples, types


def total(samples, name, **labels):
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


class ServiceTest(fsserver.ServerTestCase):
    server_env = {"FLASHSALE_THREADS": "2"}

    def metrics(self):
        r = self.srv.request("GET", "/metrics", auth=None)
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.headers.get("content-type", "").startswith("text/plain"), r.headers)
        return parse_metrics(r.body)

    def test_admin_without_slash_redirects_to_dashboard(self):
        r = self.srv.request("GET", "/admin", auth=None)
        self.assertEqual((r.status, r.headers.get("location")), (308, "/admin/"))
        self.assertEqual(self.srv.request("GET", "/admin/", auth=None).status, 200)

    def test_healthz_and_readyz(self):
        for path in ("/healthz", "/readyz"):
            r = self.srv.request("GET", path, auth=None)
            self.assertEqual(r.status, 200, (path, r))
        # no credentials needed, and none harmful
        r = self.srv.request("GET", "/healthz", auth="whatever")
        self.assertEqual(r.status, 200)

    def test_metric_names_and_types(self):
        samples, types = self.metrics()
        names = {n for (n, _) in samples}
        for m in METRICS:
            present = m in names or any(n.startswith(m + "_") for n in names)
            self.assertTrue(present, "metric %s missing from /metrics" % m)
        self.assertEqual(types.get("fs_http_request_duration_seconds"), "histogram")
        self.assertEqual(types.get("fs_http_requests_total"), "counter")
        self.assertEqual(types.get("fs_http_connections_open"), "gauge")
        # one per event loop whose Redis connection is ready
        self.assertEqual(total(samples, "fs_redis_connected"), 2)
        self.assertGreaterEqual(total(samples, "fs_http_connections_open"), 1)
        buckets = [ls for (n, ls) in samples if n == "fs_http_request_duration_seconds_bucket"]
        self.assertTrue(buckets, "no histogram buckets")
        self.assertTrue(all(dict(ls).get("route") for ls in buckets), "buckets carry a route label")
        self.assertTrue(any(dict(ls).get("le") == "+Inf" for ls in buckets))

    def test_counters_move(self):
        lid = self.new_launch([sku("a", 1, 1)])
        before, _ = self.metrics()
        ok = self.srv.reserve(lid, "a", "m1")
        self.assertEqual(ok.status, 201)
        self.assertEqual(self.srv.reserve(lid, "a", "m2").status, 409)
        self.assertEqual(self.srv.request("GET", "/no-such-route").status, 404)
        for _ in range(3):
            self.assertEqual(self.srv.request("GET", "/healthz").status, 200)
        after, _ = self.metrics()
        self.assertGreaterEqual(total(after, "fs_http_requests_total") - total(before, "fs_http_requests_total"), 7)
        self.assertGreaterEqual(total(after, "fs_http_requests_total", status="201")
                                - total(before, "fs_http_requests_total", status="201"), 1)
        self.assertGreaterEqual(total(after, "fs_http_requests_total", status="409")
                                - total(before, "fs_http_requests_total", status="409"), 1)
        self.assertGreaterEqual(total(after, "fs_http_requests_total", status="404")
                                - total(before, "fs_http_requests_total", status="404"), 1)
        self.assertEqual(total(after, "fs_reservations_total") - total(before, "fs_reservations_total"), 2)
        self.assertEqual(total(after, "fs_reservations_total", outcome="ok")
                         - total(before, "fs_reservations_total", outcome="ok"), 1)
        self.assertEqual(total(after, "fs_reservations_total", outcome="sold_out")
                         - total(before, "fs_reservations_total", outcome="sold_out"), 1)
        self.assertGreater(total(after, "fs_redis_commands_total"), total(before, "fs_redis_commands_total"))
        self.assertGreater(total(after, "fs_http_request_duration_seconds_count"),
                           total(before, "fs_http_request_duration_seconds_count"))
        # route labels are route templates, not raw paths (bounded cardinality)
        routes = {dict(ls).get("route") for (n, ls) in after if n == "fs_http_requests_total"}
        self.assertFalse(any(lid in (r or "") for r in routes), routes)

    def test_open_connections_gauge(self):
        base = total(self.metrics()[0], "fs_http_connections_open")
        conns = [self.srv.raw() for _ in range(5)]
        try:
            for c in conns:
                c.send(fsserver.raw_request("GET", "/healthz"))
                self.assertEqual(c.read_response().status, 200)
            now = total(self.metrics()[0], "fs_http_connections_open")
            self.assertGreaterEqual(now, base + 5)
        finally:
            for c in conns:
                c.close()
        fsserver.wait_until(lambda: total(self.metrics()[0], "fs_http_connections_open") <= base, 3,
                            what="open connections gauge to go back down")


if __name__ == "__main__":
    fsserver.main(timeout=60)
