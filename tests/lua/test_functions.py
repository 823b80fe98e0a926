#!/usr/bin/env python3
"""Direct tests of the Redis Functions library lua/flashsale.lua (contract: docs/redis.md).

Starts its own redis-server on a free loopback port, loads the library and calls every function
with FCALL. After every test the counter invariant is checked on every SKU: available + held +
sold == total, none negative; the ids of the `held` hash are exactly the members of `holds`, and
held == sum of their qty; a held reservation has no `r:<rid>` hash, an ended one has (status
confirmed/cancelled/expired, with a TTL); sold == sum of qty in the order stream, whose entries
are exactly the confirmed reservations; users[u] == u's held + confirmed units.

Run: python3 tests/lua/test_functions.py   (exit code 0 on success; about 5 s)
"""

import base64
import datetime
import math
import os
import random
import re
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from fsredis import LIBRARY_PATH, RedisError, RedisServer, load_library  # noqa: E402
from checks import GROUP_RE  # noqa: E402  (a held group's value, as docs/redis.md defines it)

SERVER = None


def setUpModule():
    global SERVER
    SERVER = RedisServer().start()


def tearDownModule():
    SERVER.cleanup()


def new_rid():
    return base64.urlsafe_b64encode(os.urandom(18)).decode().rstrip("=")


CODES = {"o": "ok", "s": "sold_out", "l": "limit_exceeded", "n": "launch_not_open",
         "f": "not_found", "r": "rate_limited"}


def decode_reserve(raw, args):
    """fs_reserve's reply {codes, created_ms, expires_ms, figures, available, replay...}
    (docs/redis.md) ->
    one entry per request [code, rid, qty, expires_ms, created_ms, replayed], plus the string
    "q1 w1 r1 t1 q2 w2 r2 t2" of RateLimit figures while a rate limit is on, worked out as the
    server does (src/stock/reserve_queue.c): each request's GCRA steps taken again from the
    figures' TATs and the codes; a quota of 0 where a limit has nothing to tell."""
    codes, created, expires, nums = raw[0], raw[1], raw[2], raw[3]
    n = int(args[0])
    assert isinstance(codes, str) and len(codes) == n, raw
    assert isinstance(created, int) and isinstance(expires, int), raw
    assert isinstance(nums, list) and all(isinstance(x, int) for x in nums), raw
    assert nums == [] or (len(nums) >= 6 and len(nums) == 6 + 2 * (nums[4] + nums[5])), raw
    lims, ahead = [], [{}, {}]  # per limit: (quota, window_s, T, tau) or None; slot -> ms ahead
    if nums:
        for milli, burst in (nums[0:2], nums[2:4]):
            if milli > 0 and burst > 0:
                t = 1e6 / milli
                lims.append((int(burst), max(1, math.ceil(t * burst / 1000)), t, t * burst))
            else:
                lims.append(None)
        pos = 6
        for k in (0, 1):
            for _ in range(nums[4 + k]):
                slot, us = nums[pos], nums[pos + 1]
                assert us > 0 and slot not in ahead[k], raw
                ahead[k][slot] = us / 1000.0
                pos += 2
    slots = [{}, {}]  # shopper / address -> slot, in order of first appearance
    assert isinstance(raw[4], int), raw
    replays = iter(raw[5:])
    out = []
    for i, c in enumerate(codes):
        user, addr = args[2 + 5 * i], args[5 + 5 * i]
        js = [slots[0].setdefault(user, len(slots[0]) + 1),
              slots[1].setdefault(addr, len(slots[1]) + 1) if addr != "" else None]
        if c == "p":
            e = list(next(replays))
            assert len(e) == 5, raw
            entry = e + [1]
        else:
            code = CODES[c]
            if code == "ok":
                entry = [code, args[1 + 5 * i], int(args[3 + 5 * i]), expires, created, 0]
            else:
                entry = [code, "", 0, 0, 0, 0]
        if nums:
            f = []
            for k, lim in enumerate(lims):
                if lim is None or js[k] is None or c == "p":
                    f += [0, 0, 0, 0]
                    continue
                quota, window, t, tau = lim
                d = ahead[k].get(js[k], 0.0) + t
                if c != "r":
                    ahead[k][js[k]] = d
                    f += [quota, window, max(0, math.floor((tau - d) / t)), math.ceil(d / 1000)]
                elif d > tau:
                    f += [quota, window, 0, math.ceil((d - tau) / 1000)]
                else:
                    f += [0, 0, 0, 0]  # refused by the other limit
            entry.append(" ".join(str(x) for x in f))
        out.append(entry)
    assert next(replays, None) is None, "more replay elements than p codes: %r" % (raw,)
    return out


HELD_RE = re.compile(r"^(\d+)\|(\d+)\|(\d+)\|(.+)$", re.S)


def held_value(qty, created_ms, expires_ms, user):
    """A field value of fs:{L:S}:held as docs/redis.md defines it."""
    return "%d|%d|%d|%s" % (qty, created_ms, expires_ms, user)


def rfc3339(ms):
    t = datetime.datetime(1970, 1, 1) + datetime.timedelta(milliseconds=ms)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (ms % 1000)


API = re.search(r"^#!lua name=flashsale_v(\d+)$", open(LIBRARY_PATH).readline()).group(1)


class Versioned:
    """A client that calls the library's functions by their plain names: FCALL fs_reserve goes to
    fs_reserve_v<API> (docs/redis.md, "Versions"), so the tests read like the contract."""

    def __init__(self, r):
        self.raw = r

    def call(self, *args):
        if args and str(args[0]).upper() in ("FCALL", "FCALL_RO") and len(args) > 1:
            args = (args[0], "%s_v%s" % (args[1], API)) + tuple(args[2:])
        return self.raw.call(*args)

    def __getattr__(self, name):
        return getattr(self.raw, name)


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

    def reserve(self, launch, sku, reqs, plain=None, group=None):
        """reqs: (user, qty) or (user, qty, idempotency_key) or (user, qty, key, rid) or
        (user, qty, key, rid, client_address). A batch where every request is for one unit and
        has no idempotency key goes to fs_reserve_plain, as a server with grouped holds off sends
        it; plain=False sends it to fs_reserve all the same. group (an id) sends such a batch to
        fs_reserve_group instead; its rids are then group.1, group.2, ..."""
        p = self.p(launch, sku)
        keys = [p + ":sku", p + ":holds", p + ":users", p + ":held", p + ":rlu", p + ":rla"]
        args = [len(reqs)]
        for i, q in enumerate(reqs):
            user, qty = q[0], q[1]
            key = q[2] if len(q) > 2 else None
            rid = q[3] if len(q) > 3 and q[3] else new_rid()
            if group is not None:
                rid = "%s.%d" % (group, i + 1)
            addr = q[4] if len(q) > 4 else ""
            if key is not None:
                keys.append(self.idem_key(launch, sku, user, key))
            args += [rid, user, qty, 1 if key is not None else 0, addr]
        if plain is None:
            plain = len(keys) == 6 and all(str(q) == "1" for q in args[3::5])
        if group is not None:
            assert len(keys) == 6, "a group is for requests without idempotency keys"
            # One address for all (sent once, as the server does when its batch has one), or '*'
            # and one per request.
            addrs = set(args[5::5])
            gargs = [args[0], group, addrs.pop() if len(addrs) == 1 else "*"]
            for i in range(len(reqs)):
                assert str(args[3 + 5 * i]) == "1", "a group is for one-unit requests only"
                gargs += [args[2 + 5 * i]] + ([args[5 + 5 * i]] if gargs[2] == "*" else [])
            raw = self.r.call("FCALL", "fs_reserve_group", 6, *keys, *gargs)
        elif plain:
            pargs = [args[0]]
            for i in range(len(reqs)):
                pargs += [args[1 + 5 * i], args[2 + 5 * i], args[5 + 5 * i]]
            raw = self.r.call("FCALL", "fs_reserve_plain", 6, *keys[:6], *pargs)
        else:
            raw = self.r.call("FCALL", "fs_reserve", len(keys), *keys, *args)
        return decode_reserve(raw, args)

    def rate_limit(self, launch, shopper_milli=-1, shopper_burst=-1, address_milli=-1,
                   address_burst=-1):
        return self.r.call("FCALL", "fs_launch_rate_limit", 2, "fs:launch:{%s}" % launch,
                           "fs:launch:{%s}:skus" % launch, shopper_milli, shopper_burst,
                           address_milli, address_burst)

    def confirm(self, launch, sku, rid, user, order_id=None, payment_ref=""):
        p = self.p(launch, sku)
        return self.r.call("FCALL", "fs_confirm", 6, p + ":sku", p + ":holds", p + ":users",
                           p + ":held", p + ":r:" + rid, p + ":orders", rid, user,
                           order_id or "ord-" + new_rid(), payment_ref)

    def cancel(self, launch, sku, rid, user):
        p = self.p(launch, sku)
        return self.r.call("FCALL", "fs_cancel", 5, p + ":sku", p + ":holds", p + ":users",
                           p + ":held", p + ":r:" + rid, rid, user)

    def get_res(self, launch, sku, rid, user):
        p = self.p(launch, sku)
        return self.r.call("FCALL_RO", "fs_get_reservation", 2, p + ":held", p + ":r:" + rid,
                           rid, user)

    def expire_reply(self, launch, sku, max_=100):
        """fs_expire's reply: [expired, wait_ms]."""
        p = self.p(launch, sku)
        return self.r.call("FCALL", "fs_expire", 4, p + ":sku", p + ":holds", p + ":users",
                           p + ":held", max_)

    def expire(self, launch, sku, max_=100):
        """The number of holds fs_expire expired."""
        return self.expire_reply(launch, sku, max_)[0]

    def restock(self, launch, sku, delta):
        return self.r.call("FCALL", "fs_restock", 1, self.p(launch, sku) + ":sku", delta)

    def sku_list(self):
        """fs_sku_list's triples, without its version."""
        return self.sku_list_reply()[1:]

    def sku_list_reply(self, *known):
        return self.r.call("FCALL_RO", "fs_sku_list", 1, "fs:launches", *known)

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
    rest = reply[10:-4]
    assert len(rest) == 7 * head["n"], reply
    head["skus"] = [dict(zip(names, rest[i:i + 7])) for i in range(0, len(rest), 7)]
    head["rate_limit"] = reply[-4:]
    return head


class Base(unittest.TestCase):
    def setUp(self):
        self.r = Versioned(SERVER.client())
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
        for launch, sku in zip(flat[0::3], flat[1::3]):
            p = fs.p(launch, sku)
            what = "%s/%s" % (launch, sku)
            total, available, held, sold = fs.counters(launch, sku)
            for name, v in (("total", total), ("available", available), ("held", held),
                            ("sold", sold)):
                self.assertGreaterEqual(v, 0, "%s %s negative" % (what, name))
            self.assertEqual(available + held + sold, total, what + ": available+held+sold")
            per_user = {}
            holds = r.call("ZRANGE", p + ":holds", 0, -1, "WITHSCORES")
            scores = dict(zip(holds[0::2], (int(x) for x in holds[1::2])))
            fields = fs.hash(p + ":held")
            # The held hash and holds name exactly the same reservations and groups.
            self.assertEqual(set(fields), set(scores), what + ": held hash ids != holds members")
            self.assertEqual(r.call("TTL", p + ":held") if fields else -1, -1,
                             what + ": held hash has a TTL")
            held_recs = {}  # rid -> (member, qty, created, expires, user)
            for member, rec in fields.items():
                if rec.startswith("#"):
                    m = GROUP_RE.match(rec)
                    self.assertIsNotNone(m, "%s: held group %r" % (what, rec))
                    self.assertNotIn(".", member, what + ": group id with a '.'")
                    entries = m[3].split("\n")[1:]
                    self.assertTrue(entries, what + ": empty group " + member)
                    for e in entries:
                        i, user = e.split(" ", 1)
                        self.assertTrue(1 <= int(i) <= 1000 and str(int(i)) == i, what + ": " + e)
                        held_recs[member + "." + i] = (member, 1, int(m[1]), int(m[2]), user)
                    self.assertEqual(len(entries), len({e.split(" ")[0] for e in entries}),
                                     what + ": an entry twice in " + member)
                else:
                    m = HELD_RE.match(rec)
                    self.assertIsNotNone(m, "%s: held record %r" % (what, rec))
                    held_recs[member] = (member, int(m[1]), int(m[2]), int(m[3]), m[4])
            held_sum = 0
            for rid, (member, qty, created, expires, user) in held_recs.items():
                self.assertGreaterEqual(qty, 1, what + ": held qty")
                self.assertLessEqual(created, expires, what + ": held created > expires")
                self.assertEqual(expires, scores[member], what + ": hold score != held expires_ms")
                self.assertEqual(r.call("EXISTS", p + ":r:" + rid), 0,
                                 what + ": held reservation also has an r: hash")
                held_sum += qty
                per_user[user] = per_user.get(user, 0) + qty
            self.assertEqual(held_sum, held, what + ": held != sum of holds")
            # Ended reservations: their own hash, a final status, kept with a TTL.
            confirmed = set()
            for key in r.call("KEYS", p + ":r:*"):
                rid = key[len(p + ":r:"):]
                h = fs.hash(key)
                self.assertIn(h.get("status"), ("confirmed", "cancelled", "expired"),
                              "%s: r: hash %s status" % (what, rid))
                self.assertNotIn(rid, held_recs, what + ": ended reservation still held")
                for f in ("user", "qty", "created_ms", "expires_ms"):
                    self.assertIn(f, h, "%s: r: hash %s without %s" % (what, rid, f))
                self.assertGreater(r.call("TTL", key), 0, what + ": ended reservation without TTL")
                if h["status"] == "confirmed":
                    confirmed.add(rid)
            sold_sum, seen = 0, set()
            for _sid, fields in r.call("XRANGE", p + ":orders", "-", "+"):
                e = dict(zip(fields[0::2], fields[1::2]))
                self.assertNotIn(e["reservation_id"], seen, what + ": reservation ordered twice")
                seen.add(e["reservation_id"])
                self.assertEqual((e["launch"], e["sku"]), (launch, sku))
                rh = fs.hash(p + ":r:" + e["reservation_id"])
                self.assertEqual(rh.get("status"), "confirmed", what + ": order of unconfirmed")
                self.assertEqual(rh.get("order_id"), e["order_id"])
                self.assertEqual((rh.get("user"), rh.get("qty")), (e["user_id"], e["qty"]),
                                 what + ": order != its reservation")
                sold_sum += int(e["qty"])
                per_user[e["user_id"]] = per_user.get(e["user_id"], 0) + int(e["qty"])
            self.assertEqual(sold_sum, sold, what + ": sold != sum of order stream qty")
            self.assertEqual(confirmed, seen, what + ": confirmed reservations != orders")
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
        # the filler of test_sku_hashes_stay_in_hashtable_encoding
        self.assertGreater(len(h.pop("_encoding")), 64)
        self.assertEqual(h, dict(launch="L1", sku="red", stock="10", total="10", available="10",
                                 held="0", sold="0", per_user_limit="2", price_cents="99900",
                                 rl_shopper_milli="0", rl_shopper_burst="0", rl_address_milli="0",
                                 rl_address_burst="0",
                                 state="scheduled", hold_ms="120000", starts_at_ms="0",
                                 ends_at_ms="0"))
        lh = self.fs.hash("fs:launch:{L1}")
        self.assertEqual((lh["name"], lh["state"], lh["hold_seconds"]), ("Phone", "scheduled", "120"))
        self.assertEqual(lh["created_ms"], lh["updated_ms"])
        got = self.fs.get("L1")
        self.assertEqual(got[:8], ["ok", 0] + raw[2:8])
        self.assertEqual(got[9:], raw[9:])
        self.assertLess(abs(got[8] - self.fs.now_ms()), 5000)
        self.assertEqual(self.fs.sku_list(), ["L1", "red", "120000", "L1", "blue", "120000"])
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
        # stock -1: an existing SKU keeps its stock (only limits and prices change) ...
        self.assertEqual(self.fs.put("L", [("B", -1, 4, 100)])[0], "ok")
        self.assertEqual(self.fs.hash("fs:{L:B}:sku")["per_user_limit"], "4")
        self.assertEqual(self.fs.counters("L", "B"), [7, 7, 0, 0])
        # ... but a new SKU needs one, and nothing changes
        before = {k: self.r.call("DUMP", k) for k in self.r.call("KEYS", "*")}
        self.assertEqual(self.fs.put("L", [("B", -1, 5, 100), ("D", -1, 1, 1)]), ["stock_required", "D"])
        self.assertEqual(before, {k: self.r.call("DUMP", k) for k in self.r.call("KEYS", "*")})
        with self.assertRaisesRegex(RedisError, "stock must not be negative"):
            self.fs.put("L", [("B", -2, 1, 100)])

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

    def test_sku_hashes_stay_in_hashtable_encoding(self):
        """Every SKU hash carries a field longer than hash-max-listpack-value, so Redis keeps it
        in hashtable encoding (fields found by hash, not by scanning a list); a SKU hash without
        it (as an older version left it) gets it back when its launch changes state."""
        fs = self.fs
        fs.put("L", [("A", 3, 1, 1)])
        key = "fs:{L:A}:sku"
        self.assertEqual(self.r.call("OBJECT", "ENCODING", key), "hashtable")
        self.assertGreater(len(fs.hash(key)["_encoding"]), 64)
        # an older SKU hash: the same fields without it, as Redis loads a small hash (listpack)
        self.r.call("HDEL", key, "_encoding")
        dump = self.r.call("DUMP", key)
        self.r.call("RESTORE", key, 0, dump, "REPLACE")
        self.assertEqual(self.r.call("OBJECT", "ENCODING", key), "listpack")
        fs.state("L", "open")
        self.assertEqual(self.r.call("OBJECT", "ENCODING", key), "hashtable")
        self.assertEqual([o[0] for o in fs.reserve("L", "A", [("u", 1)])], ["ok"])
        self.check_invariant()

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
        # Each ok is one field of the SKU's held hash and one member of holds, nothing else.
        oks = [(o, q) for o, q in zip(out, ["u1", "u2", "u3", "u1", "u4", "u5", "u1"])
               if o[0] == "ok"]
        self.assertEqual(fs.hash("fs:{L:A}:held"),
                         {o[1]: held_value(o[2], o[4], o[3], u) for o, u in oks})
        self.assertEqual(self.r.call("TTL", "fs:{L:A}:held"), -1)  # no TTL while held
        rid = out[0][1]
        self.assertEqual(fs.hash("fs:{L:A}:held")[rid],
                         "2|%d|%d|u1" % (out[0][4], out[0][3]))
        self.assertEqual(self.r.call("ZSCORE", "fs:{L:A}:holds", rid), str(out[0][3]))
        self.assertEqual(self.r.call("ZCARD", "fs:{L:A}:holds"), 3)
        # No per-reservation key while held, and none for the refused requests.
        self.assertEqual(self.r.call("KEYS", "fs:{L:A}:r:*"), [])

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
        self.assertEqual(list(fs.hash("fs:{L:A}:held")), [first[1]], "a replay wrote a hold")
        self.assertEqual(self.r.call("ZRANGE", "fs:{L:A}:holds", 0, -1), [first[1]])
        self.assertEqual(fs.hash("fs:{L:A}:users"), {"u1": "2"})
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

    def test_batch_takes_stock_per_request(self):
        """Every ok of a batch takes its own units under its own (fresh) rid: rids are not looked
        up, so nothing about an earlier batch is replayed by rid; a rid twice in one batch is an
        error that changes nothing."""
        self.open_launch("L", [("A", 6, 3, 1)])
        fs = self.fs
        reqs = [("u1", 2, None, "rid-a"), ("u2", 2, None, "rid-b"), ("u1", 1, "k", "rid-c"),
                ("u3", 2, None, "rid-d")]
        out = fs.reserve("L", "A", reqs)
        self.assertEqual([o[0] for o in out], ["ok", "ok", "ok", "sold_out"])
        self.assertEqual([o[1:3] for o in out], [["rid-a", 2], ["rid-b", 2], ["rid-c", 1], ["", 0]])
        self.assertEqual([o[5] for o in out], [0, 0, 0, 0])
        now, exp = out[0][4], out[0][3]
        self.assertEqual([o[3:5] for o in out[:3]], [[exp, now]] * 3)
        self.assertEqual(fs.counters("L", "A"), [6, 1, 5, 0])
        self.assertEqual(fs.hash("fs:{L:A}:users"), {"u1": "3", "u2": "2"})
        self.assertEqual(fs.hash("fs:{L:A}:held"), {
            "rid-a": held_value(2, now, exp, "u1"), "rid-b": held_value(2, now, exp, "u2"),
            "rid-c": held_value(1, now, exp, "u1")})
        self.assertEqual(self.r.call("ZRANGE", "fs:{L:A}:holds", 0, -1, "WITHSCORES"),
                         ["rid-a", str(exp), "rid-b", str(exp), "rid-c", str(exp)])
        self.assertEqual(self.r.call("GET", fs.idem_key("L", "A", "u1", "k")),
                         "ok|rid-c|1|%d|%d" % (exp, now))
        self.assertEqual(self.r.call("KEYS", "fs:{L:A}:r:*"), [])
        # The next batch is decided afresh: the same shoppers take more units under new rids.
        fs.restock("L", "A", 6)
        out2 = fs.reserve("L", "A", [("u2", 1, None, "rid-e"), ("u3", 2, None, "rid-f"),
                                     ("u1", 1, None, "rid-g")])
        self.assertEqual([o[0] for o in out2], ["ok", "ok", "limit_exceeded"])
        self.assertEqual(fs.counters("L", "A"), [12, 4, 8, 0])
        self.assertEqual(fs.hash("fs:{L:A}:users"), {"u1": "3", "u2": "3", "u3": "2"})
        self.assertEqual(sorted(fs.hash("fs:{L:A}:held")),
                         ["rid-a", "rid-b", "rid-c", "rid-e", "rid-f"])
        # The same rid twice in one batch (same or another shopper, adjacent or not) is an error
        # raised before anything is written: not even the idempotency record of the first one.
        before = {k: self.r.call("DUMP", k) for k in self.r.call("KEYS", "*")}
        for batch in ([("u9", 1, "k9", "x1"), ("u8", 1, None, "x2"), ("u7", 1, None, "x1")],
                      [("u9", 1, None, "x3"), ("u9", 1, None, "x3")]):
            with self.assertRaisesRegex(
                    RedisError, "^ERR flashsale fs_reserve(_plain)?: duplicate reservation id$"):
                fs.reserve("L", "A", batch)
        after = {k: self.r.call("DUMP", k) for k in self.r.call("KEYS", "*")}
        self.assertEqual(before, after, "a batch with a duplicate rid changed something")
        self.assertEqual(self.r.call("EXISTS", fs.idem_key("L", "A", "u9", "k9")), 0)

    def test_bad_arguments(self):
        self.open_launch("L", [("A", 5, 5, 1)])
        p = "fs:{L:A}"
        base = [p + ":sku", p + ":holds", p + ":users", p + ":held", p + ":rlu", p + ":rla"]
        ik = p + ":i:1:u:k"

        def call(keys, args):
            return self.r.call("FCALL", "fs_reserve", len(keys), *keys, *args)

        def reqs(*rs):
            """(rid, user, qty, has_idem) tuples -> ARGV with the client address "" appended."""
            out = [len(rs)]
            for r in rs:
                out += list(r) + [""]
            return out

        cases = [
            (base, [2, "x", "u", 1, 0, ""], "wrong number of arguments"),
            (base, [1, "x", "u", 1, 0], "wrong number of arguments"),  # the old 4 per request
            (base, [0], "wrong number of arguments"),
            (base, [1001] + ["x", "u", 1, 0, ""] * 1001, "wrong number of arguments"),
            (base[:5], reqs(("x", "u", 1, 0)), "wrong number of keys"),
            (base[:4], reqs(("x", "u", 1, 0)), "wrong number of keys"),
            # The old layout: a reservation key per request is one key too many now.
            (base + [p + ":r:x"], reqs(("x", "u", 1, 0)), "wrong number of keys"),
            (base + [ik], reqs(("x", "u", 1, 0)), "wrong number of keys"),
            (base + [ik, ik], reqs(("x", "u", 1, 1)), "wrong number of keys"),
            (base, reqs(("x", "u", 0, 0)), "qty must be at least 1"),
            (base, reqs(("x", "u", "1.5", 0)), "bad integer for qty"),
            (base, reqs(("x", "u", 1, 2)), "has_idem must be 0 or 1"),
            (base, reqs(("x", "u", 1, 1)), "bad key for idempotency record"),
            (base + [p + ":r:x"], reqs(("x", "u", 1, 1)), "bad key for idempotency record"),
            (base + ["fs:{L:B}:i:1:u:k"], reqs(("x", "u", 1, 1)), "bad key for idempotency record"),
            (base, reqs(("", "u", 1, 0)), "bad reservation id"),
            # '|' separates the fields of an idempotency record
            (base + [p + ":i:1:u:k"], reqs(("x|y", "u", 1, 1)), "bad reservation id"),
            (base, reqs(("x", "", 1, 0)), "empty user"),
            (base, reqs(("x", "u", 1, 0), ("x", "v", 1, 0)), "duplicate reservation id"),
            (["fs:{L:A}:skux"] + base[1:], reqs(("x", "u", 1, 0)), "bad SKU key"),
            ([base[0], p + ":users", p + ":holds"] + base[3:], reqs(("x", "u", 1, 0)),
             "bad key for holds"),
            ([base[0], base[1], p + ":held", p + ":held"] + base[4:], reqs(("x", "u", 1, 0)),
             "bad key for users"),
            (base[:3] + [p + ":r:x"] + base[4:], reqs(("x", "u", 1, 0)), "bad key for held"),
            (base[:3] + ["fs:{L:B}:held"] + base[4:], reqs(("x", "u", 1, 0)), "bad key for held"),
            (base[:4] + [p + ":rla", p + ":rla"], reqs(("x", "u", 1, 0)), "bad key for rlu"),
            (base[:5] + ["fs:{L:B}:rla"], reqs(("x", "u", 1, 0)), "bad key for rla"),
        ]
        for keys, args, msg in cases:
            with self.assertRaisesRegex(RedisError, "^ERR flashsale fs_reserve: " + msg + "$"):
                call(keys, args)
        # fs_reserve_plain: three per request (rid, user, addr), the first six keys only.
        plain_cases = [
            (base, [1, "x", "u", 1, 0, ""], "wrong number of arguments"),  # fs_reserve's five
            (base, [2, "x", "u", ""], "wrong number of arguments"),
            (base, [0], "wrong number of arguments"),
            (base + [ik], [1, "x", "u", ""], "wrong number of keys"),
            (base[:5], [1, "x", "u", ""], "wrong number of keys"),
            (base, [1, "", "u", ""], "bad reservation id"),
            (base, [1, "x", "", ""], "empty user"),
            (base, [2, "x", "u", "", "x", "v", ""], "duplicate reservation id"),
            (base[:2] + [p + ":held"] + base[3:], [1, "x", "u", ""], "bad key for users"),
        ]
        for keys, args, msg in plain_cases:
            with self.assertRaisesRegex(RedisError, "^ERR flashsale fs_reserve_plain: " + msg + "$"):
                self.r.call("FCALL", "fs_reserve_plain", len(keys), *keys, *args)
        # A valid request before an invalid one in the same batch: nothing happens at all.
        with self.assertRaisesRegex(RedisError, "qty must be at least 1"):
            call(base + [ik], reqs(("a", "u", 1, 1), ("b", "u", -1, 0)))
        self.assertEqual(self.fs.counters("L", "A"), [5, 5, 0, 0])
        self.assertEqual(sorted(self.r.call("KEYS", p + ":*")), [p + ":sku"])

    def test_functions_carry_the_api_version(self):
        """Library flashsale_v<API>, every function named <name>_v<API> (so that two server
        versions can share one Redis), and the version the server calls (FS_LUA_API) matches."""
        libs = self.r.call("FUNCTION", "LIST")
        lib = {k: v for k, v in zip(libs[0][0::2], libs[0][1::2])}
        self.assertEqual(lib["library_name"], "flashsale_v" + API)
        names = [dict(zip(f[0::2], f[1::2]))["name"] for f in lib["functions"]]
        self.assertEqual(len(names), 16, names)
        self.assertTrue(all(n.startswith("fs_") and n.endswith("_v" + API) for n in names), names)
        with self.assertRaisesRegex(RedisError, "Function not found"):
            self.r.raw.call("FCALL", "fs_sku_list", 1, "fs:launches")
        header = open(os.path.join(os.path.dirname(LIBRARY_PATH), "..", "src", "stock",
                                   "stock.h")).read()
        self.assertIn('#define FS_LUA_API "%s"' % API, header)

    def test_idem_sold_out(self):
        """fs_idem_sold_out: a new key is stored as sold_out exactly as fs_reserve stores it; an
        existing record is replayed; nothing else changes."""
        self.open_launch("L", [("A", 1, 5, 1)])
        fs = self.fs
        ok = fs.reserve("L", "A", [("u1", 1, "k1")])[0]
        self.assertEqual(ok[0], "ok")
        self.assertEqual(fs.reserve("L", "A", [("u2", 1, "k2")])[0][0], "sold_out")
        before = {k: self.r.call("DUMP", k) for k in self.r.call("KEYS", "*")}

        def call(user, key):
            k = fs.idem_key("L", "A", user, key)
            return self.r.call("FCALL", "fs_idem_sold_out", 1, k)

        self.assertEqual(call("u1", "k1"), ok[:5] + [1], "the unit of the first request")
        self.assertEqual(call("u2", "k2"), ["sold_out", "", 0, 0, 0, 1])
        after = {k: self.r.call("DUMP", k) for k in self.r.call("KEYS", "*")}
        self.assertEqual(before, after, "replays change nothing")
        self.assertEqual(call("u3", "k3"), ["sold_out", "", 0, 0, 0, 0])
        k3 = fs.idem_key("L", "A", "u3", "k3")
        self.assertEqual(self.r.call("GET", k3), "sold_out||0|0|0")
        self.assertGreater(self.r.call("TTL", k3), 86000)
        # the record is what fs_reserve would have stored: after a restock, it is replayed
        self.assertEqual(fs.restock("L", "A", 1)[0], "ok")
        self.assertEqual(fs.reserve("L", "A", [("u3", 1, "k3")])[0], ["sold_out", "", 0, 0, 0, 1])
        self.assertEqual(self.fs.counters("L", "A"), [2, 1, 1, 0])
        for keys, msg in (([], "wrong number of arguments"),
                          (["fs:{L:A}:sku"], "bad key for idempotency record")):
            with self.assertRaisesRegex(RedisError, "^ERR flashsale fs_idem_sold_out: %s$" % msg):
                self.r.call("FCALL", "fs_idem_sold_out", len(keys), *keys)
        self.r.call("SET", fs.idem_key("L", "A", "u4", "k4"), "garbage")
        with self.assertRaisesRegex(RedisError, "corrupt data: idempotency record"):
            call("u4", "k4")

    def test_reply_format(self):
        """The raw reply: one letter per request, the batch's times once, replays at the end."""
        self.open_launch("L", [("A", 2, 5, 1)])
        p = "fs:{L:A}"
        keys = [p + ":sku", p + ":holds", p + ":users", p + ":held", p + ":rlu", p + ":rla",
                self.fs.idem_key("L", "A", "u1", "k"), self.fs.idem_key("L", "A", "u1", "k")]
        args = [4, "r1", "u1", 1, 1, "", "r2", "u2", 1, 0, "", "r3", "u1", 1, 1, "",
                "r4", "u3", 5, 0, ""]
        raw = self.r.call("FCALL", "fs_reserve", len(keys), *keys, *args)
        self.assertEqual(raw[0], "oops", raw)  # ok, ok, replay of r1 (same key), sold_out
        now = int(self.r.call("TIME")[0]) * 1000
        self.assertLessEqual(abs(raw[1] - now), 2000)
        self.assertEqual(raw[2] - raw[1], 60000)  # hold_seconds 60
        self.assertEqual(raw[3], [], "no figures while rate limits are off")
        self.assertEqual(raw[4], 0, "units left after the batch")
        self.assertEqual(raw[5:], [["ok", "r1", 1, raw[2], raw[1]]])
        other = [k.replace("{L:A}", "{L:B}") for k in keys[:6]]  # no such SKU
        self.assertEqual(self.r.call("FCALL", "fs_reserve", 6, *other,
                                     2, "x", "u", 1, 0, "", "y", "u", 1, 0, ""), ["ff", 0, 0, [], -1])


class TestRateLimits(Base):
    """GCRA per shopper and per client address, decided inside fs_reserve."""

    def test_off_by_default_and_settings(self):
        self.open_launch("L", [("A", 100, 100, 1), ("B", 100, 100, 1)])
        fs = self.fs
        out = fs.reserve("L", "A", [("u", 1)] * 5)
        self.assertEqual([len(o) for o in out], [6] * 5, "no RateLimit figures while off")
        self.assertEqual(parse_view(fs.get("L"))["rate_limit"], [0, 0, 0, 0])
        v = parse_view(fs.rate_limit("L", 2500, 4, -1, -1))
        self.assertEqual(v["rate_limit"], [2500, 4, 0, 0])
        v = parse_view(fs.rate_limit("L", -1, -1, 100000, 50))
        self.assertEqual(v["rate_limit"], [2500, 4, 100000, 50], "-1 keeps a value")
        for sku in ("A", "B"):
            h = fs.hash("fs:{L:%s}:sku" % sku)
            self.assertEqual((h["rl_shopper_milli"], h["rl_shopper_burst"], h["rl_address_milli"],
                              h["rl_address_burst"]), ("2500", "4", "100000", "50"))
        # a SKU added later inherits the launch's limits
        fs.put("L", [("C", 7, 1, 1)])
        self.assertEqual(fs.hash("fs:{L:C}:sku")["rl_shopper_burst"], "4")
        self.assertEqual(fs.rate_limit("nope", 1, 1, 1, 1), ["not_found"])
        with self.assertRaisesRegex(RedisError, "must be -1"):
            fs.rate_limit("L", -2, 1, 1, 1)

    def test_shopper_burst_then_rate(self):
        self.open_launch("L", [("A", 1000, 1000, 1)])
        fs = self.fs
        fs.rate_limit("L", 2000, 3, 0, 0)  # 2/s, burst 3: T = 500 ms, tau = 1500 ms
        out = fs.reserve("L", "A", [("u", 1)] * 5 + [("v", 1)])
        self.assertEqual([o[0] for o in out], ["ok", "ok", "ok", "rate_limited", "rate_limited", "ok"])
        self.assertEqual([len(o) for o in out], [7] * 6)
        figs = [[int(x) for x in o[6].split()] for o in out]
        # quota 3 per window ceil(1.5 s) = 2 s; remaining counts down; address limit off (zeros)
        self.assertEqual([f[:4] for f in figs[:3]], [[3, 2, 2, 1], [3, 2, 1, 1], [3, 2, 0, 2]])
        self.assertEqual(figs[3][:4], [3, 2, 0, 1], "refused: remaining 0, retry in 1 s")
        self.assertEqual(figs[0][4:], [0, 0, 0, 0])
        self.assertEqual(fs.counters("L", "A")[1:3], [996, 4], "refusals take no stock")
        # the hash lives 5 s past its last TAT (1.5 s ahead)
        self.assertTrue(5000 < self.r.call("PTTL", "fs:{L:A}:rlu") <= 6500)
        time.sleep(0.55)  # one emission interval later, exactly one more
        out = fs.reserve("L", "A", [("u", 1)] * 2)
        self.assertEqual([o[0] for o in out], ["ok", "rate_limited"])
        self.check_invariant()

    def test_hash_ttl_never_shrinks(self):
        """A later batch with TATs close to now must not shorten the life of the hash that holds
        another shopper's TAT far ahead (it would forget that shopper's burst)."""
        self.open_launch("L", [("A", 1000, 1000, 1)])
        fs = self.fs
        fs.rate_limit("L", 1000, 10, 0, 0)  # 1/s, burst 10
        self.assertEqual([o[0] for o in fs.reserve("L", "A", [("x", 1)] * 10)], ["ok"] * 10)
        ttl = self.r.call("PTTL", "fs:{L:A}:rlu")
        self.assertTrue(14000 < ttl <= 15000, ttl)  # TAT 10 s ahead, + 5 s
        # A fresh library state (FUNCTION LOAD, a restart) knows nothing of that TTL.
        load_library(self.r.raw)
        self.assertEqual(fs.reserve("L", "A", [("y", 1)])[0][0], "ok")  # TAT 1 s ahead
        self.assertGreater(self.r.call("PTTL", "fs:{L:A}:rlu"), ttl - 1000)
        self.assertEqual(fs.reserve("L", "A", [("x", 1)])[0][0], "rate_limited")

    def test_address_limit_across_shoppers(self):
        self.open_launch("L", [("A", 1000, 1000, 1)])
        fs = self.fs
        fs.rate_limit("L", 0, 0, 1000, 2)  # per address 1/s, burst 2
        out = fs.reserve("L", "A", [("u%d" % i, 1, None, None, "10.0.0.1") for i in range(4)]
                         + [("w", 1, None, None, "10.0.0.2"), ("x", 1, None, None, "")])
        self.assertEqual([o[0] for o in out], ["ok", "ok", "rate_limited", "rate_limited", "ok", "ok"])
        figs = [[int(x) for x in o[6].split()] for o in out]
        self.assertEqual(figs[0][:4], [0, 0, 0, 0], "shopper limit off")
        self.assertEqual(figs[0][4:], [2, 2, 1, 1])
        self.assertEqual(figs[5][4:], [0, 0, 0, 0], "no address: not limited by address")
        self.assertEqual(sorted(fs.hash("fs:{L:A}:rla")), ["10.0.0.1", "10.0.0.2"])

    def test_plain_and_full_decide_alike(self):
        """fs_reserve_plain (rid, user, addr per request) decides a batch exactly as fs_reserve
        does with qty 1 and no idempotency key: same codes, figures, counters and state."""
        self.open_launch("L", [("A", 6, 2, 1), ("B", 6, 2, 1)])
        fs = self.fs
        fs.rate_limit("L", 2000, 3, 1000, 4)  # shopper 2/s burst 3; address 1/s burst 4

        def req(user, addr):
            return (user, 1, None, None, addr)

        batches = [
            ([req("u", "10.0.0.1")] * 4 + [req("v", "10.0.0.2"), req("w", "")],
             ["ok", "ok", "limit_exceeded", "rate_limited", "ok", "ok"]),
            ([req("x", "10.0.0.2"), req("y", "10.0.0.2"), req("z", "10.0.0.3"), req("v", "10.0.0.3")],
             ["ok", "ok", "sold_out", "sold_out"]),
        ]
        for k, (batch, want) in enumerate(batches):
            a = fs.reserve("L", "A", batch, plain=False)
            b = fs.reserve("L", "B", batch, plain=True)
            self.assertEqual([o[0] for o in a], want)
            self.assertEqual([o[0] for o in b], want)
            if k == 0:  # later TATs are relative to each call's own clock
                self.assertEqual([o[6] for o in a], [o[6] for o in b])
        self.assertEqual(fs.counters("L", "A"), fs.counters("L", "B"))
        for suffix in ("users", "rlu", "rla", "held"):
            ka, kb = fs.hash("fs:{L:A}:" + suffix), fs.hash("fs:{L:B}:" + suffix)
            self.assertEqual(len(ka), len(kb), suffix)
            if suffix == "users":
                self.assertEqual(ka, kb)
            elif suffix != "held":
                self.assertEqual(sorted(ka), sorted(kb), suffix)
        self.check_invariant()

    def test_refusals_are_not_stored_and_replays_not_counted(self):
        self.open_launch("L", [("A", 1000, 1000, 1)])
        fs = self.fs
        fs.rate_limit("L", 1000, 1, 0, 0)
        first = fs.reserve("L", "A", [("u", 1, "k1")])[0]
        self.assertEqual(first[0], "ok")
        # the replay of k1 is answered although the shopper is at the limit, and does not count
        out = fs.reserve("L", "A", [("u", 1, "k1"), ("u", 1, "k2")])
        self.assertEqual([o[0] for o in out], ["ok", "rate_limited"])
        self.assertEqual(out[0][5], 1)
        self.assertIsNone(self.r.call("GET", fs.idem_key("L", "A", "u", "k2")),
                          "a rate-limited attempt is not an answer to keep")
        time.sleep(1.05)
        self.assertEqual(fs.reserve("L", "A", [("u", 1, "k2")])[0][0], "ok")


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
        # The reservation left the held hash for a hash of its own, with everything it had.
        self.assertEqual(fs.hash("fs:{L:A}:r:" + rid), dict(
            user="u1", qty="2", status="confirmed", created_ms=str(out[0][4]),
            expires_ms=str(out[0][3]), order_id="order-1", confirmed_ms=str(c[3]),
            payment_ref="pay-42", price_cents="1999", stream_id=c[6]))
        self.assertEqual(fs.hash("fs:{L:A}:held"), {
            out[1][1]: held_value(1, out[1][4], out[1][3], "u2")})
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
        self.assertEqual(self.r.call("EXISTS", "fs:{L:A}:held", "fs:{L:A}:holds"), 0)
        self.assertEqual(fs.hash("fs:{L:A}:r:" + out[1][1])["price_cents"], "2500")

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
        self.assertEqual(fs.hash("fs:{L:A}:r:" + rid), dict(
            user="u1", qty="2", status="cancelled", created_ms=str(out[0][4]),
            expires_ms=str(out[0][3])))
        self.assertEqual(list(fs.hash("fs:{L:A}:held")), [out[1][1]])
        self.assertIsNone(self.r.call("ZSCORE", "fs:{L:A}:holds", rid))
        ttl = self.r.call("TTL", "fs:{L:A}:r:" + rid)
        self.assertTrue(7 * 86400 - 60 < ttl <= 7 * 86400, ttl)
        # Repeating is harmless; confirming a cancelled hold is refused.
        self.assertEqual(fs.cancel("L", "A", rid, "u1"), ["cancelled"])
        self.assertEqual(fs.counters("L", "A"), [4, 2, 2, 0])
        self.assertEqual(fs.confirm("L", "A", rid, "u1")[0], "reservation_cancelled")
        self.assertEqual(fs.cancel("L", "A", rid, "u2"), ["not_found"])
        self.assertEqual(fs.hash("fs:{L:A}:r:" + rid)["status"], "cancelled")
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
        self.assertEqual(fs.get_res("L", "A", o[1], "u2")[0], "not_found")
        # A user id may contain '|' (it comes last in the held record): held, then cancelled.
        user = "a|b|12|c"
        o2 = fs.reserve("L", "A", [(user, 1)])[0]
        self.assertEqual(fs.hash("fs:{L:A}:held")[o2[1]], "1|%d|%d|%s" % (o2[4], o2[3], user))
        self.assertEqual(fs.get_res("L", "A", o2[1], user),
                         ["ok", 1, "held", o2[4], o2[3], "", 0, ""])
        self.assertEqual(fs.get_res("L", "A", o2[1], "a|b")[0], "not_found")
        self.assertEqual(fs.cancel("L", "A", o2[1], user), ["cancelled"])
        self.assertEqual(fs.get_res("L", "A", o2[1], user),
                         ["ok", 1, "cancelled", o2[4], o2[3], "", 0, ""])
        # The rid in ARGV must match the r:<rid> key, and the held key must be a held key.
        p = "fs:{L:A}"
        for keys, args, msg in (
                ([p + ":held", p + ":r:" + o[1]], ["other", "u1"], "bad key for reservation"),
                ([p + ":held", "fs:{L:B}:r:" + o[1]], [o[1], "u1"], "bad key for reservation"),
                ([p + ":holds", p + ":r:" + o[1]], [o[1], "u1"], "bad key for held"),
                ([p + ":r:" + o[1]], ["u1"], "wrong number of arguments"),
                ([p + ":held", p + ":r:" + o[1]], ["u1"], "wrong number of arguments")):
            with self.assertRaisesRegex(RedisError,
                                        "^ERR flashsale fs_get_reservation: %s$" % msg):
                self.r.call("FCALL_RO", "fs_get_reservation", len(keys), *keys, *args)
        with self.assertRaisesRegex(RedisError, "write flag"):
            self.r.call("FCALL_RO", "fs_reserve", 4, p + ":sku", p + ":holds", p + ":users",
                        p + ":held", 1, "x", "u", 1, 0)

    def test_expiry(self):
        """One 1.1 s wait covers: confirm after expires_ms, cancel, get and the sweeper."""
        self.open_launch("L", [("A", 10, 10, 1)], hold_seconds=1)
        fs = self.fs
        out = fs.reserve("L", "A", [("c", 1), ("x", 2), ("g", 1), ("s1", 1), ("s2", 1), ("s3", 1),
                                    ("s4", 1)])
        self.assertTrue(all(o[0] == "ok" for o in out))
        n, wait = fs.expire_reply("L", "A")
        self.assertEqual(n, 0, "swept a hold before its time")
        # The wait is to the first hold's expiry (made just now: not more than the hold time).
        self.assertTrue(0 < wait <= 1000 and wait >= out[0][3] - fs.now_ms() - 5, (wait, out))
        self.assertEqual(fs.counters("L", "A"), [10, 2, 8, 0])
        time.sleep(1.1)
        self.assertGreaterEqual(fs.now_ms(), max(o[3] for o in out))
        # Not swept yet: get already says expired but changes nothing.
        g = fs.get_res("L", "A", out[2][1], "g")
        self.assertEqual(g, ["ok", 1, "expired", out[2][4], out[2][3], "", 0, ""])
        self.assertEqual(fs.hash("fs:{L:A}:held")[out[2][1]],
                         held_value(1, out[2][4], out[2][3], "g"))
        self.assertEqual(self.r.call("EXISTS", "fs:{L:A}:r:" + out[2][1]), 0)
        self.assertEqual(self.r.call("HLEN", "fs:{L:A}:held"), 7)
        # Confirm after expires_ms: refused, and the units come back in that call.
        self.assertEqual(fs.confirm("L", "A", out[0][1], "c"),
                         ["reservation_expired", "", 0, 0, 0, "", ""])
        self.assertEqual(fs.counters("L", "A"), [10, 3, 7, 0])
        self.assertEqual(fs.hash("fs:{L:A}:r:" + out[0][1]), dict(
            user="c", qty="1", status="expired", created_ms=str(out[0][4]),
            expires_ms=str(out[0][3])))
        self.assertEqual(self.r.call("HEXISTS", "fs:{L:A}:held", out[0][1]), 0)
        self.assertTrue(self.r.call("TTL", "fs:{L:A}:r:" + out[0][1]) > 0)
        self.assertEqual(fs.confirm("L", "A", out[0][1], "c")[0], "reservation_expired")
        self.assertEqual(fs.cancel("L", "A", out[0][1], "c"), ["reservation_expired"])
        # Cancel after expires_ms: expired (once), not cancelled.
        self.assertEqual(fs.cancel("L", "A", out[1][1], "x"), ["reservation_expired"])
        self.assertEqual(fs.counters("L", "A"), [10, 5, 5, 0])
        self.assertEqual(fs.hash("fs:{L:A}:r:" + out[1][1])["status"], "expired")
        self.assertEqual(self.r.call("HLEN", "fs:{L:A}:held"), 5)
        self.assertEqual(self.r.call("XLEN", "fs:{L:A}:orders"), 0)
        # The sweeper: at most max per call, each unit returned exactly once.
        self.assertEqual(fs.expire_reply("L", "A", 3), [3, 0])  # max: more may be due at once
        self.check_invariant()
        self.assertEqual(self.r.call("HLEN", "fs:{L:A}:held"), 2)
        self.assertEqual(fs.counters("L", "A"), [10, 8, 2, 0])
        # Nothing left: the next hold, made now, is due in the SKU's hold time at the soonest.
        self.assertEqual(fs.expire_reply("L", "A", 3), [2, 1000])
        self.assertEqual(fs.expire_reply("L", "A", 3), [0, 1000])
        self.assertEqual(fs.counters("L", "A"), [10, 10, 0, 0])
        self.assertEqual(fs.hash("fs:{L:A}:users"), {})
        self.assertEqual(self.r.call("ZCARD", "fs:{L:A}:holds"), 0)
        self.assertEqual(self.r.call("EXISTS", "fs:{L:A}:held"), 0)
        for o, u in zip(out, ["c", "x", "g", "s1", "s2", "s3", "s4"]):
            self.assertEqual(fs.hash("fs:{L:A}:r:" + o[1]), dict(
                user=u, qty=str(o[2]), status="expired", created_ms=str(o[4]),
                expires_ms=str(o[3])))
            self.assertEqual(fs.get_res("L", "A", o[1], u), ["ok", o[2], "expired", o[4], o[3],
                                                            "", 0, ""])
            self.assertTrue(7 * 86400 - 60 < self.r.call("TTL", "fs:{L:A}:r:" + o[1]) <= 7 * 86400)
        self.assertEqual(fs.confirm("L", "A", out[3][1], "s1")[0], "reservation_expired")
        # The sweeper of a SKU that does not exist (or has nothing due) is a no-op; with no
        # SKU there is no hold time to wait (-1).
        self.assertEqual(fs.expire_reply("L", "nosku"), [0, -1])

    def test_expire_wait_follows_hold_time(self):
        """fs_expire's wait is at most the SKU's hold time as it is now, and fs_sku_list gives
        that hold time, so that a sweeper learns when a shorter one makes holds due sooner."""
        self.open_launch("L", [("A", 10, 3, 1)], hold_seconds=100)
        fs = self.fs
        self.assertEqual(fs.sku_list(), ["L", "A", "100000"])
        self.assertEqual(fs.expire_reply("L", "A"), [0, 100000])
        out = fs.reserve("L", "A", [("u", 1)])
        self.assertEqual(out[0][0], "ok")
        n, wait = fs.expire_reply("L", "A")
        self.assertTrue(n == 0 and 99000 < wait <= 100000, (n, wait))
        self.assertEqual(fs.put("L", [("A", -1, 3, 1)], hold_seconds=10)[0], "ok")
        self.assertEqual(fs.sku_list(), ["L", "A", "10000"])
        # The hold made under 100 s is due later than one made now would be.
        self.assertEqual(fs.expire_reply("L", "A"), [0, 10000])

    def test_sku_list_version(self):
        """fs_sku_list answers only its version when the caller has that version; every
        fs_launch_put answered ok raises it; one answered use_restock (nothing changed) does not."""
        fs = self.fs
        self.assertEqual(fs.sku_list_reply(), ["0"])
        self.open_launch("L", [("A", 10, 3, 1)], hold_seconds=100)
        v1 = fs.sku_list_reply()
        self.assertEqual(v1[1:], ["L", "A", "100000"])
        self.assertNotEqual(v1[0], "0")
        self.assertEqual(fs.sku_list_reply(v1[0]), [v1[0]])
        self.assertEqual(fs.sku_list_reply("stale")[1:], ["L", "A", "100000"])
        fs.state("L", "pause")  # not in the list: the version stays
        self.assertEqual(fs.sku_list_reply(v1[0]), [v1[0]])
        self.assertEqual(fs.put("L", [("A", 11, 3, 1)])[0], "use_restock")  # nothing changed
        self.assertEqual(fs.sku_list_reply(v1[0]), [v1[0]])
        self.assertEqual(fs.put("L", [("B", 5, 1, 1)], hold_seconds=100)[0], "ok")
        v2 = fs.sku_list_reply(v1[0])
        self.assertNotEqual(v2[0], v1[0])
        self.assertEqual(v2[1:], ["L", "A", "100000", "L", "B", "100000"])


class TestGroupedHolds(Base):
    """fs_reserve_group: one member of holds and one field of held per call (docs/redis.md,
    "Held reservations"); every function that reads a hold reads both layouts."""

    def group_value(self, launch, sku, group):
        return self.r.call("HGET", "fs:{%s:%s}:held" % (launch, sku), group)

    def test_batch_makes_one_group(self):
        self.open_launch("L", [("A", 3, 1, 1)])
        fs = self.fs
        g = new_rid()
        out = fs.reserve("L", "A", [("u1", 1), ("u1", 1), ("u|2", 1), ("u3", 1), ("u4", 1)], group=g)
        self.assertEqual([o[0] for o in out],
                         ["ok", "limit_exceeded", "ok", "ok", "sold_out"])
        self.assertEqual([o[1] for o in out[:4:2]] + [out[3][1]], [g + ".1", g + ".3", g + ".4"])
        created, expires = out[0][4], out[0][3]
        self.assertEqual(fs.hash("fs:{L:A}:held"),
                         {g: "#%d|%d\n1 u1\n3 u|2\n4 u3" % (created, expires)})
        self.assertEqual(self.r.call("ZRANGE", "fs:{L:A}:holds", 0, -1, "WITHSCORES"),
                         [g, str(expires)])
        self.assertEqual(fs.counters("L", "A"), [3, 0, 3, 0])
        self.assertEqual(fs.hash("fs:{L:A}:users"), {"u1": "1", "u|2": "1", "u3": "1"})
        self.check_invariant()

    def test_keys_start_in_their_large_encodings(self):
        """held, holds and users are created as hashtable / skiplist (docs/redis.md): in a listpack
        (up to 512 fields) every lookup scans. Nothing of the filler that does it stays."""
        self.open_launch("L", [("A", 10, 5, 1), ("B", 10, 5, 1)])
        fs = self.fs
        fs.reserve("L", "A", [("u1", 1), ("u2", 1)], group=new_rid())
        fs.reserve("L", "B", [("u1", 1)], plain=True)
        for sku in "AB":
            p = "fs:{L:%s}" % sku
            for suffix, enc in (("held", "hashtable"), ("users", "hashtable"), ("holds", "skiplist")):
                self.assertEqual(self.r.call("OBJECT", "ENCODING", p + ":" + suffix), enc, p + suffix)
            self.assertEqual(self.r.call("ZCARD", p + ":holds"), 1)
        self.assertEqual(fs.hash("fs:{L:A}:users"), {"u1": "1", "u2": "1"})
        self.assertEqual(len(fs.hash("fs:{L:A}:held")), 1)
        # A group id or user equal to the filler (no server sends one) keeps its hold and count.
        filler = "\0" + "-" * 76
        self.open_launch("F", [("A", 10, 5, 1)])
        fs.reserve("F", "A", [(filler, 1)], group=filler)
        self.assertEqual(fs.hash("fs:{F:A}:users"), {filler: "1"})
        self.assertEqual(list(fs.hash("fs:{F:A}:held")), [filler])
        # The rate-limit hashes too, when first written.
        fs.rate_limit("L", 1000, 10, 1000, 10)
        fs.reserve("L", "A", [("u3", 1, None, None, "10.0.0.1")], group=new_rid())
        for suffix, fields in (("rlu", ["u3"]), ("rla", ["10.0.0.1"])):
            self.assertEqual(self.r.call("OBJECT", "ENCODING", "fs:{L:A}:" + suffix), "hashtable")
            self.assertEqual(sorted(fs.hash("fs:{L:A}:" + suffix)), fields)
        self.check_invariant()

    def test_decides_as_plain_does(self):
        """The same batches through fs_reserve_plain and fs_reserve_group, on twin SKUs with both
        rate limits on: the same codes, figures, counters, users and TATs."""
        self.open_launch("L", [("A", 6, 2, 1), ("B", 6, 2, 1)])
        fs = self.fs
        fs.rate_limit("L", 2000, 3, 1000, 4)

        def req(user, addr):
            return (user, 1, None, None, addr)

        batches = [
            [req("u", "10.0.0.1")] * 4 + [req("v", "10.0.0.2"), req("w", "")],
            [req("x", "10.0.0.2"), req("y", "10.0.0.2"), req("z", "10.0.0.3"), req("v", "10.0.0.3")],
            # one address for the whole call (sent once): its burst of 4 refuses the fifth
            [req("p%d" % i, "10.0.0.9") for i in range(5)],
        ]
        fs.restock("L", "A", 10)
        fs.restock("L", "B", 10)
        for k, batch in enumerate(batches):
            a = fs.reserve("L", "A", batch, plain=True)
            b = fs.reserve("L", "B", batch, group=new_rid())
            if k == 2:
                self.assertEqual([o[0] for o in b], ["ok"] * 4 + ["rate_limited"])
            self.assertEqual([o[0] for o in a], [o[0] for o in b])
            if k == 0:
                self.assertEqual([o[6] for o in a], [o[6] for o in b])
        self.assertEqual(fs.counters("L", "A"), fs.counters("L", "B"))
        for suffix in ("users", "rlu", "rla"):
            ka, kb = fs.hash("fs:{L:A}:" + suffix), fs.hash("fs:{L:B}:" + suffix)
            self.assertEqual(sorted(ka), sorted(kb), suffix)
            if suffix == "users":
                self.assertEqual(ka, kb)
        self.check_invariant()

    def test_confirm_cancel_get_one_of_a_group(self):
        self.open_launch("L", [("A", 10, 2, 500)])
        fs = self.fs
        g = new_rid()
        out = fs.reserve("L", "A", [("a", 1), ("b", 1), ("c", 1), ("d", 1)], group=g)
        created, expires = out[0][4], out[0][3]
        a, b, c, d = (o[1] for o in out)
        self.assertEqual(fs.get_res("L", "A", b, "b"), ["ok", 1, "held", created, expires, "", 0, ""])
        self.assertEqual(fs.get_res("L", "A", b, "a")[0], "not_found")
        for bad in (g + ".5", g + ".0", g + ".02", g + ".1001", g, "x.1", g + ".1.1", "." + g):
            self.assertEqual(fs.get_res("L", "A", bad, "a")[0], "not_found", bad)
            self.assertEqual(fs.cancel("L", "A", bad, "a"), ["not_found"], bad)
            self.assertEqual(fs.confirm("L", "A", bad, "a")[0], "not_found", bad)
        conf = fs.confirm("L", "A", b, "b", order_id="o-b")
        self.assertEqual(conf[:3], ["confirmed", "o-b", 1])
        self.assertEqual(self.group_value("L", "A", g),
                         "#%d|%d\n1 a\n3 c\n4 d" % (created, expires))
        self.assertEqual(fs.confirm("L", "A", b, "b", order_id="o-x"), conf)
        self.assertEqual(fs.get_res("L", "A", b, "b")[2], "confirmed")
        self.assertEqual(fs.cancel("L", "A", d, "d"), ["cancelled"])
        self.assertEqual(fs.cancel("L", "A", d, "d"), ["cancelled"])
        self.assertEqual(self.group_value("L", "A", g), "#%d|%d\n1 a\n3 c" % (created, expires))
        self.assertEqual(fs.counters("L", "A"), [10, 7, 2, 1])
        self.assertEqual(fs.hash("fs:{L:A}:users"), {"a": "1", "b": "1", "c": "1"})
        self.check_invariant()
        self.assertEqual(fs.cancel("L", "A", a, "a"), ["cancelled"])
        self.assertEqual(fs.confirm("L", "A", c, "c")[0], "confirmed")
        # The last hold of a group takes the group out of held and holds.
        self.assertEqual(self.r.call("EXISTS", "fs:{L:A}:held", "fs:{L:A}:holds"), 0)
        self.assertEqual(fs.counters("L", "A"), [10, 8, 0, 2])
        self.assertEqual(fs.hash("fs:{L:A}:r:" + c)["status"], "confirmed")
        self.check_invariant()

    def test_expiry_of_groups_and_single_holds(self):
        self.open_launch("L", [("A", 20, 20, 1)], hold_seconds=1)
        fs = self.fs
        g1, g2 = new_rid(), new_rid()
        single = fs.reserve("L", "A", [("s", 1), ("t", 2)], plain=True)
        time.sleep(0.01)  # each call's holds expire a few ms after the call before's
        o1 = fs.reserve("L", "A", [("a", 1), ("b", 1), ("c", 1)], group=g1)
        time.sleep(0.01)
        o2 = fs.reserve("L", "A", [("d", 1), ("e", 1)], group=g2)
        self.assertEqual(fs.confirm("L", "A", o1[1][1], "b")[0], "confirmed")
        self.assertEqual(fs.counters("L", "A"), [20, 13, 6, 1])
        time.sleep(1.1)
        self.assertEqual(fs.get_res("L", "A", o1[0][1], "a")[2], "expired")
        self.assertEqual(fs.cancel("L", "A", o2[0][1], "d"), ["reservation_expired"])
        self.check_invariant()
        # Members in order of expiry while fewer than max holds are taken: a group whole.
        self.assertEqual(fs.expire("L", "A", 1), 1)  # s or t (one hold of 2 units)
        self.assertEqual(fs.expire("L", "A", 1), 1)  # the other
        self.assertEqual(fs.expire("L", "A", 1), 2)  # g1's two holds left
        self.check_invariant()
        self.assertEqual(fs.expire("L", "A", 1000), 1)  # g2's e
        self.assertEqual(fs.expire("L", "A", 1000), 0)
        self.assertEqual(fs.counters("L", "A"), [20, 19, 0, 1])
        self.assertEqual(self.r.call("EXISTS", "fs:{L:A}:held", "fs:{L:A}:holds"), 0)
        self.assertEqual(fs.hash("fs:{L:A}:users"), {"b": "1"})
        for o, u in ((o1[0], "a"), (o1[2], "c"), (o2[0], "d"), (o2[1], "e"), (single[0], "s")):
            self.assertEqual(fs.hash("fs:{L:A}:r:" + o[1]), dict(
                user=u, qty=str(o[2]), status="expired", created_ms=str(o[4]),
                expires_ms=str(o[3])))
        self.check_invariant()

    def test_bad_calls_change_nothing(self):
        self.open_launch("L", [("A", 10, 2, 1)])
        fs, p = self.fs, "fs:{L:A}"
        keys = [p + ":sku", p + ":holds", p + ":users", p + ":held", p + ":rlu", p + ":rla"]
        g = new_rid()
        fs.reserve("L", "A", [("a", 1)], group=g)
        for args, msg in (([1, "", "", "u"], "bad group id"),
                          ([1, "a.b", "", "u"], "bad group id"),
                          ([1, "a.", "*", "u", ""], "bad group id"),
                          ([1, "x", "", "u\n1"], "newline in user"),
                          ([2, "x", "*", "v", "", "u\n1", ""], "newline in user"),
                          ([1, "x", "", ""], "empty user"),
                          ([2, "x", "", "u"], "wrong number of arguments"),
                          ([1, "x", "*", "u"], "wrong number of arguments"),
                          ([1, "x", "u"], "wrong number of arguments"),
                          ([1, g, "", "u"], "group id already held")):
            with self.assertRaisesRegex(RedisError, "^ERR flashsale fs_reserve_group: %s$" % msg):
                self.r.call("FCALL", "fs_reserve_group", 6, *keys, *args)
        self.assertEqual(fs.counters("L", "A"), [10, 9, 1, 0])
        self.assertEqual(fs.hash("fs:{L:A}:users"), {"a": "1"})
        self.check_invariant()


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

    def test_units_back_are_announced_on_fs_stock(self):
        """cancel, expiry (sweeper, or confirm/cancel past expires_ms), restock and state changes
        PUBLISH "L:S" on fs:stock; taking units (reserve, confirm) and refusals publish nothing."""
        fs = self.fs
        self.open_launch("P-1", [("A", 5, 1, 1), ("b.2~x", 3, 3, 1)])
        self.open_launch("Q", [("A", 2, 2, 1)])
        sub = SERVER.client()
        self.addCleanup(sub.close)
        sub.sock.settimeout(5.0)
        self.assertEqual(sub.call("SUBSCRIBE", "fs:stock"), ["subscribe", "fs:stock", 1])
        self.assertEqual(self.r.call("PUBSUB", "NUMSUB", "fs:stock"), ["fs:stock", 1])
        seq = [0]

        def published(action):
            """Runs action(); returns (its result, the fs:stock messages it caused). A marker
            published afterwards on the same channel ends the wait (messages keep their order)."""
            result = action()
            seq[0] += 1
            marker = "marker-%d" % seq[0]
            self.assertEqual(self.r.call("PUBLISH", "fs:stock", marker), 1)
            got = []
            while True:
                m = sub._read()  # a pushed message; bounded by the socket timeout
                self.assertEqual(m[:2], ["message", "fs:stock"], m)
                if m[2] == marker:
                    return result, got
                got.append(m[2])

        res, msgs = published(lambda: fs.reserve("P-1", "A", [("u1", 1), ("u2", 1), ("u9", 2)]))
        self.assertEqual(([o[0] for o in res], msgs), (["ok", "ok", "limit_exceeded"], []))
        u1, u2 = res[0][1], res[1][1]
        res, msgs = published(lambda: fs.confirm("P-1", "A", u1, "u1"))
        self.assertEqual((res[0], msgs), ("confirmed", []))
        res, msgs = published(lambda: fs.get_res("P-1", "A", u2, "u2"))
        self.assertEqual((res[0], msgs), ("ok", []))
        res, msgs = published(lambda: fs.cancel("P-1", "A", u2, "u2"))
        self.assertEqual((res, msgs), (["cancelled"], ["P-1:A"]))
        res, msgs = published(lambda: fs.restock("P-1", "b.2~x", 2))
        self.assertEqual((res[0], msgs), ("ok", ["P-1:b.2~x"]))
        res, msgs = published(lambda: fs.restock("P-1", "b.2~x", -10))
        self.assertEqual((res[0], msgs), ("insufficient_available", []))
        for action in ("pause", "open", "open"):
            res, msgs = published(lambda: fs.state("P-1", action))
            self.assertEqual((res[0], msgs), ("ok", ["P-1:A", "P-1:b.2~x"]), action)
        res, msgs = published(lambda: fs.state("Q", "close"))
        self.assertEqual((res[0], msgs), ("ok", ["Q:A"]))
        # Expiry: holds of one second, then the three ways a hold expires.
        fs.put("P-1", [("A", 5, 1, 1)], hold_seconds=1)
        out = fs.reserve("P-1", "A", [("u3", 1), ("u4", 1), ("u5", 1)])
        self.assertEqual([o[0] for o in out], ["ok"] * 3)
        res, msgs = published(lambda: fs.expire("P-1", "A"))
        self.assertEqual((res, msgs), (0, []))
        while fs.now_ms() < out[0][3]:
            time.sleep(0.05)
        res, msgs = published(lambda: fs.confirm("P-1", "A", out[0][1], "u3"))
        self.assertEqual((res[0], msgs), ("reservation_expired", ["P-1:A"]))
        res, msgs = published(lambda: fs.cancel("P-1", "A", out[1][1], "u4"))
        self.assertEqual((res, msgs), (["reservation_expired"], ["P-1:A"]))
        res, msgs = published(lambda: fs.expire("P-1", "A"))
        self.assertEqual(res, 1)
        self.assertTrue(msgs and set(msgs) == {"P-1:A"}, msgs)
        res, msgs = published(lambda: fs.expire("P-1", "A"))
        self.assertEqual((res, msgs), (0, []))
        self.assertEqual(fs.counters("P-1", "A"), [5, 4, 0, 1])
        res, msgs = published(lambda: fs.state("P-1", "close"))
        self.assertEqual((res[0], msgs), ("ok", ["P-1:A", "P-1:b.2~x"]))
        res, msgs = published(lambda: fs.state("P-1", "open"))
        self.assertEqual((res[0], msgs), ("invalid_transition", []))

    def test_random_traffic_stream_matches_sold(self):
        fs = self.fs
        rnd = random.Random(7)
        self.open_launch("L", [("A", 40, 4, 100), ("B", 15, 2, 200)])
        held = []
        for _ in range(60):
            sku = rnd.choice("AB")
            reqs = [("u%d" % rnd.randrange(12), rnd.randint(1, 3),
                     rnd.choice([None, "k%d" % rnd.randrange(5)])) for _ in range(rnd.randint(1, 8))]
            grouped = all(q[1] == 1 and not q[2] for q in reqs) and rnd.random() < 0.7
            batch = [q if q[2] else q[:2] for q in reqs]
            out = fs.reserve("L", sku, batch, group=new_rid() if grouped else None)
            for q, o in zip(reqs, out):
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
        fs = self.fs
        rid = fs.reserve("L", "A", [("u", 2)])[0][1]
        fs.confirm("L", "A", rid, "u")
        h = fs.reserve("L", "A", [("u", 1)])[0]
        hr, rec = h[1], held_value(1, h[4], h[3], "u")
        self.assertEqual(fs.hash("fs:{L:A}:held"), {hr: rec})
        self.check_invariant()
        p = "fs:{L:A}"
        for corrupt, undo in [
            (("HSET", p + ":sku", "sold", "3"), ("HSET", p + ":sku", "sold", "2")),
            (("HSET", p + ":users", "u", "2"), ("HSET", p + ":users", "u", "3")),
            # held hash ids must be exactly the members of holds, both ways round ...
            (("HSET", p + ":held", "ghost", "0|1|1|u"), ("HDEL", p + ":held", "ghost")),
            (("HDEL", p + ":held", hr), ("HSET", p + ":held", hr, rec)),
            (("ZADD", p + ":holds", h[3], "ghost"), ("ZREM", p + ":holds", "ghost")),
            (("ZREM", p + ":holds", hr), ("ZADD", p + ":holds", h[3], hr)),
            # ... and agree with it and with the counters.
            (("HSET", p + ":held", hr, held_value(1, h[4], h[3] + 1, "u")),
             ("HSET", p + ":held", hr, rec)),
            (("HSET", p + ":held", hr, held_value(2, h[4], h[3], "u")),
             ("HSET", p + ":held", hr, rec)),
            (("HSET", p + ":held", hr, held_value(1, h[4], h[3], "v")),
             ("HSET", p + ":held", hr, rec)),
            (("HSET", p + ":held", hr, "1|x|%d|u" % h[3]), ("HSET", p + ":held", hr, rec)),
            # A held reservation has no hash of its own; an ended one has, with a final status.
            (("HSET", p + ":r:" + hr, "user", "u", "qty", "1", "status", "held", "created_ms",
              str(h[4]), "expires_ms", str(h[3])), ("DEL", p + ":r:" + hr)),
            (("HSET", p + ":r:" + rid, "status", "held"), ("HSET", p + ":r:" + rid, "status",
                                                            "confirmed")),
            (("PERSIST", p + ":r:" + rid), ("EXPIRE", p + ":r:" + rid, 7 * 86400)),
            (("HSET", p + ":r:zz", "user", "u", "qty", "1", "status", "confirmed", "created_ms",
              "1", "expires_ms", "2", "order_id", "o"), ("DEL", p + ":r:zz")),
            (("XADD", p + ":orders", "*", "order_id", "o", "reservation_id", "zz",
              "launch", "L", "sku", "A", "user_id", "u", "qty", "0"), None),
        ]:
            self.r.call(*corrupt)
            with self.assertRaises(AssertionError, msg=repr(corrupt)):
                self.check_invariant()
            if undo:
                self.r.call(*undo)
                self.check_invariant()
        self.r.call("DEL", p + ":orders", p + ":r:" + rid, p + ":held", p + ":holds", p + ":users")
        self.r.call("HSET", p + ":sku", "sold", "0", "held", "0", "available", "5", "total", "5")

    def test_corrupt_state_raises_without_writing(self):
        self.open_launch("L", [("A", 5, 5, 1)])
        fs = self.fs
        o = fs.reserve("L", "A", [("u", 1)])[0]
        rid, rec = o[1], held_value(1, o[4], o[3], "u")
        p = "fs:{L:A}"

        def unchanged(counters):
            self.assertEqual(self.r.call("XLEN", p + ":orders"), 0)
            self.assertEqual(fs.hash(p + ":held"), {rid: rec})
            self.assertEqual(self.r.call("EXISTS", p + ":r:" + rid), 0)
            self.assertEqual(fs.counters("L", "A"), counters)
            self.assertEqual(fs.hash(p + ":users"), {"u": "1"})

        self.r.call("HSET", p + ":sku", "available", "7")  # breaks available+held+sold==total
        with self.assertRaisesRegex(RedisError, "^ERR flashsale fs_reserve_plain: corrupt data"):
            fs.reserve("L", "A", [("v", 1)])
        with self.assertRaisesRegex(RedisError, "^ERR flashsale fs_reserve: corrupt data"):
            fs.reserve("L", "A", [("v", 1)], plain=False)
        with self.assertRaisesRegex(RedisError, "^ERR flashsale fs_cancel: corrupt data"):
            fs.cancel("L", "A", rid, "u")
        with self.assertRaisesRegex(RedisError, "^ERR flashsale fs_confirm: corrupt data"):
            fs.confirm("L", "A", rid, "u")
        with self.assertRaisesRegex(RedisError, "^ERR flashsale fs_launch_get: corrupt data"):
            fs.get("L")
        unchanged([5, 7, 1, 0])
        self.assertEqual(self.r.call("ZCARD", p + ":holds"), 1)
        self.r.call("HSET", p + ":sku", "available", "4")
        # A hold missing from holds is corrupt: confirm refuses rather than selling it, cancel
        # rather than returning units that were never counted.
        self.r.call("ZREM", p + ":holds", rid)
        with self.assertRaisesRegex(RedisError, "^ERR flashsale fs_confirm: corrupt data"):
            fs.confirm("L", "A", rid, "u")
        with self.assertRaisesRegex(RedisError, "^ERR flashsale fs_cancel: corrupt data"):
            fs.cancel("L", "A", rid, "u")
        unchanged([5, 4, 1, 0])
        # The sweeper refuses holds that held does not cover, before changing anything.
        self.r.call("ZADD", p + ":holds", 0, rid)
        self.r.call("HSET", p + ":sku", "available", "5", "held", "0")
        with self.assertRaisesRegex(RedisError, "^ERR flashsale fs_expire: corrupt data"):
            fs.expire("L", "A")
        unchanged([5, 5, 0, 0])
        self.assertEqual(self.r.call("ZSCORE", p + ":holds", rid), "0")
        self.r.call("HSET", p + ":sku", "available", "4", "held", "1")
        # ... and a member of holds with no record in the held hash.
        self.r.call("HDEL", p + ":held", rid)
        with self.assertRaisesRegex(RedisError, "^ERR flashsale fs_expire: corrupt data: "
                                                "member of holds is not a held"):
            fs.expire("L", "A")
        self.assertEqual(self.r.call("ZSCORE", p + ":holds", rid), "0")
        self.assertEqual(fs.counters("L", "A"), [5, 4, 1, 0])
        self.assertEqual(self.r.call("EXISTS", p + ":held", p + ":r:" + rid), 0)
        # A malformed held record is refused by everything that reads it.
        self.r.call("HSET", p + ":held", rid, "1|x|2|u")
        for what, f in (("fs_confirm", lambda: fs.confirm("L", "A", rid, "u")),
                        ("fs_cancel", lambda: fs.cancel("L", "A", rid, "u")),
                        ("fs_get_reservation", lambda: fs.get_res("L", "A", rid, "u")),
                        ("fs_expire", lambda: fs.expire("L", "A"))):
            with self.assertRaisesRegex(RedisError,
                                        "^ERR flashsale %s: corrupt data: held reservation" % what):
                f()
        self.assertEqual(fs.hash(p + ":held"), {rid: "1|x|2|u"})
        self.assertEqual(fs.counters("L", "A"), [5, 4, 1, 0])
        # A per-reservation hash that says "held" is not the layout any more: corrupt.
        self.r.call("HSET", p + ":r:old", "user", "u", "qty", "1", "status", "held",
                    "created_ms", "1", "expires_ms", "2")
        with self.assertRaisesRegex(RedisError,
                                    "^ERR flashsale fs_get_reservation: corrupt data: reservation"):
            fs.get_res("L", "A", "old", "u")
        with self.assertRaisesRegex(RedisError, "^ERR flashsale fs_cancel: corrupt data"):
            fs.cancel("L", "A", "old", "u")
        self.r.call("DEL", p + ":r:old")
        # Put it right for the invariant check of tearDown.
        self.r.call("HSET", p + ":held", rid, rec)
        self.r.call("ZADD", p + ":holds", o[3], rid)
        self.check_invariant()

    def test_arity_errors(self):
        self.open_launch("L", [("A", 5, 5, 1)])
        p = "fs:{L:A}"
        conf = [p + ":sku", p + ":holds", p + ":users", p + ":held", p + ":r:x", p + ":orders"]
        canc = conf[:5]
        exp = conf[:4]
        calls = [
            # Each function once with one key too few or the old layout, once with the right
            # keys and one argument too few.
            ("fs_confirm", conf[:3] + conf[4:], ["x", "u", "o", ""]),  # old layout, no held
            ("fs_confirm", conf, ["x", "u", "o"]),
            ("fs_confirm", conf + [p + ":x"], ["x", "u", "o", ""]),
            ("fs_cancel", conf[:3] + [p + ":r:x"], ["x", "u"]),  # old layout, no held
            ("fs_cancel", canc, ["x"]),
            ("fs_get_reservation", [p + ":r:x"], ["u"]),  # old layout
            ("fs_get_reservation", [p + ":held", p + ":r:x"], ["u"]),
            ("fs_expire", exp[:3], [1]),  # old layout, no held
            ("fs_expire", exp, []),
            ("fs_restock", [p + ":sku"], [1, 2]),
            ("fs_launch_state", ["fs:launch:{L}", "fs:launch:{L}:skus"], []),
            ("fs_launch_get", ["fs:launch:{L}", "fs:launch:{L}:skus"], ["x"]),
            ("fs_sku_list", ["fs:launches"], ["x", "y"]),
            ("fs_launch_put", ["fs:launch:{L}", "fs:launch:{L}:skus", "fs:launches"], ["L"]),
        ]
        for name, keys, args in calls:
            with self.assertRaisesRegex(RedisError,
                                        "^ERR flashsale %s: wrong number of arguments$" % name):
                self.r.call("FCALL", name, len(keys), *keys, *args)
        with self.assertRaisesRegex(RedisError, "^ERR flashsale fs_expire: max must be 1..1000"):
            self.fs.expire("L", "A", 0)
        with self.assertRaisesRegex(RedisError, "^ERR flashsale fs_expire: max must be 1..1000"):
            self.fs.expire("L", "A", 1001)
        # Right count, wrong key: each key is checked against the SKU and the rid.
        bad = [
            ("fs_confirm", conf, ["y", "u", "o", ""], "bad key for reservation"),
            ("fs_confirm", conf[:3] + ["fs:{L:B}:held"] + conf[4:], ["x", "u", "o", ""],
             "bad key for held"),
            ("fs_confirm", conf[:4] + [p + ":orders", p + ":r:x"], ["x", "u", "o", ""],
             "bad key for reservation"),
            ("fs_confirm", conf[:5] + [p + ":held"], ["x", "u", "o", ""], "bad key for orders"),
            ("fs_confirm", conf, ["x", "u", "", ""], "empty order_id"),
            ("fs_cancel", canc, ["y", "u"], "bad key for reservation"),
            ("fs_cancel", canc[:3] + [p + ":r:x", p + ":held"], ["x", "u"], "bad key for held"),
            ("fs_cancel", [canc[0], canc[2], canc[1]] + canc[3:], ["x", "u"], "bad key for holds"),
            ("fs_expire", exp[:3] + [p + ":holds"], [1], "bad key for held"),
            ("fs_expire", exp[:3] + ["fs:{L:B}:held"], [1], "bad key for held"),
            ("fs_expire", [exp[0], exp[1], exp[3], exp[3]], [1], "bad key for users"),
        ]
        for name, keys, args, msg in bad:
            with self.assertRaisesRegex(RedisError, "^ERR flashsale %s: %s$" % (name, msg)):
                self.r.call("FCALL", name, len(keys), *keys, *args)

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


class TestWaitingRoom(Base):
    """fs_launch_waiting_room and fs_wr_pass: places in arrival order, admit_per_sec turns."""

    def wr(self, launch, milli):
        return self.r.call("FCALL", "fs_launch_waiting_room", 1, "fs:launch:{%s}" % launch, milli)

    def pass_(self, launch, sku, user, qty=1, pos=0, turn=0):
        keys = ["fs:launch:{%s}" % launch, "fs:wr:{%s}" % launch, "fs:wr:{%s}:users" % launch,
                self.fs.p(launch, sku) + ":sku"]
        return self.r.call("FCALL", "fs_wr_pass", 4, *keys, user, qty, pos, turn)

    def test_setting(self):
        self.open_launch("L")
        self.assertEqual(self.wr("L", -1), ["ok", 0])
        self.assertEqual(self.pass_("L", "A", "u")[0], "off")
        self.assertEqual(self.wr("L", 5000), ["ok", 5000])
        self.assertEqual(self.wr("L", -1), ["ok", 5000])
        self.assertEqual(self.fs.hash("fs:launch:{L}")["wr_admit_milli"], "5000")
        self.assertEqual(self.wr("nope", 1000), ["not_found"])
        self.assertEqual(self.pass_("nope", "A", "u")[0], "off")
        with self.assertRaisesRegex(RedisError, "must be -1"):
            self.wr("L", -2)
        self.assertEqual(len(parse_view(self.fs.get("L"))["skus"]), 1, "fs_launch_get unchanged")

    def test_places_and_turns(self):
        self.open_launch("L", [("A", 100, 5, 1)])
        self.wr("L", 5000)  # 5 per second: one second's worth at once, then one every 200 ms
        out = [self.pass_("L", "A", "u%d" % i) for i in range(12)]
        now = out[-1][5]
        self.assertEqual([o[0] for o in out], ["go"] * 5 + ["wait"] * 7)
        self.assertEqual([o[2] for o in out], list(range(1, 13)), "positions in call order")
        self.assertEqual([o[1] for o in out], [5000] * 12)
        turns = [o[3] for o in out]
        for a, b in zip(turns[5:], turns[6:]):
            self.assertIn(b - a, (199, 200, 201))
        self.assertTrue(now < turns[5] <= now + 210, (now, turns))
        self.assertEqual([o[4] - o[3] for o in out], [300000] * 12, "exp = turn + 300 s")
        # the same shopper keeps their place; a ticket's place is taken as given
        self.assertEqual(self.pass_("L", "A", "u7")[:5], out[7][:5])
        self.assertEqual(self.pass_("L", "A", "x", 1, 9, now - 1)[:4], ["go", 5000, 9, now - 1])
        self.assertEqual(self.pass_("L", "A", "x", 1, 9, now + 5000)[0], "wait")
        self.assertEqual(self.r.call("HGET", "fs:wr:{L}", "n"), "12", "tickets take no new place")
        ttl = self.r.call("PTTL", "fs:wr:{L}:users")
        self.assertTrue(300000 < ttl <= 302000, ttl)
        self.assertTrue(0 < self.r.call("PTTL", "fs:wr:{L}") <= 302000)
        # a place that lapsed is replaced by a new one
        self.r.call("HSET", "fs:wr:{L}:users", "old", "3|%d" % (now - 300001))
        self.assertEqual(self.pass_("L", "A", "old")[2], 13)

    def test_sold_out_closes_the_room(self):
        self.open_launch("L", [("A", 2, 2, 1), ("B", 5, 5, 1)])
        self.wr("L", 1000)
        out = [self.pass_("L", "A", "u%d" % i) for i in range(3)]
        self.assertEqual([o[0] for o in out], ["go", "wait", "wait"])
        self.assertEqual(self.fs.reserve("L", "A", [("u0", 2)])[0][0], "ok")
        now = out[-1][5]
        self.assertEqual(self.pass_("L", "A", "u1")[:3], ["sold_out", 1000, 2], "a waiting place")
        self.assertEqual(self.pass_("L", "A", "t", 1, 7, now + 9000)[0], "sold_out", "a ticket")
        self.assertEqual(self.pass_("L", "A", "new")[:3], ["sold_out", 1000, 0], "no new place")
        self.assertEqual(self.r.call("HGET", "fs:wr:{L}", "n"), "3")
        # a shopper whose turn came goes on (fs_reserve answers, e.g. an idempotent replay)
        self.assertEqual(self.pass_("L", "A", "u0")[0], "go")
        # other SKUs of the launch are not closed; more than available asked is sold_out too
        self.assertEqual(self.pass_("L", "B", "u2")[0], "wait")
        self.assertEqual(self.pass_("L", "B", "z", 6)[0], "sold_out")

    def test_not_open_and_unknown_sku_go_on(self):
        self.assertEqual(self.fs.put("L", [("A", 5, 1, 1)])[0], "ok")
        self.wr("L", 1000)
        self.assertEqual(self.pass_("L", "A", "u")[0], "go", "fs_reserve answers launch_not_open")
        self.fs.state("L", "open")
        self.assertEqual(self.pass_("L", "Z", "u")[0], "go", "fs_reserve answers not_found")
        self.assertEqual(self.r.call("EXISTS", "fs:wr:{L}"), 0, "no place given for those")

    def test_bad_calls(self):
        self.open_launch("L")
        good = ["fs:launch:{L}", "fs:wr:{L}", "fs:wr:{L}:users", "fs:{L:A}:sku"]
        cases = [
            (good[:3], ["u", 1, 0, 0], "wrong number of arguments"),
            (good, ["u", 1, 0], "wrong number of arguments"),
            (["fs:launch:{L}", "fs:wr:{M}", good[2], good[3]], ["u", 1, 0, 0], "bad key for room"),
            (good[:3] + ["fs:{M:A}:sku"], ["u", 1, 0, 0], "bad key for SKU"),
            (good, ["", 1, 0, 0], "empty user"),
            (good, ["u", 0, 0, 0], "qty must be at least 1"),
            (good, ["u", 1, -1, 0], "position must not be negative"),
        ]
        for keys, args, msg in cases:
            with self.assertRaisesRegex(RedisError, "^ERR flashsale fs_wr_pass: " + msg + "$"):
                self.r.call("FCALL", "fs_wr_pass", len(keys), *keys, *args)


if __name__ == "__main__":
    unittest.main(verbosity=1)
