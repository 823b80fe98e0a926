#!/usr/bin/env python3
"""Operator API: create/update launches, state changes, restock, exact counters, timed
open/close, and operator authentication."""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import fsserver  # noqa: E402
from fsserver import sku, unique, rfc3339, parse_rfc3339, wait_until  # noqa: E402

STATUS_KEYS = {"launch", "name", "state", "hold_seconds", "starts_at", "ends_at", "skus"}
SKU_KEYS = {"sku", "total", "available", "held", "sold", "per_user_limit", "price_cents"}


class AdminTest(fsserver.ServerTestCase):

    def assertStatusShape(self, body, launch):
        self.assertIsInstance(body, dict, body)
        self.assertTrue(STATUS_KEYS <= set(body), "status keys %s" % sorted(body))
        self.assertEqual(body["launch"], launch)
        for s in body["skus"]:
            self.assertTrue(SKU_KEYS <= set(s), "sku keys %s" % sorted(s))

    def test_create_returns_scheduled_status_with_counters(self):
        lid = unique()
        r = self.srv.admin_put_launch(lid, [sku("black-128", 10, 2, 79900), sku("white-256", 3, 1, 89900)],
                                      name="Phone X", hold_seconds=120)
        self.assertEqual(r.status, 200, r.body)
        self.assertStatusShape(r.body, lid)
        b = r.body
        self.assertEqual(b["name"], "Phone X")
        self.assertEqual(b["state"], "scheduled")
        self.assertEqual(b["hold_seconds"], 120)
        self.assertIsNone(b["starts_at"])
        self.assertIsNone(b["ends_at"])
        self.assertEqual([s["sku"] for s in b["skus"]], ["black-128", "white-256"])
        s0, s1 = b["skus"]
        self.assertEqual((s0["total"], s0["available"], s0["held"], s0["sold"]), (10, 10, 0, 0))
        self.assertEqual((s0["per_user_limit"], s0["price_cents"]), (2, 79900))
        self.assertEqual((s1["total"], s1["available"], s1["held"], s1["sold"]), (3, 3, 0, 0))
        self.assertEqual((s1["per_user_limit"], s1["price_cents"]), (1, 89900))
        # GET admin says the same.
        g = self.srv.admin_get(lid)
        self.assertEqual(g.status, 200, g.body)
        self.assertEqual(g.body["skus"], b["skus"])
        self.assertEqual(g.body["state"], "scheduled")
        self.check_invariants(lid, ["black-128", "white-256"])

    def test_update_name_limits_and_add_sku(self):
        lid = unique()
        self.assertEqual(self.srv.admin_put_launch(lid, [sku("a", 5, 1, 100)], name="Old").status, 200)
        r = self.srv.admin_put_launch(lid, [sku("a", 5, 3, 150), sku("b", 7, 2, 200)],
                                      name="New", hold_seconds=30)
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.body["name"], "New")
        self.assertEqual(r.body["hold_seconds"], 30)
        self.assertEqual(r.body["state"], "scheduled")
        skus = {s["sku"]: s for s in r.body["skus"]}
        self.assertEqual(set(skus), {"a", "b"})
        self.assertEqual((skus["a"]["per_user_limit"], skus["a"]["price_cents"], skus["a"]["total"]), (3, 150, 5))
        self.assertEqual((skus["b"]["total"], skus["b"]["available"]), (7, 7))
        # Updating an open launch keeps it open and keeps its counters.
        self.assertEqual(self.srv.open(lid).status, 200)
        res = self.srv.reserve(lid, "a", "u1", 2)
        self.assertEqual(res.status, 201, res.body)
        r = self.srv.admin_put_launch(lid, [sku("a", 5, 3, 150), sku("b", 7, 2, 200)], name="Newer",
                                      hold_seconds=45)
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.body["state"], "open")
        a = {s["sku"]: s for s in r.body["skus"]}["a"]
        self.assertEqual((a["total"], a["available"], a["held"], a["sold"]), (5, 3, 2, 0))
        self.assertEqual(r.body["hold_seconds"], 45)
        # the new hold time applies to new holds; existing holds keep theirs
        res2 = self.srv.reserve(lid, "b", "u2", 1).body
        self.assertAlmostEqual(parse_rfc3339(res2["expires_at"]) - parse_rfc3339(res2["created_at"]), 45, delta=0.01)
        self.assertAlmostEqual(parse_rfc3339(res.body["expires_at"]) - parse_rfc3339(res.body["created_at"]), 30,
                               delta=0.01)
        self.check_invariants(lid, ["a", "b"])

    def test_different_stock_is_use_restock_and_changes_nothing(self):
        lid = unique()
        self.assertEqual(self.srv.admin_put_launch(lid, [sku("a", 5, 1, 100)], name="Keep").status, 200)
        r = self.srv.admin_put_launch(lid, [sku("a", 6, 1, 100), sku("new", 1)], name="Changed")
        self.assertError(r, 409, "use_restock")
        g = self.srv.admin_get(lid).body
        self.assertEqual(g["name"], "Keep")
        self.assertEqual([s["sku"] for s in g["skus"]], ["a"])
        self.assertEqual(g["skus"][0]["total"], 5)

    def test_stock_may_be_left_out_for_existing_skus(self):
        lid = unique()
        self.assertEqual(self.srv.admin_put_launch(lid, [sku("a", 5, 1, 100)]).status, 200)
        self.assertEqual(self.srv.restock(lid, "a", 3).status, 200)
        # after a restock the creation stock is still the reference; without stock, limits change
        doc = {"name": "Test launch", "hold_seconds": 60,
               "skus": [{"sku": "a", "per_user_limit": 4, "price_cents": 100}]}
        r = self.srv.request("PUT", "/admin/v1/launches/%s" % lid, doc, auth="admin")
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual((r.body["skus"][0]["per_user_limit"], r.body["skus"][0]["total"]), (4, 8))
        doc["skus"].append({"sku": "new", "per_user_limit": 1, "price_cents": 1})
        r = self.srv.request("PUT", "/admin/v1/launches/%s" % lid, doc, auth="admin")
        self.assertError(r, 400, "invalid_request", "new")
        self.assertEqual([s["sku"] for s in self.srv.admin_get(lid).body["skus"]], ["a"])

    def test_state_transitions(self):
        lid = unique()
        self.assertEqual(self.srv.admin_put_launch(lid, [sku("a", 1)]).status, 200)
        self.assertError(self.srv.pause(lid), 409, "invalid_transition")
        for action, state in (("open", "open"), ("open", "open"), ("pause", "paused"),
                              ("pause", "paused"), ("open", "open"), ("pause", "paused"),
                              ("close", "closed")):
            r = getattr(self.srv, action)(lid)
            self.assertEqual(r.status, 200, (action, r.body))
            self.assertEqual(r.body["state"], state, action)
            self.assertEqual(r.body["launch"], lid)
            self.assertEqual(self.srv.admin_get(lid).body["state"], state)
        for action in ("open", "pause", "close"):
            self.assertError(getattr(self.srv, action)(lid), 409, "invalid_transition")
        self.assertEqual(self.srv.admin_get(lid).body["state"], "closed")
        # scheduled -> closed directly is allowed.
        lid2 = unique()
        self.assertEqual(self.srv.admin_put_launch(lid2, [sku("a", 1)]).status, 200)
        r = self.srv.close(lid2)
        self.assertEqual((r.status, r.body["state"]), (200, "closed"), r.body)

    def test_unknown_launch_is_not_found(self):
        lid = unique("nope")
        self.assertError(self.srv.admin_get(lid), 404, "not_found")
        for action in ("open", "pause", "close"):
            self.assertError(getattr(self.srv, action)(lid), 404, "not_found")
        self.assertError(self.srv.restock(lid, "a", 1), 404, "not_found")
        self.assertError(self.srv.public_get(lid), 404, "not_found")

    def test_restock(self):
        lid = self.new_launch([sku("a", 5, 5)])
        self.assertEqual(self.srv.reserve(lid, "a", "u1", 2).status, 201)
        r = self.srv.restock(lid, "a", 3)
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.body, {"launch": lid, "sku": "a", "total": 8, "available": 6, "held": 2, "sold": 0})
        r = self.srv.restock(lid, "a", -4)
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.body, {"launch": lid, "sku": "a", "total": 4, "available": 2, "held": 2, "sold": 0})
        # Cannot remove held units: only 2 available.
        r = self.srv.restock(lid, "a", -3)
        self.assertError(r, 409, "insufficient_available")
        a = self.srv.sku_counters(lid)["a"]
        self.assertEqual((a["total"], a["available"], a["held"], a["sold"]), (4, 2, 2, 0))
        r = self.srv.restock(lid, "a", -2)
        self.assertEqual((r.status, r.body["available"], r.body["total"]), (200, 0, 2), r.body)
        self.assertError(self.srv.reserve(lid, "a", "u2", 1), 409, "sold_out")
        # Restock brings back sales (a cached sold-out must be cleared).
        self.assertEqual(self.srv.restock(lid, "a", 1).status, 200)
        self.assertEqual(self.srv.reserve(lid, "a", "u2", 1).status, 201)
        self.assertError(self.srv.restock(lid, "nosuch", 1), 404, "not_found")
        for bad in (0, "1", 1.5, None):
            r = self.srv.request("POST", "/admin/v1/launches/%s/skus/a/restock" % lid, {"delta": bad})
            self.assertError(r, 400, "invalid_request", "delta")
        self.check_invariants(lid, ["a"])

    def test_admin_get_counters_are_exact(self):
        lid = self.new_launch([sku("a", 10, 3), sku("b", 4, 4)])
        rids = []
        for u, s, q in (("u1", "a", 3), ("u2", "a", 2), ("u3", "b", 4), ("u4", "a", 1)):
            r = self.srv.reserve(lid, s, u, q)
            self.assertEqual(r.status, 201, r.body)
            rids.append((r.body["reservation_id"], u))
        self.assertEqual(self.srv.confirm(*rids[0]).status, 200)
        self.assertEqual(self.srv.cancel(*rids[1]).status, 200)
        c = self.srv.sku_counters(lid)
        self.assertEqual((c["a"]["available"], c["a"]["held"], c["a"]["sold"], c["a"]["total"]), (6, 1, 3, 10))
        self.assertEqual((c["b"]["available"], c["b"]["held"], c["b"]["sold"], c["b"]["total"]), (0, 4, 0, 4))
        details = self.check_invariants(lid, ["a", "b"])
        for s in ("a", "b"):
            for k in ("total", "available", "held", "sold"):
                self.assertEqual(c[s][k], details[s][k], (s, k))

    def test_starts_at_and_ends_at_open_and_close_by_themselves(self):
        lid = unique()
        now = time.time()
        starts, ends = now + 1.5, now + 3.5
        r = self.srv.admin_put_launch(lid, [sku("a", 5)], starts_at=rfc3339(starts), ends_at=rfc3339(ends))
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.body["state"], "scheduled")
        self.assertAlmostEqual(parse_rfc3339(r.body["starts_at"]), starts, delta=0.002)
        self.assertAlmostEqual(parse_rfc3339(r.body["ends_at"]), ends, delta=0.002)
        self.assertError(self.srv.reserve(lid, "a", "early"), 409, "launch_not_open")
        wait_until(lambda: time.time() >= starts + 0.05, 5)
        self.assertEqual(self.srv.admin_get(lid).body["state"], "open")
        r = self.srv.reserve(lid, "a", "ontime")
        self.assertEqual(r.status, 201, r.body)
        wait_until(lambda: time.time() >= ends + 0.05, 5)
        self.assertEqual(self.srv.admin_get(lid).body["state"], "closed")
        self.assertError(self.srv.reserve(lid, "a", "late"), 409, "launch_not_open")
        self.assertError(self.srv.open(lid), 409, "invalid_transition")
        # A hold taken while open may still be confirmed after the close.
        c = self.srv.confirm(r.body["reservation_id"], "ontime")
        self.assertEqual(c.status, 200, c.body)
        self.check_invariants(lid, ["a"])

    def test_bad_times_are_rejected(self):
        lid = unique()
        for field, value in (("starts_at", "tomorrow"), ("ends_at", "2026-13-01T00:00:00Z"), ("starts_at", 12)):
            r = self.srv.admin_put_launch(lid, [sku("a", 1)], extra={field: value})
            self.assertError(r, 400, "invalid_request", field)
        self.assertError(self.srv.admin_get(lid), 404, "not_found")

    def test_bad_launch_bodies(self):
        lid = unique()
        cases = [
            ({"hold_seconds": 60, "skus": [sku("a", 1)]}, "name"),
            ({"name": "x", "hold_seconds": "60", "skus": [sku("a", 1)]}, "hold_seconds"),
            ({"name": "x", "hold_seconds": 0, "skus": [sku("a", 1)]}, "hold_seconds"),
            ({"name": "x", "hold_seconds": 60, "skus": "a"}, "skus"),
            ({"name": "x", "hold_seconds": 60, "skus": [dict(sku("a", 1), stock=-1)]}, "stock"),
            ({"name": "x", "hold_seconds": 60, "skus": [dict(sku("a", 1), stock="5")]}, "stock"),
            ({"name": "x", "hold_seconds": 60, "skus": [dict(sku("a", 1), per_user_limit=0)]}, "per_user_limit"),
            ({"name": "x", "hold_seconds": 60, "skus": [dict(sku("a", 1), price_cents=-5)]}, "price_cents"),
            ({"name": "x", "hold_seconds": 60, "skus": [dict(sku("a", 1), sku="a b")]}, "sku"),
            ({"name": "x", "hold_seconds": 60, "skus": [dict(sku("a", 1), sku="x" * 129)]}, "sku"),
            ({"name": "x", "hold_seconds": 60, "skus": [{"stock": 1, "per_user_limit": 1, "price_cents": 1}]}, "sku"),
        ]
        for body, field in cases:
            r = self.srv.request("PUT", "/admin/v1/launches/%s" % lid, body)
            self.assertError(r, 400, "invalid_request", field)
        r = self.srv.request("PUT", "/admin/v1/launches/%s" % lid, "{not json")
        self.assertError(r, 400, "invalid_request")
        self.assertError(self.srv.admin_get(lid), 404, "not_found")
        # Launch ids: allowed characters and length.
        self.assertError(self.srv.admin_put_launch("a:b", [sku("a", 1)]), 400, "invalid_request")
        self.assertError(self.srv.admin_put_launch("x" * 129, [sku("a", 1)]), 400, "invalid_request")
        ok = "A-z_0.9~" + "y" * 120
        self.assertEqual(len(ok), 128)
        r = self.srv.admin_put_launch(ok, [sku("S" * 128, 1)])
        self.assertEqual(r.status, 200, r.body)

    def test_auth_on_admin_routes(self):
        lid = self.new_launch([sku("a", 3)])
        calls = [
            lambda a: self.srv.admin_get(lid, auth=a),
            lambda a: self.srv.admin_put_launch(unique(), [sku("a", 1)], auth=a),
            lambda a: self.srv.open(lid, auth=a),
            lambda a: self.srv.pause(lid, auth=a),
            lambda a: self.srv.close(lid, auth=a),
            lambda a: self.srv.restock(lid, "a", 1, auth=a),
        ]
        bad = [None, "wrong-token", fsserver.DEFAULT_API_KEYS[0], fsserver.DEFAULT_API_KEYS[1],
               fsserver.DEFAULT_ADMIN_TOKEN + "x", fsserver.DEFAULT_ADMIN_TOKEN[:-1]]
        for call in calls:
            for a in bad:
                self.assertError(call(a), 401, "unauthorized")
        for raw in ("Basic " + fsserver.DEFAULT_ADMIN_TOKEN, fsserver.DEFAULT_ADMIN_TOKEN, "Bearer"):
            r = self.srv.request("GET", "/admin/v1/launches/%s" % lid, headers={"Authorization": raw}, auth=None)
            self.assertError(r, 401, "unauthorized")
        # Nothing changed.
        g = self.srv.admin_get(lid).body
        self.assertEqual((g["state"], g["skus"][0]["total"]), ("open", 3))
        # The admin token is not a storefront key.
        self.assertError(self.srv.reserve(lid, "a", "u", auth="admin"), 401, "unauthorized")
        self.assertError(self.srv.reserve(lid, "a", "u", auth=None), 401, "unauthorized")
        self.assertError(self.srv.public_get(lid, auth=None), 401, "unauthorized")
        # Both storefront keys work.
        self.assertEqual(self.srv.reserve(lid, "a", "u1", auth=fsserver.DEFAULT_API_KEYS[1]).status, 201)
        self.assertEqual(self.srv.reserve(lid, "a", "u2", auth=fsserver.DEFAULT_API_KEYS[0]).status, 201)


if __name__ == "__main__":
    fsserver.main(timeout=110)
