"""Drive the real flashsale-server binary in integration tests (stdlib only).

Server(redis_url, ...) starts build/src/flashsale-server (or $FLASHSALE_SERVER_BIN) on a free
loopback port with FLASHSALE_* environment variables, waits (bounded) until it answers /healthz
(and /readyz unless told otherwise), keeps its stderr in a file for assertions, and offers
request helpers over one keep-alive http.client connection plus a raw-socket connection for
malformed HTTP and pipelining tests.

Every test file calls main() (or watchdog()) so that a hung test fails after a bounded time
instead of hanging: the alarm kills every process started through this module (and every
tracked RedisServer), dumps the stacks and exits non-zero.
"""

import atexit
import copy
import datetime
import faulthandler
import http.client
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse
from collections import namedtuple

LIB_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(LIB_DIR))
if LIB_DIR not in sys.path:
    sys.path.insert(0, LIB_DIR)

import fsredis  # noqa: E402  (tests/lib/fsredis.py)

free_port = fsredis.free_port

DEFAULT_API_KEYS = ("sk-test-storefront-7f3a9c", "sk-test-storefront-second-41b2")
DEFAULT_ADMIN_TOKEN = "adm-test-operator-e58d1b"
START_TIMEOUT = float(os.environ.get("FS_TEST_START_TIMEOUT", "20"))
STOP_TIMEOUT = 12.0
REQUEST_TIMEOUT = 10.0

Response = namedtuple("Response", "status headers body")

_tracked = []          # processes/objects to kill when the watchdog fires or at exit
_tracked_lock = threading.Lock()


def server_bin():
    return os.environ.get("FLASHSALE_SERVER_BIN") or os.path.join(
        REPO, "build", "src", "flashsale-server")


def track(obj):
    """Remember obj (anything with .kill()) so the watchdog can kill it. Returns obj."""
    with _tracked_lock:
        _tracked.append(obj)
    return obj


def untrack(obj):
    with _tracked_lock:
        if obj in _tracked:
            _tracked.remove(obj)


def _kill_tracked():
    with _tracked_lock:
        objs = list(_tracked)
    for o in objs:
        try:
            o.kill()
        except Exception:  # best effort: we are dying anyway
            pass


atexit.register(_kill_tracked)


def watchdog(seconds):
    """Arm a process-wide alarm: after `seconds` dump all stacks, kill children, exit 3."""
    def fire(signum, frame):
        sys.stderr.write("\nWATCHDOG: test file exceeded %ss; stacks follow\n" % seconds)
        faulthandler.dump_traceback(all_threads=True)
        _kill_tracked()
        sys.stderr.flush()
        os._exit(3)
    signal.signal(signal.SIGALRM, fire)
    signal.alarm(int(seconds))


def main(timeout=100):
    """Entry point of every test file: watchdog + unittest.main()."""
    watchdog(timeout)
    unittest.main(verbosity=2)


# ---------------------------------------------------------------------------------------------
# time helpers

def rfc3339(epoch_s):
    """RFC 3339 UTC with milliseconds, like the server writes."""
    dt = datetime.datetime.fromtimestamp(epoch_s, tz=datetime.timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (dt.microsecond // 1000)


def parse_rfc3339(s):
    """Parse the server's RFC 3339 UTC-with-milliseconds form; returns epoch seconds (float)."""
    if not isinstance(s, str) or not s.endswith("Z"):
        raise ValueError("not an RFC 3339 UTC time: %r" % (s,))
    dt = datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ")
    return dt.replace(tzinfo=datetime.timezone.utc).timestamp()


RFC3339_MS_RE = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"


def wait_until(pred, timeout, interval=0.05, what="condition"):
    """Poll pred() until it is truthy; return its value, or raise AssertionError after timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = pred()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s (last: %r)" % (timeout, what, last))
        time.sleep(interval)


# ---------------------------------------------------------------------------------------------
# raw HTTP over a socket (for malformed input, pipelining, keep-alive and idle tests)

class RawConn:
    """A plain TCP connection that sends bytes and parses HTTP/1.1 responses one at a time."""

    def __init__(self, port, timeout=5.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.buf = b""
        self.eof = False

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def read_response(self):
        """Read one response; returns Response(status, headers, body) or None on clean EOF."""
        while b"\r\n\r\n" not in self.buf:
            if not self._fill():
                if self.buf:
                    raise AssertionError("connection closed inside a response head: %r" % self.buf[:200])
                return None
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise AssertionError("bad status line %r" % lines[0])
        status = int(parts[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        self.buf = rest
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                while b"\r\n" not in self.buf:
                    if not self._fill():
                        raise AssertionError("EOF in chunked body")
                size_line, _, self.buf = self.buf.partition(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                while len(self.buf) < size + 2:
                    if not self._fill():
                        raise AssertionError("EOF in chunk")
                body += self.buf[:size]
                self.buf = self.buf[size + 2:]
                if size == 0:
                    break
        elif "content-length" in headers:
            n = int(headers["content-length"])
            while len(self.buf) < n:
                if not self._fill():
                    raise AssertionError("EOF in body (%d of %d bytes)" % (len(self.buf), n))
            body, self.buf = self.buf[:n], self.buf[n:]
        else:
            while self._fill():
                pass
            body, self.buf = self.buf, b""
        return Response(status, headers, _decode_body(headers, body))

    def closed_by_peer(self, timeout=2.0):
        """True if the peer closes (EOF or reset) within timeout with no further bytes."""
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return False
        except (ConnectionResetError, BrokenPipeError):
            return True
        if chunk:
            self.buf += chunk
            return False
        return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


def _decode_body(headers, raw):
    ctype = headers.get("content-type", "")
    text = raw.decode("utf-8", "replace")
    if "json" in ctype:
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def raw_request(method, path, body=None, headers=None, host="127.0.0.1"):
    """Serialize one HTTP/1.1 request to bytes (body: dict -> JSON, str/bytes as is)."""
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    elif isinstance(body, str):
        body = body.encode()
    h = {"Host": host}
    if body is not None:
        h["Content-Type"] = "application/json"
        h["Content-Length"] = str(len(body))
    h.update(headers or {})
    out = "%s %s HTTP/1.1\r\n" % (method, path)
    out += "".join("%s: %s\r\n" % (k, v) for k, v in h.items())
    out += "\r\n"
    return out.encode("latin-1") + (body or b"")


# ---------------------------------------------------------------------------------------------
# the server process

_DEFAULT = object()


class ServerStartError(AssertionError):
    pass


class Server:
    """One flashsale-server process on 127.0.0.1:<free port>.

    api_keys / admin_token: credentials passed as FLASHSALE_API_KEYS / FLASHSALE_ADMIN_TOKEN
    (None leaves the variable unset). env: extra variables (override ours; a value of None
    removes the variable). config_file: passed as --config. The listen address is set through
    FLASHSALE_LISTEN unless listen=False (then the config file decides; give port= to poll it).
    preexec: run in the child before it starts the program (e.g. to set a resource limit).
    """

    def __init__(self, redis_url, api_keys=DEFAULT_API_KEYS, admin_token=DEFAULT_ADMIN_TOKEN,
                 env=None, config_file=None, wait_ready=True, start=True, port=None, listen=True,
                 args=(), log_level="info", preexec=None):
        self.redis_url = redis_url
        self.api_keys = list(api_keys) if api_keys is not None else []
        self.admin_token = admin_token
        self.extra_env = dict(env or {})
        self.config_file = config_file
        self.listen = listen
        self.port = port
        self.args = list(args)
        self.log_level = log_level
        self.preexec = preexec
        self.proc = None
        self.conn = None
        self.reconnects = 0
        self.tmpdir = tempfile.mkdtemp(prefix="fs-server-")
        self.log_path = os.path.join(self.tmpdir, "stderr.log")
        self.out_path = os.path.join(self.tmpdir, "stdout.log")
        if start:
            self.start(wait_ready=wait_ready)

    # -- process ------------------------------------------------------------------------------

    def environment(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLASHSALE_")}
        env.setdefault("ASAN_OPTIONS", "abort_on_error=0")
        if self.redis_url is not None:
            env["FLASHSALE_REDIS"] = self.redis_url
        if self.api_keys:
            env["FLASHSALE_API_KEYS"] = ",".join(self.api_keys)
        if self.admin_token is not None:
            env["FLASHSALE_ADMIN_TOKEN"] = self.admin_token
        if self.listen:
            env["FLASHSALE_LISTEN"] = "127.0.0.1:%d" % self.port
        if self.log_level:
            env["FLASHSALE_LOG_LEVEL"] = self.log_level
        for k, v in self.extra_env.items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = str(v)
        return env

    def program(self):
        """The binary to start (subclasses for our other programs override it)."""
        return server_bin()

    def spawn(self):
        """Start the process without waiting for anything."""
        argv = [self.program()]
        if self.config_file:
            argv += ["--config", self.config_file]
        argv += self.args
        self.err_f = open(self.log_path, "ab")
        self.out_f = open(self.out_path, "ab")
        self.proc = subprocess.Popen(argv, env=self.environment(), stdin=subprocess.DEVNULL,
                                     stdout=self.out_f, stderr=self.err_f,
                                     preexec_fn=self.preexec)
        track(self)
        return self.proc

    def start(self, wait_ready=True, attempts=3):
        """Spawn and wait until /healthz (and /readyz if wait_ready) answer 200, bounded."""
        for attempt in range(attempts):
            if self.listen and (self.port is None or attempt > 0):
                self.port = free_port()
            self.spawn()
            try:
                self.wait_healthy(START_TIMEOUT)
                break
            except ServerStartError:
                rc = self.proc.poll()
                text = self.log_text()
                # A lost race for the free port is retried; anything else is a failure.
                if (rc is not None and self.listen and attempt + 1 < attempts
                        and ("in use" in text.lower() or "eaddrinuse" in text.lower())):
                    self._close_files()
                    continue
                self.kill()
                raise
        if wait_ready:
            self.wait_ready(START_TIMEOUT)
        return self

    def wait_healthy(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerStartError("server exited with %s during start; log:\n%s"
                                       % (self.proc.returncode, self.log_tail()))
            try:
                st, _, _ = self._one_shot("GET", "/healthz")
                if st == 200:
                    return
            except (OSError, http.client.HTTPException):
                pass
            time.sleep(0.05)
        raise ServerStartError("server not healthy within %ss; log:\n%s" % (timeout, self.log_tail()))

    def wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        st = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerStartError("server exited with %s; log:\n%s"
                                       % (self.proc.returncode, self.log_tail()))
            try:
                st, _, _ = self._one_shot("GET", "/readyz")
                if st == 200:
                    return
            except (OSError, http.client.HTTPException):
                pass
            time.sleep(0.05)
        raise ServerStartError("server not ready within %ss (last /readyz %s); log:\n%s"
                               % (timeout, st, self.log_tail()))

    def _one_shot(self, method, path):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
        try:
            c.request(method, path)
            r = c.getresponse()
            return r.status, r.getheaders(), r.read()
        finally:
            c.close()

    def _close_files(self):
        for f in (getattr(self, "err_f", None), getattr(self, "out_f", None)):
            if f:
                try:
                    f.close()
                except OSError:
                    pass

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT, check=True):
        """Send sig (SIGTERM), wait up to timeout; returns the exit code.
        With check, raise AssertionError unless it exited 0 in time."""
        self.close_conn()
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("server did not exit within %ss of signal %d; log:\n%s"
                                 % (timeout, sig, self.log_tail()))
        untrack(self)
        self._close_files()
        if check and rc != 0:
            raise AssertionError("server exited with %d after signal %d; log:\n%s"
                                 % (rc, sig, self.log_tail()))
        return rc

    def kill(self):
        self.close_conn()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        untrack(self)
        self._close_files()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def stdout_text(self):
        try:
            with open(self.out_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n=40):
        return "\n".join(self.log_text().splitlines()[-n:])

    def __enter__(self):
        return self

    def __exit__(self, *a):
        if self.alive():
            self.kill()

    # -- HTTP ---------------------------------------------------------------------------------

    def close_conn(self):
        if self.conn is not None:
            try:
                self.conn.close()
            except OSError:
                pass
            self.conn = None

    def auth_header(self, auth, path):
        if auth is _DEFAULT:
            if path.startswith("/admin/"):
                auth = "admin"
            elif path.startswith("/v1/"):
                auth = "api"
            else:
                auth = None
        if auth is None:
            return None
        if auth == "api":
            return "Bearer " + self.api_keys[0]
        if auth == "admin":
            return "Bearer " + self.admin_token
        return "Bearer " + auth

    def request(self, method, path, body=None, headers=None, auth=_DEFAULT, timeout=REQUEST_TIMEOUT):
        """One request over the keep-alive connection -> Response(status, headers, body).

        body: None, dict/list (sent as JSON), str or bytes (sent as is). auth: 'api' (first API
        key), 'admin', None (no Authorization header) or a raw token; by default 'admin' for
        /admin/ paths, 'api' for /v1/ paths, none otherwise. headers (lower-cased) is a dict;
        the body is parsed JSON when the answer is JSON, else text.
        """
        if isinstance(body, (dict, list)):
            data = json.dumps(body).encode()
        elif isinstance(body, str):
            data = body.encode()
        else:
            data = body
        h = {}
        a = self.auth_header(auth, path)
        if a is not None:
            h["Authorization"] = a
        if data is not None:
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        self._check_idle_conn()
        for attempt in (0, 1):
            fresh = self.conn is None
            if fresh:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
            try:
                self.conn.request(method, path, body=data, headers=h)
                r = self.conn.getresponse()
                raw = r.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close_conn()
                # A reused keep-alive connection the server closed meanwhile: retry once.
                if fresh or attempt == 1:
                    raise
                self.reconnects += 1
                continue
            hdrs = {k.lower(): v for k, v in r.getheaders()}
            if r.will_close:
                self.close_conn()
            return Response(r.status, hdrs, _decode_body(hdrs, raw))

    def _check_idle_conn(self):
        """Between requests a keep-alive connection must carry nothing from the server: EOF
        (closed while idle) means reconnect; any bytes are an unsolicited or duplicate answer."""
        sock = self.conn.sock if self.conn is not None else None
        if sock is None:
            return
        if not select.select([sock], [], [], 0)[0]:
            return
        try:
            data = sock.recv(4096, socket.MSG_PEEK)
        except OSError:
            data = b""
        if data:
            raise AssertionError("the server sent %d bytes nobody asked for on a keep-alive "
                                 "connection: %r" % (len(data), data[:300]))
        self.close_conn()

    def clone(self):
        """Another handle on the same process with its own keep-alive connection (for threads)."""
        c = copy.copy(self)
        c.conn = None
        c.reconnects = 0
        return c

    def raw(self, timeout=5.0):
        """A new RawConn to this server."""
        return RawConn(self.port, timeout)

    # -- API helpers (each returns a Response) ------------------------------------------------

    def admin_put_launch(self, launch, skus, name="Test launch", hold_seconds=60, starts_at=None,
                         ends_at=None, auth="admin", extra=None):
        body = {"name": name, "hold_seconds": hold_seconds, "skus": skus}
        if starts_at is not None:
            body["starts_at"] = starts_at
        if ends_at is not None:
            body["ends_at"] = ends_at
        body.update(extra or {})
        return self.request("PUT", "/admin/v1/launches/%s" % launch, body, auth=auth)

    def open(self, launch, auth="admin"):
        return self.request("POST", "/admin/v1/launches/%s/open" % launch, auth=auth)

    def pause(self, launch, auth="admin"):
        return self.request("POST", "/admin/v1/launches/%s/pause" % launch, auth=auth)

    def close(self, launch, auth="admin"):
        return self.request("POST", "/admin/v1/launches/%s/close" % launch, auth=auth)

    def restock(self, launch, sku, delta, auth="admin"):
        return self.request("POST", "/admin/v1/launches/%s/skus/%s/restock" % (launch, sku),
                            {"delta": delta}, auth=auth)

    def admin_get(self, launch, auth="admin"):
        return self.request("GET", "/admin/v1/launches/%s" % launch, auth=auth)

    def public_get(self, launch, auth="api"):
        return self.request("GET", "/v1/launches/%s" % launch, auth=auth)

    def reserve(self, launch, sku, user, qty=1, idem=None, auth="api"):
        body = {"sku": sku, "user_id": user}
        if qty is not None:
            body["qty"] = qty
        headers = {"Idempotency-Key": idem} if idem is not None else None
        return self.request("POST", "/v1/launches/%s/reservations" % launch, body,
                            headers=headers, auth=auth)

    def confirm(self, rid, user, payment_ref=None, auth="api"):
        body = {"user_id": user}
        if payment_ref is not None:
            body["payment_ref"] = payment_ref
        return self.request("POST", "/v1/reservations/%s/confirm" % rid, body, auth=auth)

    def cancel(self, rid, user, auth="api"):
        return self.request("POST", "/v1/reservations/%s/cancel" % rid, {"user_id": user}, auth=auth)

    def get_res(self, rid, user, auth="api"):
        q = "" if user is None else "?user_id=" + urllib.parse.quote(user, safe="")
        return self.request("GET", "/v1/reservations/%s%s" % (rid, q), auth=auth)

    def sku_counters(self, launch):
        """{sku: {total, available, held, sold, ...}} from GET admin (asserts 200)."""
        r = self.admin_get(launch)
        if r.status != 200:
            raise AssertionError("GET admin %s -> %s %r" % (launch, r.status, r.body))
        return {s["sku"]: s for s in r.body["skus"]}


def sku(name, stock, per_user_limit=2, price_cents=79900):
    return {"sku": name, "stock": stock, "per_user_limit": per_user_limit, "price_cents": price_cents}


_seq = [0]


def unique(prefix="L"):
    """A fresh launch id for this process."""
    _seq[0] += 1
    return "%s-%d-%d-%d" % (prefix, os.getpid(), int(time.time() * 1000) % 10**8, _seq[0])


# ---------------------------------------------------------------------------------------------
# base class: one Redis and one server per test class

class ServerTestCase(unittest.TestCase):
    """setUpClass starts a RedisServer and a Server (server_env / server_kwargs customise it)."""

    server_env = {}
    server_kwargs = {}
    redis_kwargs = {}

    @classmethod
    def setUpClass(cls):
        cls.redis = track(fsredis.RedisServer(**cls.redis_kwargs))
        cls.redis.start()
        cls.addClassCleanup(cls._stop_redis)
        cls.r = cls.redis.client()
        cls.srv = Server(cls.redis.url, env=cls.server_env, **cls.server_kwargs)
        cls.addClassCleanup(cls._stop_server)

    @classmethod
    def another_server(cls, env=None):
        """A second server on the class's Redis (stopped with the class); env as for Server."""
        srv = Server(cls.redis.url, env=env)
        cls.addClassCleanup(lambda: srv.alive() and srv.stop())
        return srv

    @classmethod
    def _stop_server(cls):
        if cls.srv.alive():
            cls.srv.stop()

    @classmethod
    def _stop_redis(cls):
        cls.redis.cleanup()
        untrack(cls.redis)

    def new_launch(self, skus, open_it=True, hold_seconds=60, srv=None, **kw):
        """PUT a fresh launch (asserting 200) and open it; returns the launch id."""
        srv = srv or self.srv
        lid = unique()
        r = srv.admin_put_launch(lid, skus, hold_seconds=hold_seconds, **kw)
        self.assertEqual(r.status, 200, r.body)
        if open_it:
            r = srv.open(lid)
            self.assertEqual(r.status, 200, r.body)
        return lid

    def assertError(self, resp, status, code, field=None):
        """resp is an error answer with this status and error code (and a message naming field)."""
        self.assertEqual(resp.status, status, "expected %d %s, got %s %r" % (status, code, resp.status, resp.body))
        self.assertIsInstance(resp.body, dict, resp.body)
        self.assertEqual(resp.body.get("error"), code, resp.body)
        self.assertIsInstance(resp.body.get("message"), str, resp.body)
        self.assertTrue(resp.body["message"], resp.body)
        if field is not None:
            self.assertIn(field, resp.body["message"], "message should name the field %r" % field)

    def check_invariants(self, launch, skus, **kw):
        import checks
        return checks.check_invariants(self.r, launch, skus, **kw)
