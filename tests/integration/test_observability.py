#!/usr/bin/env python3
"""deploy/grafana/ and deploy/prometheus/ work against /metrics as it really is: every metric the
dashboard and the alert rules reference is exported by flashsale-server or flashsale-relay, with
the labels (and label values) they select on (issue 7)."""

import glob
import json
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import fsserver  # noqa: E402
import fsreceiver  # noqa: E402
from fsserver import sku  # noqa: E402

DEPLOY = os.path.join(fsserver.REPO, "deploy")
SUFFIXES = ("_bucket", "_sum", "_count")
ADDED_BY_PROMETHEUS = {"instance", "job", "le"}
SELECTOR = re.compile(r'\b(fs_[a-z0-9_]+)\b(\{([^}]*)\})?')
MATCHER = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"\s*,?')


def expressions():
    """[(file, expr)] from the Grafana dashboards and the Prometheus rule files."""
    out = []
    for path in glob.glob(os.path.join(DEPLOY, "grafana", "*.json")):
        with open(path) as f:
            doc = json.load(f)

        def walk(x):
            if isinstance(x, dict):
                for k, v in x.items():
                    if k in ("expr", "query") and isinstance(v, str):
                        out.append((path, v))
                    else:
                        walk(v)
            elif isinstance(x, list):
                for v in x:
                    walk(v)
        walk(doc)
    for path in glob.glob(os.path.join(DEPLOY, "prometheus", "*.yml")):
        with open(path) as f:
            text = f.read()
        # expr: on one line, or a block scalar (expr: |) indented below it
        for m in re.finditer(r'(?m)^(\s*)expr:\s*(\|[-+]?)?\s*(.*)$', text):
            indent, block, rest = m.group(1), m.group(2), m.group(3)
            if not block:
                out.append((path, rest))
                continue
            lines = []
            for line in text[m.end() + 1:].splitlines():
                if line.strip() and len(line) - len(line.lstrip()) <= len(indent):
                    break
                lines.append(line)
            out.append((path, "\n".join(lines)))
    return out


def parse_metrics(text):
    """{sample name: [label dict]} from Prometheus text format."""
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? ', line)
        assert m, "bad metrics line %r" % line
        labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        samples.setdefault(m.group(1), []).append(labels)
    return samples


class ObservabilityTest(fsreceiver.RelayCase):

    def test_every_referenced_metric_exists(self):
        exprs = expressions()
        files = {f for f, _ in exprs}
        self.assertTrue(any(f.endswith(".json") for f in files), "no Grafana dashboard in deploy/grafana")
        self.assertTrue(any(f.endswith(".yml") for f in files), "no alert rules in deploy/prometheus")
        rule_text = ""
        for p in glob.glob(os.path.join(DEPLOY, "prometheus", "*.yml")):
            with open(p) as f:
                rule_text += f.read()
        for topic in ("fs_http_requests_total", "fs_http_request_duration_seconds_bucket",
                      "fs_redis_errors_total", "fs_relay_lag_seconds", 'outcome="sold_out"'):
            self.assertIn(topic, rule_text)  # error rate, p99, Redis errors, relay lag, sold-out

        # traffic, so that the labelled series exist: reservations of several outcomes and
        # confirmed orders for the relay to deliver
        lid = self.new_launch(["a"])
        self.assertEqual(self.srv.admin_put_launch("obs-small", [sku("x", 1, 1)]).status, 200)
        self.assertEqual(self.srv.open("obs-small").status, 200)
        self.assertEqual(self.srv.reserve("obs-small", "x", "u1").status, 201)
        self.assertEqual(self.srv.reserve("obs-small", "x", "u2").status, 409)
        ids = self.orders.confirm(lid, "a", 3, threads=1)
        relay = self.relay()
        self.wait_delivered(ids)
        self.assertEqual(self.srv.request("GET", "/nope").status, 404)

        server = parse_metrics(self.srv.request("GET", "/metrics").body)

        def relay_metrics():
            return parse_metrics(relay.request("GET", "/metrics").body)
        # the relay exports its lag once it has looked at the streams
        relay_samples = fsserver.wait_until(
            lambda: (lambda m: m if "fs_relay_lag_seconds" in m else None)(relay_metrics()), 10,
            what="fs_relay_lag_seconds in the relay's /metrics")
        exported = dict(server)
        exported.update(relay_samples)

        checked = set()
        for path, expr in exprs:
            for m in SELECTOR.finditer(expr):
                name, body = m.group(1), m.group(3)
                where = "%s: %s" % (os.path.relpath(path, fsserver.REPO), name)
                self.assertIn(name, exported, "%s is not in /metrics" % where)
                checked.add(name)
                series = exported[name]
                for label, op, value in MATCHER.findall(body or ""):
                    if label in ADDED_BY_PROMETHEUS:
                        continue
                    self.assertTrue(any(label in s for s in series),
                                    "%s: no series has the label %s" % (where, label))
                    if op == "=":
                        self.assertIn(value, {s.get(label) for s in series},
                                      "%s{%s=%r}: no such series" % (where, label, value))
                    # (=~ selects series that may not exist yet, e.g. 5xx answers: the label is enough)
        # the metrics worth watching are all used
        for name in ("fs_reservations_total", "fs_http_request_duration_seconds_bucket",
                     "fs_redis_timeouts_total", "fs_redis_connected", "fs_http_connections_open",
                     "fs_relay_lag_seconds"):
            self.assertIn(name, checked)

    def test_files_are_well_formed(self):
        for path in glob.glob(os.path.join(DEPLOY, "grafana", "*.json")):
            with open(path) as f:
                doc = json.load(f)
            self.assertTrue(doc["panels"])
            for p in doc["panels"]:
                self.assertTrue(p.get("targets"), p.get("title"))
                self.assertEqual(len({t["refId"] for t in p["targets"]}), len(p["targets"]))
            self.assertEqual(len({p["id"] for p in doc["panels"]}), len(doc["panels"]))
        for path in glob.glob(os.path.join(DEPLOY, "prometheus", "*alerts*.yml")):
            with open(path) as f:
                text = f.read()
            alerts = re.findall(r'(?m)^\s*- alert: (\w+)$', text)
            self.assertTrue(alerts)
            self.assertEqual(len(alerts), len(set(alerts)))
            self.assertEqual(len(alerts), len(re.findall(r'(?m)^\s*expr:', text)))
            self.assertNotIn("\t", text)


if __name__ == "__main__":
    fsserver.main(timeout=90)
