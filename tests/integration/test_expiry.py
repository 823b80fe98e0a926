#!/usr/bin/env python3
"""Holds that are not confirmed within hold_seconds return to available within 1 s of expiring;
an expired hold can never be confirmed, even before the sweeper reaches it."""

import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import fsredis  # noqa: E402
import fsserver  # noqa: E402
import checks  # noqa: E402
from fsserver import sku, parse_rfc3339, wait_until  # noqa: E402

# The spec allows 1 s after expiry; allow a little for our own polling and HTTP round trips.
SWEEP_BOUND = 1.0
SLACK = 0.5


class ExpiryTest(fsserver.ServerTestCase):

    def test_unconfirmed_hold_returns_within_1s(self):
        lid = self.new_launch([sku("a", 3, 3)], hold_seconds=1)
        r1 = self.srv.reserve(lid, "a", "u1", 2)
        r2 = self.srv.reserve(lid, "a", "u2", 1)
        self.assertEqual((r1.status, r2.status), (201, 201))
        exp = max(parse_rfc3339(r1.body["expires_at"]), parse_rfc3339(r2.body["expires_at"]))
        self.assertAlmostEqual(exp - parse_rfc3339(r1.body["created_at"]), 1.0, delta=0.5)
        c = self.srv.sku_counters(lid)["a"]
        self.assertEqual((c["available"], c["held"]), (0, 3))
        # Still held shortly before expiry.
        if time.time() < exp - 0.3:
            self.assertEqual(self.srv.sku_counters(lid)["a"]["held"], 3)

        def back():
            c = self.srv.sku_counters(lid)["a"]
            return c if c["available"] == 3 else None
        c = wait_until(back, exp - time.time() + SWEEP_BOUND + SLACK, interval=0.05,
                       what="expired holds to return to available")
        self.assertEqual((c["available"], c["held"], c["sold"], c["total"]), (3, 0, 0, 3))
        self.assertLessEqual(time.time(), exp + SWEEP_BOUND + SLACK)
        for res, user in ((r1, "u1"), (r2, "u2")):
            rid = res.body["reservation_id"]
            g = self.srv.get_res(rid, user)
            self.assertEqual((g.status, g.body.get("status")), (200, "expired"), g.body)
            self.assertError(self.srv.confirm(rid, user), 409, "reservation_expired")
            # cancel of an expired hold changes nothing
            cc = self.srv.cancel(rid, user)
            self.assertIn(cc.status, (200, 409), cc.body)
            if cc.status == 409:
                self.assertEqual(cc.body["error"], "reservation_expired")
        d = self.check_invariants(lid, ["a"])["a"]
        self.assertEqual((d["available"], d["held"], d["sold"]), (3, 0, 0))
        self.assertEqual(d["holds"], {})
        self.assertEqual(d["orders"], [])
        # limit is free again; units can be reserved again
        self.assertEqual(self.srv.reserve(lid, "a", "u1", 3).status, 201)

    def test_sold_out_clears_when_holds_expire(self):
        lid = self.new_launch([sku("one", 1, 1)], hold_seconds=1)
        r = self.srv.reserve(lid, "one", "u1")
        self.assertEqual(r.status, 201, r.body)
        exp = parse_rfc3339(r.body["expires_at"])
        self.assertError(self.srv.reserve(lid, "one", "u2"), 409, "sold_out")

        def got_it():
            x = self.srv.reserve(lid, "one", "u2")
            self.assertIn(x.status, (201, 409), x.body)
            return x.status == 201
        wait_until(got_it, exp - time.time() + SWEEP_BOUND + SLACK, interval=0.1,
                   what="a shopper to get the expired unit")
        self.check_invariants(lid, ["one"])

    def test_confirmed_hold_is_not_expired(self):
        lid = self.new_launch([sku("a", 2, 2)], hold_seconds=1)
        r = self.srv.reserve(lid, "a", "u1", 1).body
        self.assertEqual(self.srv.confirm(r["reservation_id"], "u1").status, 200)
        time.sleep(parse_rfc3339(r["expires_at"]) - time.time() + SWEEP_BOUND + SLACK)
        c = self.srv.sku_counters(lid)["a"]
        self.assertEqual((c["available"], c["held"], c["sold"]), (1, 0, 1))
        g = self.srv.get_res(r["reservation_id"], "u1").body
        self.assertEqual(g["status"], "confirmed")
        self.check_invariants(lid, ["a"])


class ExpiryWithoutSweeperTest(fsserver.ServerTestCase):
    """The sweeper runs rarely here, so the confirm itself must notice the expiry by Redis's clock."""

    server_env = {"FLASHSALE_SWEEP_INTERVAL_MS": "600000"}

    def test_confirm_after_expiry_before_sweep(self):
        lid = self.new_launch([sku("a", 2, 2)], hold_seconds=1)
        r = self.srv.reserve(lid, "a", "u1", 2)
        self.assertEqual(r.status, 201, r.body)
        rid = r.body["reservation_id"]
        exp = parse_rfc3339(r.body["expires_at"])
        time.sleep(max(0, exp - time.time()) + 0.1)
        # Not swept (the sweeper is idle): counters still say held...
        c = self.srv.sku_counters(lid)["a"]
        self.assertEqual(c["held"], 2, "swept despite FLASHSALE_SWEEP_INTERVAL_MS=600000: %r" % c)
        # ...but GET already reads expired, and confirm refuses and returns the units.
        g = self.srv.get_res(rid, "u1")
        self.assertEqual((g.status, g.body.get("status")), (200, "expired"), g.body)
        self.assertError(self.srv.confirm(rid, "u1"), 409, "reservation_expired")
        c = self.srv.sku_counters(lid)["a"]
        self.assertEqual((c["available"], c["held"], c["sold"]), (2, 0, 0))
        self.assertError(self.srv.confirm(rid, "u1"), 409, "reservation_expired")
        self.assertEqual(checks.read_orders(self.r, lid, "a"), [])
        self.check_invariants(lid, ["a"])


class ManyHoldsExpireTogetherTest(fsserver.ServerTestCase):
    """One sweeper call expires at most 200 holds of a SKU; when more are due at once (the first
    seconds of a launch make thousands of holds that expire together), the sweeper goes on at once
    instead of waiting for its next tick. The tick is long here, so waiting would show."""

    server_env = {"FLASHSALE_SWEEP_INTERVAL_MS": "1500", "FLASHSALE_THREADS": "1"}

    def test_all_due_holds_return_after_one_tick(self):
        n = 900
        lid = self.new_launch([sku("a", n, 1)], hold_seconds=1)
        # All n holds in one fs_reserve call, so that they expire at the same millisecond.
        api = re.search(r"^#!lua name=flashsale_v(\d+)$",
                        open(fsredis.LIBRARY_PATH).readline()).group(1)
        p = "fs:{%s:a}" % lid
        args = [n]
        for i in range(n):
            args += ["rid-%d" % i, "u%d" % i, 1, 0, ""]
        out = self.r.call("FCALL", "fs_reserve_v" + api, 6, p + ":sku", p + ":holds",
                          p + ":users", p + ":held", p + ":rlu", p + ":rla", *args)
        self.assertEqual(out[0], "o" * n)
        time.sleep(max(0, out[2] / 1000.0 - time.time() - 0.2))
        self.assertEqual(self.srv.sku_counters(lid)["a"]["held"], n, "swept before expiry")
        # The first tick after expiry (within 1.5 s of it) finds all n due: it must return them
        # all, not 200.
        c = wait_until(lambda: (lambda c: c if c["held"] < n else None)(
            self.srv.sku_counters(lid)["a"]), 3.0, interval=0.02, what="the sweeper's next tick")
        if c["held"]:
            time.sleep(0.3)  # the calls after the first 200 take a few ms, the next tick 1.5 s
            c = self.srv.sku_counters(lid)["a"]
        self.assertEqual((c["available"], c["held"]), (n, 0), c)
        self.check_invariants(lid, ["a"])


class SweeperWaitsTest(fsserver.ServerTestCase):
    """The sweeper calls fs_expire for a SKU only once something of it can be due (fs_expire says
    when), not at every tick; a launch's shorter hold time makes it look again at once."""

    server_env = {"FLASHSALE_SWEEP_INTERVAL_MS": "50", "FLASHSALE_THREADS": "1"}

    def calls(self, command):
        info = self.r.call("INFO", "commandstats")
        m = re.search(r"^cmdstat_%s:calls=(\d+)," % command, info, re.M)
        return int(m.group(1)) if m else 0

    def fcalls(self):
        return self.calls("fcall")

    def settle(self):
        """Waits (at most 10 s) for a second with no more FCALLs than the SKU list's: the
        sweeper has found the SKUs and called each once (a slow machine may take longer)."""
        last, deadline = self.fcalls(), time.time() + 10
        while time.time() < deadline:
            time.sleep(1.1)
            now = self.fcalls()
            if now - last <= 2:
                return
            last = now

    def test_idle_skus_are_not_swept_at_every_tick(self):
        skus = ["s%d" % i for i in range(20)]
        lid = self.new_launch([sku(s, 10, 1) for s in skus], hold_seconds=3600)
        held = self.srv.reserve(lid, "s0", "u1")
        self.assertEqual(held.status, 201, held.body)
        self.settle()  # the SKU list, then one fs_expire per SKU
        before, lists = self.fcalls(), self.calls("lrange")
        time.sleep(2.0)
        # 40 ticks: 800 fs_expire calls at one per SKU and tick; now only the SKU list, once
        # a second, and that only says it has not changed (it reads no launch's SKUs).
        calls = self.fcalls() - before
        self.assertLessEqual(calls, 4, "FCALLs in 2 s with nothing due")
        self.assertEqual(self.calls("lrange") - lists, 0, "the SKU list read again unchanged")

        # A launch whose id sorts first moves every SKU down the sweeper's list; what it knows of
        # them must move along (else all 20 are swept again).
        before = self.fcalls()
        first = "A" + fsserver.unique()
        r = self.srv.admin_put_launch(first, [sku("n%d" % i, 10, 1) for i in range(3)],
                                      hold_seconds=3600)
        self.assertEqual(r.status, 200, r.body)
        time.sleep(2.0)
        calls = self.fcalls() - before
        # the PUT's own call(s), the SKU list twice, one fs_expire per new SKU
        self.assertLessEqual(calls, 10, "FCALLs in 2 s after a launch was added")

        # The launch's hold time falls to 1 s: a hold made now is due in 1 s, sooner than the
        # sweeper was told (3600 s); it must still be back within SWEEP_BOUND of expiring.
        r = self.srv.admin_put_launch(lid, [sku(s, 10, 1) for s in skus], hold_seconds=1)
        self.assertEqual(r.status, 200, r.body)
        short = self.srv.reserve(lid, "s1", "u2")
        self.assertEqual(short.status, 201, short.body)
        exp = parse_rfc3339(short.body["expires_at"])
        self.assertAlmostEqual(exp - parse_rfc3339(short.body["created_at"]), 1.0, delta=0.5)

        def back():
            c = self.srv.sku_counters(lid)["s1"]
            return c if c["available"] == 10 else None
        wait_until(back, exp - time.time() + SWEEP_BOUND + SLACK, interval=0.05,
                   what="the hold made under the shorter hold time to return")
        c = self.srv.sku_counters(lid)
        self.assertEqual((c["s0"]["held"], c["s1"]["held"]), (1, 0), c)
        self.check_invariants(lid, skus)


if __name__ == "__main__":
    fsserver.main(timeout=60)
