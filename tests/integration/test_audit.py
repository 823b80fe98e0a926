#!/usr/bin/env python3
"""Operator tokens with names and roles, the audit stream of operator actions, pause-all, the
launch list and the recent-orders read-out (issue 7)."""

import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import fsserver  # noqa: E402
from fsserver import ServerTestCase, sku  # noqa: E402

ALICE = "tok-alice-operator-4c1d9e7a"
VIEWER = "tok-victor-viewer-88b0aa31"


def write_config(text):
    fd, path = tempfile.mkstemp(prefix="fs-audit-", suffix=".ini")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


class NamedTokensTest(ServerTestCase):
    server_kwargs = {"config_file": write_config(
        "[tokens]\nalice = operator:%s\nvictor = viewer:%s\n" % (ALICE, VIEWER)),
        "log_level": "debug"}

    def test_roles(self):
        lid = self.new_launch([sku("a", 5, 5)], open_it=False)
        # the viewer reads everything an operator reads ...
        for path in ("/admin/v1/launches/%s" % lid, "/admin/v1/launches/%s/audit" % lid,
                     "/admin/v1/launches/%s/stats" % lid, "/admin/v1/launches/%s/orders" % lid,
                     "/admin/v1/launches", "/admin/v1/whoami"):
            r = self.srv.request("GET", path, auth=VIEWER)
            self.assertEqual(r.status, 200, (path, r))
        # ... and may change nothing
        for method, path, body in (("POST", "/admin/v1/launches/%s/open" % lid, None),
                                   ("POST", "/admin/v1/launches/%s/close" % lid, None),
                                   ("PUT", "/admin/v1/launches/%s" % lid, {"name": "x", "hold_seconds": 5, "skus": [sku("a", 5, 5)]}),
                                   ("POST", "/admin/v1/launches/%s/skus/a/restock" % lid, {"delta": 1}),
                                   ("POST", "/admin/v1/pause-all", None)):
            r = self.srv.request(method, path, body, auth=VIEWER)
            self.assertError(r, 403, "forbidden")
            self.assertIn("victor", r.body["message"])
        self.assertEqual(self.srv.sku_counters(lid)["a"]["total"], 5)
        self.assertEqual(self.srv.admin_get(lid).body["state"], "scheduled")
        # the named operator and the admin token both act
        self.assertEqual(self.srv.open(lid, auth=ALICE).status, 200)
        self.assertEqual(self.srv.pause(lid).status, 200)
        # wrong tokens, API keys: 401
        for bad in (ALICE + "x", VIEWER[:-1], fsserver.DEFAULT_API_KEYS[0], "alice", "operator:" + ALICE):
            self.assertError(self.srv.admin_get(lid, auth=bad), 401, "unauthorized")
        # an operator token is no storefront key
        self.assertError(self.srv.public_get(lid, auth=ALICE), 401, "unauthorized")

    def test_whoami(self):
        self.assertEqual(self.srv.request("GET", "/admin/v1/whoami", auth=ALICE).body,
                         {"name": "alice", "role": "operator"})
        self.assertEqual(self.srv.request("GET", "/admin/v1/whoami", auth=VIEWER).body,
                         {"name": "victor", "role": "viewer"})
        self.assertEqual(self.srv.request("GET", "/admin/v1/whoami").body,
                         {"name": "admin", "role": "operator"})

    def test_audit_records_every_action(self):
        lid = self.new_launch([sku("a", 10, 2), sku("b", 3, 1)], open_it=False)
        self.assertEqual(self.srv.open(lid, auth=ALICE).status, 200)
        self.assertEqual(self.srv.restock(lid, "a", 5, auth=ALICE).status, 200)
        self.assertEqual(self.srv.restock(lid, "b", -2).status, 200)
        self.assertEqual(self.srv.pause(lid, auth=ALICE).status, 200)
        self.assertEqual(self.srv.admin_put_launch(lid, [sku("a", 10, 1)], name="Renamed", auth=ALICE).status, 200)
        self.assertEqual(self.srv.close(lid).status, 200)
        # refused actions change nothing and are not recorded
        self.assertEqual(self.srv.open(lid).status, 409)
        self.assertEqual(self.srv.restock(lid, "b", -5).status, 409)
        # reads are not recorded
        self.srv.admin_get(lid)
        r = self.srv.request("GET", "/admin/v1/launches/%s/audit" % lid, auth=VIEWER)
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.headers.get("cache-control"), "no-store")
        entries = list(reversed(r.body["entries"]))  # oldest first
        self.assertEqual([(e["action"], e["who"]) for e in entries],
                         [("put", "admin"), ("open", "alice"), ("restock", "alice"), ("restock", "admin"),
                          ("pause", "alice"), ("put", "alice"), ("close", "admin")])
        for e in entries:
            self.assertRegex(e["at"], fsserver.RFC3339_MS_RE)
            self.assertRegex(e["id"], r"^\d+-\d+$")
            self.assertEqual(e["role"], "operator")
        put0, open1, rs_a, rs_b, pause, put2, close = entries
        self.assertIsNone(put0["before"])
        self.assertEqual(put0["after"]["state"], "scheduled")
        self.assertIsNone(put0["sku"])
        self.assertEqual((open1["before"]["state"], open1["after"]["state"]), ("scheduled", "open"))
        self.assertEqual(rs_a["sku"], "a")
        self.assertEqual(rs_a["detail"], {"delta": 5})
        self.assertEqual((rs_a["before"]["total"], rs_a["after"]["total"]), (10, 15))
        self.assertEqual((rs_a["before"]["available"], rs_a["after"]["available"]), (10, 15))
        self.assertEqual((rs_b["before"]["available"], rs_b["after"]["available"]), (3, 1))
        self.assertEqual(rs_b["detail"], {"delta": -2})
        self.assertEqual((pause["before"]["state"], pause["after"]["state"]), ("open", "paused"))
        self.assertEqual(put2["before"]["name"], "Test launch")
        self.assertEqual(put2["after"]["name"], "Renamed")
        self.assertEqual([s["per_user_limit"] for s in put2["before"]["skus"] if s["sku"] == "a"], [2])
        self.assertEqual([s["per_user_limit"] for s in put2["after"]["skus"] if s["sku"] == "a"], [1])
        self.assertEqual((close["before"]["state"], close["after"]["state"]), ("paused", "closed"))
        # count limits the answer to the newest entries
        r = self.srv.request("GET", "/admin/v1/launches/%s/audit?count=2" % lid)
        self.assertEqual([e["action"] for e in r.body["entries"]], ["close", "put"])
        self.assertError(self.srv.request("GET", "/admin/v1/launches/%s/audit?count=0" % lid), 400,
                         "invalid_request", "count")
        # stored in the launch's stream, tokens never written anywhere
        self.assertEqual(self.r.call("XLEN", "fs:audit:{%s}" % lid), 7)
        raw = repr(self.r.call("XRANGE", "fs:audit:{%s}" % lid, "-", "+"))
        for secret in (ALICE, VIEWER, fsserver.DEFAULT_ADMIN_TOKEN):
            self.assertNotIn(secret, raw)
            self.assertNotIn(secret, self.srv.log_text())
        self.assertIn("by=alice", self.srv.log_text())

    def test_unknown_launch(self):
        self.assertEqual(self.srv.request("GET", "/admin/v1/launches/nope-x/audit").body,
                         {"launch": "nope-x", "entries": []})
        self.assertError(self.srv.open("nope-x"), 404, "not_found")
        self.assertEqual(self.r.call("EXISTS", "fs:audit:{nope-x}"), 0)

    def test_launch_list_and_orders(self):
        lid = self.new_launch([sku("a", 10, 5), sku("b", 10, 5)])
        r = self.srv.request("GET", "/admin/v1/launches")
        self.assertEqual(r.status, 200)
        self.assertIn(lid, r.body["launches"])
        self.assertEqual(r.body["launches"], sorted(r.body["launches"]))
        made = []
        for i, s in enumerate(["a", "b", "a", "b", "a"]):
            res = self.srv.reserve(lid, s, "user-%d" % i)
            self.assertEqual(res.status, 201, res.body)
            c = self.srv.confirm(res.body["reservation_id"], "user-%d" % i, payment_ref="pay-%d" % i)
            self.assertEqual(c.status, 200, c.body)
            made.append(c.body)
        r = self.srv.request("GET", "/admin/v1/launches/%s/orders" % lid, auth=VIEWER)
        self.assertEqual(r.status, 200, r.body)
        got = r.body["orders"]
        self.assertEqual([o["order_id"] for o in got], [m["order_id"] for m in reversed(made)])
        first = got[-1]
        self.assertEqual((first["sku"], first["user_id"], first["qty"], first["payment_ref"], first["launch"]),
                         ("a", "user-0", 1, "pay-0", lid))
        self.assertEqual(first["price_cents"], 79900)
        r = self.srv.request("GET", "/admin/v1/launches/%s/orders?sku=b&count=1" % lid)
        self.assertEqual([o["order_id"] for o in r.body["orders"]], [made[3]["order_id"]])
        r = self.srv.request("GET", "/admin/v1/launches/%s/orders?count=2" % lid)
        self.assertEqual(len(r.body["orders"]), 2)
        self.assertError(self.srv.request("GET", "/admin/v1/launches/%s/orders?sku=a:b" % lid), 400,
                         "invalid_request", "sku")
        self.assertError(self.srv.request("GET", "/admin/v1/launches/nope-y/orders"), 404, "not_found")


class PauseAllTest(ServerTestCase):
    server_kwargs = {"config_file": write_config("[tokens]\nbob = operator:%s\nvictor = viewer:%s\n" % (ALICE, VIEWER))}

    def test_pause_all(self):
        open1 = self.new_launch([sku("a", 5, 5)])
        open2 = self.new_launch([sku("a", 5, 5)])
        sched = self.new_launch([sku("a", 5, 5)], open_it=False)
        closed = self.new_launch([sku("a", 5, 5)])
        self.assertEqual(self.srv.close(closed).status, 200)
        paused = self.new_launch([sku("a", 5, 5)])
        self.assertEqual(self.srv.pause(paused).status, 200)
        self.assertEqual(self.srv.reserve(open1, "a", "u").status, 201)
        r = self.srv.request("POST", "/admin/v1/pause-all", auth=ALICE)
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(sorted(r.body["paused"]), sorted([open1, open2]))
        self.assertEqual(r.body["count"], 2)
        self.assertEqual(r.body["failed"], [])
        states = {lid: self.srv.admin_get(lid).body["state"] for lid in (open1, open2, sched, closed, paused)}
        self.assertEqual(states, {open1: "paused", open2: "paused", sched: "scheduled",
                                  closed: "closed", paused: "paused"})
        self.assertError(self.srv.reserve(open1, "a", "u2"), 409, "launch_not_open")
        for lid in (open1, open2):
            e = self.srv.request("GET", "/admin/v1/launches/%s/audit?count=1" % lid).body["entries"][0]
            self.assertEqual((e["action"], e["who"], e["before"]["state"], e["after"]["state"]),
                             ("pause-all", "bob", "open", "paused"))
        e = self.srv.request("GET", "/admin/v1/launches/%s/audit?count=1" % paused).body["entries"][0]
        self.assertEqual(e["action"], "pause")  # not touched by pause-all
        # again: nothing left to pause
        r = self.srv.request("POST", "/admin/v1/pause-all")
        self.assertEqual((r.status, r.body["paused"], r.body["count"]), (200, [], 0))


class TokenConfigTest(unittest.TestCase):
    """Start-up refusals for bad [tokens] sections: exit 1, one line naming the problem, no secret."""

    def refuse(self, text, expect, admin_token=None):
        import fsredis
        path = write_config(text)
        srv = fsserver.Server("redis://127.0.0.1:1/0", admin_token=admin_token, config_file=path,
                              start=False, port=fsserver.free_port())
        srv.spawn()
        rc = srv.proc.wait(10)
        log = srv.log_text()
        self.assertEqual(rc, 1, log)
        self.assertIn(expect, log)
        self.assertNotIn("s3cr3t", log)
        del fsredis

    def test_refusals(self):
        self.refuse("[tokens]\nv = viewer:s3cr3t-1\n", "no admin token")
        self.refuse("[tokens]\nx = admin:s3cr3t-1\n", "[tokens] x must be role:token")
        self.refuse("[tokens]\nx = operator:\n", "[tokens] x must be role:token")
        self.refuse("[tokens]\nx = operator:s3cr3t 1\n", "[tokens] x must be role:token")
        self.refuse("[tokens]\nx = operators3cr3t\n", "[tokens] x must be role:token")
        self.refuse("[tokens]\nbad/name = operator:s3cr3t-1\n", "[tokens] names")
        self.refuse("[tokens]\nx = operator:s3cr3t-1\nx = viewer:s3cr3t-2\n", "x appears twice")
        self.refuse("[tokens]\nx = operator:s3cr3t-1\ny = viewer:s3cr3t-1\n", "x and y have the same token")
        self.refuse("[tokens]\nadmin = viewer:s3cr3t-1\n", "name admin is taken", admin_token="s3cr3t-9")


if __name__ == "__main__":
    fsserver.main(timeout=100)
