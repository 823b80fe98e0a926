#!/usr/bin/env python3
"""Waiting room (docs/rate-limits.md, "Waiting room"): a rush on a launch with admit_per_sec = 5
lets about one second's worth in at once and gives the rest 202 with signed tickets, increasing
positions (shared by two servers) and turns 1/5 s apart; a ticket presented early waits again,
after its turn reserves; tickets of another shopper or launch, forged, malformed or expired ones
are refused; a sold-out SKU closes the room at once; launches without a room are unaffected; the
setting lives in the launch document."""

import base64
import hashlib
import hmac
import os
import re
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import fsserver  # noqa: E402
from fsserver import Server, ServerTestCase, sku, parse_rfc3339  # noqa: E402

LABEL = b"flashsale waiting-room ticket v1"


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def sign(launch, user, pos, turn_ms, exp_ms, secret=fsserver.DEFAULT_ADMIN_TOKEN):
    """A ticket made as docs/rate-limits.md describes, independently of the server's code."""
    key = hmac.new(secret.encode(), LABEL, hashlib.sha256).digest()
    payload = b64(("%s|%s|%d|%d|%d" % (launch, user, pos, turn_ms, exp_ms)).encode())
    return payload + "." + b64(hmac.new(key, payload.encode(), hashlib.sha256).digest())


def unb64(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class WaitingRoomTest(ServerTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.b = cls.another_server()
        cls.addClassCleanup(cls.b.close_conn)
        cls.addClassCleanup(cls.r.close)

    def room_launch(self, admit, stock=1000, per_user_limit=1):
        return self.new_launch([sku("a", stock, per_user_limit=per_user_limit)],
                               extra={"waiting_room": {"admit_per_sec": admit}})

    def reserve(self, srv, lid, user, ticket=None, sku_id="a"):
        h = {"X-Queue-Ticket": ticket} if ticket is not None else None
        return srv.request("POST", "/v1/launches/%s/reservations" % lid,
                           {"sku": sku_id, "user_id": user, "qty": 1}, headers=h)

    def rush(self, lid, users):
        """One request per user, all at once from threads, alternating the two servers."""
        out = {}
        barrier = threading.Barrier(len(users))

        def go(i, u):
            srv = (self.srv, self.b)[i % 2].clone()
            try:
                barrier.wait(5)
                out[u] = self.reserve(srv, lid, u)
            finally:
                srv.close_conn()

        ts = [threading.Thread(target=go, args=(i, u)) for i, u in enumerate(users)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(20)
        self.assertEqual(len(out), len(users))
        return out

    def assertWaiting(self, r, lid):
        self.assertEqual(r.status, 202, r.body)
        b = r.body
        self.assertEqual(b["status"], "waiting")
        self.assertEqual(b["launch"], lid)
        self.assertGreaterEqual(b["retry_after"], 1)
        self.assertEqual(r.headers.get("retry-after"), str(b["retry_after"]))
        turn = parse_rfc3339(b["turn_at"])
        self.assertAlmostEqual(parse_rfc3339(b["expires_at"]) - turn, 300, delta=0.01)
        return b, turn

    # ---------------------------------------------------------------------------------------

    def test_setting_in_the_launch_document(self):
        lid = self.new_launch([sku("a", 10)])
        r = self.srv.admin_get(lid)
        self.assertIsNone(r.body["waiting_room"])
        r = self.srv.admin_put_launch(lid, [sku("a", 10)], extra={"waiting_room": {"admit_per_sec": 2.5}})
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.body["waiting_room"], {"admit_per_sec": 2.5})
        self.assertEqual(self.b.admin_get(lid).body["waiting_room"], {"admit_per_sec": 2.5})
        r = self.srv.admin_put_launch(lid, [sku("a", 10)])
        self.assertEqual(r.body["waiting_room"], {"admit_per_sec": 2.5}, "left out: kept")
        self.assertEqual(self.srv.open(lid).body["waiting_room"], {"admit_per_sec": 2.5})
        r = self.srv.admin_put_launch(lid, [sku("a", 10)], extra={"waiting_room": None})
        self.assertIsNone(r.body["waiting_room"], "null: no room")
        for bad in ({"admit_per_sec": -1}, {"admit_per_sec": "5"}, {}, 5):
            r = self.srv.admin_put_launch(lid, [sku("a", 10)], extra={"waiting_room": bad})
            self.assertError(r, 400, "invalid_request", "waiting_room")
        # the audit trail shows the change (before without a room, after with one)
        self.srv.admin_put_launch(lid, [sku("a", 10)], extra={"waiting_room": {"admit_per_sec": 7}})
        last = self.srv.request("GET", "/admin/v1/launches/%s/audit" % lid).body["entries"][0]
        self.assertEqual((last["action"], last["before"]["waiting_room"], last["after"]["waiting_room"]),
                         ("put", None, {"admit_per_sec": 7}))

    def test_rush_places_turns_and_tickets_on_two_servers(self):
        lid = self.room_launch(5)
        users = ["shopper-%02d" % i for i in range(20)]
        t0 = time.time()
        got = self.rush(lid, users)
        admitted = [u for u in users if got[u].status == 201]
        waiting = {u: got[u] for u in users if got[u].status != 201}
        sys.stderr.write("admitted %d of 20 at once\n" % len(admitted))
        self.assertTrue(5 <= len(admitted) <= 7, {u: (r.status, r.body) for u, r in got.items()})
        places = []
        for u, r in waiting.items():
            b, turn = self.assertWaiting(r, lid)
            self.assertTrue(t0 - 1 < turn < t0 + 20 / 5 + 1, (turn, t0))
            places.append((b["position"], turn, u, b["ticket"]))
        places.sort()
        positions = [p[0] for p in places]
        self.assertEqual(len(set(positions)), len(positions), "positions are unique across servers")
        self.assertTrue(all(6 <= p <= 20 for p in positions), positions)
        for a, b in zip(places, places[1:]):
            self.assertAlmostEqual(b[1] - a[1], 0.2 * (b[0] - a[0]), delta=0.005, msg=(a, b))
        # the ticket carries the shopper's place (payload = launch|user|position|turn_ms|exp_ms)
        pos, turn, user, ticket = places[-1]
        payload = unb64(ticket.split(".")[0]).decode()
        self.assertEqual(payload.split("|")[:3], [lid, user, str(pos)])
        # early: 202 again with the same ticket, on either server; without it, the same place
        for srv in (self.srv, self.b):
            b, _ = self.assertWaiting(self.reserve(srv, lid, user, ticket), lid)
            self.assertEqual((b["position"], b["ticket"]), (pos, ticket))
        b, _ = self.assertWaiting(self.reserve(self.b, lid, user), lid)
        self.assertEqual(b["position"], pos, "a shopper keeps their place")
        # after its turn: a normal reservation
        pos, turn, user, ticket = places[0]
        time.sleep(max(0, turn - time.time()) + 0.05)
        r = self.reserve(self.b, lid, user, ticket)
        self.assertEqual(r.status, 201, r.body)
        self.assertEqual(r.body["user_id"], user)
        self.assertEqual(self.reserve(self.srv, lid, user, ticket).status, 409,
                         "then the usual rules: per_user_limit 1")
        self.check_invariants(lid, ["a"])

    def test_bad_tickets_are_refused(self):
        lid = self.room_launch(1)
        other = self.room_launch(1)
        for i in range(3):  # take the first turns
            self.reserve(self.srv, lid, "early-%d" % i)
        r = self.reserve(self.srv, lid, "alice")
        b, _ = self.assertWaiting(r, lid)
        ticket = b["ticket"]
        self.assertError(self.reserve(self.b, lid, "bob", ticket), 403, "ticket_mismatch")
        self.assertError(self.reserve(self.b, other, "alice", ticket), 403, "ticket_mismatch")
        mac = ticket.split(".")[1]
        forged = ticket.split(".")[0] + "." + ("A" if mac[0] != "A" else "B") + mac[1:]
        self.assertError(self.reserve(self.srv, lid, "alice", forged), 400, "invalid_ticket")
        for junk in ("", "x", "abc.def", ticket + "x", "." + mac):
            self.assertError(self.reserve(self.srv, lid, "alice", junk), 400, "invalid_ticket")
        # signed with the wrong secret: forged
        now = int(time.time() * 1000)
        self.assertError(self.reserve(self.srv, lid, "alice", sign(lid, "alice", 1, now, now + 60000,
                                                                    secret="nope")),
                         400, "invalid_ticket")
        # signed as documented but expired
        self.assertError(self.reserve(self.srv, lid, "carol", sign(lid, "carol", 2, now - 400000,
                                                                    now - 100000)),
                         409, "ticket_expired")
        # signed as documented, turn come: admitted (the format and key are the documented ones)
        r = self.reserve(self.b, lid, "dave", sign(lid, "dave", 2, now - 1000, now + 60000))
        self.assertEqual(r.status, 201, r.body)
        # a user id with '|' in it round-trips
        r = self.reserve(self.srv, lid, "e|v|e")
        b, _ = self.assertWaiting(r, lid)
        b2, _ = self.assertWaiting(self.reserve(self.b, lid, "e|v|e", b["ticket"]), lid)
        self.assertEqual(b2["ticket"], b["ticket"])

    def test_sold_out_closes_the_room_at_once(self):
        lid = self.room_launch(1, stock=1, per_user_limit=1)
        first = self.reserve(self.srv, lid, "first")
        self.assertEqual(first.status, 201, first.body)  # one second's worth at once: 1
        # the SKU is sold out now: newcomers take no place and get sold_out at once
        r = self.reserve(self.b, lid, "late")
        self.assertError(r, 409, "sold_out")
        self.assertEqual(self.r.call("HGET", "fs:wr:{%s}" % lid, "n"), "1", "no place for them")
        # ticket holders whose turn is seconds away: sold_out at once rather than 202
        now = int(time.time() * 1000)
        t0 = time.monotonic()
        for i, srv in enumerate((self.srv, self.b)):
            u = "holder-%d" % i
            r = self.reserve(srv, lid, u, sign(lid, u, 5 + i, now + 5000, now + 305000))
            self.assertError(r, 409, "sold_out")
        self.assertLess(time.monotonic() - t0, 1.0)
        # units come back (cancel): the room opens again, the holder waits for their turn
        self.assertEqual(self.srv.cancel(first.body["reservation_id"], "first").status, 200)
        r = self.reserve(self.b, lid, "holder-0", sign(lid, "holder-0", 5, now + 5000, now + 305000))
        self.assertWaiting(r, lid)
        self.check_invariants(lid, ["a"])

    def test_launch_without_room_is_unaffected_and_a_room_takes_effect_within_a_second(self):
        lid = self.new_launch([sku("a", 1000, per_user_limit=1)])
        got = self.rush(lid, ["u%d" % i for i in range(20)])
        self.assertEqual(sorted(r.status for r in got.values()), [201] * 20)
        # a valid ticket is harmless without a room; a bad one is still an error
        now = int(time.time() * 1000)
        r = self.reserve(self.b, lid, "v", sign(lid, "v", 1, now + 9000, now + 60000))
        self.assertEqual(r.status, 201, r.body)
        self.assertError(self.reserve(self.b, lid, "w", "junk"), 400, "invalid_ticket")
        self.assertEqual(self.r.call("EXISTS", "fs:wr:{%s}" % lid), 0)
        # turn a room on (on srv); b, which cached "no room", follows within about a second
        r = self.srv.admin_put_launch(lid, [sku("a", 1000, per_user_limit=1)],
                                      extra={"waiting_room": {"admit_per_sec": 1}})
        self.assertEqual(r.status, 200, r.body)
        seen = []

        def waiting():
            seen.append(self.reserve(self.b, lid, "x%d" % len(seen)).status)
            return seen[-1] == 202

        t0 = time.monotonic()
        fsserver.wait_until(waiting, 3, interval=0.1, what="a 202 from the other server")
        self.assertLess(time.monotonic() - t0, 1.6)


    def test_key_from_the_shopper_secret_and_the_documented_example(self):
        doc = open(os.path.join(fsserver.REPO, "docs", "rate-limits.md"), encoding="utf-8").read()
        doc = doc[doc.index("## Waiting room"):]
        secret = re.search(r"with secret\s+`([^`]+)`", doc).group(1)
        key_hex = re.search(r"`key` is hex\s+`([0-9a-f]{64})`", doc).group(1)
        ticket = re.search(r'"ticket":"([A-Za-z0-9_.-]+)"', doc).group(1)
        payload = re.search(r"ticket of\s+`([^`]+)`", doc).group(1)
        self.assertEqual(hmac.new(secret.encode(), LABEL, hashlib.sha256).hexdigest(), key_hex)
        launch, user, pos, turn, exp = payload.split("|")
        self.assertEqual(sign(launch, user, int(pos), int(turn), int(exp), secret=secret), ticket)
        # a server with a shopper secret signs and accepts tickets keyed by it, not the admin token
        c = Server(self.redis.url, env={"FLASHSALE_SHOPPER_SECRET": secret})
        self.addCleanup(lambda: c.alive() and c.stop())
        self.addCleanup(c.close_conn)
        lid = self.room_launch(1)
        now = int(time.time() * 1000)
        t = sign(lid, "sam", 1, now - 10, now + 60000, secret=secret)
        self.assertEqual(self.reserve(c, lid, "sam", t).status, 201)
        self.assertError(self.reserve(self.srv, lid, "sam", t), 400, "invalid_ticket")


if __name__ == "__main__":
    fsserver.main(timeout=60)
