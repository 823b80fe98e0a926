#!/usr/bin/env python3
"""flashsale-load end to end.

- A short campaign (loadtest/campaigns/smoke.ini, cut to a few seconds) against the real server
  and a real Redis: the run must PASS every invariant, and its reports must agree with Redis.
- The same campaign against deliberately wrong answer sources (a tiny fake server in this file
  that writes real order streams into a real Redis): one that oversells and ignores the per-user
  limit, one that loses orders, one that writes orders twice. Verification must FAIL, naming the
  broken invariant, and the exit status must be non-zero.
- Plain mode against /healthz (closed and open loop), --json fields, the HTML report being
  self-contained, and the loopback-only default.
"""

import http.server
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import fsserver  # noqa: E402
import fsredis  # noqa: E402
import checks  # noqa: E402

REPO = fsserver.REPO
SMOKE = os.path.join(REPO, "loadtest", "campaigns", "smoke.ini")
RUN_TIMEOUT = 60


def load_bin():
    env = os.environ.get("FLASHSALE_LOAD_BIN")
    if env:
        return env
    server = fsserver.server_bin()
    return os.path.join(os.path.dirname(os.path.dirname(server)), "loadtest", "flashsale-load")


def run_load(args, env_extra=None, timeout=RUN_TIMEOUT, preexec=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLASHSALE_")}
    env.update(env_extra or {})
    p = subprocess.run([load_bin()] + list(args), env=env, stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=timeout, preexec_fn=preexec)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def slurp(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def load_json(path):
    return json.loads(slurp(path))


def invariants(doc):
    return {i["name"]: i for i in doc["verification"]["invariants"]}


# ---------------------------------------------------------------------------------------------
# the real server

class CampaignAgainstRealServer(fsserver.ServerTestCase):

    def test_smoke_campaign_passes_and_reports_agree_with_redis(self):
        tmp = tempfile.mkdtemp(prefix="fs-load-")
        jpath, hpath = os.path.join(tmp, "run.json"), os.path.join(tmp, "run.html")
        rc, out, err = run_load(
            ["--campaign", SMOKE, "--server", "http://127.0.0.1:%d" % self.srv.port,
             "--redis", self.redis.url, "-d", "3s", "--json", jpath, "--html", hpath],
            {"FLASHSALE_ADMIN_TOKEN": fsserver.DEFAULT_ADMIN_TOKEN,
             "FLASHSALE_API_KEYS": ",".join(fsserver.DEFAULT_API_KEYS)})
        self.assertEqual(rc, 0, "stdout:\n%s\nstderr:\n%s" % (out, err))
        for name in ("counters_add_up", "nothing_oversold", "per_user_limit",
                     "orders_exactly_once", "told_orders_present"):
            self.assertRegex(out, r"PASS\s+%s" % name)
        self.assertNotIn("FAIL", out)
        # progress lines on stderr, once a second, naming elapsed/total and stock left
        self.assertRegex(err, r"\[\s*\d+s/3s\] reserve .* \| left red \d+ blue \d+")
        # no credential is ever printed
        for secret in (fsserver.DEFAULT_ADMIN_TOKEN,) + fsserver.DEFAULT_API_KEYS:
            self.assertNotIn(secret, out + err)
            self.assertNotIn(secret, slurp(jpath))
            self.assertNotIn(secret, slurp(hpath))

        doc = load_json(jpath)
        self.assertEqual(doc["mode"], "campaign")
        self.assertTrue(doc["verification"]["passed"])
        self.assertTrue(all(i["result"] == "PASS" for i in doc["verification"]["invariants"]))
        for k in ("requests", "duration_s", "requests_per_sec", "latency_ms", "status", "timeline",
                  "skus", "outcomes", "stock_timeline"):
            self.assertIn(k, doc)
        for q in ("p50", "p90", "p99", "p999", "max"):
            self.assertGreater(doc["latency_ms"][q], 0)
        self.assertGreater(doc["requests"], 100)
        self.assertGreater(doc["outcomes"].get("confirmed", 0), 0)
        launch = doc["campaign"]["launch"]
        self.assertTrue(launch.startswith("smoke-"), launch)
        self.assertEqual(sum(doc["status"].values()), doc["requests"])

        # the tool's view agrees with Redis, checked independently here
        skus = [s["sku"] for s in doc["skus"]]
        state = checks.check_invariants(self.r, launch, skus)
        for s in doc["skus"]:
            st = state[s["sku"]]
            self.assertEqual(s["sold"], st["sold"])
            self.assertEqual(s["stream_orders"], len(st["orders"]))
            self.assertEqual(s["told_units"], st["sold"])  # no answer was lost on loopback
        self.assertEqual(doc["outcomes"]["confirmed"], sum(len(state[s]["orders"]) for s in skus))

        html = slurp(hpath)
        self.assertTrue(html.startswith("<!DOCTYPE html>"))
        # self-contained: nothing fetched from anywhere
        self.assertNotRegex(html, r"""(src|href)\s*=\s*["']?(https?:)?//""")
        self.assertNotIn("@import", html)
        m = re.search(r'<script type="application/json" id="data">(.*?)</script>', html, re.S)
        self.assertIsNotNone(m)
        embedded = json.loads(m.group(1))
        self.assertEqual(embedded["campaign"]["launch"], launch)
        for title in ("Offered vs achieved rate", "Latency of", "Stock remaining per SKU",
                      "Outcomes per second"):
            self.assertIn(title, html)

    def test_redis_password_is_sent_and_never_printed(self):
        """--redis with a password: the verification authenticates with it (this Redis has none,
        so it refuses, and the campaign's verification says so), and the password is never
        printed."""
        tmp = tempfile.mkdtemp(prefix="fs-load-")
        jpath = os.path.join(tmp, "run.json")
        url = "redis://:pw-%s@127.0.0.1:%d/0" % ("x7Qz", self.redis.port)
        rc, out, err = run_load(
            ["--campaign", SMOKE, "--server", "http://127.0.0.1:%d" % self.srv.port,
             "--redis", url, "-d", "1s", "-q", "--json", jpath],
            {"FLASHSALE_ADMIN_TOKEN": fsserver.DEFAULT_ADMIN_TOKEN,
             "FLASHSALE_API_KEYS": ",".join(fsserver.DEFAULT_API_KEYS)})
        self.assertEqual(rc, 1, out + err)
        self.assertIn("AUTH failed", out)
        for text in (out, err, slurp(jpath)):
            self.assertNotIn("pw-x7Qz", text)
        rc, out, err = run_load(["--campaign", SMOKE, "--server", "http://127.0.0.1:1",
                                 "--redis", "redis://:pw-x7Qz@nohost", "-d", "1s"],
                                {"FLASHSALE_ADMIN_TOKEN": "a", "FLASHSALE_API_KEYS": "k"})
        self.assertEqual(rc, 2, out + err)
        self.assertNotIn("pw-x7Qz", out + err)
        # the verification has no TLS: a rediss:// URL needs --no-verify
        rc, out, err = run_load(["--campaign", SMOKE, "--server", "http://127.0.0.1:1",
                                 "--redis", "rediss://127.0.0.1:6379/0", "-d", "1s"],
                                {"FLASHSALE_ADMIN_TOKEN": "a", "FLASHSALE_API_KEYS": "k"})
        self.assertEqual(rc, 2, out + err)
        self.assertIn("--no-verify", err)

    def test_missing_credentials_is_a_usage_error(self):
        rc, out, err = run_load(["--campaign", SMOKE, "--server", "http://127.0.0.1:%d" % self.srv.port],
                                {"FLASHSALE_API_KEYS": "x"})
        self.assertEqual(rc, 2, err)
        self.assertIn("FLASHSALE_ADMIN_TOKEN", err)

    def test_bad_campaign_file_names_line_and_field(self):
        tmp = tempfile.mkdtemp(prefix="fs-load-")
        path = os.path.join(tmp, "bad.ini")
        with open(path, "w") as f:
            f.write("[launch]\nid = x\n\n[sku black]\nstock = plenty\n")
        rc, out, err = run_load(["--campaign", path, "--server", "http://127.0.0.1:%d" % self.srv.port],
                                {"FLASHSALE_ADMIN_TOKEN": "a", "FLASHSALE_API_KEYS": "b"})
        self.assertEqual(rc, 2)
        self.assertIn("bad.ini:5: [sku black] stock", err)

    def test_plain_mode_closed_and_open_loop(self):
        url = "http://127.0.0.1:%d/healthz" % self.srv.port
        tmp = tempfile.mkdtemp(prefix="fs-load-")
        jpath = os.path.join(tmp, "plain.json")
        rc, out, err = run_load(["--url", url, "-c", "4", "-t", "1", "-d", "1s", "-q", "--json", jpath])
        self.assertEqual(rc, 0, out + err)
        doc = load_json(jpath)
        self.assertEqual(doc["mode"], "plain")
        self.assertEqual(doc["loop"], "closed")
        self.assertGreater(doc["requests"], 50)
        self.assertEqual(doc["status"], {"200": doc["requests"]})
        self.assertAlmostEqual(doc["duration_s"], 1.0, delta=0.2)
        self.assertAlmostEqual(doc["requests_per_sec"], doc["requests"] / doc["duration_s"], delta=1)
        for q in ("p50", "p90", "p99", "p999", "max"):
            self.assertGreater(doc["latency_ms"][q], 0)
        self.assertLessEqual(doc["latency_ms"]["p50"], doc["latency_ms"]["p99"])
        self.assertLessEqual(doc["latency_ms"]["p99"], doc["latency_ms"]["max"])

        # open loop at a modest rate: exactly rate x duration arrivals are due, and every one that
        # was sent is answered, except at most one per connection still in flight at the stop.
        # (Whether the rate was *held* depends on the machine: under a loaded CI run with ASan, a
        # pause of the server near the end leaves arrivals unsent, which the tool reports as
        # missed; that is its job, so here it is checked for consistency, not for luck.)
        conns = 8
        rc, out, err = run_load(["--url", url, "-c", str(conns), "-t", "1", "-d", "2s", "-R", "500",
                                 "-q", "--json", jpath])
        self.assertEqual(rc, 0, out + err)
        doc = load_json(jpath)
        self.assertEqual(doc["loop"], "open")
        self.assertAlmostEqual(doc["intended"], 1000, delta=1)
        sent = doc["intended"] - doc["missed"]
        self.assertLessEqual(doc["requests"], sent)
        self.assertGreaterEqual(doc["requests"], sent - conns)
        self.assertEqual(doc["status"], {"200": doc["requests"]})
        self.assertAlmostEqual(doc["requests_per_sec"], doc["requests"] / doc["duration_s"], delta=1)
        # rate_held is what the tool concludes from those figures
        held = sent / doc["intended"] >= 0.98 and doc["requests"] >= 0.98 * 500 * (2 - 0.05)
        self.assertEqual(doc["rate_held"], held, doc)
        if doc["missed"] == 0:
            self.assertGreaterEqual(doc["requests"], 1000 - conns)
        # every connection is opened before the start, though one or two would carry 500/s
        self.assertEqual(doc["connections_opened"], conns, doc)
        self.assertEqual(doc["step_us"], 100, doc)

        # --step: arrivals wait for the next step (here 5 ms, for arrivals 2 ms apart) and that
        # wait counts in their latency, so most answers of a sub-millisecond /healthz take
        # milliseconds (uniform over 0-5 ms: the p90 is 4.5 ms)
        rc, out, err = run_load(["--url", url, "-c", str(conns), "-t", "1", "-d", "2s", "-R", "500",
                                 "--step", "5ms", "-q", "--json", jpath])
        self.assertEqual(rc, 0, out + err)
        doc = load_json(jpath)
        self.assertEqual(doc["step_us"], 5000, doc)
        self.assertAlmostEqual(doc["intended"], 1000, delta=1)
        self.assertGreaterEqual(doc["latency_ms"]["p90"], 3.0, doc["latency_ms"])
        for bad in (["--step", "20ms", "-R", "500"], ["--step", "1x", "-R", "500"], ["--step", "1ms"]):
            rc, out, err = run_load(["--url", url, "-d", "1s"] + bad)
            self.assertEqual(rc, 2, bad)
            self.assertIn("--step", err)

    def test_plain_mode_post_with_seq(self):
        """--post: reservations by as many shoppers as requests (up to 16384 per thread), each
        {seq} replaced, and the counters in Redis agree with what the tool says it got."""
        lid = self.new_launch([fsserver.sku("a", 10 ** 6, per_user_limit=1)])
        url = "http://127.0.0.1:%d/v1/launches/%s/reservations" % (self.srv.port, lid)
        tmp = tempfile.mkdtemp(prefix="fs-load-")
        jpath = os.path.join(tmp, "post.json")
        rc, out, err = run_load(["--url", url, "-c", "4", "-t", "2", "-d", "1s", "-q", "--json", jpath,
                                 "-H", "Authorization: Bearer " + self.srv.api_keys[0],
                                 "-H", "Content-Type: application/json",
                                 "--post", '{"sku":"a","user_id":"s{seq}","qty":1}'])
        self.assertEqual(rc, 0, out + err)
        self.assertIn("POST " + url, out)
        doc = load_json(jpath)
        self.assertEqual(doc["method"], "POST")
        n = doc["requests"]
        self.assertGreater(n, 50)
        self.assertLess(n, 2 * 16384, "more requests than distinct shoppers: the test would not hold")
        # per_user_limit 1: every request was a new shopper, so every one got its unit
        self.assertEqual(doc["status"], {"201": n}, doc["status"])
        p = "fs:{%s:a}" % lid
        # the requests still in flight when the run stopped (at most one per connection) were
        # decided too, but not counted by the tool
        shoppers = self.r.call("HLEN", p + ":users")
        self.assertGreaterEqual(shoppers, n)
        self.assertLessEqual(shoppers, n + 4)
        self.assertEqual(int(self.r.call("HGET", p + ":sku", "held")), shoppers)
        users = self.r.call("HKEYS", p + ":users")
        self.assertTrue(all(re.fullmatch(r"s[1-9][0-9]*", u) for u in users), users[:5])
        rc, out, err = run_load(["--campaign", SMOKE, "--post", "{}"])
        self.assertEqual(rc, 2)
        self.assertIn("--post needs --url", err)

    def test_plain_mode_warmup_loads_but_does_not_measure(self):
        """--warmup D: the load runs for D first, at the same rate, and only what follows is
        measured. Redis holds the reservations of both; the figures count only the second."""
        lid = self.new_launch([fsserver.sku("w", 10 ** 6, per_user_limit=1),
                               fsserver.sku("c", 10 ** 6, per_user_limit=1)])
        url = "http://127.0.0.1:%d/v1/launches/%s/reservations" % (self.srv.port, lid)
        tmp = tempfile.mkdtemp(prefix="fs-load-")
        jpath = os.path.join(tmp, "warm.json")
        auth = ["-H", "Authorization: Bearer " + self.srv.api_keys[0],
                "-H", "Content-Type: application/json"]
        conns = 4
        rc, out, err = run_load(["--url", url, "-c", str(conns), "-t", "1", "-d", "1s", "-R", "400",
                                 "--warmup", "1s", "-q", "--json", jpath,
                                 "--post", '{"sku":"w","user_id":"w{seq}"}'] + auth)
        self.assertEqual(rc, 0, out + err)
        self.assertIn("after 1.00 s of warm-up (not measured)", out)
        doc = load_json(jpath)
        self.assertEqual(doc["warmup_s"], 1.0)
        self.assertAlmostEqual(doc["duration_s"], 1.0, delta=0.01)
        # the arrivals of the measured second only, not those of the warm-up
        self.assertAlmostEqual(doc["intended"], 400, delta=1)
        sent = doc["intended"] - doc["missed"]
        self.assertLessEqual(doc["requests"], sent)
        self.assertGreaterEqual(doc["requests"], sent - conns)
        self.assertEqual(doc["status"], {"201": doc["requests"]})
        # every shopper is new (per_user_limit 1, all 201): Redis saw the warm-up's as well
        shoppers = self.r.call("HLEN", "fs:{%s:w}:users" % lid)
        self.assertGreaterEqual(shoppers, doc["requests"] + 300, doc)
        self.assertLessEqual(shoppers, 800 + conns, doc)

        # closed loop: the same, with whatever rate the connections reach
        rc, out, err = run_load(["--url", url, "-c", "2", "-t", "1", "-d", "500ms",
                                 "--warmup", "500ms", "-q", "--json", jpath,
                                 "--post", '{"sku":"c","user_id":"c{seq}"}'] + auth)
        self.assertEqual(rc, 0, out + err)
        doc = load_json(jpath)
        self.assertEqual(doc["warmup_s"], 0.5)
        self.assertGreater(doc["requests"], 20)
        shoppers = self.r.call("HLEN", "fs:{%s:c}:users" % lid)
        self.assertGreaterEqual(shoppers, doc["requests"] + 10, doc)

        for bad in (["--url", url, "--warmup", "x"], ["--url", url, "--warmup", "2h"],
                    ["--campaign", SMOKE, "--server", url, "--warmup", "1s"]):
            rc, out, err = run_load(bad + ["-d", "1s"])
            self.assertEqual(rc, 2, bad)
            self.assertIn("--warmup", err)

    def test_open_files_for_its_connections(self):
        """More connections than the soft limit of open files allows: the tool raises the limit
        (every connection then works); past the hard limit it refuses to start, saying why,
        rather than measure a storm of failed connects."""
        import resource
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        url = "http://127.0.0.1:%d/healthz" % self.srv.port
        tmp = tempfile.mkdtemp(prefix="fs-load-")
        jpath = os.path.join(tmp, "plain.json")
        if hard == resource.RLIM_INFINITY or hard >= 1000:
            rc, out, err = run_load(
                ["--url", url, "-c", "400", "-t", "2", "-d", "1s", "-q", "--json", jpath],
                preexec=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (128, hard)))
            self.assertEqual(rc, 0, out + err)
            doc = load_json(jpath)
            self.assertEqual(doc["connections_opened"], 400, doc)
            self.assertEqual(doc["status"], {"200": doc["requests"]})
        rc, out, err = run_load(
            ["--url", url, "-c", "400", "-t", "2", "-d", "1s", "-q"],
            preexec=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128)))
        self.assertEqual(rc, 2, out + err)
        self.assertIn("open files", err)
        self.assertIn("128", err)

    def test_plain_mode_against_nothing_fails(self):
        port = fsserver.free_port()
        rc, out, err = run_load(["--url", "http://127.0.0.1:%d/" % port, "-c", "2", "-d", "300ms", "-q"])
        self.assertEqual(rc, 1, out + err)
        self.assertIn("no request was answered", out)


class SafetyAndHelp(unittest.TestCase):

    def test_remote_targets_need_allow_remote(self):
        rc, out, err = run_load(["--url", "http://192.0.2.1:80/", "-d", "1s"])
        self.assertEqual(rc, 2)
        self.assertIn("--allow-remote", err)
        rc, out, err = run_load(["--campaign", SMOKE, "--server", "http://192.0.2.1:80"],
                                {"FLASHSALE_ADMIN_TOKEN": "a", "FLASHSALE_API_KEYS": "b"})
        self.assertEqual(rc, 2)
        self.assertIn("--allow-remote", err)
        rc, out, err = run_load(["--campaign", SMOKE, "--server", "http://127.0.0.1:1",
                                 "--redis", "redis://192.0.2.1:6379/0"],
                                {"FLASHSALE_ADMIN_TOKEN": "a", "FLASHSALE_API_KEYS": "b"})
        self.assertEqual(rc, 2)
        self.assertIn("--allow-remote", err)

    def test_help_documents_every_option(self):
        rc, out, err = run_load(["--help"])
        self.assertEqual(rc, 0)
        for opt in ("--url", "--connections", "--duration", "--threads", "--rate", "--header",
                    "--post", "--step", "--warmup",
                    "--timeout", "--campaign", "--server", "--redis", "--seed", "--no-verify",
                    "--json", "--html", "--allow-remote", "--quiet", "--version",
                    "FLASHSALE_ADMIN_TOKEN", "FLASHSALE_API_KEYS", "FLASHSALE_REDIS"):
            self.assertIn(opt, out)
        rc, out, err = run_load(["--bogus"])
        self.assertEqual(rc, 2)


# ---------------------------------------------------------------------------------------------
# wrong answer sources

class FakeShop:
    """A deliberately wrong flashsale-server: same API shapes, wrong rules, real order streams.

    mode "oversell": every reservation succeeds (stock and per-user limits ignored), every
    confirm is recorded. "lose": correct stock, but every third confirmed order is not written to
    the stream. "duplicate": correct stock, but every confirmed order is written twice. "flaky":
    correct, but every 4th reservation gets 503 + Retry-After and every 7th a dropped connection
    (before anything changed), so that the tool's retries are exercised.
    """

    def __init__(self, redis_port, mode):
        self.mode = mode
        self.lock = threading.Lock()
        self.r = fsredis.Redis("127.0.0.1", redis_port)
        self.launches = {}
        self.res = {}
        self.confirms = 0
        self.posts = 0
        shop = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _answer(self, status, body, headers=None):
                data = json.dumps(body).encode()
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self):
                n = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(n) or b"{}")

            def do_GET(self):
                m = re.match(r"^/admin/v1/launches/([^/]+)$", self.path)
                if not m:
                    return self._answer(404, {"error": "not_found", "message": "no route"})
                with shop.lock:
                    return self._answer(200, shop.status(m.group(1)))

            def do_PUT(self):
                m = re.match(r"^/admin/v1/launches/([^/]+)$", self.path)
                body = self._body()
                with shop.lock:
                    shop.launches[m.group(1)] = {
                        s["sku"]: {"stock": s["stock"], "held": 0, "sold": 0,
                                   "limit": s["per_user_limit"], "price": s["price_cents"], "users": {}}
                        for s in body["skus"]}
                    return self._answer(200, shop.status(m.group(1)))

            def do_POST(self):
                body = self._body()
                with shop.lock:
                    m = re.match(r"^/admin/v1/launches/([^/]+)/open$", self.path)
                    if m:
                        return self._answer(200, shop.status(m.group(1)))
                    m = re.match(r"^/v1/launches/([^/]+)/reservations$", self.path)
                    if m and shop.mode == "flaky":
                        shop.posts += 1
                        if shop.posts % 7 == 0:
                            self.close_connection = True
                            return None
                        if shop.posts % 4 == 0:
                            return self._answer(503, {"error": "unavailable", "message": "busy"},
                                                {"Retry-After": "0"})
                    if m:
                        return self._answer(*shop.reserve(m.group(1), body))
                    m = re.match(r"^/v1/reservations/([^/]+)/(confirm|cancel)$", self.path)
                    if m and m.group(2) == "confirm":
                        return self._answer(*shop.confirm(m.group(1), body))
                    if m:
                        return self._answer(*shop.cancel(m.group(1), body))
                return self._answer(404, {"error": "not_found", "message": "no route"})

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.r.close()

    def status(self, launch):
        skus = []
        for sku, s in self.launches[launch].items():
            skus.append({"sku": sku, "total": s["stock"], "held": s["held"], "sold": s["sold"],
                         "available": max(0, s["stock"] - s["held"] - s["sold"]),
                         "per_user_limit": s["limit"], "price_cents": s["price"]})
        return {"launch": launch, "name": "fake", "state": "open", "hold_seconds": 60,
                "starts_at": None, "ends_at": None, "skus": skus}

    def reserve(self, launch, body):
        s = self.launches[launch][body["sku"]]
        qty, user = body.get("qty", 1), body["user_id"]
        if self.mode != "oversell":
            if s["users"].get(user, 0) + qty > s["limit"]:
                return 409, {"error": "limit_exceeded", "message": "limit"}
            if s["stock"] - s["held"] - s["sold"] < qty:
                return 409, {"error": "sold_out", "message": "sold out"}
        s["held"] += qty
        s["users"][user] = s["users"].get(user, 0) + qty
        rid = "fake" + uuid.uuid4().hex
        self.res[rid] = {"launch": launch, "sku": body["sku"], "user": user, "qty": qty, "status": "held"}
        return 201, {"reservation_id": rid, "launch": launch, "sku": body["sku"], "user_id": user,
                     "qty": qty, "status": "held", "expires_at": "2030-01-01T00:00:00.000Z",
                     "created_at": "2030-01-01T00:00:00.000Z"}

    def confirm(self, rid, body):
        r = self.res[rid]
        s = self.launches[r["launch"]][r["sku"]]
        oid = "o_fake" + uuid.uuid4().hex[:16]
        r["status"] = "confirmed"
        s["held"] -= r["qty"]
        s["sold"] += r["qty"]
        self.confirms += 1
        key = "fs:{%s:%s}:orders" % (r["launch"], r["sku"])
        copies = {"lose": 0 if self.confirms % 3 == 0 else 1, "duplicate": 2}.get(self.mode, 1)
        for _ in range(copies):
            self.r.call("XADD", key, "*", "order_id", oid, "reservation_id", rid, "launch", r["launch"],
                        "sku", r["sku"], "user_id", r["user"], "qty", str(r["qty"]),
                        "price_cents", str(s["price"]), "payment_ref", body.get("payment_ref", ""),
                        "confirmed_at", "2030-01-01T00:00:00.000Z")
        return 200, {"order_id": oid, "reservation_id": rid, "launch": r["launch"], "sku": r["sku"],
                     "user_id": r["user"], "qty": r["qty"], "price_cents": s["price"],
                     "payment_ref": body.get("payment_ref", ""), "status": "confirmed",
                     "confirmed_at": "2030-01-01T00:00:00.000Z"}

    def cancel(self, rid, body):
        r = self.res[rid]
        s = self.launches[r["launch"]][r["sku"]]
        if r["status"] == "held":
            r["status"] = "cancelled"
            s["held"] -= r["qty"]
            s["users"][r["user"]] -= r["qty"]
        return 200, {"reservation_id": rid, "status": "cancelled"}


class CampaignAgainstWrongServers(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.redis = fsserver.track(fsredis.RedisServer())
        cls.redis.start()

    @classmethod
    def tearDownClass(cls):
        cls.redis.cleanup()
        fsserver.untrack(cls.redis)

    def campaign_against_fake(self, mode):
        """Runs smoke.ini against a FakeShop in this mode; returns (rc, stdout, stderr, json path)."""
        fake = FakeShop(self.redis.port, mode)
        try:
            tmp = tempfile.mkdtemp(prefix="fs-load-fake-")
            jpath = os.path.join(tmp, "run.json")
            rc, out, err = run_load(
                ["--campaign", SMOKE, "--server", "http://127.0.0.1:%d" % fake.port,
                 "--redis", self.redis.url, "-d", "2s", "-q", "--json", jpath],
                {"FLASHSALE_ADMIN_TOKEN": "fake-admin", "FLASHSALE_API_KEYS": "fake-key"})
        finally:
            fake.stop()
        return rc, out, err, jpath

    def test_flaky_but_correct_server_passes_with_retries(self):
        rc, out, err, jpath = self.campaign_against_fake("flaky")
        self.assertEqual(rc, 0, "stdout:\n%s\nstderr:\n%s" % (out, err))
        doc = load_json(jpath)
        self.assertTrue(doc["verification"]["passed"], doc["verification"])
        self.assertGreater(doc["outcomes"].get("retried", 0), 0)
        self.assertGreater(doc["kinds"]["reserve"]["status"].get("503", 0), 0)
        self.assertGreater(doc["kinds"]["reserve"]["errors"].get("transport_error", 0), 0)
        self.assertGreater(doc["outcomes"].get("confirmed", 0), 0)

    def run_against_fake(self, mode):
        rc, out, err, jpath = self.campaign_against_fake(mode)
        self.assertEqual(rc, 1, "a wrong server must fail verification\nstdout:\n%s\nstderr:\n%s" % (out, err))
        self.assertRegex(out, r"FAIL\s+overall")
        doc = load_json(jpath)
        self.assertFalse(doc["verification"]["passed"])
        self.assertEqual(doc["verification"]["result"], "FAIL")
        return out, invariants(doc)

    def test_overselling_server_fails(self):
        out, inv = self.run_against_fake("oversell")
        self.assertEqual(inv["nothing_oversold"]["result"], "FAIL", inv)
        self.assertRegex(inv["nothing_oversold"]["detail"], r"sold \d+ of 150 units|stream, stock")
        self.assertEqual(inv["per_user_limit"]["result"], "FAIL", inv)
        self.assertRegex(out, r"FAIL\s+nothing_oversold")
        # what the fake did right is not blamed
        self.assertEqual(inv["orders_exactly_once"]["result"], "PASS", inv)
        self.assertEqual(inv["told_orders_present"]["result"], "PASS", inv)

    def test_server_losing_orders_fails(self):
        out, inv = self.run_against_fake("lose")
        self.assertEqual(inv["told_orders_present"]["result"], "FAIL", inv)
        self.assertIn("is not in the stream", inv["told_orders_present"]["detail"])
        self.assertEqual(inv["nothing_oversold"]["result"], "FAIL", inv)  # stream units != sold
        self.assertEqual(inv["per_user_limit"]["result"], "PASS", inv)

    def test_server_writing_orders_twice_fails(self):
        out, inv = self.run_against_fake("duplicate")
        self.assertEqual(inv["orders_exactly_once"]["result"], "FAIL", inv)
        self.assertIn("more than once", inv["orders_exactly_once"]["detail"])
        self.assertEqual(inv["told_orders_present"]["result"], "PASS", inv)


if __name__ == "__main__":
    fsserver.main(timeout=110)
