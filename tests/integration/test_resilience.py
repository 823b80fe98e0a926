#!/usr/bin/env python3
"""A Redis that stops answering (SIGSTOP): our own command deadlines answer 503 instead of hanging,
the event loop keeps serving, the connection is rebuilt once Redis answers again; and a SIGTERM
while a request is in flight lets that request finish before the process exits 0."""

import os
import signal
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import fsserver  # noqa: E402
from fsserver import ServerTestCase, RawConn, sku, wait_until  # noqa: E402
from tcpproxy import Proxy  # noqa: E402

TIMEOUT_MS = 300


class StalledRedisTest(ServerTestCase):
    server_env = {"FLASHSALE_REDIS_TIMEOUT_MS": str(TIMEOUT_MS)}

    def stall(self):
        os.kill(self.redis.pid, signal.SIGSTOP)
        self.addCleanup(self.resume)

    def resume(self):
        os.kill(self.redis.pid, signal.SIGCONT)

    def test_deadline_answers_503_and_recovers(self):
        lid = self.new_launch([sku("a", 100, per_user_limit=100)])
        self.assertEqual(self.srv.reserve(lid, "a", "before").status, 201)
        self.stall()
        t0 = time.monotonic()
        r = self.srv.reserve(lid, "a", "during")
        elapsed = time.monotonic() - t0
        self.assertError(r, 503, "unavailable")
        self.assertEqual(r.headers.get("retry-after"), "1")
        # Answered by our deadline, not by the client's 10 s timeout (a generous bound: this checks
        # that the deadline exists, not how fast the machine is).
        self.assertLess(elapsed, 5.0, "a stalled Redis must not hold requests past the deadline")
        # The loop is not blocked: service endpoints answer while Redis is stalled.
        self.assertEqual(self.srv.request("GET", "/healthz").status, 200)
        self.assertEqual(self.srv.request("GET", "/readyz").status, 503)
        self.assertError(self.srv.reserve(lid, "a", "during2"), 503, "unavailable")
        self.resume()
        wait_until(lambda: self.srv.request("GET", "/readyz").status == 200, 10, what="ready again")
        self.assertEqual(self.srv.reserve(lid, "a", "after").status, 201)
        # Each loop publishes its counters once a second, and the request that timed out may have
        # been sent by another loop than the one that answers /readyz (the SKU's leader).
        def timeouts():
            metrics = self.srv.request("GET", "/metrics").body
            line = [l for l in metrics.splitlines() if l.startswith("fs_redis_timeouts_total ")]
            return int(line[0].split()[1]) if line else 0
        wait_until(lambda: timeouts() >= 1, 5, what="fs_redis_timeouts_total counted")
        # A request that timed out may still have reached Redis: it then holds units until its
        # hold expires, but the counters always add up.
        c = self.srv.sku_counters(lid)["a"]
        self.assertEqual(c["available"] + c["held"] + c["sold"], c["total"])
        self.assertIn(c["held"], (2, 3, 4))

    def test_sigterm_finishes_in_flight_request(self):
        srv = fsserver.Server(self.redis.url, env={"FLASHSALE_REDIS_TIMEOUT_MS": "3000",
                                                    "FLASHSALE_SHUTDOWN_TIMEOUT_MS": "8000"})
        self.addCleanup(lambda: srv.alive() and srv.kill())
        lid = self.new_launch([sku("a", 10)], srv=srv)
        with RawConn(srv.port) as conn:
            self.stall()
            body = b'{"sku":"a","user_id":"in-flight"}'
            conn.send(b"POST /v1/launches/%s/reservations HTTP/1.1\r\nHost: x\r\n"
                      b"Authorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s"
                      % (lid.encode(), srv.api_keys[0].encode(), len(body), body))
            time.sleep(0.3)  # the request is now waiting for Redis
            srv.proc.send_signal(signal.SIGTERM)
            # The listener closes at once: new connections are refused.
            wait_until(lambda: not _can_connect(srv.port), 5, what="listener closed")
            self.resume()
            resp = conn.read_response()
            self.assertEqual(resp.status, 201, resp.body)
            self.assertEqual(resp.headers.get("connection"), "close")
        self.assertEqual(srv.proc.wait(10), 0, srv.log_tail())
        self.assertIn("event=stopped", srv.log_text())

    def test_sigterm_keeps_idle_connections_for_a_last_request(self):
        """A rolling restart: on SIGTERM the listener closes, but idle keep-alive connections stay
        open for drain_grace_ms, so that a request a client sends on one just then is answered
        (with Connection: close) instead of meeting a closed connection; /readyz answers 503 from
        then on, for load balancers; idle connections close when the grace ends."""
        srv = fsserver.Server(self.redis.url, env={"FLASHSALE_DRAIN_GRACE_MS": "1500",
                                                    "FLASHSALE_SHUTDOWN_TIMEOUT_MS": "8000"})
        self.addCleanup(lambda: srv.alive() and srv.kill())
        lid = self.new_launch([sku("a", 10)], srv=srv)
        conns = [RawConn(srv.port) for _ in range(3)]
        self.addCleanup(lambda: [c.close() for c in conns])
        for c in conns:  # each connection idle after one answer
            c.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertEqual(c.read_response().status, 200)
        t0 = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: not _can_connect(srv.port), 5, what="listener closed")
        time.sleep(0.3)
        body = b'{"sku":"a","user_id":"late"}'
        conns[0].send(b"POST /v1/launches/%s/reservations HTTP/1.1\r\nHost: x\r\n"
                      b"Authorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s"
                      % (lid.encode(), srv.api_keys[0].encode(), len(body), body))
        r = conns[0].read_response()
        self.assertEqual(r.status, 201, r.body)
        self.assertEqual(r.headers.get("connection"), "close")
        self.assertTrue(conns[0].closed_by_peer(2.0))
        conns[1].send(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
        r = conns[1].read_response()
        self.assertEqual(r.status, 503, r.body)
        self.assertEqual(r.headers.get("connection"), "close")
        # the third, left idle, is closed once the grace ends, and the process exits
        self.assertTrue(conns[2].closed_by_peer(5.0))
        self.assertGreater(time.monotonic() - t0, 1.2)
        self.assertEqual(srv.proc.wait(10), 0, srv.log_tail())

    def test_sigterm_with_two_loops_answers_what_one_handed_the_other(self):
        """Two event loops: a SKU's requests go to Redis from its leader loop. Stopping while they
        wait for Redis, every one is still answered, those the other loop handed over included:
        the leader finishes only once they are answered, not when its own connections are. (In
        the runs where the handed-over requests go to Redis in a later call than the leader's
        own, a leader that finished with its connections answered them 503: 1 run in 4.)"""
        srv = fsserver.Server(self.redis.url, env={"FLASHSALE_THREADS": "2",
                                                    "FLASHSALE_REDIS_TIMEOUT_MS": "3000",
                                                    "FLASHSALE_SHUTDOWN_TIMEOUT_MS": "8000"})
        self.addCleanup(lambda: srv.alive() and srv.kill())
        lid = self.new_launch([sku("a", 1000, per_user_limit=1)], srv=srv)
        conns = [RawConn(srv.port) for _ in range(48)]
        try:
            # a first request alone, then the rest: they queue behind its call on the leader
            self.stall()
            for i, conn in enumerate(conns):
                body = ('{"sku":"a","user_id":"s%d"}' % i).encode()
                conn.send(b"POST /v1/launches/%s/reservations HTTP/1.1\r\nHost: x\r\n"
                          b"Authorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s"
                          % (lid.encode(), srv.api_keys[0].encode(), len(body), body))
                if i == 0:
                    time.sleep(0.1)
            time.sleep(0.3)  # every request is now queued or waiting for Redis
            srv.proc.send_signal(signal.SIGTERM)
            wait_until(lambda: not _can_connect(srv.port), 5, what="listener closed")
            self.resume()
            statuses = [conn.read_response().status for conn in conns]
        finally:
            for conn in conns:
                conn.close()
        self.assertEqual(statuses, [201] * len(conns))
        self.assertEqual(srv.proc.wait(10), 0, srv.log_tail())
        held = int(self.r.call("HGET", "fs:{%s:a}:sku" % lid, "held"))
        self.assertEqual(held, len(conns))


class QueueBoundsTest(ServerTestCase):
    """While a SKU's call is in flight (here: Redis stopped), later requests wait in its queue;
    past FLASHSALE_QUEUE_MAX_WAIT_MS or FLASHSALE_QUEUE_MAX_LEN they get 503 overloaded."""
    # Queues are per event loop: one loop, so that every connection shares the queue.
    server_env = {"FLASHSALE_REDIS_TIMEOUT_MS": "5000", "FLASHSALE_QUEUE_MAX_WAIT_MS": "100",
                  "FLASHSALE_QUEUE_MAX_LEN": "2", "FLASHSALE_THREADS": "1"}

    def send_reserve(self, conn, lid, user):
        body = ('{"sku":"a","user_id":"%s"}' % user).encode()
        conn.send(b"POST /v1/launches/%s/reservations HTTP/1.1\r\nHost: x\r\n"
                  b"Authorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s"
                  % (lid.encode(), self.srv.api_keys[0].encode(), len(body), body))

    def test_wait_and_length_bounds(self):
        lid = self.new_launch([sku("a", 100, per_user_limit=1)])
        self.assertEqual(self.srv.reserve(lid, "a", "warm").status, 201)
        conns = [RawConn(self.srv.port) for _ in range(4)]
        try:
            os.kill(self.redis.pid, signal.SIGSTOP)
            try:
                # One call goes out (and hangs); the next two wait in the queue; the fourth finds
                # the queue full.
                for i, c in enumerate(conns):
                    self.send_reserve(c, lid, "u%d" % i)
                    time.sleep(0.1)
                full = conns[3].read_response()
                self.assertEqual((full.status, full.body.get("error")), (503, "overloaded"), full.body)
                self.assertEqual(full.headers.get("retry-after"), "1")
                time.sleep(0.2)  # the queued two are now past the 100 ms bound
            finally:
                os.kill(self.redis.pid, signal.SIGCONT)
            got = [c.read_response() for c in conns[:3]]
            self.assertEqual(got[0].status, 201, [r.body for r in got])
            self.assertEqual([(r.status, r.body.get("error")) for r in got[1:]],
                             [(503, "overloaded")] * 2)
        finally:
            for c in conns:
                c.close()
        c = self.srv.sku_counters(lid)["a"]
        self.assertEqual(c["held"], 2)


class OneLoopLosesRedisTest(ServerTestCase):
    """Two event loops, and the Redis connection of one of them stalls and cannot reconnect (a
    proxy between the server and Redis holds that connection's bytes and refuses new ones). The
    other loop's connection serves every request of both: the stalled loop's SKUs (their leader is
    down, so the healthy loop sends them itself), the stalled loop's own HTTP connections' requests
    (it hands them to the healthy loop, and still answers a SKU it knows is sold out from memory),
    and the requests that were queued at the stalled loop, not yet sent, when its connection went
    (they go to the healthy loop too). Only what was in flight on the lost connection is answered
    503: Redis may have decided it. (Before, everything the stalled loop's HTTP connections asked
    for was 503, and so was whatever waited in its queues.)"""
    server_env = {"FLASHSALE_THREADS": "1"}  # the class's own server is not used

    def metric(self, srv, name):
        for line in srv.request("GET", "/metrics").body.splitlines():
            if line.startswith(name + " "):
                return int(line.split()[1])
        return None

    def start(self, timeout_ms, max_wait_ms=1000):
        """A two-loop server behind a proxy, a launch of 16 SKUs (each loop leads some of them, by
        their hash), and the local ports of the loops' two command connections to Redis."""
        proxy = Proxy(self.redis.port)
        self.addCleanup(proxy.close)
        srv = fsserver.Server("redis://127.0.0.1:%d/0" % proxy.port,
                              env={"FLASHSALE_THREADS": "2",
                                   "FLASHSALE_REDIS_TIMEOUT_MS": str(timeout_ms),
                                   "FLASHSALE_QUEUE_MAX_WAIT_MS": str(max_wait_ms)})
        self.addCleanup(lambda: srv.alive() and srv.kill())
        names = ["k%d" % i for i in range(16)]
        lid = self.new_launch([sku(n, 1000, per_user_limit=2) for n in names] + [sku("gone", 0)],
                              srv=srv)
        # The loops' command connections: through the proxy, not subscribed.
        ours = proxy.upstream_ports()
        command = []
        for line in self.r.call("CLIENT", "LIST").splitlines():
            f = dict(kv.split("=", 1) for kv in line.split(" ") if "=" in kv)
            if int(f["addr"].rsplit(":", 1)[1]) in ours and f["sub"] == "0" and f["psub"] == "0":
                command.append(int(f["addr"].rsplit(":", 1)[1]))
        self.assertEqual(len(command), 2, "one command connection per loop")
        return proxy, srv, lid, names, command

    def connect(self, srv, lid, count):
        """count connections, each with one reservation answered and one refused as sold out (the
        loop that has it then knows the SKU "gone" is sold out, which it keeps knowing while its
        Redis connection is down)."""
        conns = [RawConn(srv.port) for _ in range(count)]
        self.addCleanup(lambda: [c.close() for c in conns])
        for i, c in enumerate(conns):
            self.post(c, srv, lid, "k0", "w%d-%d" % (count, i))
            self.assertEqual(c.read_response().status, 201)
            self.post(c, srv, lid, "gone", "w%d-%d" % (count, i))
            self.assertEqual(c.read_response().status, 409)
        return conns

    def post(self, c, srv, lid, sku_name, user):
        self.send(c, srv, "POST", "/v1/launches/%s/reservations" % lid,
                  '{"sku":"%s","user_id":"%s"}' % (sku_name, user))

    def send(self, c, srv, method, path, body=""):
        body = body.encode()
        c.send(b"%s %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
               b"Content-Length: %d\r\n\r\n%s"
               % (method.encode(), path.encode(), srv.api_keys[0].encode(), len(body), body))

    def send_all(self, srv, lid, names, conns, user):
        """Writes one reservation for every SKU on each connection (its own shopper), then reads
        the answers: rows of statuses, one per connection."""
        for i, c in enumerate(conns):
            for n in names:
                self.post(c, srv, lid, n, "%s%d" % (user, i))
        return [[c.read_response().status for _ in names] for c in conns]

    def check_counters(self, srv, lid, names, held):
        counters = srv.sku_counters(lid)
        for n in names:
            c = counters[n]
            self.assertEqual(c["available"] + c["held"] + c["sold"], c["total"], n)
            self.assertGreaterEqual(c["held"], held[n], n)

    def test_every_request_is_served_while_one_loop_reconnects(self):
        proxy, srv, lid, names, command = self.start(300)
        # 24 connections: both loops get some of them (by the kernel's hash of their ports).
        conns = self.connect(srv, lid, 24)
        proxy.refuse_new()
        proxy.stall(command[0])
        # Each loop writes its counters to Redis every second: the stalled loop's call passes its
        # deadline, the loop drops the connection and cannot make a new one.
        wait_until(lambda: self.metric(srv, "fs_redis_connected") == 1, 10,
                   what="one loop's Redis connection down")
        self.assertEqual(srv.request("GET", "/readyz").status, 503)

        got = self.send_all(srv, lid, names, conns, "c")
        self.assertEqual([row for row in got if row != [201] * len(names)], [],
                         "requests answered other than 201 while one loop reconnected")
        wait_until(lambda: (self.metric(srv, "fs_reserve_rerouted_total") or 0) > 0, 5,
                   what="the stalled loop's requests counted in fs_reserve_rerouted_total")
        # A SKU known to be sold out is answered from memory by both loops, the stalled one
        # included: no Redis call, on either loop's connection (each loop lets one request a
        # second through to Redis, to check: a few, on a slow machine). Sent through the other
        # loop, the stalled loop's half would be missing.
        cached = self.metric(srv, "fs_reservations_sold_out_cached_total")
        got = self.send_all(srv, lid, ["gone"] * 4, conns, "s")
        self.assertEqual([row for row in got if row != [409] * 4], [])
        want = cached + 4 * len(conns) - 8
        wait_until(lambda: self.metric(srv, "fs_reservations_sold_out_cached_total") >= want, 5,
                   what="the sold-out answers given from memory")
        # The stalled loop's other calls go on the healthy loop's connection: on every connection
        # two holds, then reading one, confirming it and cancelling the other.
        for i, c in enumerate(conns):
            rids = []
            for n in ("k1", "k2"):
                self.post(c, srv, lid, n, "p%d" % i)
                r = c.read_response()
                self.assertEqual(r.status, 201, r.body)
                rids.append(r.body["reservation_id"])
            user = '{"user_id":"p%d"}' % i
            for method, path, body in (
                    ("GET", "/v1/reservations/%s?user_id=p%d" % (rids[0], i), ""),
                    ("POST", "/v1/reservations/%s/confirm" % rids[0], user),
                    ("POST", "/v1/reservations/%s/cancel" % rids[1], user)):
                self.send(c, srv, method, path, body)
                r = c.read_response()
                self.assertEqual(r.status, 200, "%s %s: %r" % (method, path, r.body))

        proxy.refuse_new(False)
        wait_until(lambda: srv.request("GET", "/readyz").status == 200, 10, what="ready again")
        self.check_counters(srv, lid, names, {n: len(conns) for n in names})

    def test_requests_queued_when_the_connection_goes_are_sent_by_another_loop(self):
        # A deadline long enough that both rounds below are written before the connection goes,
        # and a queue bound longer still (the second round waits that long in its queue).
        proxy, srv, lid, names, command = self.start(2000, max_wait_ms=10000)
        first, second = self.connect(srv, lid, len(names)), self.connect(srv, lid, 16)
        proxy.refuse_new()
        proxy.stall(command[0])
        # First round, one request per SKU (each on a connection of its own, so that none waits
        # behind another on its connection): each of the stalled loop's SKUs gets a call in
        # flight on the stalled connection (one call per SKU is in flight at a time; what
        # arrives meanwhile queues).
        for c, n in zip(first, names):
            self.post(c, srv, lid, n, "a")
        time.sleep(0.3)
        self.assertEqual(self.metric(srv, "fs_redis_connected"), 2, "the connection went too early")
        # Second round, while those calls wait: the stalled loop's SKUs' requests queue behind
        # them (at that loop, from both loops). When the deadline drops the connection, the
        # calls in flight are answered 503 and everything queued goes through the other loop.
        got = self.send_all(srv, lid, names, second, "b")
        self.assertEqual([row for row in got if row != [201] * len(names)], [],
                         "requests queued when the connection went were answered other than 201")
        firsts = [c.read_response().status for c in first]
        self.assertEqual(sorted(set(firsts) - {201, 503}), [], "the first round's answers")
        self.assertIn(503, firsts,
                      "no call was in flight on the stalled connection: the test proves nothing")
        proxy.refuse_new(False)
        wait_until(lambda: srv.request("GET", "/readyz").status == 200, 10, what="ready again")
        self.check_counters(srv, lid, names, {n: len(second) for n in names})


def _can_connect(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


class RedisRefusesWritesTest(ServerTestCase):
    """A Redis that refuses writes for a while (here out of memory: maxmemory reached with
    noeviction; also a script running long, a dataset loading, a replica's read-only answer): the
    calls it refuses are answered 503 unavailable with Retry-After, which a storefront retries, not
    500; what only reads still works; and once Redis takes writes again, so does the server."""

    def refuse(self, on):
        self.r.call("CONFIG", "SET", "maxmemory", "1" if on else "0")

    def test_refused_writes_are_503_and_pass_once_redis_takes_them(self):
        lid = self.new_launch([sku("a", 10, per_user_limit=5)])
        held = self.srv.reserve(lid, "a", "u1")
        self.assertEqual(held.status, 201, held.body)
        rid = held.body["reservation_id"]
        policy = self.r.call("CONFIG", "GET", "maxmemory-policy")[1]
        self.r.call("CONFIG", "SET", "maxmemory-policy", "noeviction")
        self.addCleanup(self.r.call, "CONFIG", "SET", "maxmemory-policy", policy)
        self.addCleanup(self.refuse, False)
        self.refuse(True)
        for what, r in (("reserve", self.srv.reserve(lid, "a", "u2")),
                        ("reserve with a key", self.srv.reserve(lid, "a", "u2", idem="k1")),
                        ("confirm", self.srv.confirm(rid, "u1")),
                        ("cancel", self.srv.cancel(rid, "u1")),
                        ("restock", self.srv.restock(lid, "a", 1))):
            self.assertError(r, 503, "unavailable")
            self.assertEqual(r.headers.get("retry-after"), "1", what)
        self.assertEqual(self.srv.get_res(rid, "u1").status, 200)  # reads still work
        self.assertEqual(self.srv.public_get(lid).status, 200)
        self.assertEqual(self.srv.request("GET", "/readyz").status, 200)
        self.assertIn("redis_refused", self.srv.log_text())
        self.refuse(False)
        self.assertEqual(self.srv.reserve(lid, "a", "u2", idem="k1").status, 201)
        self.assertEqual(self.srv.confirm(rid, "u1").status, 200)
        self.check_invariants(lid, ["a"])


if __name__ == "__main__":
    fsserver.main(timeout=90)
