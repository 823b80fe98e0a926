#!/usr/bin/env python3
"""Hundreds of shoppers (threads, each with its own connection) racing for a few units on one
and on several SKUs, some confirming and some cancelling while others keep trying. Checks: no
oversell (held + sold never above stock, exactly stock once the dust settles), no shopper over
the limit, the counter invariant, and the order stream matching `sold` with unique order ids."""

import os
import random
import re
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import fsserver  # noqa: E402
from fsserver import sku  # noqa: E402


class Tally:
    """What the shoppers saw, to compare with Redis afterwards."""

    def __init__(self):
        self.lock = threading.Lock()
        self.res = {}           # rid -> dict(user, sku, qty, state)
        self.orders = {}        # order_id -> rid
        self.bad = []           # unexpected answers

    def add(self, rid, user, s, qty):
        with self.lock:
            if rid in self.res:
                self.bad.append(("duplicate reservation id", rid))
            self.res[rid] = {"user": user, "sku": s, "qty": qty, "state": "held"}

    def set_state(self, rid, state, order_id=None):
        with self.lock:
            self.res[rid]["state"] = state
            if order_id is not None:
                if order_id in self.orders:
                    self.bad.append(("duplicate order id", order_id))
                self.orders[order_id] = rid

    def complain(self, *what):
        with self.lock:
            self.bad.append(what)

    def units(self, s, state):
        return sum(r["qty"] for r in self.res.values() if r["sku"] == s and r["state"] == state)

    def per_user(self, s):
        out = {}
        for r in self.res.values():
            if r["sku"] == s and r["state"] in ("held", "confirmed"):
                out[r["user"]] = out.get(r["user"], 0) + r["qty"]
        return out


def run_threads(n, target, join_timeout=60):
    errors = []

    def wrap(i):
        try:
            target(i)
        except Exception as e:
            errors.append((i, repr(e)))
    threads = [threading.Thread(target=wrap, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + join_timeout
    for t in threads:
        t.join(max(0.1, deadline - time.monotonic()))
    if any(t.is_alive() for t in threads):
        raise AssertionError("threads still running after %ss" % join_timeout)
    if errors:
        raise AssertionError("%d threads failed, e.g. %s" % (len(errors), errors[:3]))


class ConcurrencyTest(fsserver.ServerTestCase):

    def shop(self, lid, skus, limit, shoppers, parallel_per_user, seed):
        """The race: every shopper fires `parallel_per_user` reservations at once (own
        connections), winners then confirm, cancel or keep while losers retry for a while."""
        rnd = random.Random(seed)
        plan = []
        for u in range(shoppers):
            s = rnd.choice(skus)
            reqs = [rnd.choice([1, 1, 1, 2]) if limit > 1 else 1 for _ in range(parallel_per_user)]
            plan.append(("shopper-%d" % u, s, reqs))
        tally = Tally()
        n = sum(len(p[2]) for p in plan)
        barrier = threading.Barrier(n)
        race_over = threading.Event()
        slots = [(u, k) for u in range(shoppers) for k in range(len(plan[u][2]))]
        wins = [0]

        def next_action():
            # by order of winning: confirm, cancel, confirm, keep, ... so every outcome occurs
            with tally.lock:
                wins[0] += 1
                return ("confirm", "cancel", "confirm", "keep")[(wins[0] - 1) % 4]

        def one(i):
            u, k = slots[i]
            user, s, reqs = plan[u]
            h = self.srv.clone()
            try:
                barrier.wait(30)
                r = h.reserve(lid, s, user, reqs[k])
                tries = 0
                # losers keep trying (briefly) while winners confirm and cancel
                while r.status == 409 and r.body.get("error") == "sold_out" and not race_over.is_set() and tries < 20:
                    tries += 1
                    time.sleep(0.02 + 0.03 * (u % 5))
                    r = h.reserve(lid, s, user, reqs[k])
                if r.status == 201:
                    b = r.body
                    if (b["user_id"], b["sku"], b["qty"], b["status"]) != (user, s, reqs[k], "held"):
                        tally.complain("bad 201 body", b)
                    rid = b["reservation_id"]
                    tally.add(rid, user, s, reqs[k])
                    action = next_action()
                    if action == "confirm":
                        c = h.confirm(rid, user, payment_ref="pay-%s-%d" % (user, k))
                        if c.status != 200 or c.body.get("status") != "confirmed":
                            tally.complain("confirm", c.status, c.body)
                        else:
                            tally.set_state(rid, "confirmed", c.body["order_id"])
                    elif action == "cancel":
                        c = h.cancel(rid, user)
                        if c.status != 200:
                            tally.complain("cancel", c.status, c.body)
                        else:
                            tally.set_state(rid, "cancelled")
                elif r.status == 409 and r.body.get("error") in ("sold_out", "limit_exceeded"):
                    pass
                else:
                    tally.complain("reserve", r.status, r.body)
            finally:
                h.close_conn()

        def stopper():
            time.sleep(3)
            race_over.set()
        threading.Thread(target=stopper, daemon=True).start()
        t0 = time.monotonic()
        run_threads(n, one)
        race_over.set()
        return tally, time.monotonic() - t0

    def sweep_leftovers(self, lid, skus, tally):
        """Claim whatever the cancels left available, one unit at a time."""
        for s in skus:
            i = 0
            while self.srv.sku_counters(lid)[s]["available"] > 0:
                user = "sweeper-%d" % i
                r = self.srv.reserve(lid, s, user, 1)
                self.assertEqual(r.status, 201, r.body)
                tally.add(r.body["reservation_id"], user, s, 1)
                i += 1
                self.assertLess(i, 100)

    def verify(self, lid, skus, stock, limit, tally):
        self.assertEqual(tally.bad, [], "unexpected answers: %s" % tally.bad[:5])
        details = self.check_invariants(lid, skus)
        for s in skus:
            d = details[s]
            # exactly what the shoppers were told
            self.assertEqual(d["held"], tally.units(s, "held"), s)
            self.assertEqual(d["sold"], tally.units(s, "confirmed"), s)
            self.assertLessEqual(d["held"] + d["sold"], stock[s])
            self.assertEqual(d["available"] + d["held"] + d["sold"], stock[s])
            # no shopper over the limit, by our account and by Redis's
            for user, units in tally.per_user(s).items():
                self.assertLessEqual(units, limit, (s, user))
            # the order stream is exactly the confirmed reservations
            stream_orders = {o["order_id"]: o for o in d["orders"]}
            mine = {oid: rid for oid, rid in tally.orders.items() if tally.res[rid]["sku"] == s}
            self.assertEqual(set(stream_orders), set(mine), s)
            for oid, rid in mine.items():
                o = stream_orders[oid]
                self.assertEqual((o["reservation_id"], o["user_id"], int(o["qty"])),
                                 (rid, tally.res[rid]["user"], tally.res[rid]["qty"]))
        return details

    def test_one_sku_hundreds_of_shoppers(self):
        stock, limit = 7, 2
        lid = self.new_launch([sku("hot", stock, limit)])
        tally, took = self.shop(lid, ["hot"], limit, shoppers=300, parallel_per_user=1, seed=1)
        self.verify(lid, ["hot"], {"hot": stock}, limit, tally)
        states = [r["state"] for r in tally.res.values()]
        self.assertTrue({"held", "confirmed", "cancelled"} <= set(states), states)
        self.sweep_leftovers(lid, ["hot"], tally)
        d = self.verify(lid, ["hot"], {"hot": stock}, limit, tally)["hot"]
        self.assertEqual(d["available"], 0)
        self.assertEqual(d["held"] + d["sold"], stock)

    def test_several_skus_and_parallel_requests_per_shopper(self):
        # Each shopper sends two reservations at once on two connections; limit 1 lets one win.
        stock = {"red": 3, "green": 5, "blue": 8}
        limit = 1
        lid = self.new_launch([sku(s, n, limit) for s, n in stock.items()])
        tally, took = self.shop(lid, list(stock), limit, shoppers=150, parallel_per_user=2, seed=2)
        self.verify(lid, list(stock), stock, limit, tally)
        users = {}
        for r in tally.res.values():
            if r["state"] != "cancelled":
                users[(r["user"], r["sku"])] = users.get((r["user"], r["sku"]), 0) + 1
        self.assertTrue(all(v <= 1 for v in users.values()), "a shopper got two units with limit 1")
        self.sweep_leftovers(lid, list(stock), tally)
        details = self.verify(lid, list(stock), stock, limit, tally)
        for s, n in stock.items():
            self.assertEqual(details[s]["available"], 0, s)
            self.assertEqual(details[s]["held"] + details[s]["sold"], n, s)

    def test_burst_on_idle_connections(self):
        # 200 connections opened first, then every one sends at the same moment
        lid = self.new_launch([sku("burst", 10, 1)])
        conns = [self.srv.raw(timeout=20) for _ in range(200)]
        try:
            reqs = [fsserver.raw_request("POST", "/v1/launches/%s/reservations" % lid,
                                         {"sku": "burst", "user_id": "b%d" % i},
                                         {"Authorization": "Bearer " + fsserver.DEFAULT_API_KEYS[0]})
                    for i in range(200)]
            for c, q in zip(conns, reqs):
                c.send(q)
            statuses = [c.read_response().status for c in conns]
        finally:
            for c in conns:
                c.close()
        self.assertEqual(statuses.count(201), 10)
        self.assertEqual(statuses.count(409), 190)
        d = self.check_invariants(lid, ["burst"])["burst"]
        self.assertEqual((d["available"], d["held"]), (0, 10))


class ConcurrencyTwoThreadsTest(ConcurrencyTest):
    """The same races against a server running two event loops (FLASHSALE_THREADS=2)."""

    server_env = {"FLASHSALE_THREADS": "2"}


class OneCallPerSkuPerServerTest(fsserver.ServerTestCase):
    """Two event loops: each SKU's reservations reach Redis from one of them (the SKU's leader),
    whichever loop the shoppers' connections landed on, and every answer goes back to the
    connection that asked."""

    server_env = {"FLASHSALE_THREADS": "2"}

    def test_a_skus_reservations_reach_redis_from_one_loop(self):
        lid = self.new_launch([sku("lead", 10 ** 6, 10 ** 6), sku("other", 10 ** 6, 10 ** 6)])
        mon = self.redis.client()
        mon.sock.sendall(mon._encode(["MONITOR"]))
        self.assertEqual(mon._read(), "OK")
        # 64 connections: the kernel spreads them over both loops (all on one: 2 in 2^64)
        conns = [self.srv.raw(timeout=20) for _ in range(64)]
        answers = []
        try:
            for rnd in range(4):
                users = ["r%d-c%d" % (rnd, i) for i in range(len(conns))]
                for i, (c, u) in enumerate(zip(conns, users)):
                    c.send(fsserver.raw_request(
                        "POST", "/v1/launches/%s/reservations" % lid,
                        {"sku": "lead" if i % 4 else "other", "user_id": u},
                        {"Authorization": "Bearer " + fsserver.DEFAULT_API_KEYS[0]}))
                for c, u in zip(conns, users):
                    answers.append((u, c.read_response()))
        finally:
            for c in conns:
                c.close()
        for u, r in answers:
            self.assertEqual(r.status, 201, (u, r.body))
            self.assertEqual(r.body["user_id"], u)  # its own answer, on its own connection
        self.assertEqual(len({r.body["reservation_id"] for _, r in answers}), len(answers))
        # everything Redis received up to a marker: which of the server's connections sent each
        # SKU's reservation calls
        marker = "marker-%d" % os.getpid()
        self.r.call("ECHO", marker)
        senders = {"lead": set(), "other": set()}
        calls = 0
        while True:
            line = mon._read()
            if marker in line:
                break
            if '"FCALL" "fs_reserve' not in line:
                continue
            calls += 1
            addr = line.split("[", 1)[1].split("]", 1)[0].split()[1]
            for s in senders:
                if '"fs:{%s:%s}:sku"' % (lid, s) in line:
                    senders[s].add(addr)
        mon.close()
        self.assertGreater(calls, 0)
        for s, addrs in senders.items():
            self.assertEqual(len(addrs), 1, "%s: reservation calls from %s" % (s, sorted(addrs)))
        c = self.srv.sku_counters(lid)
        self.assertEqual(c["lead"]["held"] + c["other"]["held"], len(answers))


class BatchLingerTest(fsserver.ServerTestCase):
    """FLASHSALE_BATCH_LINGER_US / FLASHSALE_BATCH_TARGET: a quiet SKU's request goes at once, a
    busy SKU's next call waits for the target, and nothing waits past the linger. (A linger of
    1 s and a target of 2, so that "busy" is half a request per second or more: the outcome never
    depends on the machine's speed.)"""

    server_env = {"FLASHSALE_THREADS": "1", "FLASHSALE_BATCH_LINGER_US": "1000000",
                  "FLASHSALE_BATCH_TARGET": "2", "FLASHSALE_QUEUE_MAX_WAIT_MS": "10000"}

    def calls(self):
        text = self.srv.request("GET", "/metrics").body
        return int(re.search(r"^fs_reserve_batches_total (\d+)$", text, re.M).group(1))

    def spaced(self, lid, name, users, gap):
        """Each user reserves on its own connection, `gap` seconds after the one before; returns
        (answers, seconds from the first request to each answer)."""
        out, took = [None] * len(users), [None] * len(users)
        t0 = time.monotonic()

        def one(i):
            time.sleep(gap * i)
            out[i] = self.srv.clone().reserve(lid, name, users[i])
            took[i] = time.monotonic() - t0

        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(users))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        return out, took

    def test_quiet_then_busy_sku(self):
        lid = self.new_launch([sku("hot", 10 ** 6, 10 ** 6)])
        # A quiet SKU (no rate known yet) sends its request at once.
        t0 = time.monotonic()
        self.assertEqual(self.srv.reserve(lid, "hot", "q0").status, 201)
        self.assertLess(time.monotonic() - t0, 0.6, "a quiet SKU's request waited")
        # Two more waves 50 ms apart (each may wait once the SKU is busy): its rate is known and
        # at least a request per second.
        for u in ("q1", "q2"):
            time.sleep(0.05)
            self.assertEqual(self.srv.reserve(lid, "hot", u).status, 201)
        # Busy: the first of two requests 0.3 s apart waits for the second, one call for both.
        before = self.calls()
        answers, took = self.spaced(lid, "hot", ["b0", "b1"], 0.3)
        for r in answers:
            self.assertEqual(r.status, 201, r.body)
        self.assertEqual(self.calls() - before, 1, "two requests of a busy SKU in one call")
        self.assertGreaterEqual(took[0], 0.29, "the first went before the second came")
        # Alone, short of the target: it waits for the linger, then the timer sends it (no other
        # I/O wakes the loop).
        before = self.calls()
        answers, took = self.spaced(lid, "hot", ["w0"], 0)
        self.assertEqual(answers[0].status, 201, answers[0].body)
        self.assertEqual(self.calls() - before, 1)
        self.assertGreaterEqual(took[0], 0.95, "it went before the linger ran out")
        self.assertEqual(self.srv.sku_counters(lid)["hot"]["held"], 6)

if __name__ == "__main__":
    fsserver.main(timeout=110)
