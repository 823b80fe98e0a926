#!/usr/bin/env python3
"""flashsale-relay, crashes and company: a relay killed with SIGKILL mid-stream (its entries taken
over by another relay after claim_idle, or re-read at once by its restart under the same consumer
name), two relays sharing the streams, and SIGTERM (in-flight deliveries finish, the rest is given
back for immediate take-over). The receiver, deduplicating by order_id, always ends with exactly the
set of confirmed orders; duplicates are bounded by what was in flight."""

import collections
import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import fsredis  # noqa: E402
import fsserver  # noqa: E402
from fsreceiver import RelayCase  # noqa: E402
from fsserver import wait_until  # noqa: E402


class TakeoverTest(RelayCase):
    def assert_exactly(self, ids, max_duplicates):
        got = collections.Counter(self.rcv.accepted_ids())
        self.assertEqual(set(got), set(ids), "the receiver has exactly the confirmed orders")
        dups = sum(n - 1 for n in got.values())
        self.assertLessEqual(dups, max_duplicates, got.most_common(3))
        return dups

    def test_sigkill_mid_stream_other_relay_takes_over(self):
        lid = self.new_launch(["a", "b"])
        ids = self.orders.confirm(lid, "a", 150) + self.orders.confirm(lid, "b", 150)
        self.rcv.delay = 0.01
        env = {"FLASHSALE_RELAY_CLAIM_IDLE_MS": "1000", "FLASHSALE_RELAY_MAX_IN_FLIGHT": "4"}
        a = self.relay(env=env)
        wait_until(lambda: len(self.rcv.accepted_ids()) >= 60, 15, what="deliveries under way")
        a.kill()  # SIGKILL: no chance to give anything back
        held = self.orders.pending(lid, "a") + self.orders.pending(lid, "b")
        self.assertGreater(held, 0, "the dead relay left entries pending")
        b = self.relay(env=env)
        self.wait_delivered(ids, timeout=25)
        self.wait_settled(lid, ["a", "b"])
        time.sleep(0.3)
        # At most the requests in flight (4) and acks not yet written when it died come twice.
        self.assert_exactly(ids, max_duplicates=8)
        self.assertGreaterEqual(b.metric("fs_relay_entries_taken_over_total"), 1)
        self.assertIn("event=relay_taken_over", b.log_text())

    def test_sigkill_then_restart_with_same_consumer_resumes_at_once(self):
        lid = self.new_launch(["a"])
        ids = self.orders.confirm(lid, "a", 200)
        self.rcv.delay = 0.01
        # claim_idle is long: only re-reading its own entries can make this quick.
        env = {"FLASHSALE_RELAY_CONSUMER": "relay-fixed", "FLASHSALE_RELAY_CLAIM_IDLE_MS": "60000",
               "FLASHSALE_RELAY_MAX_IN_FLIGHT": "4"}
        a = self.relay(env=env)
        wait_until(lambda: len(self.rcv.accepted_ids()) >= 50, 15, what="deliveries under way")
        a.kill()
        self.assertGreater(self.orders.pending(lid, "a"), 0)
        t0 = time.monotonic()
        a2 = self.relay(env=env)
        self.wait_delivered(ids, timeout=20)
        self.assertLess(time.monotonic() - t0, 20)
        self.wait_settled(lid, ["a"])
        self.assert_exactly(ids, max_duplicates=8)
        self.assertGreater(a2.metric("fs_relay_entries_taken_over_total"), 0)

    def test_two_relays_share_the_work_exactly_once(self):
        lid = self.new_launch(["a", "b", "c"])
        self.rcv.delay = 0.003
        env = {"FLASHSALE_RELAY_MAX_IN_FLIGHT": "4", "FLASHSALE_RELAY_BATCH": "10"}
        a = self.relay(env=env)
        b = self.relay(env=env)

        # Both follow every stream before the first order: a relay that discovered the launch
        # later than the other (a loaded machine, sanitizers) could otherwise find nothing left.
        def both_reading():
            for s in ("a", "b", "c"):
                try:
                    if len(self.r.call("XINFO", "CONSUMERS", "fs:{%s:%s}:orders" % (lid, s),
                                       "relay")) < 2:
                        return False
                except fsredis.RedisError:  # no stream or group yet
                    return False
            return True
        wait_until(both_reading, 15, what="both relays reading every stream")
        ids = []
        for s in ("a", "b", "c"):
            ids += self.orders.confirm(lid, s, 100)
        self.wait_delivered(ids)
        self.wait_settled(lid, ["a", "b", "c"])
        time.sleep(0.3)
        self.assert_exactly(ids, max_duplicates=0)
        da, db = a.metric("fs_relay_delivered_total"), b.metric("fs_relay_delivered_total")
        self.assertEqual(da + db, 300)
        self.assertGreater(da, 0)
        self.assertGreater(db, 0)

    def test_two_relays_one_killed(self):
        lid = self.new_launch(["a"])
        self.rcv.delay = 0.01
        env = {"FLASHSALE_RELAY_CLAIM_IDLE_MS": "1000", "FLASHSALE_RELAY_MAX_IN_FLIGHT": "3",
               "FLASHSALE_RELAY_BATCH": "20"}
        a = self.relay(env=env)
        b = self.relay(env=env)
        ids = self.orders.confirm(lid, "a", 200)
        wait_until(lambda: a.metric("fs_relay_delivered_total") >= 10, 15, what="a delivering")
        a.kill()
        self.wait_delivered(ids, timeout=25)
        self.wait_settled(lid, ["a"])
        self.assert_exactly(ids, max_duplicates=6)
        self.assertEqual(b.request("GET", "/readyz").status, 200)

    def test_sigterm_finishes_in_flight_and_gives_back_the_rest(self):
        lid = self.new_launch(["a"])
        ids = self.orders.confirm(lid, "a", 40)
        self.rcv.delay = 0.5
        env = {"FLASHSALE_RELAY_CLAIM_IDLE_MS": "20000", "FLASHSALE_RELAY_MAX_IN_FLIGHT": "2",
               "FLASHSALE_SHUTDOWN_TIMEOUT_MS": "5000"}
        a = self.relay(env=env)
        wait_until(lambda: len(self.rcv.records()) >= 2, 10, what="2 requests in flight")
        t0 = time.monotonic()
        a.proc.send_signal(signal.SIGTERM)
        self.assertEqual(a.proc.wait(10), 0, a.log_tail())
        self.assertLess(time.monotonic() - t0, 4, "done when the in-flight answers came")
        log = a.log_text()
        self.assertIn("event=shutting_down", log)
        self.assertIn("event=stopped", log)
        self.assertNotIn("shutdown_forced", log)
        first = {d.order_id for d in self.rcv.records()}
        # Those in flight were answered and acknowledged; the rest stays pending, given back.
        pending = self.orders.pending(lid, "a")
        self.assertEqual(pending, 40 - len(first))
        self.rcv.delay = 0.0
        # Another relay takes the given-back entries at once, though claim_idle is 20 s.
        t1 = time.monotonic()
        b = self.relay(env=env)
        self.wait_delivered(ids, timeout=15)
        self.assertLess(time.monotonic() - t1, 12)
        self.wait_settled(lid, ["a"])
        self.assert_exactly(ids, max_duplicates=0)
        self.assertGreaterEqual(b.metric("fs_relay_entries_taken_over_total"), len(ids) - len(first))


class HeartbeatTest(RelayCase):
    def test_held_entries_are_not_taken_while_their_relay_lives(self):
        """An order waiting out a Retry-After longer than claim_idle stays with its relay."""
        lid = self.new_launch(["a"])
        env = {"FLASHSALE_RELAY_CLAIM_IDLE_MS": "900"}
        [oid] = self.orders.confirm(lid, "a", 1)
        self.rcv.per_order[oid] = (503, {"Retry-After": "3"})
        a = self.relay(env=env)
        wait_until(lambda: self.rcv.records(), 10, what="first attempt")
        del self.rcv.per_order[oid]
        b = self.relay(env=env)
        self.wait_delivered([oid], timeout=10)
        recs = self.rcv.records()
        self.assertEqual(len(recs), 2, [(r.action, r.t) for r in recs])
        self.assertGreaterEqual(recs[1].t - recs[0].t, 2.9)
        self.assertEqual(recs[1].headers["flashsale-delivery-attempt"], "2")
        self.assertEqual(b.metric("fs_relay_entries_taken_over_total"), 0)
        self.assertEqual(a.metric("fs_relay_delivered_total"), 1)

    def test_frozen_relay_loses_its_entries_and_drops_them(self):
        """A relay stopped (SIGSTOP) longer than claim_idle: another takes its entries over; when
        the first wakes up, its heartbeat learns they are gone and it does not send them again."""
        lid = self.new_launch(["a"])
        ids = self.orders.confirm(lid, "a", 5)
        self.rcv.default = 500
        a = self.relay(env={"FLASHSALE_RELAY_CLAIM_IDLE_MS": "1000",
                            "FLASHSALE_RELAY_BACKOFF_MIN_MS": "10000",
                            "FLASHSALE_RELAY_BACKOFF_MAX_MS": "10000"})
        wait_until(lambda: len(self.rcv.records()) == 5, 10, what="first attempts")
        # Attempts are recorded (the failing answers were handled) before freezing.
        wait_until(lambda: self.r.call("HLEN", "fs:{%s:a}:delivery" % lid) == 5, 5,
                   what="attempt records")
        a.proc.send_signal(signal.SIGSTOP)
        try:
            self.rcv.default = 200
            b = self.relay(env={"FLASHSALE_RELAY_CLAIM_IDLE_MS": "1000"})
            self.wait_delivered(ids, timeout=15)
            self.wait_settled(lid, ["a"])
        finally:
            a.proc.send_signal(signal.SIGCONT)
        wait_until(lambda: a.metric("fs_relay_entries_lost_total") == 5, 5, what="a learns")
        time.sleep(0.5)
        self.assertEqual(collections.Counter(self.rcv.accepted_ids()), {i: 1 for i in ids})
        self.assertEqual(a.metric("fs_relay_held"), 0)
        self.assertEqual(b.metric("fs_relay_entries_taken_over_total"), 5)
        # b went on with a's attempt count.
        second = [d for d in self.rcv.records() if d.action == 200]
        self.assertEqual({d.headers["flashsale-delivery-attempt"] for d in second}, {"2"})
        self.assertIn("event=relay_entry_lost", a.log_text())


if __name__ == "__main__":
    fsserver.main(timeout=58)
