#!/usr/bin/env python3
"""Storefront API: reserve, confirm, cancel, get reservation, public launch view."""

import base64
import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import fsserver  # noqa: E402
import checks  # noqa: E402
from fsserver import sku, unique, parse_rfc3339, wait_until, RFC3339_MS_RE  # noqa: E402

RES_KEYS = {"reservation_id", "launch", "sku", "user_id", "qty", "status", "expires_at", "created_at"}
CONFIRM_KEYS = {"order_id", "reservation_id", "launch", "sku", "user_id", "qty", "price_cents",
                "payment_ref", "status", "confirmed_at"}
B64URL = re.compile(r"^[A-Za-z0-9_-]+$")


class ReserveTest(fsserver.ServerTestCase):

    def test_reserve_201_body(self):
        lid = self.new_launch([sku("black", 5, 3, 79900)], hold_seconds=90)
        before = time.time()
        r = self.srv.reserve(lid, "black", "alice", 2)
        after = time.time()
        self.assertEqual(r.status, 201, r.body)
        b = r.body
        self.assertTrue(RES_KEYS <= set(b), sorted(b))
        self.assertEqual((b["launch"], b["sku"], b["user_id"], b["qty"], b["status"]),
                         (lid, "black", "alice", 2, "held"))
        self.assertRegex(b["reservation_id"], B64URL)
        self.assertGreaterEqual(len(base64.urlsafe_b64decode(b["reservation_id"] + "==")), 16)
        self.assertRegex(b["expires_at"], RFC3339_MS_RE)
        self.assertRegex(b["created_at"], RFC3339_MS_RE)
        created, expires = parse_rfc3339(b["created_at"]), parse_rfc3339(b["expires_at"])
        self.assertAlmostEqual(expires - created, 90, delta=0.002)
        self.assertGreaterEqual(created, before - 1)
        self.assertLessEqual(created, after + 1)
        self.assertIn(r.headers.get("content-type", ""), ("application/json", "application/json; charset=utf-8"))
        # qty defaults to 1
        r2 = self.srv.reserve(lid, "black", "bob", qty=None)
        self.assertEqual((r2.status, r2.body.get("qty")), (201, 1), r2.body)
        self.assertNotEqual(r2.body["reservation_id"], b["reservation_id"])
        c = self.srv.sku_counters(lid)["black"]
        self.assertEqual((c["available"], c["held"], c["sold"]), (2, 3, 0))
        self.check_invariants(lid, ["black"])

    def test_sold_out_and_limit_exceeded(self):
        lid = self.new_launch([sku("a", 3, 2)])
        self.assertEqual(self.srv.reserve(lid, "a", "u1", 2).status, 201)
        # u1 holds 2 of limit 2
        self.assertError(self.srv.reserve(lid, "a", "u1", 1), 409, "limit_exceeded")
        # u2 asks for 2 while 1 remains
        self.assertError(self.srv.reserve(lid, "a", "u2", 2), 409, "sold_out")
        self.assertEqual(self.srv.reserve(lid, "a", "u2", 1).status, 201)
        self.assertError(self.srv.reserve(lid, "a", "u3", 1), 409, "sold_out")
        # stock is checked before the limit: u2 holds 1 and asks for 2 while none is left
        self.assertError(self.srv.reserve(lid, "a", "u2", 2), 409, "sold_out")
        c = self.srv.sku_counters(lid)["a"]
        self.assertEqual((c["available"], c["held"], c["sold"]), (0, 3, 0))
        # with stock back, the same request passes the limit
        self.assertEqual(self.srv.restock(lid, "a", 5).status, 200)
        self.assertError(self.srv.reserve(lid, "a", "u2", 2), 409, "limit_exceeded")
        self.check_invariants(lid, ["a"])

    def test_limit_counts_sold_units_and_cancel_frees_it(self):
        lid = self.new_launch([sku("a", 10, 2)])
        r1 = self.srv.reserve(lid, "a", "u1", 1).body["reservation_id"]
        self.assertEqual(self.srv.confirm(r1, "u1").status, 200)
        r2 = self.srv.reserve(lid, "a", "u1", 1)
        self.assertEqual(r2.status, 201)
        self.assertError(self.srv.reserve(lid, "a", "u1", 1), 409, "limit_exceeded")
        self.assertEqual(self.srv.cancel(r2.body["reservation_id"], "u1").status, 200)
        self.assertEqual(self.srv.reserve(lid, "a", "u1", 1).status, 201)
        self.check_invariants(lid, ["a"])

    def test_sold_out_clears_when_units_come_back(self):
        lid = self.new_launch([sku("one", 1, 1)])
        rid = self.srv.reserve(lid, "one", "u1").body["reservation_id"]
        for _ in range(3):
            self.assertError(self.srv.reserve(lid, "one", "u2"), 409, "sold_out")
        self.assertEqual(self.srv.cancel(rid, "u1").status, 200)
        r = self.srv.reserve(lid, "one", "u2")
        self.assertEqual(r.status, 201, r.body)
        self.assertError(self.srv.reserve(lid, "one", "u3"), 409, "sold_out")
        self.assertEqual(self.srv.restock(lid, "one", 1).status, 200)
        self.assertEqual(self.srv.reserve(lid, "one", "u3").status, 201)
        self.check_invariants(lid, ["one"])

    def test_launch_not_open(self):
        lid = self.new_launch([sku("a", 3)], open_it=False)
        self.assertError(self.srv.reserve(lid, "a", "u1"), 409, "launch_not_open")
        self.assertEqual(self.srv.open(lid).status, 200)
        rid = self.srv.reserve(lid, "a", "u1").body["reservation_id"]
        self.assertEqual(self.srv.pause(lid).status, 200)
        self.assertError(self.srv.reserve(lid, "a", "u2"), 409, "launch_not_open")
        # a hold taken while open can be confirmed while paused
        self.assertEqual(self.srv.confirm(rid, "u1").status, 200)
        self.assertEqual(self.srv.open(lid).status, 200)
        self.assertEqual(self.srv.reserve(lid, "a", "u2").status, 201)
        self.assertEqual(self.srv.close(lid).status, 200)
        self.assertError(self.srv.reserve(lid, "a", "u3"), 409, "launch_not_open")
        c = self.srv.sku_counters(lid)["a"]
        self.assertEqual((c["available"], c["held"], c["sold"]), (1, 1, 1))
        self.check_invariants(lid, ["a"])

    def test_not_found_launch_and_sku(self):
        lid = self.new_launch([sku("a", 3)])
        self.assertError(self.srv.reserve(unique("none"), "a", "u1"), 404, "not_found")
        self.assertError(self.srv.reserve(lid, "b", "u1"), 404, "not_found")
        self.assertEqual(self.srv.sku_counters(lid)["a"]["available"], 3)

    def test_confirm(self):
        lid = self.new_launch([sku("a", 5, 3, 12345)])
        r = self.srv.reserve(lid, "a", "carol", 2)
        self.assertEqual(r.status, 201, r.body)
        rid = r.body["reservation_id"]
        c = self.srv.confirm(rid, "carol", payment_ref="pay_123")
        self.assertEqual(c.status, 200, c.body)
        b = c.body
        self.assertTrue(CONFIRM_KEYS <= set(b), sorted(b))
        self.assertEqual((b["reservation_id"], b["launch"], b["sku"], b["user_id"], b["qty"],
                          b["price_cents"], b["payment_ref"], b["status"]),
                         (rid, lid, "a", "carol", 2, 12345, "pay_123", "confirmed"))
        self.assertRegex(b["confirmed_at"], RFC3339_MS_RE)
        self.assertTrue(b["order_id"])
        # repeated confirm: same order, nothing new
        for ref in ("pay_123", "other_ref", None):
            c2 = self.srv.confirm(rid, "carol", payment_ref=ref)
            self.assertEqual(c2.status, 200, c2.body)
            self.assertEqual(c2.body["order_id"], b["order_id"])
            self.assertEqual(c2.body["confirmed_at"], b["confirmed_at"])
            self.assertEqual(c2.body["payment_ref"], "pay_123")
        cnt = self.srv.sku_counters(lid)["a"]
        self.assertEqual((cnt["available"], cnt["held"], cnt["sold"]), (3, 0, 2))
        # exactly one stream entry with exactly the documented fields
        orders = checks.read_orders(self.r, lid, "a")
        self.assertEqual(len(orders), 1, orders)
        f = orders[0][1]
        self.assertEqual(set(f), checks.ORDER_FIELDS)
        self.assertEqual(f, {"order_id": b["order_id"], "reservation_id": rid, "launch": lid, "sku": "a",
                             "user_id": "carol", "qty": "2", "price_cents": "12345",
                             "payment_ref": "pay_123", "confirmed_at": b["confirmed_at"]})
        # another shopper cannot confirm it
        self.assertError(self.srv.confirm(rid, "mallory"), 404, "not_found")
        # cancel after confirm
        self.assertError(self.srv.cancel(rid, "carol"), 409, "reservation_confirmed")
        self.assertEqual(len(checks.read_orders(self.r, lid, "a")), 1)
        self.check_invariants(lid, ["a"])

    def test_confirm_without_payment_ref(self):
        lid = self.new_launch([sku("a", 5)])
        rid = self.srv.reserve(lid, "a", "dave").body["reservation_id"]
        c = self.srv.confirm(rid, "dave")
        self.assertEqual(c.status, 200, c.body)
        self.assertIn(c.body["payment_ref"], ("", None))
        self.check_invariants(lid, ["a"])

    def test_cancel(self):
        lid = self.new_launch([sku("a", 4, 4)])
        rid = self.srv.reserve(lid, "a", "erin", 3).body["reservation_id"]
        self.assertEqual(self.srv.sku_counters(lid)["a"]["available"], 1)
        self.assertError(self.srv.cancel(rid, "mallory"), 404, "not_found")
        for _ in range(3):
            c = self.srv.cancel(rid, "erin")
            self.assertEqual(c.status, 200, c.body)
            self.assertEqual(c.body, {"reservation_id": rid, "status": "cancelled"})
            cnt = self.srv.sku_counters(lid)["a"]
            self.assertEqual((cnt["available"], cnt["held"], cnt["sold"]), (4, 0, 0))
        self.assertError(self.srv.confirm(rid, "erin"), 409, "reservation_cancelled")
        self.assertEqual(checks.read_orders(self.r, lid, "a"), [])
        # the shopper's limit is free again
        self.assertEqual(self.srv.reserve(lid, "a", "erin", 4).status, 201)
        self.check_invariants(lid, ["a"])

    def test_get_reservation_statuses(self):
        lid = self.new_launch([sku("a", 5, 5)])
        r = self.srv.reserve(lid, "a", "frank", 1).body
        rid = r["reservation_id"]
        g = self.srv.get_res(rid, "frank")
        self.assertEqual(g.status, 200, g.body)
        self.assertTrue(RES_KEYS <= set(g.body), sorted(g.body))
        for k in RES_KEYS:
            self.assertEqual(g.body[k], r[k], k)
        self.assertNotIn("order_id", g.body)
        c = self.srv.confirm(rid, "frank", payment_ref="ref-9").body
        g = self.srv.get_res(rid, "frank").body
        self.assertEqual(g["status"], "confirmed")
        self.assertEqual((g["order_id"], g["confirmed_at"], g["payment_ref"]),
                         (c["order_id"], c["confirmed_at"], "ref-9"))
        rid2 = self.srv.reserve(lid, "a", "frank", 2).body["reservation_id"]
        self.assertEqual(self.srv.cancel(rid2, "frank").status, 200)
        g = self.srv.get_res(rid2, "frank")
        self.assertEqual((g.status, g.body["status"], g.body["qty"]), (200, "cancelled", 2), g.body)
        # other shopper, missing user
        self.assertError(self.srv.get_res(rid, "grace"), 404, "not_found")
        r = self.srv.get_res(rid, None)
        self.assertEqual(r.status, 400, r.body)
        self.assertEqual(r.body["error"], "invalid_request")
        self.assertIn("user_id", r.body["message"])

    def test_user_ids_with_odd_characters(self):
        lid = self.new_launch([sku("a", 5, 5)])
        for user in ("ünï cödé ✓", "a&b=c?d/e", "x" * 128, "\"quoted\" \\ back"):
            r = self.srv.reserve(lid, "a", user)
            self.assertEqual(r.status, 201, (user, r.body))
            self.assertEqual(r.body["user_id"], user)
            rid = r.body["reservation_id"]
            g = self.srv.get_res(rid, user)
            self.assertEqual((g.status, g.body.get("user_id")), (200, user), g.body)
            c = self.srv.confirm(rid, user)
            self.assertEqual((c.status, c.body.get("user_id")), (200, user), c.body)
        self.check_invariants(lid, ["a"])

    def test_foreign_forged_and_garbage_ids(self):
        lid = self.new_launch([sku("a", 5)])
        rid = self.srv.reserve(lid, "a", "heidi").body["reservation_id"]
        self.assertError(self.srv.get_res(rid, "ivan"), 404, "not_found")
        self.assertError(self.srv.confirm(rid, "ivan"), 404, "not_found")
        self.assertError(self.srv.cancel(rid, "ivan"), 404, "not_found")
        # A grouped id (docs/redis.md): "<group>.<i>", the group base64url. Flip characters of
        # the group (same length, still base64url), and try other places in it.
        group, dot, idx = rid.partition(".")
        self.assertEqual((dot, idx), (".", "1"), rid)
        forged = []
        for i in (0, len(group) // 2, len(group) - 2):
            ch = "A" if group[i] != "A" else "B"
            forged.append(group[:i] + ch + group[i + 1:] + ".1")
        raw = base64.urlsafe_b64decode(group + "=" * (-len(group) % 4))
        tail = bytearray(raw)
        tail[-1] ^= 0x01
        forged.append(base64.urlsafe_b64encode(bytes(tail)).decode().rstrip("=") + ".1")
        forged += [group + ".2", group + ".0", group + ".01", group + ".1001", group, group + ".",
                   group + ".1.1", "AAAA", "x", "A" * len(rid),
                   base64.urlsafe_b64encode(os.urandom(48)).decode().rstrip("=")]
        for f in forged:
            if f == rid:
                continue
            self.assertError(self.srv.get_res(f, "heidi"), 404, "not_found")
            self.assertError(self.srv.confirm(f, "heidi"), 404, "not_found")
            self.assertError(self.srv.cancel(f, "heidi"), 404, "not_found")
        # the real one is untouched
        g = self.srv.get_res(rid, "heidi")
        self.assertEqual((g.status, g.body["status"]), (200, "held"))
        self.assertEqual(checks.read_orders(self.r, lid, "a"), [])
        self.check_invariants(lid, ["a"])

    def test_ids_are_unique_and_unguessable(self):
        lid = self.new_launch([sku("a", 50, 50)])
        ids = [self.srv.reserve(lid, "a", "judy").body["reservation_id"] for _ in range(20)]
        self.assertEqual(len(set(ids)), 20)
        for rid in ids:
            self.assertNotIn("judy", rid)
            self.assertGreaterEqual(len(rid), 22)   # at least 128 bits in base64url

    def test_public_get_launch(self):
        lid = self.new_launch([sku("a", 5, 2, 100), sku("b", 1, 1, 200)], name="Phone Y")
        r = self.srv.public_get(lid)
        self.assertEqual(r.status, 200, r.body)
        b = r.body
        for k in ("launch", "name", "state", "starts_at", "ends_at", "skus"):
            self.assertIn(k, b)
        self.assertEqual((b["launch"], b["name"], b["state"]), (lid, "Phone Y", "open"))
        skus = {s["sku"]: s for s in b["skus"]}
        self.assertEqual(list(skus), ["a", "b"])
        self.assertEqual((skus["a"]["available"], skus["a"]["price_cents"], skus["a"]["per_user_limit"]), (5, 100, 2))
        for s in b["skus"]:
            self.assertNotIn("held", s)
            self.assertNotIn("sold", s)
        self.assertEqual(self.srv.reserve(lid, "b", "kim").status, 201)
        # may be up to 1 s stale
        wait_until(lambda: {s["sku"]: s for s in self.srv.public_get(lid).body["skus"]}["b"]["available"] == 0,
                   1.5, what="public available to drop to 0")
        self.assertEqual(self.srv.pause(lid).status, 200)
        wait_until(lambda: self.srv.public_get(lid).body["state"] == "paused", 1.5, what="public state paused")
        self.assertError(self.srv.public_get(unique("none")), 404, "not_found")


if __name__ == "__main__":
    fsserver.main(timeout=110)
