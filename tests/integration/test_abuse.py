#!/usr/bin/env python3
"""Abuse resistance of the HTTP layer: 1,000 slow connections (headers trickling in, or idle) do
not stop normal requests; head and body deadlines give 408; connection caps per client address
and overall (extra connections closed at once and counted); X-Forwarded-For believed only from a
trusted proxy. Client source addresses other than 127.0.0.1 (127.0.0.2, ...) stand for other
clients: Linux routes all of 127/8 to the loopback interface."""

import http.client
import json
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import fsserver  # noqa: E402
from fsserver import sku, raw_request, wait_until  # noqa: E402

API = {"Authorization": "Bearer " + fsserver.DEFAULT_API_KEYS[0]}


def connect(port, src="127.0.0.1", timeout=5.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    return s


def read_response(s, timeout=5.0):
    """One response from socket s: (status, body bytes) or None if the server closed first."""
    s.settimeout(timeout)
    buf = b""
    try:
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                return None
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        n = 0
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                n = int(v)
        while len(rest) < n:
            chunk = s.recv(65536)
            if not chunk:
                break
            rest += chunk
    except (ConnectionResetError, BrokenPipeError):
        return None
    return int(head.split(b" ")[1]), rest


def closed_at_once(s, timeout=2.0):
    """The server closed s without answering (even after we send a request)."""
    try:
        s.sendall(raw_request("GET", "/healthz"))
    except (ConnectionResetError, BrokenPipeError):
        return True
    return read_response(s, timeout) is None


def metric(srv, name):
    r = srv.request("GET", "/metrics")
    for line in r.body.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError("%s not in /metrics" % name)


def get_from(port, src, path="/healthz", headers=None, method="GET", body=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5, source_address=(src, 0))
    try:
        h = dict(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


class SlowClientsTest(fsserver.ServerTestCase):
    """1,000 connections from one other address, half trickling a request head a byte at a time
    and half idle, while normal shoppers keep being served."""

    server_env = {"FLASHSALE_THREADS": "2", "FLASHSALE_HEADER_TIMEOUT_MS": "60000",
                  "FLASHSALE_BODY_TIMEOUT_MS": "60000", "FLASHSALE_IDLE_TIMEOUT_MS": "60000"}

    def test_slow_connections_do_not_stop_normal_requests(self):
        lid = self.new_launch([sku("a", 100000, per_user_limit=1000)])
        port = self.srv.port
        slow = []
        try:
            for i in range(1000):
                s = connect(port, "127.0.0.2")
                if i % 2 == 0:
                    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                slow.append(s)
            wait_until(lambda: metric(self.srv, "fs_http_connections_open") >= 1000, 10,
                       what="1,000 slow connections open")
            stop = threading.Event()

            def trickle():
                while not stop.is_set():
                    for s in slow[::2]:
                        try:
                            s.sendall(b"X")
                        except OSError:
                            pass
                    stop.wait(0.2)

            t = threading.Thread(target=trickle, daemon=True)
            t.start()
            try:
                worst = 0.0
                t0 = time.monotonic()
                for i in range(100):
                    t1 = time.monotonic()
                    if i % 2:
                        st, _ = get_from(port, "127.0.0.1")
                    else:
                        st, _ = get_from(port, "127.0.0.1", "/v1/launches/%s/reservations" % lid, API,
                                         "POST", {"sku": "a", "user_id": "u%d" % (i % 7)})
                    worst = max(worst, time.monotonic() - t1)
                    self.assertIn(st, (200, 201))
                total = time.monotonic() - t0
            finally:
                stop.set()
                t.join(5)
            self.assertLess(worst, 1.0, "a normal request took %.2fs" % worst)
            self.assertLess(total, 8.0, "100 normal requests took %.2fs" % total)
            # The slow ones are all still there, unanswered: nothing was dropped to make room.
            self.assertGreaterEqual(metric(self.srv, "fs_http_connections_open"), 1000)
            # And that address is at its cap (default 1,000): one more is closed at once.
            extra = connect(port, "127.0.0.2")
            self.assertTrue(closed_at_once(extra), "connection 1,001 from one address was served")
            extra.close()
            self.assertGreaterEqual(metric(self.srv, "fs_http_connections_rejected_total"), 1)
        finally:
            for s in slow:
                s.close()
        wait_until(lambda: metric(self.srv, "fs_http_connections_open") <= 2, 10,
                   what="slow connections closed")


class DeadlineTest(fsserver.ServerTestCase):

    server_env = {"FLASHSALE_HEADER_TIMEOUT_MS": "600", "FLASHSALE_BODY_TIMEOUT_MS": "1500",
                  "FLASHSALE_IDLE_TIMEOUT_MS": "5000"}

    def trickle_until_answer(self, s, first, drip, limit):
        """Sends first, then drip every 0.1 s until an answer or EOF; returns (answer, seconds)."""
        t0 = time.monotonic()
        s.sendall(first)
        s.settimeout(0.1)
        buf = b""
        while time.monotonic() - t0 < limit:
            try:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
                if b"\r\n\r\n" in buf:
                    break
            except socket.timeout:
                try:
                    s.sendall(drip)
                except OSError:
                    break
            except ConnectionResetError:
                break
        return buf, time.monotonic() - t0

    def test_head_deadline_408(self):
        s = connect(self.srv.port)
        try:
            buf, took = self.trickle_until_answer(s, b"GET /healthz HTTP/1.1\r\n", b"X-A: b\r\n", 5)
        finally:
            s.close()
        self.assertTrue(buf.startswith(b"HTTP/1.1 408 "), buf[:100])
        self.assertIn(b"request_timeout", buf)
        self.assertIn(b"Connection: close", buf)
        self.assertGreater(took, 0.45)
        self.assertLess(took, 2.0)

    def test_body_deadline_408(self):
        lid = self.new_launch([sku("a", 10)])
        head = ("POST /v1/launches/%s/reservations HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\n"
                "Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{" % (lid, API["Authorization"]))
        s = connect(self.srv.port)
        try:
            buf, took = self.trickle_until_answer(s, head.encode(), b" ", 6)
        finally:
            s.close()
        self.assertTrue(buf.startswith(b"HTTP/1.1 408 "), buf[:100])
        # The head arrived in time: the body deadline (1.5 s), not the head's (0.6 s), ended it.
        self.assertGreater(took, 1.3)
        self.assertLess(took, 3.5)
        self.assertEqual(self.srv.sku_counters(lid)["a"]["held"], 0)

    def test_idle_time_before_a_request_does_not_count(self):
        s = connect(self.srv.port)
        try:
            time.sleep(1.0)  # longer than the head deadline, shorter than the idle timeout
            req = raw_request("GET", "/healthz")
            s.sendall(req[:10])
            time.sleep(0.3)
            s.sendall(req[10:])
            r = read_response(s)
            self.assertEqual(r[0] if r else None, 200)
            # keep-alive: a second, slow-but-in-time request on the same connection
            s.sendall(req[:5])
            time.sleep(0.3)
            s.sendall(req[5:])
            r = read_response(s)
            self.assertEqual(r[0] if r else None, 200)
        finally:
            s.close()


class ConnectionCapTest(fsserver.ServerTestCase):

    server_env = {"FLASHSALE_THREADS": "2", "FLASHSALE_MAX_CONNECTIONS": "8",
                  "FLASHSALE_MAX_CONNECTIONS_PER_ADDR": "3"}

    def served(self, s):
        s.sendall(raw_request("GET", "/healthz"))
        r = read_response(s)
        return r is not None and r[0] == 200

    def test_per_address_and_overall_caps(self):
        self.srv.close_conn()
        port = self.srv.port
        rejected = 0
        held = {}
        try:
            # Per address: 3 from 127.0.0.2 are served (over both event loops), a 4th is not.
            held["2"] = [connect(port, "127.0.0.2") for _ in range(3)]
            for s in held["2"]:
                self.assertTrue(self.served(s))
            s = connect(port, "127.0.0.2")
            self.assertTrue(closed_at_once(s), "4th connection from 127.0.0.2 was served")
            s.close()
            rejected += 1
            # Other addresses are not affected, up to the overall cap of 8.
            held["3"] = [connect(port, "127.0.0.3") for _ in range(3)]
            held["4"] = [connect(port, "127.0.0.4") for _ in range(2)]
            for s in held["3"] + held["4"]:
                self.assertTrue(self.served(s))
            s = connect(port, "127.0.0.5")
            self.assertTrue(closed_at_once(s), "9th connection was served")
            s.close()
            rejected += 1
            # Served connections stay usable.
            self.assertTrue(self.served(held["2"][0]))
            # A closed connection frees its place (for its address and overall).
            held["2"].pop().close()

            def try_again():
                nonlocal rejected
                s = connect(port, "127.0.0.2")
                if self.served(s):
                    held["2"].append(s)
                    return True
                s.close()
                rejected += 1
                return False

            wait_until(try_again, 5, interval=0.1, what="a place for 127.0.0.2 again")
        finally:
            for v in held.values():
                for s in v:
                    s.close()
        wait_until(lambda: self._metrics_reachable(), 5, interval=0.1, what="/metrics reachable")
        self.assertEqual(metric(self.srv, "fs_http_connections_rejected_total"), rejected)

    def _metrics_reachable(self):
        try:
            metric(self.srv, "fs_http_connections_open")
            return True
        except (OSError, http.client.HTTPException):
            self.srv.close_conn()
            return False


class TrustedProxyTest(fsserver.ServerTestCase):
    """The per-address rate limit keys on fs_http_req_client_addr: it shows which address the
    server believed. 127.0.0.2 is the trusted proxy; 127.0.0.3 is a client reaching us directly."""

    server_env = {"FLASHSALE_TRUSTED_PROXIES": "127.0.0.2, 10.0.0.0/8"}

    def setUp(self):
        self.lid = self.new_launch([sku("a", 100000, per_user_limit=1000)])
        r = self.srv.request("PATCH", "/admin/v1/launches/%s/rate_limit" % self.lid,
                             {"address_per_sec": 1, "address_burst": 2}, auth="admin")
        self.assertEqual(r.status, 200, r.body)
        self.n = 0

    def reserve(self, src, xff=None):
        self.n += 1
        h = dict(API)
        if xff is not None:
            h["X-Forwarded-For"] = xff
        st, _ = get_from(self.srv.port, src, "/v1/launches/%s/reservations" % self.lid, h, "POST",
                         {"sku": "a", "user_id": "s%d" % self.n})
        return st

    def test_untrusted_peer_is_the_client_whatever_it_says(self):
        got = [self.reserve("127.0.0.3", "198.51.100.%d" % i) for i in range(4)]
        self.assertEqual(got, [201, 201, 429, 429])

    def test_trusted_proxy_forwards_the_client(self):
        # Each forwarded client has its own budget...
        got = [self.reserve("127.0.0.2", "198.51.100.%d" % i) for i in range(4)]
        self.assertEqual(got, [201, 201, 201, 201])
        # ...one client has one budget, whatever it prepends, and through a chain of our proxies.
        got = [self.reserve("127.0.0.2", xff) for xff in
               ("203.0.113.7", "1.2.3.4, 203.0.113.7", "5.6.7.8, 203.0.113.7, 10.1.1.1")]
        self.assertEqual(got, [201, 201, 429])
        # No header, or garbage where our proxy's entry should be: the proxy itself is the client.
        got = [self.reserve("127.0.0.2", xff) for xff in (None, "203.0.113.50, not-an-ip", "")]
        self.assertEqual(got, [201, 201, 429])

    def test_malformed_trusted_proxies_refuses_to_start(self):
        srv = fsserver.Server(self.redis.url, env={"FLASHSALE_TRUSTED_PROXIES": "10.0.0.0/8, 10.0.0.300"},
                              start=False, port=fsserver.free_port())
        srv.spawn()
        try:
            self.assertEqual(srv.proc.wait(10), 1)
            self.assertIn("10.0.0.300 is not an IP address or CIDR", srv.log_text())
        finally:
            srv.kill()


if __name__ == "__main__":
    fsserver.main(timeout=150)
