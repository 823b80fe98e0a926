#!/usr/bin/env python3
"""Redis connections cut, stalled and refused at random while shoppers reserve, confirm and cancel
on two servers (one of two event loops, one of one): nothing is sold twice, no shopper gets past
the limit, every answer the servers gave holds afterwards, and they recover by themselves.

Between the servers and Redis sits a proxy. For a few seconds, every 100-300 ms, it cuts one of
the servers' connections (mostly a command connection, else any, subscriptions included; what was
in flight is lost), stalls one (its bytes stop; the server's deadline drops it) or refuses new
connections for a while; and once, halfway, Redis itself restarts (from its append-only file).
Meanwhile client threads, half on each server, reserve (with an Idempotency-Key, retried with the
same key after a 503, as a storefront would), then confirm, cancel or leave each hold; holds
expire after two seconds, so the sweeper runs through the faults too. Afterwards, with the proxy
healthy again:
  * every request had an answer of a documented kind (no 500, no hang, no closed connection);
  * the counter invariant and the record checks of tests/lib/checks.py hold for every SKU;
  * each idempotency key that got a 201 got the same reservation every time;
  * each reservation answered 201 exists, in a state that agrees with what its confirm and cancel
    were answered (a 503 may or may not have been decided), and each confirmed one is in the
    order stream once;
  * each server is ready again, reserves, and stops cleanly.
The seed of the random faults and shoppers is printed on failure (FS_FAULT_SEED replays it)."""

import os
import random
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import fsserver  # noqa: E402
from fsserver import ServerTestCase, sku, wait_until  # noqa: E402
from tcpproxy import Proxy  # noqa: E402

FAULT_SECONDS = 4.0
CLIENTS = 8
SHOPPERS = 400
LIMIT = 3
HOLD_SECONDS = 2
RETRIES = 6


class RedisFaultsUnderLoadTest(ServerTestCase):
    server_env = {"FLASHSALE_THREADS": "1"}  # the class's own server is not used
    redis_kwargs = {"appendonly": True}  # restarted mid-run: nothing of it may be lost
    tls = False

    def metric(self, srv, name):
        for line in srv.request("GET", "/metrics").body.splitlines():
            if line.startswith(name + " "):
                return int(float(line.split()[1]))
        return 0

    def command_ports(self, ours):
        """Of the proxy's upstream ports ours, those of command connections (not subscribed)."""
        found = set()
        for line in self.r.call("CLIENT", "LIST").splitlines():
            f = dict(kv.split("=", 1) for kv in line.split(" ") if "=" in kv)
            port = int(f["addr"].rsplit(":", 1)[1])
            if port in ours and f["sub"] == "0" and f["psub"] == "0":
                found.add(port)
        return found

    def test_random_connection_faults_lose_and_double_nothing(self):
        seed = int(os.environ.get("FS_FAULT_SEED") or random.randrange(1 << 30))
        note = "FS_FAULT_SEED=%d" % seed
        proxy = Proxy(self.redis.tls_port if self.tls else self.redis.port)
        self.addCleanup(proxy.close)
        # A server of two loops and one of one, both through the proxy.
        env = {"FLASHSALE_REDIS_TIMEOUT_MS": "250"}
        if self.tls:
            env["FLASHSALE_REDIS_TLS_CA_FILE"] = self.certs.ca
        srv, srv2 = (fsserver.Server("%s://127.0.0.1:%d/0" % ("rediss" if self.tls else "redis",
                                                             proxy.port),
                                     env=dict(env, FLASHSALE_THREADS=str(n)))
                     for n in (2, 1))
        for s in (srv, srv2):
            self.addCleanup(lambda s=s: s.alive() and s.kill())
        # Two SKUs that sell out during the run, one that cannot.
        skus = {"a": 150, "b": 150, "big": 100000}
        lid = self.new_launch([sku(n, stock, per_user_limit=LIMIT) for n, stock in skus.items()],
                              srv=srv, hold_seconds=HOLD_SECONDS)
        servers = (srv, srv2)

        def reconnects():
            return sum(self.metric(s, "fs_redis_reconnects_total") for s in servers)
        reconnects0 = reconnects()

        stop = threading.Event()
        lock = threading.Lock()
        answers = []  # (what, status, error code)
        by_key = {}  # idempotency key -> set of reservation ids answered 201
        holds = {}  # rid -> {"user", "sku", "confirm", "cancel": the final status, or None}
        problems = []

        def call(fn, *args, **kw):
            """fn until an answer other than 503, at most RETRIES times; every answer recorded."""
            for attempt in range(RETRIES):
                r = fn(*args, **kw)
                code = r.body.get("error") if isinstance(r.body, dict) else None
                with lock:
                    answers.append((fn.__name__, r.status, code))
                if r.status != 503 or stop.is_set():
                    return r
                time.sleep(0.05 * (attempt + 1))
            return r

        def shopper_thread(k):
            rng = random.Random(seed * 100 + k)
            c = servers[k % 2].clone()
            n = 0
            try:
                while not stop.is_set():
                    n += 1
                    user = "u%d" % rng.randrange(SHOPPERS)
                    name = rng.choice(["a", "a", "b", "b", "big"])
                    key = "k%d-%d" % (k, n)
                    r = call(c.reserve, lid, name, user, idem=key)
                    if r.status != 201:
                        continue
                    rid = r.body["reservation_id"]
                    with lock:
                        by_key.setdefault(key, set()).add(rid)
                        h = holds.setdefault(rid, {"user": user, "sku": name, "confirm": None,
                                                   "cancel": None})
                    what = rng.random()
                    if what < 0.4:
                        h["confirm"] = call(c.confirm, rid, user).status
                    elif what < 0.6:
                        h["cancel"] = call(c.cancel, rid, user).status
            except Exception as e:  # noqa: BLE001 - any failure of a client is the test's
                with lock:
                    problems.append("client %d: %r" % (k, e))
            finally:
                c.close_conn()

        threads = [threading.Thread(target=shopper_thread, args=(k,), daemon=True)
                   for k in range(CLIENTS)]
        for t in threads:
            t.start()
        rng = random.Random(seed)
        faults = {"cut": 0, "stall": 0, "refuse": 0, "restart": 0}
        end = time.monotonic() + FAULT_SECONDS
        while time.monotonic() < end:
            time.sleep(rng.uniform(0.1, 0.3))
            if not faults["restart"] and time.monotonic() > end - FAULT_SECONDS / 2:
                # Redis itself goes (SIGTERM: it writes its append-only file) and comes back on
                # the same port: every connection is lost at once
                self.redis.restart()
                self.r = self.redis.client()
                faults["restart"] += 1
                continue
            ports = sorted(proxy.upstream_ports())
            if rng.random() < 0.6:  # mostly the loops' command connections, else any
                ports = [p for p in ports if p in self.command_ports(ports)]
            what = rng.choice(["cut", "cut", "stall", "refuse"])
            if what == "refuse":
                proxy.refuse_new()
                time.sleep(rng.uniform(0.1, 0.5))
                proxy.refuse_new(False)
            elif ports:
                getattr(proxy, what)(rng.choice(ports))
            else:
                continue
            faults[what] += 1
        proxy.refuse_new(False)
        proxy.cut_stalled()  # those the server has not dropped yet
        wait_until(lambda: all(s.request("GET", "/readyz").status == 200 for s in servers), 15,
                   what="both servers ready again after the faults (%s)" % note)
        time.sleep(0.5)  # shoppers go on against a healthy Redis for a while
        stop.set()
        for t in threads:
            t.join(30)
            self.assertFalse(t.is_alive(), "a client thread hangs (%s)" % note)
        self.assertEqual(problems, [], note)

        # Every answer of a documented kind.
        allowed = {
            "reserve": {(201, None), (409, "sold_out"), (409, "limit_exceeded"),
                        (503, "unavailable"), (503, "overloaded")},
            "confirm": {(200, None), (409, "reservation_expired"), (503, "unavailable")},
            "cancel": {(200, None), (409, "reservation_expired"), (503, "unavailable")},
        }
        odd = sorted({a for a in answers if (a[1], a[2]) not in allowed[a[0]]})
        self.assertEqual(odd, [], "answers of no documented kind (%s)" % note)
        count = {s: sum(1 for a in answers if a[0] == "reserve" and a[1] == s)
                 for s in (201, 409, 503)}
        sys.stderr.write("%s: faults %r; reservations answered %r; confirms and cancels %d\n"
                         % (note, faults, count, sum(1 for a in answers if a[0] != "reserve")))
        self.assertGreater(count[201], 50, "too few reservations went through (%s)" % note)
        self.assertGreater(count[409], 0, "no SKU sold out or no limit reached (%s)" % note)
        # (The metrics are the loops' figures as last published: a few times a second.)
        wait_until(lambda: reconnects() - reconnects0 >= 3, 5,
                   what="the servers' reconnects counted (%s: %r)" % (note, faults))

        # Redis's records: the invariant, every SKU.
        state = self.check_invariants(lid, list(skus))
        for key, rids in by_key.items():
            self.assertEqual(len(rids), 1, "idempotency key %s answered with %s (%s)"
                             % (key, sorted(rids), note))
        ordered = {}
        for name in skus:
            for entry in state[name]["orders"]:
                ordered[entry["reservation_id"]] = ordered.get(entry["reservation_id"], 0) + 1
        for rid, h in holds.items():
            r = srv.get_res(rid, h["user"])
            self.assertEqual(r.status, 200, "reservation %s answered 201 is gone: %r (%s)"
                             % (rid, r.body, note))
            status = r.body["status"]
            last = h["confirm"] or h["cancel"]  # the final answer to the one asked, if any
            if last == 200:
                want = {"confirmed" if h["confirm"] else "cancelled"}
            elif last == 409:  # reservation_expired, the only 409 either can get here
                want = {"expired"}
            else:  # left alone, or its confirm or cancel 503: decided or not
                want = {"held", "expired"} | ({"confirmed"} if h["confirm"] else set()) \
                    | ({"cancelled"} if h["cancel"] else set())
            self.assertIn(status, want, "reservation %s (%r) (%s)" % (rid, h, note))
            self.assertEqual(ordered.get(rid, 0), 1 if status == "confirmed" else 0,
                             "reservation %s, %s, in the order stream (%s)" % (rid, status, note))
        for name, stock in skus.items():
            sold = state[name]["sold"]
            confirmed = sum(1 for h in holds.values() if h["sku"] == name and h["confirm"] == 200)
            self.assertLessEqual(confirmed, sold, "%s (%s)" % (name, note))
            self.assertLessEqual(sold + state[name]["held"], stock, "%s (%s)" % (name, note))

        # Recovered: a reservation goes through on each, and each stops cleanly (exit status 0:
        # under a sanitizer, no report at exit either).
        for i, s in enumerate(servers):
            r = s.reserve(lid, "big", "after-the-faults-%d" % i)
            self.assertEqual(r.status, 201, r.body)
            s.stop()


class RedisFaultsOverTlsTest(RedisFaultsUnderLoadTest):
    """The same over rediss://: every connection goes through the TLS pump (src/redis/redis_tls.h),
    whose two sides must end together whatever is cut, stalled or restarted."""
    tls = True

    @classmethod
    def setUpClass(cls):
        import fsreceiver
        d = tempfile.mkdtemp(prefix="fs-faults-tls-")
        cls.certs = fsreceiver.make_certs(d)
        cls.redis_kwargs = dict(RedisFaultsUnderLoadTest.redis_kwargs,
                                tls=(cls.certs.server_cert, cls.certs.server_key, cls.certs.ca))
        super().setUpClass()


if __name__ == "__main__":
    fsserver.main(timeout=120)
