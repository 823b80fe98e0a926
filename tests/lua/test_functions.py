#!/usr/bin/env python3
"""Direct tests of the Redis Functions library lua/flashsale.lua (contract: docs/redis.md).

Starts its own redis-server on a free loopback port, loads the library and calls every function
with FCALL. After every test the counter invariant is checked on every SKU: available + held +
sold == total, none negative; held == sum of the holds; sold == sum of qty in the order stream;
users[u] == u's held + confirmed units.

Run: python3 tests/lua/test_functions.py   (exit code 0 on success; about 5 s)
"""

import base64
import datetime
import os
import random
import re
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from fsredis import LIBRARY_PATH, RedisError, RedisServer, load_library  # noqa: E402

SERVER = None


def setUpModule():
    global SERVER
    SERVER = RedisServer().start()


def tearDownModule():
    SERVER.cleanup()


def new_rid():
    return base64.urlsafe_b64encode(os.urandom(18)).decode().rstrip("=")


def rfc3339(ms):
    t = datetime.datetime(1970, 1, 1) + datetime.timedelta(milliseconds=ms)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (ms % 1000)


class FS:
    """Thin wrappers that build the KEYS of each function as docs/redis.md prescribes."""

    def __init__(self, r):
        self.r = r

    @staticmethod
    def p(launch, sku):
        return "fs:{%s:%s}" % (launch, sku)

    def now_ms(self):
        sec, usec = self.r.call("TIME")
        return int(sec) * 1000 + int(usec) // 1000

    def put(self, launch, skus, name="Launch", hold_seconds=60, starts_at_ms=0, ends_at_ms=0):
        args = [launch, name, hold_seconds, starts_at_ms, ends_at_ms, len(skus)]
        for s in skus:
            args += list(s)
        return self.r.call("FCALL", "fs_launch_put", 3, "fs:launch:{%s}" % launch,
                           "fs:launch:{%s}:skus" % launch, "fs:launches", *args)

    def state(self, launch, action):
        return self.r.call("FCALL", "fs_launch_state", 2, "fs:launch:{%s}" % launch,
                           "fs:launch:{%s}:skus" % launch, action)

    def get(self, launch):
        return self.r.call("FCALL_RO", "fs_launch_get", 2, "fs:launch:{%s}" % launch,
                           "fs:launch:{%s}:skus" % launch)

    def idem_key(self, launch, sku, user, key):
        return "%s:i:%d:%s:%s" % (self.p(launch, sku), len(user.encode()), user, key)

    def reserve(self, launch, sku, reqs):
        """reqs: (user, qty) or (user, qty, idempotency_key) or (user, qty, key, rid)."""
        p = self.p(launch, sku)
        keys = [p + ":sku", p + ":holds", p + ":users"]
        args = [len(reqs)]
        for q in reqs:
            user, qty = q[0], q[1]
            key = q[2] if len(q) > 2 else None
            rid = q[3] if len(q) > 3 else new_rid()
            keys.append(p + ":r:" + rid)
            if key is not None:
                keys.append(self.idem_key(launch, sku, user, key))
            args += [rid, user, qty, 1 if key is not None else 0]
        return self.r.call("FCALL", "fs_reserve", len(keys), *keys, *args)

    def confirm(self, launch, sku, rid, user, order_id=None, payment_ref=""):
        p = self.p(launch, sku)
        return self.r.call("FCALL", "fs_confirm", 5, p + ":sku", p + ":holds", p + ":users",
                           p + ":r:" + rid, p + ":orders", rid, user,
                           order_id or "ord-" + new_rid(), payment_ref)

    def cancel(self, launch, sku, rid, user):
        p = self.p(launch, sku)
        return self.r.call("FCALL", "fs_cancel", 4, p + ":sku", p + ":holds", p + ":users",
                           p + ":r:" + rid, rid, user)

    def get_res(self, launch, sku, rid, user):
        return self.r.call("FCALL_RO", "fs_get_reservation", 1,
                           self.p(launch, sku) + ":r:" + rid, user)

    def expire(self, launch, sku, max_=100):
        p = self.p(launch, sku)
        return self.r.call("FCALL", "fs_expire", 3, p + ":sku", p + ":holds", p + ":users", max_)

    def restock(self, launch, sku, delta):
        return self.r.call("FCALL", "fs_restock", 1, self.p(launch, sku) + ":sku", delta)

    def sku_list(self):
        return self.r.call("FCALL_RO", "fs_sku_list", 1, "fs:launches")

    def counters(self, launch, sku):
        v = self.r.call("HMGET", self.p(launch, sku) + ":sku", "total", "available", "held", "sold")
        return [int(x) for x in v]

    def hash(self, key):
        v = self.r.call("HGETALL", key)
        return dict(zip(v[0::2], v[1::2]))


def parse_view(reply):
    """fs_launch_get/put/state 'ok' reply -> dict, with skus as a list of dicts."""
    head = dict(zip(["code", "created", "launch", "name", "state", "hold_seconds", "starts_at_ms",
                     "ends_at_ms", "now_ms", "n"], reply[:10]))
    names = ["sku", "total", "available", "held", "sold", "per_user_limit", "price_cents"]
    rest = reply[10:]
    assert len(rest) == 7 * head["n"], reply
    head["skus"] = [dict(zip(names, rest[i:i + 7])) for i in range(0, len(rest), 7)]
    return head


class Base(unittest.TestCase):
    def setUp(self):
        self.r = SERVER.client()
        self.r.call("FLUSHALL")
        self.r.call("FUNCTION", "FLUSH")
        load_library(self.r)
        self.fs = FS(self.r)

    def tearDown(self):
        try:
            self.check_invariant()
        finally:
            self.r.close()

    def open_launch(self, launch="L", skus=(("A", 10, 3, 1999),), **kw):
        self.assertEqual(self.fs.put(launch, list(skus), **kw)[0], "ok")
        self.assertEqual(self.fs.state(launch, "open")[0], "ok")

    def check_invariant(self):
        """The counter invariant of docs/redis.md on every SKU; raises AssertionError."""
        r, fs = self.r, self.fs
        flat = fs.sku_list()
        for launch, sku in zip(flat[0::2], flat[1::2]):
            p = fs.p(launch, sku)
            what = "%s/%s" % (launch, sku)
            total, available, held, sold = fs.counters(launch, sku)
            for name, v in (("total", total), ("available", available), ("held", held),
                            ("sold", sold)):
                self.assertGreaterEqual(v, 0, "%s %s negative" % (what, name))
            self.assertEqual(available + held + sold, total, what + ": available+held+sold")
            per_user = {}
            holds = r.call("ZRANGE", p + ":holds", 0, -1, "WITHSCORES")
            held_sum = 0
            for rid, score in zip(holds[0::2], holds[1::2]):
                h = fs.hash(p + ":r:" + rid)
                self.assertEqual(h.get("status"), "held", what + ": member of holds not held")
                self.assertEqual(int(h["expires_ms"]), int(score), what + ": hold score")
                held_sum += int(h["qty"])
                per_user[h["user"]] = per_user.get(h["user"], 0) + int(h["qty"])
            self.assertEqual(held_sum, held, what + ": held != sum of holds")
            sold_sum, seen = 0, set()
            for _sid, fields in r.call("XRANGE", p + ":orders", "-", "+"):
                e = dict(zip(fields[0::2], fields[1::2]))
                self.assertNotIn(e["reservation_id"], seen, what + ": reservation ordered twice")
                seen.add(e["reservation_id"])
                self.assertEqual((e["launch"], e["sku"]), (launch, sku))
                rh = fs.hash(p + ":r:" + e["reservation_id"])
                self.assertEqual(rh.get("status"), "confirmed", what + ": order of unconfirmed")
                self.assertEqual(rh.get("order_id"), e["order_id"])
                sold_sum += int(e["qty"])
                per_user[e["user_id"]] = per_user.get(e["user_id"], 0) + int(e["qty"])
            self.assertEqual(sold_sum, sold, what + ": sold != sum of order stream qty")
            users = {u: int(v) for u, v in fs.hash(p + ":users").items()}
            self.assertEqual(users, per_user, what + ": users hash != held + sold per user")


class TestLaunches(Base):
    def test_create(self):
        now = self.fs.now_ms()
        raw = self.fs.put("L1", [("red", 10, 2, 99900), ("blue", 5, 1, 89900)], name="Phone",
                          hold_seconds=120)
        v = parse_view(raw)
        self.assertEqual(v["code"], "ok")
        self.assertEqual(v["created"], 1)
        self.assertEqual((v["launch"], v["name"], v["state"], v["hold_seconds"]),
                         ("L1", "Phone", "scheduled", 120))
        self.assertEqual((v["starts_at_ms"], v["ends_at_ms"]), (0, 0))
        self.assertLess(abs(v["now_ms"] - now), 5000)
        self.assertEqual(v["skus"], [
            dict(sku="red", total=10, available=10, held=0, sold=0, per_user_limit=2,
                 price_cents=99900),
            dict(sku="blue", total=5, available=5, held=0, sold=0, per_user_limit=1,
                 price_cents=89900)])
        self.assertEqual(self.r.call("SMEMBERS", "fs:launches"), ["L1"])
        self.assertEqual(self.r.call("LRANGE", "fs:launch:{L1}:skus", 0, -1), ["red", "blue"])
        h = self.fs.hash("fs:{L1:red}:sku")
        self.assertEqual(h, dict(launch="L1", sku="red", stock="10", total="10", available="10",
                                 held="0", sold="0", per_user_limit="2", price_cents="99900",
                                 state="scheduled", hold_ms="120000", starts_at_ms="0",
                                 ends_at_ms="0"))
        lh = self.fs.hash("fs:launch:{L1}")
        self.assertEqual((lh["name"], lh["state"], lh["hold_seconds"]), ("Phone", "scheduled", "120"))
        self.assertEqual(lh["created_ms"], lh["updated_ms"])
        got = self.fs.get("L1")
        self.assertEqual(got[:8], ["ok", 0] + raw[2:8])
        self.assertEqual(got[9:], raw[9:])
        self.assertLess(abs(got[8] - self.fs.now_ms()), 5000)
        self.assertEqual(self.fs.sku_list(), ["L1", "red", "L1", "blue"])
        self.assertEqual(self.fs.get("nope"), ["not_found"])

    def test_update(self):
        self.open_launch("L", [("A", 10, 3, 1000)])
        rid = self.fs.reserve("L", "A", [("u1", 2)])[0][1]
        self.assertEqual(self.fs.confirm("L", "A", rid, "u1")[0], "confirmed")
        self.fs.reserve("L", "A", [("u2", 1)])
        starts, ends = self.fs.now_ms() - 1000, self.fs.now_ms() + 3600_000
        v = parse_view(self.fs.put("L", [("B", 4, 1, 500), ("A", 10, 5, 1200)], name="New",
                                   hold_seconds=30, starts_at_ms=starts, ends_at_ms=ends))
        self.assertEqual((v["code"], v["created"], v["name"], v["hold_seconds"], v["state"]),
                         ("ok", 0, "New", 30, "open"))
        self.assertEqual((v["starts_at_ms"], v["ends_at_ms"]), (starts, ends))
        self.assertEqual([s["sku"] for s in v["skus"]], ["A", "B"])  # order of addition
        self.assertEqual(v["skus"][0], dict(sku="A", total=10, available=7, held=1, sold=2,
                                            per_user_limit=5, price_cents=1200))
        self.assertEqual(v["skus"][1], dict(sku="B", total=4, available=4, held=0, sold=0,
                                            per_user_limit=1, price_cents=500))
        for sku in ("A", "B"):
            h = self.fs.hash("fs:{L:%s}:sku" % sku)
            self.assertEqual((h["state"], h["hold_ms"], h["starts_at_ms"], h["ends_at_ms"]),
                             ("open", "30000", str(starts), str(ends)))
        # A SKU left out of a PUT stays, and still gets the launch's copies.
        v = parse_view(self.fs.put("L", [("B", 4, 1, 500)], hold_seconds=45))
        self.assertEqual([s["sku"] for s in v["skus"]], ["A", "B"])
        self.assertEqual(self.fs.hash("fs:{L:A}:sku")["hold_ms"], "45000")
        self.assertEqual(self.fs.hash("fs:{L:A}:sku")["ends_at_ms"], "0")
        lh = self.fs.hash("fs:launch:{L}")
        self.assertEqual(lh["state"], "open")
        self.assertGreaterEqual(int(lh["updated_ms"]), int(lh["created_ms"]))

    def test_use_restock(self):
        self.open_launch("L", [("A", 10, 3, 1000), ("B", 5, 1, 100)])
        self.fs.reserve("L", "A", [("u1", 2)])
        before = {k: self.r.call("DUMP", k) for k in self.r.call("KEYS", "*")}
        reply = self.fs.put("L", [("C", 3, 1, 1), ("A", 10, 3, 1000), ("B", 6, 1, 100)],
                            name="Changed", hold_seconds=5)
        self.assertEqual(reply, ["use_restock", "B"])
        after = {k: self.r.call("DUMP", k) for k in self.r.call("KEYS", "*")}
        self.assertEqual(before, after, "use_restock changed something")
        # The stock a SKU was created with stays the reference after a restock.
        self.assertEqual(self.fs.restock("L", "B", 2)[0], "ok")
        self.assertEqual(self.fs.put("L", [("B", 7, 1, 100)]), ["use_restock", "B"])
        self.assertEqual(self.fs.put("L", [("B", 5, 1, 100)])[0], "ok")
        self.assertEqual(self.fs.counters("L", "B"), [7, 7, 0, 0])

    def test_put_bad_arguments(self):
        with self.assertRaisesRegex(RedisError, r"^ERR flashsale fs_launch_put: duplicate sku A"):
            self.fs.put("L", [("A", 1, 1, 1), ("A", 1, 1, 1)])
        with self.assertRaisesRegex(RedisError, r"^ERR flashsale fs_launch_put: bad integer"):
            self.fs.put("L", [("A", "x", 1, 1)])
        with self.assertRaisesRegex(RedisError, r"^ERR flashsale fs_launch_put: launch id"):
            self.r.call("FCALL", "fs_launch_put", 3, "fs:launch:{L}", "fs:launch:{L}:skus",
                        "fs:launches", "M", "n", 60, 0, 0, 0)
        with self.assertRaisesRegex(RedisError, r"^ERR flashsale fs_launch_put: wrong number"):
            self.r.call("FCALL", "fs_launch_put", 3, "fs:launch:{L}", "fs:launch:{L}:skus",
                        "fs:launches", "L", "n", 60, 0, 0, 1, "A", 1, 1)
        self.assertEqual(self.r.call("KEYS", "*"), [], "a failed put wrote something")

    def test_transitions(self):
        fs = self.fs
        self.assertEqual(fs.state("L", "open"), ["not_found"])
        fs.put("L", [("A", 3, 1, 1), ("B", 3, 1, 1)])
        self.assertEqual(fs.state("L", "pause"), ["invalid_transition", "scheduled"])
        steps = [("open", "open"), ("open", "open"), ("pause", "paused"), ("pause", "paused"),
                 ("open", "open"), ("pause", "paused"), ("close", "closed")]
        for action, want in steps:
            reply = fs.state("L", action)
            self.assertEqual(reply[:2], ["ok", 0], action)
            self.assertEqual(parse_view(reply)["state"], want)
            self.assertEqual(fs.hash("fs:launch:{L}")["state"], want)
            for sku in ("A", "B"):
                self.assertEqual(fs.hash("fs:{L:%s}:sku" % sku)["state"], want, (action, sku))
        for action in ("open", "pause", "close"):
            self.assertEqual(fs.state("L", action), ["invalid_transition", "closed"])
        fs.put("M", [("A", 1, 1, 1)])
        self.assertEqual(parse_view(fs.state("M", "close"))["state"], "closed")
        with self.assertRaisesRegex(RedisError, r"^ERR flashsale fs_launch_state: unknown action"):
            fs.state("M", "reopen")

    def test_effective_state(self):
        fs = self.fs
        now = fs.now_ms()
        # starts_at in the past: open without any operator action.
        fs.put("P", [("A", 5, 5, 1)], starts_at_ms=now - 10)
        self.assertEqual(fs.get("P")[4], "open")
        self.assertEqual(fs.hash("fs:launch:{P}")["state"], "scheduled")
        self.assertEqual(fs.reserve("P", "A", [("u", 1)])[0][0], "ok")
        self.assertEqual(parse_view(fs.state("P", "pause"))["state"], "paused")
        self.assertEqual(fs.reserve("P", "A", [("u", 1)])[0][0], "launch_not_open")
        # starts_at in the future: still scheduled; a manual open overrides it.
        fs.put("F", [("A", 5, 5, 1)], starts_at_ms=now + 3600_000)
        self.assertEqual(fs.get("F")[4], "scheduled")
        self.assertEqual(fs.reserve("F", "A", [("u", 1)])[0][0], "launch_not_open")
        self.assertEqual(parse_view(fs.state("F", "open"))["state"], "open")
        self.assertEqual(fs.reserve("F", "A", [("u", 1)])[0][0], "ok")
        # ends_at in the past: closed whatever the stored state, even if operators opened it.
        fs.put("E", [("A", 5, 5, 1)], ends_at_ms=now - 1)
        self.assertEqual(fs.get("E")[4], "closed")
        self.assertEqual(fs.state("E", "open"), ["invalid_transition", "closed"])
        fs.put("E", [("A", 5, 5, 1)], ends_at_ms=0)
        fs.state("E", "open")
        fs.put("E", [("A", 5, 5, 1)], ends_at_ms=now - 1)
        self.assertEqual(fs.reserve("E", "A", [("u", 1)])[0][0], "launch_not_open")
        self.assertEqual(fs.get("E")[4], "closed")
        # Exactly on time: opens at starts_at, closes at ends_at, by Redis's clock.
        now = fs.now_ms()
        fs.put("T", [("A", 5, 5, 1)], starts_at_ms=now + 250, ends_at_ms=now + 500)
        self.assertEqual(fs.reserve("T", "A", [("u", 1)])[0][0], "launch_not_open")
        while fs.now_ms() < now + 250:
            time.sleep(0.02)
        if fs.now_ms() < now + 480:
            self.assertEqual(fs.reserve("T", "A", [("u", 1)])[0][0], "ok")
        while fs.now_ms() < now + 500:
            time.sleep(0.02)
        self.assertEqual(fs.reserve("T", "A", [("u", 1)])[0][0], "launch_not_open")
        self.assertEqual(fs.get("T")[4], "closed")


class TestReserve(Base):
    def test_batch_in_order(self):
        self.open_launch("L", [("A", 5, 3, 1999)], hold_seconds=60)
        fs = self.fs
        t0 = fs.now_ms()
        out = fs.reserve("L", "A", [("u1", 2), ("u2", 2), ("u3", 2), ("u1", 2), ("u4", 1),
                                    ("u5", 1), ("u1", 1)])
        t1 = fs.now_ms()
        codes = [o[0] for o in out]
        # u3 wants 2 of 1 left; u1 wants 2 of 1 left (stock is checked before the limit, which
        # u1 would pass too); u4 takes the last unit exactly at the boundary; u5 finds none; u1
        # has 1 of its limit left but no stock.
        self.assertEqual(codes, ["ok", "ok", "sold_out", "sold_out", "ok", "sold_out",
                                 "sold_out"])
        for o in out:
            self.assertEqual(len(o), 6)
            if o[0] == "ok":
                self.assertTrue(t0 <= o[4] <= t1)
                self.assertEqual(o[3], o[4] + 60_000)
                self.assertEqual(o[5], 0)
            else:
                self.assertEqual(o[1:], ["", 0, 0, 0, 0])
        self.assertEqual([o[2] for o in out if o[0] == "ok"], [2, 2, 1])
        self.assertEqual(fs.counters("L", "A"), [5, 0, 5, 0])
        self.assertEqual(fs.hash("fs:{L:A}:users"), {"u1": "2", "u2": "2", "u4": "1"})
        rid = out[0][1]
        h = fs.hash("fs:{L:A}:r:" + rid)
        self.assertEqual(h, dict(user="u1", qty="2", status="held", created_ms=str(out[0][4]),
                                 expires_ms=str(out[0][3])))
        self.assertEqual(self.r.call("TTL", "fs:{L:A}:r:" + rid), -1)  # no TTL while held
        self.assertEqual(self.r.call("ZSCORE", "fs:{L:A}:holds", rid), str(out[0][3]))
        # No reservation hash for the refused requests.
        self.assertEqual(len(self.r.call("KEYS", "fs:{L:A}:r:*")), 3)

    def test_limit(self):
        self.open_launch("L", [("A", 100, 3, 1)])
        fs = self.fs
        self.assertEqual([o[0] for o in fs.reserve("L", "A", [("u", 4)])], ["limit_exceeded"])
        self.assertEqual([o[0] for o in fs.reserve("L", "A", [("u", 3), ("u", 1), ("v", 3)])],
                         ["ok", "limit_exceeded", "ok"])
        rid = fs.reserve("L", "A", [("w", 2)])[0][1]
        self.assertEqual(fs.confirm("L", "A", rid, "w")[0], "confirmed")
        # Bought units count against the limit too.
        self.assertEqual(fs.reserve("L", "A", [("w", 2)])[0][0], "limit_exceeded")
        self.assertEqual(fs.reserve("L", "A", [("w", 1)])[0][0], "ok")

    def test_not_open_and_not_found(self):
        fs = self.fs
        fs.put("L", [("A", 5, 5, 1)])
        self.assertEqual(fs.reserve("L", "Z", [("u", 1), ("v", 1, "k")]),
                         [["not_found", "", 0, 0, 0, 0]] * 2)
        self.assertEqual(fs.reserve("nope", "A", [("u", 1)])[0][0], "not_found")
        self.assertEqual(fs.reserve("L", "A", [("u", 1, "k1")])[0],
                         ["launch_not_open", "", 0, 0, 0, 0])
        fs.state("L", "open")
        fs.state("L", "pause")
        self.assertEqual(fs.reserve("L", "A", [("u", 1, "k1")])[0][0], "launch_not_open")
        fs.state("L", "open")
        # launch_not_open was not stored: the same key is a new attempt now.
        out = fs.reserve("L", "A", [("u", 1, "k1")])[0]
        self.assertEqual((out[0], out[5]), ("ok", 0))
        fs.state("L", "close")
        self.assertEqual(fs.reserve("L", "A", [("u", 1)])[0][0], "launch_not_open")
        # ...but a stored answer is replayed even after the launch closed.
        self.assertEqual(fs.reserve("L", "A", [("u", 1, "k1")])[0], out[:5] + [1])
        self.assertEqual(self.r.call("KEYS", "fs:{L:Z}*"), [])

    def test_idempotent_replay(self):
        self.open_launch("L", [("A", 3, 2, 1)])
        fs = self.fs
        first = fs.reserve("L", "A", [("u1", 2, "key-1")])[0]
        self.assertEqual(first[0], "ok")
        ikey = fs.idem_key("L", "A", "u1", "key-1")
        self.assertEqual(self.r.call("GET", ikey),
                         "ok|%s|2|%d|%d" % (first[1], first[3], first[4]))
        ttl = self.r.call("TTL", ikey)
        self.assertTrue(86000 < ttl <= 86400, ttl)
        before = fs.counters("L", "A")
        again = fs.reserve("L", "A", [("u1", 2, "key-1"), ("u1", 1, "key-1")])
        self.assertEqual(again, [first[:5] + [1]] * 2)
        self.assertEqual(fs.counters("L", "A"), before, "a replay took stock")
        self.assertEqual(len(self.r.call("KEYS", "fs:{L:A}:r:*")), 1)
        # Within one batch: the second request with the same key replays the first.
        out = fs.reserve("L", "A", [("u2", 1, "same"), ("u2", 1, "same"), ("u2", 1)])
        self.assertEqual([o[0] for o in out], ["ok", "ok", "sold_out"])
        self.assertEqual(out[1], out[0][:5] + [1])
        # sold_out and limit_exceeded are stored answers too, even once stock comes back.
        so = fs.reserve("L", "A", [("u3", 1, "k-so")])[0]
        fs.restock("L", "A", 5)
        le = fs.reserve("L", "A", [("u1", 1, "k-le")])[0]  # stock now, but u1 is at its limit
        self.assertEqual((so[0], le[0]), ("sold_out", "limit_exceeded"))
        self.assertEqual(self.r.call("GET", fs.idem_key("L", "A", "u3", "k-so")), "sold_out||0|0|0")
        self.assertEqual(fs.cancel("L", "A", first[1], "u1"), ["cancelled"])
        self.assertEqual(fs.reserve("L", "A", [("u3", 1, "k-so"), ("u1", 1, "k-le")]),
                         [["sold_out", "", 0, 0, 0, 1], ["limit_exceeded", "", 0, 0, 0, 1]])
        # The replay of an ok still answers with the first reservation after it was cancelled.
        self.assertEqual(fs.reserve("L", "A", [("u1", 2, "key-1")])[0], first[:5] + [1])
        # Another key of the same shopper is a new attempt.
        self.assertEqual(fs.reserve("L", "A", [("u3", 1, "k-new")])[0][:1], ["ok"])

    def test_resent_batch_takes_no_stock(self):
        """A batch sent again with the same reservation ids (retry after a timeout)."""
        self.open_launch("L", [("A", 3, 3, 1)])
        fs = self.fs
        reqs = [("u1", 2, None, "rid-a"), ("u2", 2, None, "rid-b"), ("u3", 1, "k", "rid-c")]
        first = fs.reserve("L", "A", reqs)
        self.assertEqual([o[0] for o in first], ["ok", "sold_out", "ok"])
        before = fs.counters("L", "A")
        again = fs.reserve("L", "A", reqs)
        self.assertEqual(again[0], first[0][:5] + [1])
        self.assertEqual(again[2], first[2][:5] + [1])
        # sold_out wrote no reservation: re-deciding it is a fresh attempt, still sold out.
        self.assertEqual(again[1], ["sold_out", "", 0, 0, 0, 0])
        self.assertEqual(fs.counters("L", "A"), before)
        # The same id for another shopper is a server bug: an error, and nothing changes.
        with self.assertRaisesRegex(RedisError,
                                    "^ERR flashsale fs_reserve: reservation id in use by another"):
            fs.reserve("L", "A", [("u9", 1, None, "fresh"), ("u9", 1, None, "rid-a")])
        with self.assertRaisesRegex(RedisError, "^ERR flashsale fs_reserve: duplicate reservation"):
            fs.reserve("L", "A", [("u9", 1, None, "x1"), ("u8", 1, None, "x1")])
        self.assertEqual(fs.counters("L", "A"), before)
        self.assertEqual(self.r.call("EXISTS", "fs:{L:A}:r:fresh", "fs:{L:A}:r:x1"), 0)

    def test_bad_arguments(self):
        self.open_launch("L", [("A", 5, 5, 1)])
        p = "fs:{L:A}"
        base = [p + ":sku", p + ":holds", p + ":users"]

        def call(keys, args):
            return self.r.call("FCALL", "fs_reserve", len(keys), *keys, *args)

        cases = [
            (base + [p + ":r:x"], [2, "x", "u", 1, 0], "wrong number of arguments"),
            (base, [1, "x", "u", 1, 0], "wrong number of keys"),
            (base + [p + ":r:x", p + ":r:y"], [1, "x", "u", 1, 0], "wrong number of keys"),
            (base + [p + ":r:x"], [1, "x", "u", 0, 0], "qty must be at least 1"),
            (base + [p + ":r:x"], [1, "x", "u", "1.5", 0], "bad integer for qty"),
            (base + [p + ":r:x"], [1, "x", "u", 1, 2], "has_idem must be 0 or 1"),
            (base + [p + ":r:y"], [1, "x", "u", 1, 0], "bad key for reservation"),
            (base + [p + ":r:x"], [1, "x", "u", 1, 1], "bad key for idempotency record"),
            (base + ["fs:{L:B}:r:x"], [1, "x", "u", 1, 0], "bad key for reservation"),
            (["fs:{L:A}:skux"] + base[1:] + [p + ":r:x"], [1, "x", "u", 1, 0], "bad SKU key"),
            ([base[0], p + ":users", p + ":holds", p + ":r:x"], [1, "x", "u", 1, 0],
             "bad key for holds"),
            (base + [p + ":r:x"], [0, "x", "u", 1, 0], "wrong number of arguments"),
        ]
        for keys, args, msg in cases:
            with self.assertRaisesRegex(RedisError, "^ERR flashsale fs_reserve: " + msg):
                call(keys, args)
        # A valid request after an invalid one in the same batch: nothing happens at all.
        with self.assertRaises(RedisError):
            call(base + [p + ":r:a", p + ":r:b"], [2, "a", "u", 1, 0, "b", "u", -1, 0])
        self.assertEqual(self.fs.counters("L", "A"), [5, 5, 0, 0])
        self.assertEqual(self.r.call("KEYS", p + ":r:*"), [])


class TestConfirmCancel(Base):
    def test_confirm(self):
        self.open_launch("L", [("A", 5, 3, 1999)])
        fs = self.fs
        out = fs.reserve("L", "A", [("u1", 2), ("u2", 1)])
        rid = out[0][1]
        self.assertEqual(fs.confirm("L", "A", rid, "u2"), ["not_found", "", 0, 0, 0, "", ""])
        self.assertEqual(fs.confirm("L", "A", "nosuchrid", "u1")[0], "not_found")
        t0 = fs.now_ms()
        c = fs.confirm("L", "A", rid, "u1", order_id="order-1", payment_ref="pay-42")
        t1 = fs.now_ms()
        self.assertEqual(c[:3], ["confirmed", "order-1", 2])
        self.assertTrue(t0 <= c[3] <= t1)
        self.assertEqual(c[4:6], [1999, "pay-42"])
        self.assertEqual(fs.counters("L", "A"), [5, 2, 1, 2])
        self.assertIsNone(self.r.call("ZSCORE", "fs:{L:A}:holds", rid))
        entries = self.r.call("XRANGE", "fs:{L:A}:orders", "-", "+")
        self.assertEqual(len(entries), 1)
        self.assertEqual(entries[0][0], c[6])
        self.assertEqual(entries[0][1], [
            "order_id", "order-1", "reservation_id", rid, "launch", "L", "sku", "A",
            "user_id", "u1", "qty", "2", "price_cents", "1999", "payment_ref", "pay-42",
            "confirmed_at", rfc3339(c[3])])
        h = fs.hash("fs:{L:A}:r:" + rid)
        self.assertEqual((h["status"], h["order_id"], h["confirmed_ms"], h["payment_ref"],
                          h["price_cents"], h["stream_id"]),
                         ("confirmed", "order-1", str(c[3]), "pay-42", "1999", c[6]))
        ttl = self.r.call("TTL", "fs:{L:A}:r:" + rid)
        self.assertTrue(7 * 86400 - 60 < ttl <= 7 * 86400, ttl)
        # A repeated confirm returns the first order unchanged and writes nothing.
        self.assertEqual(fs.confirm("L", "A", rid, "u1", order_id="order-2", payment_ref="x"), c)
        self.assertEqual(self.r.call("XLEN", "fs:{L:A}:orders"), 1)
        self.assertEqual(fs.counters("L", "A"), [5, 2, 1, 2])
        self.assertEqual(fs.cancel("L", "A", rid, "u1"), ["reservation_confirmed"])
        # A price change and a closed launch do not stop a hold being confirmed, at the new price.
        fs.put("L", [("A", 5, 3, 2500)])
        fs.state("L", "close")
        c2 = fs.confirm("L", "A", out[1][1], "u2")
        self.assertEqual((c2[0], c2[2], c2[4], c2[5]), ("confirmed", 1, 2500, ""))
        self.assertEqual(fs.counters("L", "A"), [5, 2, 0, 3])
        self.assertEqual(fs.hash("fs:{L:A}:users"), {"u1": "2", "u2": "1"})

    def test_cancel(self):
        self.open_launch("L", [("A", 4, 2, 1)])
        fs = self.fs
        out = fs.reserve("L", "A", [("u1", 2), ("u2", 2)])
        self.assertEqual(fs.reserve("L", "A", [("u3", 1)])[0][0], "sold_out")
        rid = out[0][1]
        self.assertEqual(fs.cancel("L", "A", rid, "u2"), ["not_found"])
        self.assertEqual(fs.cancel("L", "A", "nosuch", "u1"), ["not_found"])
        self.assertEqual(fs.cancel("L", "A", rid, "u1"), ["cancelled"])
        self.assertEqual(fs.counters("L", "A"), [4, 2, 2, 0])
        self.assertEqual(fs.hash("fs:{L:A}:users"), {"u2": "2"})
        self.assertEqual(fs.hash("fs:{L:A}:r:" + rid)["status"], "cancelled")
        ttl = self.r.call("TTL", "fs:{L:A}:r:" + rid)
        self.assertTrue(7 * 86400 - 60 < ttl <= 7 * 86400, ttl)
        # Repeating is harmless; confirming a cancelled hold is refused.
        self.assertEqual(fs.cancel("L", "A", rid, "u1"), ["cancelled"])
        self.assertEqual(fs.counters("L", "A"), [4, 2, 2, 0])
        self.assertEqual(fs.confirm("L", "A", rid, "u1")[0], "reservation_cancelled")
        # The units are available again, and the shopper's limit is free again.
        self.assertEqual([o[0] for o in fs.reserve("L", "A", [("u1", 2)])], ["ok"])

    def test_get_reservation(self):
        self.open_launch("L", [("A", 4, 2, 1)])
        fs = self.fs
        o = fs.reserve("L", "A", [("u1", 2)])[0]
        self.assertEqual(fs.get_res("L", "A", o[1], "u1"), ["ok", 2, "held", o[4], o[3], "", 0, ""])
        self.assertEqual(fs.get_res("L", "A", o[1], "u2"), ["not_found", 0, "", 0, 0, "", 0, ""])
        self.assertEqual(fs.get_res("L", "A", "nosuch", "u1")[0], "not_found")
        c = fs.confirm("L", "A", o[1], "u1", order_id="ord", payment_ref="pr")
        self.assertEqual(fs.get_res("L", "A", o[1], "u1"),
                         ["ok", 2, "confirmed", o[4], o[3], "ord", c[3], "pr"])
        with self.assertRaisesRegex(RedisError, "write flag"):
            self.r.call("FCALL_RO", "fs_reserve", 3, "fs:{L:A}:sku", "fs:{L:A}:holds",
                        "fs:{L:A}:users", 0)

    def test_expiry(self):
        """One 1.1 s wait covers: confirm after expires_ms, cancel, get and the sweeper."""
        self.open_launch("L", [("A", 10, 10, 1)], hold_seconds=1)
        fs = self.fs
        out = fs.reserve("L", "A", [("c", 1), ("x", 2), ("g", 1), ("s1", 1), ("s2", 1), ("s3", 1),
                                    ("s4", 1)])
        self.assertTrue(all(o[0] == "ok" for o in out))
        self.assertEqual(fs.expire("L", "A"), 0, "swept a hold before its time")
        self.assertEqual(fs.counters("L", "A"), [10, 2, 8, 0])
        time.sleep(1.1)
        self.assertGreaterEqual(fs.now_ms(), max(o[3] for o in out))
        # Not swept yet: get already says expired but changes nothing.
        g = fs.get_res("L", "A", out[2][1], "g")
        self.assertEqual(g[:3], ["ok", 1, "expired"])
        self.assertEqual(fs.hash("fs:{L:A}:r:" + out[2][1])["status"], "held")
        # Confirm after expires_ms: refused, and the units come back in that call.
        self.assertEqual(fs.confirm("L", "A", out[0][1], "c"),
                         ["reservation_expired", "", 0, 0, 0, "", ""])
        self.assertEqual(fs.counters("L", "A"), [10, 3, 7, 0])
        self.assertEqual(fs.hash("fs:{L:A}:r:" + out[0][1])["status"], "expired")
        self.assertTrue(self.r.call("TTL", "fs:{L:A}:r:" + out[0][1]) > 0)
        self.assertEqual(fs.confirm("L", "A", out[0][1], "c")[0], "reservation_expired")
        self.assertEqual(fs.cancel("L", "A", out[0][1], "c"), ["reservation_expired"])
        # Cancel after expires_ms: expired (once), not cancelled.
        self.assertEqual(fs.cancel("L", "A", out[1][1], "x"), ["reservation_expired"])
        self.assertEqual(fs.counters("L", "A"), [10, 5, 5, 0])
        self.assertEqual(self.r.call("XLEN", "fs:{L:A}:orders"), 0)
        # The sweeper: at most max per call, each unit returned exactly once.
        self.assertEqual(fs.expire("L", "A", 3), 3)
        self.check_invariant()
        self.assertEqual(fs.expire("L", "A", 3), 2)
        self.assertEqual(fs.expire("L", "A", 3), 0)
        self.assertEqual(fs.counters("L", "A"), [10, 10, 0, 0])
        self.assertEqual(fs.hash("fs:{L:A}:users"), {})
        self.assertEqual(self.r.call("ZCARD", "fs:{L:A}:holds"), 0)
        for o in out:
            self.assertEqual(fs.get_res("L", "A", o[1], self.r.call(
                "HGET", "fs:{L:A}:r:" + o[1], "user"))[2], "expired")
            self.assertTrue(0 < self.r.call("TTL", "fs:{L:A}:r:" + o[1]) <= 7 * 86400)
        self.assertEqual(fs.confirm("L", "A", out[3][1], "s1")[0], "reservation_expired")
        # The sweeper of a SKU that does not exist (or has nothing due) is a no-op.
        self.assertEqual(fs.expire("L", "nosku"), 0)


class TestRestockAndStreams(Base):
    def test_restock(self):
        self.open_launch("L", [("A", 2, 5, 1)])
        fs = self.fs
        fs.reserve("L", "A", [("u", 2)])
        self.assertEqual(fs.reserve("L", "A", [("v", 1)])[0][0], "sold_out")
        self.assertEqual(fs.restock("L", "A", 5), ["ok", 7, 5, 2, 0])
        self.assertEqual(fs.reserve("L", "A", [("v", 1)])[0][0], "ok")
        self.assertEqual(fs.restock("L", "A", -4), ["ok", 3, 0, 3, 0])
        self.assertEqual(fs.restock("L", "A", -1), ["insufficient_available", 3, 0, 3, 0])
        self.assertEqual(fs.counters("L", "A"), [3, 0, 3, 0])
        self.assertEqual(fs.restock("L", "Z", 1), ["not_found", 0, 0, 0, 0])
        self.assertEqual(fs.hash("fs:{L:A}:sku")["stock"], "2")
        for bad, msg in ((0, "delta must not be 0"), ("1e3", "bad integer")):
            with self.assertRaisesRegex(RedisError, "^ERR flashsale fs_restock: " + msg):
                fs.restock("L", "A", bad)
        self.assertEqual(self.r.call("KEYS", "fs:{L:Z}*"), [])

    def test_random_traffic_stream_matches_sold(self):
        fs = self.fs
        rnd = random.Random(7)
        self.open_launch("L", [("A", 40, 4, 100), ("B", 15, 2, 200)])
        held = []
        for _ in range(60):
            sku = rnd.choice("AB")
            reqs = [("u%d" % rnd.randrange(12), rnd.randint(1, 3),
                     rnd.choice([None, "k%d" % rnd.randrange(5)])) for _ in range(rnd.randint(1, 8))]
            for q, o in zip(reqs, fs.reserve("L", sku, [q if q[2] else q[:2] for q in reqs])):
                if o[0] == "ok" and not o[5]:
                    held.append((sku, o[1], q[0]))
            if held and rnd.random() < 0.5:
                s, rid, u = held.pop(rnd.randrange(len(held)))
                if rnd.random() < 0.7:
                    self.assertEqual(fs.confirm("L", s, rid, u)[0], "confirmed")
                else:
                    self.assertEqual(fs.cancel("L", s, rid, u), ["cancelled"])
            if rnd.random() < 0.1:
                fs.restock("L", sku, rnd.choice([3, -2]))
            self.check_invariant()
        sold = sum(fs.counters("L", s)[3] for s in "AB")
        self.assertGreater(sold, 0)
        self.assertGreater(self.r.call("XLEN", "fs:{L:A}:orders"), 0)


class TestSafety(Base):
    def test_invariant_checker_catches_corruption(self):
        """The invariant check itself must be able to fail."""
        self.open_launch("L", [("A", 5, 5, 1)])
        rid = self.fs.reserve("L", "A", [("u", 2)])[0][1]
        self.fs.confirm("L", "A", rid, "u")
        self.check_invariant()
        for corrupt, undo in [
            (("HSET", "fs:{L:A}:sku", "sold", "3"), ("HSET", "fs:{L:A}:sku", "sold", "2")),
            (("HSET", "fs:{L:A}:users", "u", "1"), ("HSET", "fs:{L:A}:users", "u", "2")),
            (("XADD", "fs:{L:A}:orders", "*", "order_id", "o", "reservation_id", "zz",
              "launch", "L", "sku", "A", "user_id", "u", "qty", "0"), None),
        ]:
            self.r.call(*corrupt)
            with self.assertRaises(AssertionError):
                self.check_invariant()
            if undo:
                self.r.call(*undo)
        self.r.call("DEL", "fs:{L:A}:orders")
        self.r.call("HSET", "fs:{L:A}:sku", "sold", "0", "available", "5", "total", "5")
        self.r.call("DEL", "fs:{L:A}:users")

    def test_corrupt_state_raises_without_writing(self):
        self.open_launch("L", [("A", 5, 5, 1)])
        fs = self.fs
        rid = fs.reserve("L", "A", [("u", 1)])[0][1]
        self.r.call("HSET", "fs:{L:A}:sku", "available", "7")  # breaks available+held+sold==total
        with self.assertRaisesRegex(RedisError, "^ERR flashsale fs_reserve: corrupt data"):
            fs.reserve("L", "A", [("v", 1)])
        with self.assertRaisesRegex(RedisError, "^ERR flashsale fs_cancel: corrupt data"):
            fs.cancel("L", "A", rid, "u")
        with self.assertRaisesRegex(RedisError, "^ERR flashsale fs_confirm: corrupt data"):
            fs.confirm("L", "A", rid, "u")
        with self.assertRaisesRegex(RedisError, "^ERR flashsale fs_launch_get: corrupt data"):
            fs.get("L")
        self.assertEqual(self.r.call("XLEN", "fs:{L:A}:orders"), 0)
        self.assertEqual(fs.hash("fs:{L:A}:r:" + rid)["status"], "held")
        self.assertEqual(self.r.call("ZCARD", "fs:{L:A}:holds"), 1)
        self.r.call("HSET", "fs:{L:A}:sku", "available", "4")
        # A hold missing from holds is corrupt: confirm refuses rather than selling it.
        self.r.call("ZREM", "fs:{L:A}:holds", rid)
        with self.assertRaisesRegex(RedisError, "^ERR flashsale fs_confirm: corrupt data"):
            fs.confirm("L", "A", rid, "u")
        self.assertEqual(fs.counters("L", "A"), [5, 4, 1, 0])
        # The sweeper refuses holds that held does not cover, before changing anything.
        self.r.call("ZADD", "fs:{L:A}:holds", 0, rid)
        self.r.call("HSET", "fs:{L:A}:sku", "available", "5", "held", "0")
        with self.assertRaisesRegex(RedisError, "^ERR flashsale fs_expire: corrupt data"):
            fs.expire("L", "A")
        self.assertEqual(fs.counters("L", "A"), [5, 5, 0, 0])
        self.assertEqual(fs.hash("fs:{L:A}:r:" + rid)["status"], "held")
        self.r.call("HSET", "fs:{L:A}:sku", "available", "4", "held", "1")
        self.r.call("ZADD", "fs:{L:A}:holds", fs.hash("fs:{L:A}:r:" + rid)["expires_ms"], rid)

    def test_arity_errors(self):
        self.open_launch("L", [("A", 5, 5, 1)])
        p = "fs:{L:A}"
        calls = [
            ("fs_confirm", [p + ":sku", p + ":holds", p + ":users", p + ":r:x"], ["x", "u", "o"]),
            ("fs_cancel", [p + ":sku", p + ":holds", p + ":users"], ["x", "u"]),
            ("fs_get_reservation", [p + ":r:x"], []),
            ("fs_expire", [p + ":sku", p + ":holds", p + ":users"], []),
            ("fs_restock", [p + ":sku"], [1, 2]),
            ("fs_launch_state", ["fs:launch:{L}", "fs:launch:{L}:skus"], []),
            ("fs_launch_get", ["fs:launch:{L}", "fs:launch:{L}:skus"], ["x"]),
            ("fs_sku_list", ["fs:launches"], ["x"]),
            ("fs_launch_put", ["fs:launch:{L}", "fs:launch:{L}:skus", "fs:launches"], ["L"]),
        ]
        for name, keys, args in calls:
            with self.assertRaisesRegex(RedisError,
                                        "^ERR flashsale %s: wrong number of arguments$" % name):
                self.r.call("FCALL", name, len(keys), *keys, *args)
        with self.assertRaisesRegex(RedisError, "^ERR flashsale fs_expire: max must be 1..1000"):
            self.fs.expire("L", "A", 0)
        with self.assertRaisesRegex(RedisError, "^ERR flashsale fs_confirm: bad key for reservation"):
            self.r.call("FCALL", "fs_confirm", 5, p + ":sku", p + ":holds", p + ":users",
                        p + ":r:x", p + ":orders", "y", "u", "o", "")

    def test_rfc3339_conversion(self):
        """The library's civil-from-days conversion, run alone over awkward dates."""
        with open(LIBRARY_PATH, encoding="utf-8") as f:
            src = f.read()
        m = re.search(r"^local function rfc3339_ms\(ms\)\n.*?^end\n", src, re.S | re.M)
        self.assertIsNotNone(m)
        script = m.group(0) + ("local out = {}\nfor i = 1, #ARGV do out[i] = "
                               "rfc3339_ms(tonumber(ARGV[i])) end\nreturn out\n")
        rnd = random.Random(3)
        days = [0, 59, 60, 365, 789, 10957, 11016, 11017, 11382, 19782, 20454, 47541, 2932896]
        values = [d * 86400000 + rnd.randrange(86400000) for d in days]
        values += [d * 86400000 for d in days] + [d * 86400000 - 1 for d in days[1:]]
        values += [rnd.randrange(0, 253402300799999) for _ in range(300)]
        got = self.r.call("EVAL", script, 0, *values)
        self.assertEqual(got, [rfc3339(v) for v in values])


if __name__ == "__main__":
    unittest.main(verbosity=1)
