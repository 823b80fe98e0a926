#!/usr/bin/env python3
"""Test support for flashsale-relay (stdlib only): a fulfillment receiver, test certificates, the
relay process, and order creation through the real flashsale Functions.

Receiver(secrets, tls=None)            an HTTP/1.1 server on 127.0.0.1 in a background thread
    .start() / .stop()                 (asyncio; TLS done by hand over ssl.MemoryBIO so that a
    .url                               refused handshake and the first bytes of every connection
                                       can be recorded)
  Behaviour (thread-safe, may change while the relay runs):
    .default = 200                     action for requests nothing else decides
    .script.append(action)             actions for the next requests, in order
    .per_order[order_id] = action      action for one order (wins over the rest)
    .delay = 0.0                       seconds before each answer
    .stop_listening() / .start_listening()   refuse connections (and drop open ones) / accept again
  An action is an HTTP status (int), (status, {"Retry-After": "2"}), "stall" (never answer),
  "close" (close without answering), "half" (a truncated 200 answer, then close: the order was
  processed but the relay cannot know) or "interim" (100 Continue, then 200).
  Records (each a Delivery): .deliveries (every request), .accepted_ids() (order ids answered 2xx or
  "half", with repetitions), .first_bytes (first byte of every connection), .tls_failures.

make_certs(dir) -> Certs               a test CA, a server certificate for 127.0.0.1/localhost
                                       signed by it, another CA, and a certificate for the wrong
                                       name signed by the right CA (openssl CLI)
Relay(redis_url, target, ...)          the flashsale-relay process (see relay_bin()), an
                                       fsserver.Server subclass
Orders(server, redis_client)           launches and confirmed orders through the real server's API
verify_signature(header, body, secrets, now=None, tolerance=300)

Run standalone (benchmarks): fsreceiver.py --port N [--cert C --key K] [--secret S]
[--reuse-port]; then GET /stats answers {"requests", "accepted", "unique", "bad_signatures",
"connections"} as JSON (of the process that accepted that connection).
"""

import asyncio
import collections
import hashlib
import hmac
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import unittest

LIB_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(LIB_DIR))
if LIB_DIR not in sys.path:
    sys.path.insert(0, LIB_DIR)

import fsredis  # noqa: E402
import fsserver  # noqa: E402

SECRET = "whsec-test-relay-3b9f2c7d1e5a4f60"
ADMIN_TOKEN = "adm-test-relay-9c1e44"

Delivery = collections.namedtuple(
    "Delivery", "order_id body headers sig_ok action conn t")


def verify_signature(header, body, secrets, now=None, tolerance=300):
    """True when header ("t=<unix>,v1=<hex>[,v1=...]") signs body (bytes) under one of secrets and
    t is within tolerance seconds of now."""
    if not header:
        return False
    t, sigs = None, []
    for part in header.split(","):
        k, _, v = part.strip().partition("=")
        if k == "t":
            t = v
        elif k == "v1":
            sigs.append(v)
    if t is None or not t.isdigit() or not sigs:
        return False
    now = time.time() if now is None else now
    if abs(now - int(t)) > tolerance:
        return False
    for s in secrets:
        want = hmac.new(s.encode(), t.encode() + b"." + body, hashlib.sha256).hexdigest()
        if any(hmac.compare_digest(want, g) for g in sigs):
            return True
    return False


# ---------------------------------------------------------------------------------------------
# receiver


class _Conn(asyncio.Protocol):
    def __init__(self, rcv):
        self.rcv = rcv
        self.buf = b""
        self.sslobj = None
        self.closed = False
        self.stalled = False

    # -- transport and TLS --------------------------------------------------------------------

    def connection_made(self, transport):
        self.transport = transport
        self.id = self.rcv._new_conn(self)
        self.first = True
        if self.rcv.tls_ctx is not None:
            self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
            self.sslobj = self.rcv.tls_ctx.wrap_bio(self.inc, self.out, server_side=True)
            self.handshaken = False

    def connection_lost(self, exc):
        self.closed = True
        self.rcv._conn_gone(self)

    def _flush_tls(self):
        data = self.out.read()
        if data and not self.closed:
            self.transport.write(data)

    def send(self, data):
        if self.closed:
            return
        if self.sslobj is None:
            self.transport.write(data)
            return
        self.sslobj.write(data)
        self._flush_tls()

    def close(self):
        if not self.closed:
            self.closed = True
            self.transport.close()

    def data_received(self, data):
        if self.first:
            self.first = False
            self.rcv._first_byte(data[:1])
        if self.sslobj is None:
            self.buf += data
            self._process()
            return
        self.inc.write(data)
        if not self.handshaken:
            try:
                self.sslobj.do_handshake()
                self.handshaken = True
            except ssl.SSLWantReadError:
                self._flush_tls()
                return
            except ssl.SSLError as e:
                self._flush_tls()
                self.rcv._tls_failed(str(e))
                self.close()
                return
            self._flush_tls()
        while True:
            try:
                chunk = self.sslobj.read(65536)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLError:
                self.close()
                return
            if not chunk:
                self.close()
                return
            self.buf += chunk
        self._flush_tls()
        self._process()

    # -- HTTP ---------------------------------------------------------------------------------

    def _process(self):
        while not self.closed and not self.stalled:
            head_end = self.buf.find(b"\r\n\r\n")
            if head_end < 0:
                return
            lines = self.buf[:head_end].decode("latin-1").split("\r\n")
            parts = lines[0].split(" ")
            headers = {}
            for line in lines[1:]:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
            n = int(headers.get("content-length", "0") or 0)
            if len(self.buf) < head_end + 4 + n:
                return
            body = self.buf[head_end + 4:head_end + 4 + n]
            self.buf = self.buf[head_end + 4 + n:]
            method, path = parts[0], parts[1] if len(parts) > 1 else "/"
            if method == "GET" and path == "/stats":
                self._answer(200, {}, json.dumps(self.rcv.stats()).encode(), headers)
                continue
            self.rcv._handle(self, method, path, headers, body)

    def _answer(self, status, extra, body, req_headers):
        reason = {200: "OK", 201: "Created", 202: "Accepted", 400: "Bad Request",
                  408: "Request Timeout", 409: "Conflict", 422: "Unprocessable Entity",
                  429: "Too Many Requests", 500: "Internal Server Error",
                  503: "Service Unavailable"}.get(status, "Status")
        h = "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n" % (
            status, reason, len(body))
        for k, v in extra.items():
            h += "%s: %s\r\n" % (k, v)
        close = req_headers.get("connection", "").lower() == "close"
        if close:
            h += "Connection: close\r\n"
        self.send(h.encode("latin-1") + b"\r\n" + body)
        if close:
            self.close()


class Receiver:
    """A fulfillment endpoint for tests; see the module docstring."""

    def __init__(self, secrets=(SECRET,), tls=None, port=None, path="/orders", reuse_port=False):
        self.secrets = list(secrets)
        self.reuse_port = reuse_port
        self.tls = tls            # (certfile, keyfile) or None
        self.port = port
        self.path = path
        self.lock = threading.Lock()
        self.default = 200
        self.script = collections.deque()
        self.per_order = {}
        self.delay = 0.0
        self.deliveries = []
        self.first_bytes = []
        self.tls_failures = []
        self.conns = set()
        self.nconns = 0
        self.count_requests = 0
        self.count_accepted = 0
        self.count_bad_sig = 0
        self.unique = set()
        self.keep_records = True
        self.tls_ctx = None
        self.loop = None
        self.server = None

    @property
    def url(self):
        return "%s://127.0.0.1:%d%s" % ("https" if self.tls else "http", self.port, self.path)

    def url_for(self, host):
        return "%s://%s:%d%s" % ("https" if self.tls else "http", host, self.port, self.path)

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self):
        if self.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(self.tls[0], self.tls[1])
            self.tls_ctx = ctx
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        if self.port is None:
            self.port = fsredis.free_port()
        self.start_listening()
        return self

    def _call(self, coro_or_fn, timeout=10):
        if asyncio.iscoroutine(coro_or_fn):
            return asyncio.run_coroutine_threadsafe(coro_or_fn, self.loop).result(timeout)
        fut = asyncio.run_coroutine_threadsafe(self._wrap(coro_or_fn), self.loop)
        return fut.result(timeout)

    @staticmethod
    async def _wrap(fn):
        return fn()

    def start_listening(self):
        async def go():
            self.server = await self.loop.create_server(lambda: _Conn(self), "127.0.0.1",
                                                        self.port, reuse_address=True,
                                                        reuse_port=self.reuse_port or None,
                                                        backlog=512)
        for attempt in range(50):
            try:
                self._call(go())
                return
            except OSError:
                time.sleep(0.1)  # the port may linger briefly after stop_listening
        raise RuntimeError("receiver could not listen on port %d" % self.port)

    def stop_listening(self, drop_connections=True):
        """Refuse new connections (connection refused) and, by default, drop open ones."""
        async def go():
            if self.server is not None:
                self.server.close()
                self.server = None
            if drop_connections:
                for c in list(self.conns):
                    c.close()
        self._call(go())

    def stop(self):
        if self.loop is None:
            return
        try:
            self.stop_listening()
        except Exception:
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        if not self.thread.is_alive():
            self.loop.close()
        self.loop = None

    def kill(self):  # for fsserver's watchdog
        self.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *a):
        self.stop()

    # -- bookkeeping (event-loop thread) ------------------------------------------------------

    def _new_conn(self, c):
        with self.lock:
            self.nconns += 1
            self.conns.add(c)
            return self.nconns

    def _conn_gone(self, c):
        with self.lock:
            self.conns.discard(c)

    def _first_byte(self, b):
        with self.lock:
            self.first_bytes.append(b)

    def _tls_failed(self, why):
        with self.lock:
            self.tls_failures.append(why)

    def _decide(self, order_id):
        with self.lock:
            if order_id in self.per_order:
                return self.per_order[order_id]
            if self.script:
                return self.script.popleft()
            return self.default

    def _handle(self, conn, method, path, headers, body):
        order_id = None
        try:
            order_id = json.loads(body).get("order_id")
        except (ValueError, AttributeError):
            pass
        sig_ok = verify_signature(headers.get("flashsale-signature"), body, self.secrets)
        action = self._decide(order_id)
        if method != "POST" or path != self.path:
            action = 404
        d = Delivery(order_id, body, headers, sig_ok, action, conn.id, time.time())
        accepted = isinstance(action, int) and 200 <= action < 300 or action in ("half", "interim") or (
            isinstance(action, tuple) and 200 <= action[0] < 300)
        with self.lock:
            self.count_requests += 1
            if not sig_ok:
                self.count_bad_sig += 1
            if accepted:
                self.count_accepted += 1
                self.unique.add(order_id)
            if self.keep_records:
                self.deliveries.append(d)
        if self.delay > 0 and action not in ("stall", "close"):
            conn.stalled = True

            def later():
                conn.stalled = False
                self._act(conn, action, headers)
                conn._process()
            self.loop.call_later(self.delay, later)
            return
        self._act(conn, action, headers)

    def _act(self, conn, action, headers):
        if action == "stall":
            conn.stalled = True  # read nothing more, answer nothing: the relay's deadline fires
            return
        if action == "close":
            conn.close()
            return
        if action == "interim":
            conn.send(b"HTTP/1.1 100 Continue\r\n\r\n")
            conn._answer(200, {}, b'{"received":true}', headers)
            return
        if action == "half":
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 40\r\n\r\n{\"received\":")
            conn.close()
            return
        if isinstance(action, tuple):
            status, extra = action
        else:
            status, extra = action, {}
        body = b'{"received":true}' if 200 <= status < 300 else (
            b'{"error":"rejected","message":"test receiver answers %d"}' % status)
        conn._answer(status, extra, body, headers)

    # -- queries (any thread) -----------------------------------------------------------------

    def records(self):
        with self.lock:
            return list(self.deliveries)

    def accepted_ids(self):
        """Order ids the receiver accepted (2xx, "half" or "interim"), one per acceptance."""
        out = []
        for d in self.records():
            a = d.action
            if (isinstance(a, int) and 200 <= a < 300) or a in ("half", "interim") or (
                    isinstance(a, tuple) and 200 <= a[0] < 300):
                out.append(d.order_id)
        return out

    def stats(self):
        with self.lock:
            return {"requests": self.count_requests, "accepted": self.count_accepted,
                    "unique": len(self.unique), "bad_signatures": self.count_bad_sig,
                    "connections": self.nconns}


# ---------------------------------------------------------------------------------------------
# certificates

Certs = collections.namedtuple("Certs", "dir ca ca_key server_cert server_key other_ca "
                                        "wrong_name_cert wrong_name_key")


def _openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE, timeout=30)


def _ca(d, name, cn):
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", name + ".key", "-out", name + ".crt", "-days", "2",
             "-subj", "/CN=" + cn, "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)


def _leaf(d, name, ca, san, usage="serverAuth"):
    """A certificate for name signed by ca, for usage (serverAuth, or clientAuth for a client)."""
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + name, cwd=d)
    with open(os.path.join(d, name + ".ext"), "w") as f:
        f.write("subjectAltName=%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=%s\n"
                "keyUsage=critical,digitalSignature\n" % (san, usage))
    _openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".crt", "-CAkey", ca + ".key",
             "-CAcreateserial", "-out", name + ".crt", "-days", "2", "-extfile", name + ".ext",
             cwd=d)


def make_certs(d):
    """Generates the test PKI into directory d (a few hundred ms); also a client certificate
    client.crt / client.key signed by the same CA."""
    _ca(d, "ca", "flashsale test CA")
    _ca(d, "other-ca", "some other CA")
    _leaf(d, "server", "ca", "IP:127.0.0.1,DNS:localhost")
    _leaf(d, "wrong-name", "ca", "DNS:fulfillment.example.com")
    _leaf(d, "client", "ca", "DNS:flashsale-client", usage="clientAuth")
    j = lambda n: os.path.join(d, n)  # noqa: E731
    return Certs(d, j("ca.crt"), j("ca.key"), j("server.crt"), j("server.key"), j("other-ca.crt"),
                 j("wrong-name.crt"), j("wrong-name.key"))


# ---------------------------------------------------------------------------------------------
# the relay process


def relay_bin():
    """$FLASHSALE_RELAY_BIN; else the relay built next to $FLASHSALE_SERVER_BIN (ctest sets that
    one, whatever the build directory); else build/src/relay/flashsale-relay."""
    if os.environ.get("FLASHSALE_RELAY_BIN"):
        return os.environ["FLASHSALE_RELAY_BIN"]
    server = os.environ.get("FLASHSALE_SERVER_BIN")
    if server:
        sibling = os.path.join(os.path.dirname(server), "relay", "flashsale-relay")
        if os.path.exists(sibling):
            return sibling
    return os.path.join(REPO, "build", "src", "relay", "flashsale-relay")


class Relay(fsserver.Server):
    """One flashsale-relay process, listening (health, metrics, admin) on a free loopback port."""

    def __init__(self, redis_url, target, secret=SECRET, admin_token=ADMIN_TOKEN, env=None,
                 ca_file=None, **kw):
        e = {"FLASHSALE_RELAY_TARGET": target, "FLASHSALE_RELAY_SECRET": secret}
        if ca_file:
            e["FLASHSALE_RELAY_CA_FILE"] = ca_file
        e.update(env or {})
        super().__init__(redis_url, api_keys=(), admin_token=admin_token, env=e, **kw)

    def environment(self):
        env = super().environment()
        env.pop("FLASHSALE_LISTEN", None)
        if self.listen:
            env["FLASHSALE_RELAY_LISTEN"] = "127.0.0.1:%d" % self.port
        for k in [k for k, v in env.items() if v is None]:
            env.pop(k)
        return env

    def program(self):
        return relay_bin()

    def metrics(self):
        """{"name{labels}": value} from GET /metrics."""
        r = self.request("GET", "/metrics")
        out = {}
        for line in r.body.splitlines():
            if line and not line.startswith("#"):
                k, _, v = line.rpartition(" ")
                out[k] = float(v)
        return out

    def metric(self, name, default=0.0):
        return self.metrics().get(name, default)


# ---------------------------------------------------------------------------------------------
# orders through the real Functions


class Orders:
    """Launches and confirmed orders made through the real flashsale-server's HTTP API (reserve,
    then confirm), so the order streams are written exactly as in production."""

    def __init__(self, srv, client):
        self.srv = srv
        self.r = client
        self.seq = 0
        self.lock = threading.Lock()

    @staticmethod
    def p(launch, sku):
        return "fs:{%s:%s}" % (launch, sku)

    def launch(self, launch, skus, stock=100000, price_cents=79900):
        body = [fsserver.sku(s, stock, per_user_limit=5, price_cents=price_cents) for s in skus]
        r = self.srv.admin_put_launch(launch, body, hold_seconds=600)
        if r.status != 200:
            raise AssertionError("PUT launch: %s %r" % (r.status, r.body))
        r = self.srv.open(launch)
        if r.status != 200:
            raise AssertionError("open launch: %s %r" % (r.status, r.body))

    def _user(self):
        with self.lock:
            self.seq += 1
            return "u-%d-%d" % (os.getpid(), self.seq)

    def _one(self, srv, launch, sku, qty):
        user = self._user()
        r = srv.reserve(launch, sku, user, qty=qty)
        if r.status != 201:
            raise AssertionError("reserve: %s %r" % (r.status, r.body))
        c = srv.confirm(r.body["reservation_id"], user, payment_ref="pay-" + user)
        if c.status != 200:
            raise AssertionError("confirm: %s %r" % (c.status, c.body))
        return c.body["order_id"]

    def confirm(self, launch, sku, n, qty=1, threads=4):
        """n confirmed orders of one SKU (reserve + confirm, `threads` clients); returns their
        order ids."""
        out, errors = [], []
        per = [n // threads + (1 if i < n % threads else 0) for i in range(threads)]

        def work(k):
            srv = self.srv.clone()
            try:
                for _ in range(k):
                    oid = self._one(srv, launch, sku, qty)
                    with self.lock:
                        out.append(oid)
            except Exception as e:  # reported below
                errors.append(e)
            finally:
                srv.close_conn()
        ts = [threading.Thread(target=work, args=(k,)) for k in per if k]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        if errors:
            raise errors[0]
        return out

    def stream(self, launch, sku):
        """{order_id: {field: value, "_id": entry id}} of an order stream."""
        out = {}
        for _id, f in self.r.call("XRANGE", self.p(launch, sku) + ":orders", "-", "+"):
            d = dict(zip(f[0::2], f[1::2]))
            d["_id"] = _id
            out[d["order_id"]] = d
        return out

    def pending(self, launch, sku, stream="orders", group="relay"):
        """Entries of the group still pending on one stream (0 when the group does not exist)."""
        try:
            return self.r.call("XPENDING", self.p(launch, sku) + ":" + stream, group)[0]
        except fsredis.RedisError:
            return 0


# ---------------------------------------------------------------------------------------------
# base class of the relay tests

# Short intervals so that tests run in seconds; each test may override any of them.
FAST_ENV = {
    "FLASHSALE_RELAY_DISCOVER_INTERVAL_MS": "100",
    "FLASHSALE_RELAY_BLOCK_MS": "200",
    "FLASHSALE_RELAY_BACKOFF_MIN_MS": "50",
    "FLASHSALE_RELAY_BACKOFF_MAX_MS": "400",
    "FLASHSALE_RELAY_TIMEOUT_MS": "1000",
    "FLASHSALE_SHUTDOWN_TIMEOUT_MS": "2000",
}


class RelayCase(unittest.TestCase):
    """One Redis and one flashsale-server per class (orders come through its API); a fresh
    receiver per test; relays started with self.relay() are killed after the test."""

    receiver_kwargs = {}
    redis_kwargs = {}

    @classmethod
    def setUpClass(cls):
        cls.redis = fsserver.track(fsredis.RedisServer(**cls.redis_kwargs))
        cls.redis.start()
        cls.addClassCleanup(cls.redis.cleanup)
        cls.r = cls.redis.client()
        cls.srv = fsserver.Server(cls.redis.url)
        cls.addClassCleanup(lambda: cls.srv.alive() and cls.srv.stop())
        cls.orders = Orders(cls.srv, cls.r)

    def setUp(self):
        self.rcv = self.receiver()

    def receiver(self, **kw):
        args = dict(self.receiver_kwargs)
        args.update(kw)
        rcv = Receiver(**args).start()
        self.addCleanup(rcv.stop)
        return rcv

    def relay(self, target=None, env=None, start=True, **kw):
        e = dict(FAST_ENV)
        e.update(env or {})
        rl = Relay(self.redis.url, target or self.rcv.url, env=e, start=start, **kw)
        # Relays still running at the end get SIGTERM and must exit 0 (with sanitizers: no leak).
        self.addCleanup(lambda: rl.alive() and rl.stop())
        return rl

    def new_launch(self, skus=("a",)):
        lid = fsserver.unique("R")
        self.orders.launch(lid, list(skus))
        return lid

    def wait_delivered(self, ids, timeout=20, rcv=None):
        """Waits until the receiver accepted every order id of ids (at least once)."""
        rcv = rcv or self.rcv
        want = set(ids)
        fsserver.wait_until(lambda: want <= set(rcv.accepted_ids()), timeout,
                            what="%d orders delivered (have %d)" % (
                                len(want), len(want & set(rcv.accepted_ids()))))

    def wait_settled(self, launch, skus, timeout=10):
        """Waits until nothing is pending in the group on the SKUs' order and replay streams."""
        def settled():
            return all(self.orders.pending(launch, s, st) == 0
                       for s in skus for st in ("orders", "replay"))
        fsserver.wait_until(settled, timeout, what="no pending entries")


def main():
    import argparse
    ap = argparse.ArgumentParser(description="a fulfillment receiver for flashsale-relay")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--secret", action="append")
    ap.add_argument("--status", type=int, default=200)
    ap.add_argument("--reuse-port", action="store_true",
                    help="SO_REUSEPORT: several receivers share the port (benchmarks)")
    a = ap.parse_args()
    rcv = Receiver(secrets=a.secret or [SECRET], tls=(a.cert, a.key) if a.cert else None,
                   port=a.port, reuse_port=a.reuse_port)
    rcv.keep_records = False
    rcv.default = a.status
    rcv.start()
    sys.stdout.write("listening %s\n" % rcv.url)
    sys.stdout.flush()
    import signal
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        # The last line on stdout: this process's counts (several may share a port).
        sys.stdout.write("stats %s\n" % json.dumps(rcv.stats()))
        sys.stdout.flush()
        rcv.stop()


if __name__ == "__main__":
    main()
