#!/usr/bin/env python3
"""Two servers on one Redis: no oversell, the counter invariant, reservations usable on either
server, expiry swept by both yet returned exactly once. The second server has grouped holds off
(as during an upgrade from version 3, docs/operators.md), so both hold layouts are made, and each
server ends holds of the other's layout."""

import os
import random
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import fsserver  # noqa: E402
from fsserver import sku, parse_rfc3339, wait_until  # noqa: E402


def race(servers, n, fn):
    """Run fn(i, handle) for i in range(n) on n threads, each with its own connection to
    servers[i % len(servers)], all released at once; returns the results."""
    results = [None] * n
    errors = []
    barrier = threading.Barrier(n)

    def run(i):
        h = servers[i % len(servers)].clone()
        try:
            barrier.wait(20)
            results[i] = fn(i, h)
        except Exception as e:   # reported below
            errors.append((i, repr(e)))
        finally:
            h.close_conn()
    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(40)
    if errors:
        raise AssertionError("%d shopper threads failed, e.g. %s" % (len(errors), errors[:3]))
    if any(t.is_alive() for t in threads):
        raise AssertionError("shopper threads still running")
    return results


class TwoServersTest(fsserver.ServerTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.srv2 = cls.another_server(env={"FLASHSALE_GROUPED_HOLDS": "0"})
        cls.servers = [cls.srv, cls.srv2]

    def test_no_oversell_across_servers(self):
        stock, shoppers = 40, 160
        lid = self.new_launch([sku("hot", stock, 1)])
        res = race(self.servers, shoppers, lambda i, h: (i, h.reserve(lid, "hot", "shopper-%d" % i)))
        won = [(i, r) for i, r in res if r.status == 201]
        lost = [(i, r) for i, r in res if r.status != 201]
        self.assertEqual(len(won), stock, [r.body for _, r in lost[:3]])
        for _, r in lost:
            self.assertEqual((r.status, r.body.get("error")), (409, "sold_out"), r.body)
        d = self.check_invariants(lid, ["hot"])["hot"]
        self.assertEqual((d["available"], d["held"], d["sold"]), (0, stock, 0))
        self.assertEqual(len({r.body["reservation_id"] for _, r in won}), stock)
        # Server 1's holds are grouped ("<group>.<i>"), server 2's single.
        layouts = {("." in r.body["reservation_id"], i % 2) for i, r in won}
        self.assertEqual(layouts, {(True, 0), (False, 1)})

        # Confirm or cancel each hold on the *other* server than the one that made it.
        random.seed(7)
        actions = {}
        for i, r in won:
            actions[i] = random.choice(["confirm", "cancel", "hold"])

        def finish(k, h):
            i, r = won[k]
            other = self.servers[(i + 1) % 2].clone()
            try:
                rid, user = r.body["reservation_id"], r.body["user_id"]
                if actions[i] == "confirm":
                    return other.confirm(rid, user).status
                if actions[i] == "cancel":
                    return other.cancel(rid, user).status
                return other.get_res(rid, user).status
            finally:
                other.close_conn()
        statuses = race(self.servers, len(won), finish)
        self.assertEqual(set(statuses), {200}, statuses)
        confirmed = sum(1 for a in actions.values() if a == "confirm")
        cancelled = sum(1 for a in actions.values() if a == "cancel")
        d = self.check_invariants(lid, ["hot"])["hot"]
        self.assertEqual((d["available"], d["sold"], d["held"]), (cancelled, confirmed, stock - confirmed - cancelled))
        self.assertEqual(len(d["orders"]), confirmed)

        # The cancelled units go to new shoppers, exactly that many.
        res = race(self.servers, 60, lambda i, h: h.reserve(lid, "hot", "late-%d" % i).status)
        self.assertEqual(res.count(201), cancelled)
        self.assertEqual(res.count(409), 60 - cancelled)
        d = self.check_invariants(lid, ["hot"])["hot"]
        self.assertEqual(d["available"], 0)

    def test_expiry_swept_by_both_returns_units_once(self):
        lid = self.new_launch([sku("x", 12, 2)], hold_seconds=1)
        res = race(self.servers, 12, lambda i, h: h.reserve(lid, "x", "u%d" % i))
        self.assertEqual([r.status for r in res].count(201), 12)
        exp = max(parse_rfc3339(r.body["expires_at"]) for r in res)
        wait_until(lambda: self.srv.sku_counters(lid)["x"]["available"] == 12,
                   exp - time.time() + 1.5, what="expired holds back")
        time.sleep(0.6)     # both sweepers have run again: still exactly 12
        d = self.check_invariants(lid, ["x"])["x"]
        self.assertEqual((d["total"], d["available"], d["held"], d["sold"]), (12, 12, 0, 0))
        for r in res:
            g = self.srv2.get_res(r.body["reservation_id"], r.body["user_id"])
            self.assertEqual(g.body.get("status"), "expired")

    def test_sold_out_on_one_server_clears_after_cancel_on_the_other(self):
        lid = self.new_launch([sku("one", 1, 1)])
        rid = self.srv.reserve(lid, "one", "u1").body["reservation_id"]
        for _ in range(3):
            self.assertEqual(self.srv2.reserve(lid, "one", "u2").status, 409)
        self.assertEqual(self.srv.cancel(rid, "u1").status, 200)
        t0 = time.monotonic()

        def got_it():
            return self.srv2.reserve(lid, "one", "u2").status == 201
        wait_until(got_it, 1.5, interval=0.05, what="server 2 to sell the unit cancelled on server 1")
        self.assertLess(time.monotonic() - t0, 1.5)
        self.check_invariants(lid, ["one"])

    def test_idempotency_across_servers(self):
        lid = self.new_launch([sku("i", 5, 5)])
        a = self.srv.reserve(lid, "i", "u1", 2, idem="cross")
        b = self.srv2.reserve(lid, "i", "u1", 2, idem="cross")
        self.assertEqual((a.status, b.status), (201, 201))
        self.assertEqual(a.body["reservation_id"], b.body["reservation_id"])
        self.assertEqual(b.headers.get("idempotent-replayed"), "true")
        self.assertEqual(self.srv2.sku_counters(lid)["i"]["available"], 3)

    def test_admin_changes_seen_by_both(self):
        lid = self.new_launch([sku("s", 3, 3)], open_it=False)
        self.assertEqual(self.srv2.open(lid).status, 200)
        self.assertEqual(self.srv.reserve(lid, "s", "u1").status, 201)
        self.assertEqual(self.srv.pause(lid).status, 200)
        self.assertEqual(self.srv2.reserve(lid, "s", "u2").status, 409)
        self.assertEqual(self.srv2.restock(lid, "s", 2).status, 200)
        self.assertEqual(self.srv.open(lid).status, 200)
        self.assertEqual(self.srv2.reserve(lid, "s", "u2", 3).status, 201)
        c = self.srv.sku_counters(lid)["s"]
        self.assertEqual((c["total"], c["available"], c["held"]), (5, 1, 4))
        self.check_invariants(lid, ["s"])


if __name__ == "__main__":
    fsserver.main(timeout=110)
