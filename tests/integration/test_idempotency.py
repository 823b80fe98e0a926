#!/usr/bin/env python3
"""Idempotency-Key on reservations: a repeat from the same shopper returns the first answer
(same reservation, same status code, Idempotent-Replayed: true) and takes no stock."""

import os
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import fsserver  # noqa: E402
from fsserver import sku  # noqa: E402


def replayed(resp):
    return resp.headers.get("idempotent-replayed", "").lower() == "true"


class IdempotencyTest(fsserver.ServerTestCase):

    def test_same_key_same_shopper_replays(self):
        lid = self.new_launch([sku("a", 5, 3)])
        first = self.srv.reserve(lid, "a", "u1", 2, idem="key-1")
        self.assertEqual(first.status, 201, first.body)
        self.assertFalse(replayed(first), first.headers)
        for _ in range(3):
            again = self.srv.reserve(lid, "a", "u1", 2, idem="key-1")
            self.assertEqual(again.status, 201, again.body)
            self.assertTrue(replayed(again), again.headers)
            self.assertEqual(again.body, first.body)
        c = self.srv.sku_counters(lid)["a"]
        self.assertEqual((c["available"], c["held"]), (3, 2))
        # a different key is a new attempt (and hits the limit: 2 + 2 > 3)
        self.assertError(self.srv.reserve(lid, "a", "u1", 2, idem="key-2"), 409, "limit_exceeded")
        self.assertEqual(self.srv.reserve(lid, "a", "u1", 1, idem="key-3").status, 201)
        c = self.srv.sku_counters(lid)["a"]
        self.assertEqual((c["available"], c["held"]), (2, 3))
        self.check_invariants(lid, ["a"])

    def test_same_key_other_shopper_is_independent(self):
        lid = self.new_launch([sku("a", 5, 2)])
        a = self.srv.reserve(lid, "a", "u1", 1, idem="shared-key")
        b = self.srv.reserve(lid, "a", "u2", 1, idem="shared-key")
        self.assertEqual((a.status, b.status), (201, 201))
        self.assertFalse(replayed(b))
        self.assertNotEqual(a.body["reservation_id"], b.body["reservation_id"])
        self.assertEqual(b.body["user_id"], "u2")
        c = self.srv.sku_counters(lid)["a"]
        self.assertEqual((c["available"], c["held"]), (3, 2))
        # user ids that could collide if key parts were joined naively
        x = self.srv.reserve(lid, "a", "u1:k", 1, idem="x")
        y = self.srv.reserve(lid, "a", "u1", 1, idem="k:x")
        self.assertEqual((x.status, y.status), (201, 201), (x.body, y.body))
        self.assertFalse(replayed(y))
        self.assertNotEqual(x.body["reservation_id"], y.body["reservation_id"])
        self.check_invariants(lid, ["a"])

    def test_replay_after_confirm_and_cancel_takes_no_stock(self):
        lid = self.new_launch([sku("a", 2, 2)])
        first = self.srv.reserve(lid, "a", "u1", 1, idem="k")
        rid = first.body["reservation_id"]
        self.assertEqual(self.srv.confirm(rid, "u1").status, 200)
        again = self.srv.reserve(lid, "a", "u1", 1, idem="k")
        self.assertEqual((again.status, again.body["reservation_id"]), (201, rid))
        self.assertTrue(replayed(again))
        second = self.srv.reserve(lid, "a", "u2", 1, idem="k2")
        self.assertEqual(self.srv.cancel(second.body["reservation_id"], "u2").status, 200)
        again2 = self.srv.reserve(lid, "a", "u2", 1, idem="k2")
        self.assertEqual((again2.status, again2.body["reservation_id"]), (201, second.body["reservation_id"]))
        self.assertTrue(replayed(again2))
        c = self.srv.sku_counters(lid)["a"]
        self.assertEqual((c["available"], c["held"], c["sold"]), (1, 0, 1))
        self.check_invariants(lid, ["a"])

    def test_refusals_are_replayed_but_not_launch_not_open(self):
        lid = self.new_launch([sku("a", 1, 1)], open_it=False)
        # launch_not_open is not stored: after opening, the same key is a fresh attempt
        self.assertError(self.srv.reserve(lid, "a", "u1", 1, idem="early"), 409, "launch_not_open")
        self.assertEqual(self.srv.open(lid).status, 200)
        r = self.srv.reserve(lid, "a", "u1", 1, idem="early")
        self.assertEqual(r.status, 201, r.body)
        self.assertFalse(replayed(r))
        # sold_out is stored: after a restock, the same key still answers sold_out
        so = self.srv.reserve(lid, "a", "u2", 1, idem="late")
        self.assertError(so, 409, "sold_out")
        # two more units: one for u2's fresh attempt, one left so that "over" is about the limit
        self.assertEqual(self.srv.restock(lid, "a", 2).status, 200)
        again = self.srv.reserve(lid, "a", "u2", 1, idem="late")
        self.assertError(again, 409, "sold_out")
        self.assertTrue(replayed(again), again.headers)
        self.assertEqual(again.body, so.body)
        fresh = self.srv.reserve(lid, "a", "u2", 1, idem="later")
        self.assertEqual(fresh.status, 201, fresh.body)
        # limit_exceeded is stored too
        le = self.srv.reserve(lid, "a", "u2", 1, idem="over")
        self.assertError(le, 409, "limit_exceeded")
        self.assertEqual(self.srv.cancel(fresh.body["reservation_id"], "u2").status, 200)
        again = self.srv.reserve(lid, "a", "u2", 1, idem="over")
        self.assertError(again, 409, "limit_exceeded")
        self.assertTrue(replayed(again))
        self.check_invariants(lid, ["a"])

    def test_concurrent_duplicates_take_stock_once(self):
        lid = self.new_launch([sku("a", 10, 10)])
        n = 12
        results = [None] * n
        barrier = threading.Barrier(n)

        def go(i):
            s = self.srv.clone()
            barrier.wait(10)
            results[i] = s.reserve(lid, "a", "same-user", 3, idem="dup-key")
            s.close_conn()
        threads = [threading.Thread(target=go, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        self.assertTrue(all(r is not None for r in results), results)
        self.assertEqual({r.status for r in results}, {201}, [r.body for r in results])
        self.assertEqual(len({r.body["reservation_id"] for r in results}), 1)
        self.assertEqual(sum(1 for r in results if not replayed(r)), 1,
                         "exactly one answer is the original")
        c = self.srv.sku_counters(lid)["a"]
        self.assertEqual((c["available"], c["held"]), (7, 3))
        self.check_invariants(lid, ["a"])

    def test_unusual_keys(self):
        lid = self.new_launch([sku("a", 5, 5)])
        for key in ("k" * 300, "key with spaces", "key:with:colons"):
            r = self.srv.reserve(lid, "a", "u1", 1, idem=key)
            if r.status == 400:
                self.assertError(r, 400, "invalid_request", "Idempotency-Key")
                continue
            self.assertEqual(r.status, 201, r.body)
            again = self.srv.reserve(lid, "a", "u1", 1, idem=key)
            self.assertEqual((again.status, again.body.get("reservation_id")), (201, r.body["reservation_id"]))
            self.assertTrue(replayed(again))
        self.check_invariants(lid, ["a"])


if __name__ == "__main__":
    fsserver.main(timeout=60)
