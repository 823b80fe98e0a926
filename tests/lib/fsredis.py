"""Test helpers: a real redis-server on a free loopback port and a tiny RESP2 client.

Standard library only; shared by the Lua tests and the integration tests.

    with RedisServer() as srv:
        r = srv.client()
        load_library(r)
        r.call("FCALL", "fs_sku_list_v5", "1", "fs:launches")

RedisServer(appendonly=False)
    .start()    free port, redis-server in a private temporary directory, waits (<= 10 s) for PING
    .url        redis://127.0.0.1:<port>/0      .port, .pid
    .client()   a new Redis connected to it
    .stop()     SIGTERM, SIGKILL after 5 s      .kill()  SIGKILL
    .restart()  stop, then start on the same port and directory (AOF data survives)
    Every server still running at interpreter exit is stopped, and its directory removed; on Linux
    the child also gets SIGKILL if the thread that started it dies (PR_SET_PDEATHSIG), so a test
    killed by a watchdog leaks no redis-server either.

Redis(host, port, timeout=10.0)
    .call(*args)  one command; bulk strings come back as str (None for nil), integers as int,
                  arrays as list, error replies raise RedisError. Bytes that are not UTF-8
                  (e.g. DUMP) decode with "surrogateescape" and encode back unchanged.
    .close()
"""

import atexit
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

__all__ = ["free_port", "RedisServer", "Redis", "RedisError", "load_library", "LIBRARY_PATH"]

LIBRARY_PATH = os.path.normpath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "lua", "flashsale.lua"))


class RedisError(Exception):
    """An error reply from Redis (the message, e.g. "ERR Function not found")."""


def free_port():
    """An unused TCP port on 127.0.0.1 (free when this returns; bind soon)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Redis:
    """A blocking RESP2 client for one connection. Every read is bounded by `timeout`."""

    def __init__(self, host="127.0.0.1", port=6379, timeout=10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @staticmethod
    def _encode(args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            if isinstance(a, bytes):
                b = a
            elif isinstance(a, str):
                b = a.encode("utf-8", "surrogateescape")
            elif isinstance(a, (int, float)) and not isinstance(a, bool):
                b = str(a).encode()
            else:
                raise TypeError("unsupported argument type %r" % type(a))
            out.append(b"$%d\r\n%s\r\n" % (len(b), b))
        return b"".join(out)

    def call(self, *args):
        """Sends one command and returns its parsed reply; raises RedisError on an error reply."""
        if self.sock is None:
            raise RedisError("connection closed")
        self.sock.sendall(self._encode(args))
        reply = self._read()
        if isinstance(reply, RedisError):
            raise reply
        return reply

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("redis closed the connection")
        self.buf += chunk

    def _line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line, self.buf = self.buf[:i], self.buf[i + 2:]
                return line
            self._fill()

    def _exact(self, n):
        while len(self.buf) < n + 2:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def _read(self):
        # Errors nested in arrays (e.g. from MULTI/EXEC) are returned as RedisError values.
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode("utf-8")
        if kind == b"-":
            return RedisError(rest.decode("utf-8", "replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n).decode("utf-8", "surrogateescape")
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise RedisError("protocol error: unexpected reply %r" % line[:64])


_live = set()


def _die_with_parent():
    """In the child before exec: ask Linux to SIGKILL it when its parent goes away."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _stop_all():
    for srv in list(_live):
        try:
            srv.cleanup()
        except Exception:
            pass


atexit.register(_stop_all)


class RedisServer:
    """A redis-server child process on 127.0.0.1, private to one test."""

    def __init__(self, appendonly=False, tls=None):
        """tls: (cert file, key file, CA file): also listen for TLS on tls_port (clients without
        a certificate accepted); port stays plain, for the tests' own client."""
        self.appendonly = appendonly
        self.tls = tls
        self.binary = os.environ.get("REDIS_SERVER") or "redis-server"
        self.dir = None
        self.port = None
        self.tls_port = None
        self.proc = None

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    @property
    def url(self):
        return "redis://127.0.0.1:%d/0" % self.port

    def _spawn(self):
        self.log = open(os.path.join(self.dir, "redis.log"), "ab")
        cmd = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "yes" if self.appendonly else "no", "--dir", self.dir,
               "--daemonize", "no"]
        if self.tls:
            cmd += ["--tls-port", str(self.tls_port), "--tls-cert-file", self.tls[0],
                    "--tls-key-file", self.tls[1], "--tls-ca-cert-file", self.tls[2],
                    "--tls-auth-clients", "no"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        _live.add(self)

    def _wait_ready(self, deadline_s=10.0):
        """Waits for PING; returns True when ready, False if the process exited."""
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with Redis("127.0.0.1", self.port, timeout=1.0) as c:
                    if c.call("PING") == "PONG":
                        return True
            except (OSError, RedisError):
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError("redis-server on port %d not ready within %.0f s:\n%s"
                           % (self.port, deadline_s, self.log_tail()))

    def log_tail(self, n=20):
        try:
            with open(os.path.join(self.dir, "redis.log"), "rb") as f:
                return b"\n".join(f.read().splitlines()[-n:]).decode("utf-8", "replace")
        except OSError:
            return ""

    def start(self):
        """Starts on a fresh free port (a few tries if another process takes the port first)."""
        if self.dir is None:
            self.dir = tempfile.mkdtemp(prefix="fsredis-")
        for _ in range(5):
            self.port = free_port()
            self.tls_port = free_port() if self.tls else None
            self._spawn()
            if self._wait_ready():
                return self
            self._reap()
        raise RuntimeError("redis-server did not start:\n" + self.log_tail())

    def restart(self):
        """Stops it and starts it again on the same port and directory."""
        self.stop()
        self._spawn()
        if not self._wait_ready():
            self._reap()
            raise RuntimeError("redis-server did not restart:\n" + self.log_tail())
        return self

    def client(self):
        return Redis("127.0.0.1", self.port)

    def _reap(self):
        if self.proc is not None:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        if getattr(self, "log", None):
            self.log.close()
            self.log = None

    def stop(self):
        """SIGTERM, then SIGKILL if it has not exited within 5 s."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self._reap()

    def kill(self):
        """SIGKILL, no chance to save anything."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        self._reap()

    def cleanup(self):
        """Stops it and removes its directory."""
        self.stop()
        _live.discard(self)
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self):
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc):
        self.cleanup()


def load_library(client, path=LIBRARY_PATH):
    """FUNCTION LOAD REPLACE lua/flashsale.lua; returns the library name."""
    with open(path, "r", encoding="utf-8") as f:
        return client.call("FUNCTION", "LOAD", "REPLACE", f.read())
