#!/usr/bin/env python3
"""HTTP layer: malformed requests, size limits, validation, routing, keep-alive, pipelining,
idle timeout. Bad input gets a 4xx and changes nothing."""

import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import fsserver  # noqa: E402
from fsserver import sku, raw_request  # noqa: E402

IDLE_MS = 500
API = {"Authorization": "Bearer " + fsserver.DEFAULT_API_KEYS[0]}
ADMIN = {"Authorization": "Bearer " + fsserver.DEFAULT_ADMIN_TOKEN}


class HttpTest(fsserver.ServerTestCase):

    # A half-sent request is bounded by the header deadline (from its first byte): short here too.
    server_env = {"FLASHSALE_IDLE_TIMEOUT_MS": str(IDLE_MS), "FLASHSALE_HEADER_TIMEOUT_MS": str(IDLE_MS)}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.lid = fsserver.unique()
        r = cls.srv.admin_put_launch(cls.lid, [sku("a", 10, 3)])
        assert r.status == 200, r
        assert cls.srv.open(cls.lid).status == 200

    def setUp(self):
        self.srv.close_conn()   # the idle timeout is short: start every test on a fresh connection

    def assertUnchanged(self):
        c = self.srv.sku_counters(self.lid)["a"]
        self.assertEqual((c["total"], c["available"], c["held"], c["sold"]), self.counters)

    def snapshot(self):
        c = self.srv.sku_counters(self.lid)["a"]
        self.counters = (c["total"], c["available"], c["held"], c["sold"])

    def reserve_path(self):
        return "/v1/launches/%s/reservations" % self.lid

    # -- malformed HTTP ---------------------------------------------------------------------

    def test_malformed_requests_get_400_and_close(self):
        cases = [
            b"GARBAGE\r\n\r\n",
            b"GET /healthz HTTP/1.1\r\nHost 127.0.0.1\r\n\r\n",
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
            b"POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"
            % (self.reserve_path().encode(), API["Authorization"].encode()),
            b"POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
            % (self.reserve_path().encode(), API["Authorization"].encode()),
            b"GET /he\x00lthz HTTP/1.1\r\n\r\n",
        ]
        for data in cases:
            with self.srv.raw() as c:
                c.send(data)
                r = c.read_response()
                self.assertIsNotNone(r, data)
                self.assertEqual(r.status, 400, (data, r))
                self.assertTrue(c.closed_by_peer(2.0), "connection not closed after 400 for %r" % data)
        # the server is fine afterwards
        self.assertEqual(self.srv.request("GET", "/healthz").status, 200)

    def test_malformed_after_good_request_on_same_connection(self):
        with self.srv.raw() as c:
            c.send(raw_request("GET", "/healthz") + b"BAD REQUEST LINE\r\n\r\n")
            self.assertEqual(c.read_response().status, 200)
            self.assertEqual(c.read_response().status, 400)
            self.assertTrue(c.closed_by_peer(2.0))

    # -- limits -----------------------------------------------------------------------------

    def test_body_over_16k_is_413(self):
        self.snapshot()
        big = json.dumps({"sku": "a", "user_id": "u", "qty": 1, "pad": "x" * 17000}).encode()
        with self.srv.raw() as c:
            head = ("POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\nContent-Type: application/json\r\n"
                    "Content-Length: %d\r\n\r\n" % (self.reserve_path(), API["Authorization"], len(big))).encode()
            c.send(head)
            # The server may answer from Content-Length alone; otherwise send the body.
            c.sock.settimeout(0.5)
            try:
                c._fill()
            except OSError:
                pass
            if not c.buf:
                try:
                    c.send(big)
                except OSError:
                    pass
            c.sock.settimeout(5)
            r = c.read_response()
            self.assertEqual(r.status, 413, r)
        # chunked, no length known in advance
        with self.srv.raw() as c:
            head = ("POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\nContent-Type: application/json\r\n"
                    "Transfer-Encoding: chunked\r\n\r\n" % (self.reserve_path(), API["Authorization"])).encode()
            chunks = b"".join(b"%x\r\n%s\r\n" % (len(big[i:i + 4096]), big[i:i + 4096])
                              for i in range(0, len(big), 4096))
            try:
                c.send(head + chunks + b"0\r\n\r\n")
            except OSError:
                pass
            r = c.read_response()
            self.assertEqual(r.status, 413, r)
        # exactly at the limit is not "too large" (it is invalid JSON here, so 400)
        body = b"{" + b" " * (16 * 1024 - 2) + b"}"
        self.assertEqual(len(body), 16384)
        r = self.srv.request("POST", self.reserve_path(), body)
        self.assertEqual(r.status, 400, r)
        self.assertUnchanged()

    def test_headers_over_16k_are_431(self):
        with self.srv.raw() as c:
            c.send("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: %s\r\n\r\n" % ("p" * 17000))
            r = c.read_response()
            self.assertEqual(r.status, 431, r)
        with self.srv.raw() as c:
            many = "".join("X-H%d: %s\r\n" % (i, "v" * 100) for i in range(200))
            c.send("GET /healthz HTTP/1.1\r\nHost: x\r\n%s\r\n" % many)
            r = c.read_response()
            self.assertEqual(r.status, 431, r)
        # 8 KiB of headers are fine
        r = self.srv.request("GET", "/healthz", headers={"X-Pad": "p" * 8000})
        self.assertEqual(r.status, 200)

    # -- validation -------------------------------------------------------------------------

    def test_invalid_json_and_wrong_types(self):
        self.snapshot()
        path = self.reserve_path()
        for body in (b"{", b"not json", b"[1,2]", b"", b"null", b'{"sku": "a", "user_id": "u"} trailing',
                     b'{"sku": "a", "user_id": "u", "qty": 1'):
            r = self.srv.request("POST", path, body)
            self.assertError(r, 400, "invalid_request")
        for body, field in (({"sku": 5, "user_id": "u"}, "sku"),
                            ({"user_id": "u"}, "sku"),
                            ({"sku": "a"}, "user_id"),
                            ({"sku": "a", "user_id": 7}, "user_id"),
                            ({"sku": "a", "user_id": None}, "user_id"),
                            ({"sku": "a", "user_id": "u", "qty": "1"}, "qty"),
                            ({"sku": "a", "user_id": "u", "qty": 1.5}, "qty"),
                            ({"sku": "a", "user_id": "u", "qty": True}, "qty"),
                            ({"sku": "a", "user_id": "u", "qty": 0}, "qty"),
                            ({"sku": "a", "user_id": "u", "qty": -1}, "qty"),
                            ({"sku": "a", "user_id": "u", "qty": 10**30}, "qty")):
            r = self.srv.request("POST", path, body)
            self.assertError(r, 400, "invalid_request", field)
        rid = self.srv.reserve(self.lid, "a", "valid-user").body["reservation_id"]
        self.snapshot()
        for op in ("confirm", "cancel"):
            for body, field in (({}, "user_id"), ({"user_id": 3}, "user_id"), (b"{oops", None)):
                r = self.srv.request("POST", "/v1/reservations/%s/%s" % (rid, op), body)
                self.assertError(r, 400, "invalid_request", field)
        r = self.srv.request("POST", "/v1/reservations/%s/confirm" % rid, {"user_id": "valid-user", "payment_ref": 5})
        self.assertError(r, 400, "invalid_request", "payment_ref")
        self.assertUnchanged()
        self.assertEqual(self.srv.get_res(rid, "valid-user").body["status"], "held")

    def test_reservation_bodies_read_without_the_tokenizer(self):
        """The usual reservation body is read by a short path of its own (src/api/storefront.c,
        fs__reserve_fast); every body must get the same answer as through the JSON tokenizer."""
        self.snapshot()
        path, api = self.reserve_path(), {"Content-Type": "application/json"}
        ok = ((b'{"sku":"a","user_id":"fast-1"}', "fast-1", 1),
              (b' {\t"sku" : "a" ,\n "user_id" : "fast-2" , "qty" : 2 }\r\n', "fast-2", 2),
              (b'{"sku":"a","user_id":"caf\xc3\xa9"}', "caf\u00e9", 1),
              (b'{"user_id":"fast-3","sku":"a"}', "fast-3", 1),          # other order: tokenizer
              (b'{"sku":"a","user_id":"fast-\\u0034"}', "fast-4", 1))  # an escape: tokenizer
        for body, user, qty in ok:
            r = self.srv.request("POST", path, body, headers=api)
            self.assertEqual(r.status, 201, (body, r.body))
            self.assertEqual((r.body["user_id"], r.body["qty"], r.body["sku"]), (user, qty, "a"))
            self.assertEqual(self.srv.cancel(r.body["reservation_id"], user).status, 200)
        bad = ((b'{"sku":"a","user_id":"bad\xff"}', "user_id"),
               (b'{"sku":"a","user_id":"del\x7f"}', "user_id"),
               (b'{"sku":"a","user_id":""}', "user_id"),
               (b'{"sku":"a b","user_id":"u"}', "sku"),
               (b'{"sku":"","user_id":"u"}', "sku"),
               (b'{"sku":"a","user_id":"u","qty":0}', "qty"),
               (b'{"sku":"a","user_id":"u","qty":1000001}', "qty"),
               (b'{"sku":"a","user_id":"u","qty":01}', None),
               (b'{"sku":"a","user_id":"u","qty":1e0}', "qty"),
               (b'{"sku":"a","user_id":"u"}x', None),
               (b'{"sku":"a","user_id":"u",}', None),
               (b'{"sku":"a","user_id":"u"', None))
        for body, field in bad:
            r = self.srv.request("POST", path, body, headers=api)
            self.assertError(r, 400, "invalid_request", field)
        self.assertUnchanged()

    def test_qty_over_limit_changes_nothing(self):
        self.snapshot()
        r = self.srv.reserve(self.lid, "a", "greedy", 4)     # limit is 3
        self.assertIn(r.status, (400, 409), r.body)
        self.assertIn(r.body["error"], ("invalid_request", "limit_exceeded"))
        self.assertUnchanged()

    def test_id_lengths_and_control_characters(self):
        self.snapshot()
        for user, ok in (("u" * 128, True), ("u" * 129, False), ("é" * 64, True), ("é" * 65, False),
                         ("tab\there", False), ("nl\nx", False), ("nul\x00x", False), ("del\x7f", False),
                         ("", False)):
            r = self.srv.reserve(self.lid, "a", user)
            if ok:
                self.assertEqual(r.status, 201, (user, r.body))
                self.assertEqual(self.srv.cancel(r.body["reservation_id"], user).status, 200)
            else:
                self.assertError(r, 400, "invalid_request", "user_id")
        for bad_sku in ("s" * 129, "a b", "a:b", "a{b}", "a\x01", ""):
            r = self.srv.reserve(self.lid, bad_sku, "u1")
            self.assertError(r, 400, "invalid_request", "sku")
        for bad_launch in ("l" * 129, "a%20b", "a:b", "a%01b", "%7Bx%7D"):
            r = self.srv.request("POST", "/v1/launches/%s/reservations" % bad_launch, {"sku": "a", "user_id": "u"})
            self.assertError(r, 400, "invalid_request")
            r = self.srv.request("GET", "/admin/v1/launches/%s" % bad_launch)
            self.assertError(r, 400, "invalid_request")
        long_rid = "A" * 300
        self.assertEqual(self.srv.get_res(long_rid, "u1").status // 100, 4)
        r = self.srv.get_res("abc", "x" * 129)
        self.assertError(r, 400, "invalid_request", "user_id")
        self.assertUnchanged()

    # -- routing ----------------------------------------------------------------------------

    def test_unknown_route_404_and_wrong_method_405(self):
        for method, path in (("GET", "/"), ("GET", "/nope"), ("GET", "/v1"), ("GET", "/v1/launches"),
                             ("GET", "/admin/v1/launches/%s/extra" % self.lid), ("POST", "/v2/reservations/x/confirm"),
                             ("GET", "/healthz/more")):
            r = self.srv.request(method, path)
            self.assertEqual(r.status, 404, (method, path, r))
            if isinstance(r.body, dict):
                self.assertEqual(r.body.get("error"), "not_found")
        for method, path in (("DELETE", "/v1/launches/%s" % self.lid),
                             ("GET", "/v1/launches/%s/reservations" % self.lid),
                             ("PUT", "/v1/reservations/x/confirm"),
                             ("GET", "/v1/reservations/x/cancel"),
                             ("POST", "/admin/v1/launches/%s" % self.lid),
                             ("GET", "/admin/v1/launches/%s/open" % self.lid),
                             ("POST", "/healthz"), ("DELETE", "/metrics")):
            r = self.srv.request(method, path, headers=ADMIN if path.startswith("/admin") else API, auth=None)
            self.assertEqual(r.status, 405, (method, path, r))
            self.assertIn("allow", r.headers, (method, path))

    # -- connections ------------------------------------------------------------------------

    def test_keep_alive(self):
        with self.srv.raw() as c:
            for i in range(5):
                c.send(raw_request("GET", "/v1/launches/%s" % self.lid, headers=API))
                r = c.read_response()
                self.assertEqual(r.status, 200, r)
                self.assertNotEqual(r.headers.get("connection", "").lower(), "close")
        # Connection: close is honoured
        with self.srv.raw() as c:
            c.send(raw_request("GET", "/healthz", headers={"Connection": "close"}))
            self.assertEqual(c.read_response().status, 200)
            self.assertTrue(c.closed_by_peer(2.0))
        # HTTP/1.0 without keep-alive: answer then close
        with self.srv.raw() as c:
            c.send(b"GET /healthz HTTP/1.0\r\n\r\n")
            self.assertEqual(c.read_response().status, 200)
            self.assertTrue(c.closed_by_peer(2.0))

    def test_pipelined_requests_answer_in_order(self):
        lid = self.new_launch([sku("p", 2, 1)])
        reqs = [
            raw_request("GET", "/healthz"),
            raw_request("POST", "/v1/launches/%s/reservations" % lid, {"sku": "p", "user_id": "p1"}, API),
            raw_request("GET", "/nope"),
            raw_request("POST", "/v1/launches/%s/reservations" % lid, {"sku": "p", "user_id": "p2"}, API),
            raw_request("POST", "/v1/launches/%s/reservations" % lid, {"sku": "p", "user_id": "p3"}, API),
            raw_request("GET", "/admin/v1/launches/%s" % lid, headers=ADMIN),
            raw_request("POST", "/v1/launches/%s/reservations" % lid, {"sku": "p", "user_id": "p4"}, API),
            raw_request("GET", "/readyz"),
        ]
        with self.srv.raw() as c:
            c.send(b"".join(reqs))
            got = [c.read_response() for _ in reqs]
        self.assertEqual([r.status for r in got], [200, 201, 404, 201, 409, 200, 409, 200])
        self.assertEqual(got[1].body["user_id"], "p1")
        self.assertEqual(got[3].body["user_id"], "p2")
        self.assertEqual((got[4].body["error"], got[6].body["error"]), ("sold_out", "sold_out"))
        c = self.srv.sku_counters(lid)["p"]
        self.assertEqual((c["available"], c["held"]), (0, 2))
        # byte-by-byte delivery of a request works too
        with self.srv.raw() as c:
            for b in raw_request("GET", "/healthz"):
                c.send(bytes([b]))
            self.assertEqual(c.read_response().status, 200)
        self.check_invariants(lid, ["p"])

    def test_expect_100_continue(self):
        lid = self.new_launch([sku("e", 2, 1)])
        body = b'{"sku": "e", "user_id": "curl-user"}'
        with self.srv.raw() as c:
            c.send(("POST /v1/launches/%s/reservations HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\n"
                    "Content-Type: application/json\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n"
                    % (lid, API["Authorization"], len(body))).encode())
            c.sock.settimeout(IDLE_MS / 1000 / 3)   # less than the idle timeout
            try:
                c._fill()
            except OSError:
                pass
            c.sock.settimeout(5)
            if c.buf:
                self.assertTrue(c.buf.startswith(b"HTTP/1.1 100"), c.buf[:100])
                c.buf = c.buf.partition(b"\r\n\r\n")[2]
            c.send(body)
            r = c.read_response()
            self.assertEqual(r.status, 201, r)
        self.assertEqual(self.srv.request("GET", "/healthz?probe=1").status, 200)
        self.assertEqual(self.srv.request("GET", "/v1/launches/%s?x=y" % lid).status, 200)

    def test_long_pipeline(self):
        n = 300
        with self.srv.raw(timeout=10) as c:
            c.send(b"".join(raw_request("GET", "/healthz?n=%d" % i) for i in range(n)))
            got = [c.read_response() for _ in range(n)]
        self.assertEqual([r.status for r in got], [200] * n)
        # more stock than shoppers, so that the refusals are about the limit, not the stock
        lid = self.new_launch([sku("x", 100, 1), sku("y", 100, 1)])
        reqs = [raw_request("POST", "/v1/launches/%s/reservations" % lid,
                            {"sku": "xy"[i % 2], "user_id": "pipe-%d" % (i // 2 % 60)}, API) for i in range(200)]
        with self.srv.raw(timeout=10) as c:
            c.send(b"".join(reqs))
            got = [c.read_response() for _ in reqs]
        # users pipe-0..59 each try x and y 1-2 times (limit 1): the first try of each wins
        for i, r in enumerate(got):
            user, s = "pipe-%d" % (i // 2 % 60), "xy"[i % 2]
            if i < 120:
                self.assertEqual(r.status, 201, (i, r.body))
                self.assertEqual((r.body["user_id"], r.body["sku"]), (user, s))
            else:
                self.assertEqual((r.status, r.body.get("error")), (409, "limit_exceeded"), (i, r.body))
        d = self.check_invariants(lid, ["x", "y"])
        self.assertEqual((d["x"]["held"], d["y"]["held"]), (60, 60))

    def test_client_that_never_reads_cannot_grow_server_memory(self):
        # 40,000 pipelined GET /metrics are ~1 MB of requests but ~160 MB of answers. A client
        # that sends them and reads nothing must meet backpressure (the server stops reading
        # while its unsent output is large), not a server that buffers every answer.
        # (Own server: the short idle timeout of this class could end the connection early.)
        srv = fsserver.Server(self.redis.url)

        def rss_mb():
            with open("/proc/%d/status" % srv.pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024
        try:
            self.assertGreater(len(srv.request("GET", "/metrics", auth=None).body), 1000)
            before = rss_mb()
            c = srv.raw(timeout=3)
            try:
                req = raw_request("GET", "/metrics") * 100
                try:
                    for _ in range(400):
                        c.send(req)
                except OSError:
                    pass      # the send blocked: backpressure reached us, as it should
                grown = 0
                t0 = time.monotonic()
                while time.monotonic() - t0 < 2.0:     # the peak while the server works through them
                    grown = max(grown, rss_mb() - before)
                    time.sleep(0.05)
                # a few answers can still be read, in order
                for _ in range(3):
                    r = c.read_response()
                    self.assertEqual(r.status, 200)
            finally:
                c.close()
            self.assertLess(grown, 48, "server memory grew by %.0f MB for one connection that does not read"
                            % grown)
            self.assertEqual(srv.request("GET", "/healthz").status, 200)
        finally:
            srv.stop()

    def test_half_close_after_request(self):
        import socket
        with self.srv.raw() as c:
            c.send(raw_request("GET", "/healthz"))
            c.sock.shutdown(socket.SHUT_WR)
            r = c.read_response()
            self.assertEqual(r.status, 200, r)

    def test_client_gone_before_answer(self):
        # Connections that vanish with requests in flight must not hurt the server.
        lid = self.new_launch([sku("g", 100, 1)])
        for i in range(30):
            c = self.srv.raw()
            c.send(b"".join(raw_request("POST", "/v1/launches/%s/reservations" % lid,
                                        {"sku": "g", "user_id": "gone-%d-%d" % (i, k)}, API) for k in range(5)))
            if i % 2:
                import socket
                import struct
                c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
            c.close()
        time.sleep(0.3)
        self.assertTrue(self.srv.alive())
        self.assertEqual(self.srv.request("GET", "/healthz").status, 200)
        self.check_invariants(lid, ["g"])
        r = self.srv.reserve(lid, "g", "after")
        self.assertEqual(r.status, 201, r.body)

    def test_json_escapes_and_utf8(self):
        lid = self.new_launch([sku("j", 5, 1)])
        path = "/v1/launches/%s/reservations" % lid
        r = self.srv.request("POST", path, b'{"sku":"j","user_id":"caf\\u00e9 \\ud83d\\ude00 \\/"}')
        self.assertEqual(r.status, 201, r.body)
        self.assertEqual(r.body["user_id"], "caf\u00e9 \U0001F600 /")
        # the same shopper written without escapes: same user (limit 1)
        r2 = self.srv.reserve(lid, "j", "caf\u00e9 \U0001F600 /")
        self.assertError(r2, 409, "limit_exceeded")
        g = self.srv.get_res(r.body["reservation_id"], "caf\u00e9 \U0001F600 /")
        self.assertEqual(g.status, 200, g.body)
        # escaped control characters are still control characters
        r = self.srv.request("POST", path, b'{"sku":"j","user_id":"a\\u0001b"}')
        self.assertError(r, 400, "invalid_request", "user_id")
        # invalid UTF-8 is not a user id
        for raw in (b'{"sku":"j","user_id":"bad\xff"}', b'{"sku":"j","user_id":"\xc3"}',
                    b'{"sku":"j","user_id":"\\ud800"}'):
            r = self.srv.request("POST", path, raw)
            self.assertError(r, 400, "invalid_request")
        self.assertEqual(self.srv.sku_counters(lid)["j"]["held"], 1)

    def test_header_names_and_auth_scheme_are_case_insensitive(self):
        lid = self.new_launch([sku("h", 5, 5)])
        key = fsserver.DEFAULT_API_KEYS[0]
        for hdr in ("authorization: Bearer %s", "AUTHORIZATION: Bearer %s", "Authorization: bearer %s"):
            with self.srv.raw() as c:
                c.send("GET /v1/launches/%s HTTP/1.1\r\nHost: x\r\n%s\r\n\r\n" % (lid, hdr % key))
                r = c.read_response()
                self.assertEqual(r.status, 200, (hdr, r))
        with self.srv.raw() as c:
            c.send(raw_request("POST", "/v1/launches/%s/reservations" % lid, {"sku": "h", "user_id": "ci"},
                               {"authorization": "Bearer " + key, "idempotency-key": "ci-1"}))
            first = c.read_response()
            c.send(raw_request("POST", "/v1/launches/%s/reservations" % lid, {"sku": "h", "user_id": "ci"},
                               {"AUTHORIZATION": "Bearer " + key, "IDEMPOTENCY-KEY": "ci-1"}))
            second = c.read_response()
        self.assertEqual((first.status, second.status), (201, 201))
        self.assertEqual(first.body["reservation_id"], second.body["reservation_id"])

    def test_chunked_request_body(self):
        lid = self.new_launch([sku("c", 5, 5)])
        body = b'{"sku": "c", "user_id": "chunky", "qty": 2}'
        with self.srv.raw() as c:
            c.send(("POST /v1/launches/%s/reservations HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\n"
                    "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                    % (lid, API["Authorization"])).encode()
                   + b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (10, body[:10], len(body) - 10, body[10:]))
            r = c.read_response()
        self.assertEqual((r.status, r.body.get("qty")), (201, 2), r.body)

    def test_idle_connection_closed(self):
        # silent from the start
        with self.srv.raw() as c:
            t0 = time.monotonic()
            self.assertTrue(c.closed_by_peer(IDLE_MS / 1000 * 4 + 1), "idle connection not closed")
            self.assertGreaterEqual(time.monotonic() - t0, IDLE_MS / 1000 * 0.8)
        # idle after a request
        with self.srv.raw() as c:
            c.send(raw_request("GET", "/healthz"))
            self.assertEqual(c.read_response().status, 200)
            self.assertTrue(c.closed_by_peer(IDLE_MS / 1000 * 4 + 1), "idle connection not closed")
        # a half-sent request does not keep it open forever either
        with self.srv.raw() as c:
            c.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            t0 = time.monotonic()
            while True:
                try:
                    chunk = c.sock.recv(4096)
                except (ConnectionResetError, TimeoutError):
                    break
                if not chunk:
                    break
                self.assertLess(time.monotonic() - t0, IDLE_MS / 1000 * 4 + 1)
            self.assertLess(time.monotonic() - t0, IDLE_MS / 1000 * 4 + 1)
        # an active connection is not closed
        with self.srv.raw() as c:
            t0 = time.monotonic()
            while time.monotonic() - t0 < IDLE_MS / 1000 * 3:
                c.send(raw_request("GET", "/healthz"))
                self.assertEqual(c.read_response().status, 200)
                time.sleep(IDLE_MS / 1000 / 3)


if __name__ == "__main__":
    fsserver.main(timeout=110)
