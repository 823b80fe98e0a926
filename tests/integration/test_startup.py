#!/usr/bin/env python3
"""Process behaviour: refusing bad configurations, config file and env override, command-line
options, Redis down at start or lost mid-run, graceful signals, credentials kept out of logs."""

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import fsserver  # noqa: E402
import fsredis  # noqa: E402
from fsserver import Server, sku, unique, wait_until, track, untrack  # noqa: E402

EXIT_BOUND = 10


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLASHSALE_")}
    env.update(extra)
    return env


def run_bin(args, env=None, timeout=EXIT_BOUND):
    return subprocess.run([fsserver.server_bin()] + list(args), env=env or clean_env(),
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)


def write_config(text):
    fd, path = tempfile.mkstemp(prefix="fs-test-", suffix=".ini")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


class StartupTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.redis = track(fsredis.RedisServer())
        cls.redis.start()
        cls.addClassCleanup(lambda: (cls.redis.cleanup(), untrack(cls.redis)))

    def expect_refusal(self, srv, words=(), rc=1):
        """srv (not started) must exit with rc within EXIT_BOUND, printing a message."""
        srv.spawn()
        try:
            got = srv.proc.wait(EXIT_BOUND)
        except subprocess.TimeoutExpired:
            srv.kill()
            self.fail("server did not refuse to start; log:\n" + srv.log_tail())
        untrack(srv)
        srv._close_files()
        err = srv.log_text()
        if isinstance(rc, int):
            self.assertEqual(got, rc, err)
        else:
            self.assertIn(got, rc, err)
        self.assertTrue(err.strip(), "no message on stderr")
        for w in words:
            self.assertRegex(err.lower(), w, err)
        return err

    # -- refusals ---------------------------------------------------------------------------

    def test_refuses_without_admin_token(self):
        self.expect_refusal(Server(self.redis.url, admin_token=None, start=False, port=fsserver.free_port()),
                            [r"admin"])
        self.expect_refusal(Server(self.redis.url, admin_token="", start=False, port=fsserver.free_port()),
                            [r"admin"])

    def test_refuses_without_api_keys(self):
        self.expect_refusal(Server(self.redis.url, api_keys=None, start=False, port=fsserver.free_port()),
                            [r"api.?key"])
        self.expect_refusal(Server(self.redis.url, api_keys=None, env={"FLASHSALE_API_KEYS": ","},
                                   start=False, port=fsserver.free_port()), [r"api.?key"])

    def test_refuses_taken_port(self):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        try:
            port = s.getsockname()[1]
            err = self.expect_refusal(Server(self.redis.url, start=False, port=port))
            self.assertIn(str(port), err)
        finally:
            s.close()

    def test_refuses_malformed_config_with_line_number(self):
        path = write_config("[server]\nlisten = 127.0.0.1:%d\nthis line is not a setting\n"
                            "[auth]\nadmin_token = x\napi_keys = y\n" % fsserver.free_port())
        try:
            err = self.expect_refusal(Server(self.redis.url, config_file=path, start=False,
                                             port=fsserver.free_port()))
            self.assertRegex(err, r"(line\D{0,3}3\b|:3\b)", "message should name line 3")
        finally:
            os.unlink(path)
        path = write_config("[server]\nthreads = 1\n[redis\nurl = redis://127.0.0.1:1\n")
        try:
            err = self.expect_refusal(Server(self.redis.url, config_file=path, start=False,
                                             port=fsserver.free_port()))
            self.assertRegex(err, r"(line\D{0,3}3\b|:3\b)", "message should name line 3")
        finally:
            os.unlink(path)
        # a missing config file is refused too
        self.expect_refusal(Server(self.redis.url, config_file="/nonexistent/fs.ini", start=False,
                                   port=fsserver.free_port()), rc=(1, 2))

    def test_refuses_bad_values(self):
        for env in ({"FLASHSALE_LOG_LEVEL": "loud"}, {"FLASHSALE_LISTEN": "nonsense"},
                    {"FLASHSALE_THREADS": "zero"}, {"FLASHSALE_IDLE_TIMEOUT_MS": "-5"},
                    {"FLASHSALE_REDIS": "http://127.0.0.1:1"}):
            srv = Server(self.redis.url, env=env, start=False, port=fsserver.free_port(), log_level=None)
            self.expect_refusal(srv, rc=(1, 2))

    # -- command line -----------------------------------------------------------------------

    def test_help_version_routes_and_usage(self):
        r = run_bin(["--help"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"--config", r.stdout + r.stderr)
        r = run_bin(["--version"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex((r.stdout + r.stderr).decode(), r"\d+\.\d+\.\d+")
        r = run_bin(["--routes"])
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.decode().splitlines()
        self.assertTrue(lines)
        for line in lines:
            self.assertRegex(line, r"^(GET|POST|PUT|DELETE|PATCH) /\S*$")
        self.assertIn("POST /v1/launches/{launch}/reservations", lines)
        r = run_bin(["--bogus-option"])
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertTrue(r.stderr.strip())
        r = run_bin(["--config"])
        self.assertEqual(r.returncode, 2, r.stderr)

    # -- config file and environment --------------------------------------------------------

    def test_config_file_and_env_override(self):
        port = fsserver.free_port()
        path = write_config(
            "; comment\n[server]\nlisten = 127.0.0.1:%d\nthreads = 1\nlog_level = debug\n"
            "idle_timeout_ms = 30000\n\n[redis]\nurl = %s\ntimeout_ms = 1000\n\n"
            "[auth]\napi_keys = file-key-1,file-key-2\nadmin_token = file-admin-token\n" % (port, self.redis.url))
        try:
            srv = Server(None, api_keys=None, admin_token=None, config_file=path, listen=False,
                         port=port, log_level=None)
            try:
                lid = unique()
                self.assertEqual(srv.admin_put_launch(lid, [sku("a", 1)], auth="file-admin-token").status, 200)
                self.assertEqual(srv.admin_get(lid, auth=fsserver.DEFAULT_ADMIN_TOKEN).status, 401)
                self.assertEqual(srv.public_get(lid, auth="file-key-2").status, 200)
                self.assertEqual(srv.public_get(lid, auth="file-key-1").status, 200)
                self.assertEqual(srv.public_get(lid, auth="file-key-3").status, 401)
            finally:
                srv.stop()
            # env wins over the file
            srv = Server(None, api_keys=["env-key"], admin_token="env-admin-token", config_file=path,
                         log_level=None)   # FLASHSALE_LISTEN set to a fresh port
            try:
                self.assertNotEqual(srv.port, port)
                self.assertEqual(srv.admin_get(lid, auth="env-admin-token").status, 200)
                self.assertEqual(srv.admin_get(lid, auth="file-admin-token").status, 401)
                self.assertEqual(srv.public_get(lid, auth="env-key").status, 200)
                self.assertEqual(srv.public_get(lid, auth="file-key-1").status, 401)
                with self.assertRaises(OSError):
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
            finally:
                srv.stop()
        finally:
            os.unlink(path)

    def test_threads_setting(self):
        srv = Server(self.redis.url, env={"FLASHSALE_THREADS": "2"})
        try:
            lid = unique()
            self.assertEqual(srv.admin_put_launch(lid, [sku("a", 3, 3)]).status, 200)
            self.assertEqual(srv.open(lid).status, 200)
            for i in range(4):
                c = srv.clone()
                r = c.reserve(lid, "a", "u%d" % i)
                self.assertEqual(r.status, 201 if i < 3 else 409, r.body)
                c.close_conn()
        finally:
            srv.stop()

    # -- open files ---------------------------------------------------------------------------

    def open_files(self, pid):
        """The process's (soft, hard) limit of open files, from /proc."""
        with open("/proc/%d/limits" % pid) as f:
            for line in f:
                if line.startswith("Max open files"):
                    soft, hard = line.split()[3:5]
                    return int(soft), (-1 if hard == "unlimited" else int(hard))
        raise AssertionError("no open files line")

    def connect_all(self, srv, n):
        """n connections each asking /healthz: (answered 200, closed without an answer)."""
        conns = [socket.create_connection(("127.0.0.1", srv.port), timeout=5) for _ in range(n)]
        try:
            time.sleep(0.3)
            ok = closed = 0
            for c in conns:
                try:
                    c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                    got = c.recv(64)
                except OSError:
                    got = b""
                if got.startswith(b"HTTP/1.1 200"):
                    ok += 1
                elif not got:
                    closed += 1
            return ok, closed
        finally:
            for c in conns:
                c.close()

    def test_raises_its_open_files_limit_for_max_connections(self):
        import resource
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        if hard != resource.RLIM_INFINITY and hard < 1200:
            self.skipTest("the hard limit of open files (%d) is too low to test" % hard)

        def low_soft_limit():
            resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        srv = Server(self.redis.url, env={"FLASHSALE_MAX_CONNECTIONS": "1000"},
                     preexec=low_soft_limit)
        try:
            soft, _ = self.open_files(srv.pid)
            self.assertGreaterEqual(soft, 1000, "the soft limit was not raised")
            self.assertEqual(self.connect_all(srv, 600), (600, 0))
            self.assertNotIn("fd_limit_low", srv.log_text())
        finally:
            srv.stop()

    def test_a_low_hard_limit_of_open_files_lowers_max_connections(self):
        import resource

        def low_limit():
            resource.setrlimit(resource.RLIMIT_NOFILE, (200, 200))
        srv = Server(self.redis.url, env={"FLASHSALE_MAX_CONNECTIONS": "1000"}, preexec=low_limit)
        try:
            log = srv.log_text()
            m = re.search(r"event=fd_limit_low .*effective_max_connections=(\d+)", log)
            self.assertIsNotNone(m, log)
            effective = int(m.group(1))
            self.assertLess(effective, 200)
            # Past it, connections are refused as over max_connections (closed at once, counted),
            # and the server goes on serving.
            ok, closed = self.connect_all(srv, 250)
            self.assertEqual(ok, effective, (ok, closed))
            self.assertEqual(closed, 250 - effective)
            metrics = srv.request("GET", "/metrics").body
            self.assertIn("fs_http_connections_rejected_total %d" % (250 - effective), metrics)
        finally:
            srv.stop()

    # -- Redis availability -----------------------------------------------------------------

    def test_redis_down_at_start_then_up(self):
        rs = track(fsredis.RedisServer())
        rs.start()
        rs.stop()    # the port is now closed; restart() brings it back on the same port
        srv = Server(rs.url, wait_ready=False)
        try:
            self.assertEqual(srv.request("GET", "/healthz").status, 200)
            self.assertEqual(srv.request("GET", "/readyz").status, 503)
            r = srv.reserve("any", "a", "u1")
            self.assertEqual(r.status, 503, r)
            self.assertEqual(r.body.get("error"), "unavailable", r.body)
            self.assertRegex(r.headers.get("retry-after", ""), r"^\d+$", r.headers)
            r = srv.admin_put_launch("any", [sku("a", 1)])
            self.assertEqual((r.status, r.body.get("error")), (503, "unavailable"), r.body)
            self.assertIn("retry-after", r.headers)
            time.sleep(1.0)    # let it fail a few connection attempts (backoff)
            self.assertTrue(srv.alive())
            rs.restart()
            srv.wait_ready(15)
            lid = unique()
            self.assertEqual(srv.admin_put_launch(lid, [sku("a", 1)]).status, 200)
            self.assertEqual(srv.open(lid).status, 200)
            self.assertEqual(srv.reserve(lid, "a", "u1").status, 201)
        finally:
            srv.stop()
            rs.cleanup()
            untrack(rs)

    def test_redis_lost_mid_run_and_recovery(self):
        rs = track(fsredis.RedisServer())
        rs.start()
        srv = Server(rs.url)
        try:
            lid = unique()
            self.assertEqual(srv.admin_put_launch(lid, [sku("a", 5, 5)]).status, 200)
            self.assertEqual(srv.open(lid).status, 200)
            self.assertEqual(srv.reserve(lid, "a", "u1").status, 201)
            rs.kill()

            def unavailable():
                r = srv.reserve(lid, "a", "u2")
                return r if r.status == 503 else None
            r = wait_until(unavailable, 5, what="503 after Redis was killed")
            self.assertEqual(r.body.get("error"), "unavailable")
            self.assertIn("retry-after", r.headers)
            wait_until(lambda: srv.request("GET", "/readyz").status == 503, 3, what="/readyz 503")
            self.assertEqual(srv.request("GET", "/healthz").status, 200)
            t0 = time.monotonic()
            rs.restart()       # no persistence: an empty Redis without our functions
            srv.wait_ready(15)
            self.assertLess(time.monotonic() - t0, 15)
            lid2 = unique()
            self.assertEqual(srv.admin_put_launch(lid2, [sku("a", 2, 2)]).status, 200)
            self.assertEqual(srv.open(lid2).status, 200)
            r = srv.reserve(lid2, "a", "u1")
            self.assertEqual(r.status, 201, r.body)
            self.assertEqual(srv.confirm(r.body["reservation_id"], "u1").status, 200)
            import checks
            with rs.client() as c:
                checks.check_invariants(c, lid2, ["a"])
        finally:
            srv.stop()
            rs.cleanup()
            untrack(rs)

    def test_redis_stalled_requests_time_out(self):
        # A stopped (SIGSTOP) Redis accepts nothing and answers nothing: only the server's own
        # deadline (FLASHSALE_REDIS_TIMEOUT_MS) can end the request; the loop must stay responsive.
        rs = track(fsredis.RedisServer())
        rs.start()
        srv = Server(rs.url, env={"FLASHSALE_REDIS_TIMEOUT_MS": "300", "FLASHSALE_SHUTDOWN_TIMEOUT_MS": "1000"})
        stopped = False
        try:
            lid = unique()
            self.assertEqual(srv.admin_put_launch(lid, [sku("a", 5, 5)]).status, 200)
            self.assertEqual(srv.open(lid).status, 200)
            os.kill(rs.pid, signal.SIGSTOP)
            stopped = True
            t0 = time.monotonic()
            r = srv.reserve(lid, "a", "u1")
            took = time.monotonic() - t0
            self.assertEqual((r.status, r.body.get("error")), (503, "unavailable"), r.body)
            self.assertIn("retry-after", r.headers)
            self.assertLess(took, 2.0, "the request waited %.2fs for a stalled Redis" % took)
            t0 = time.monotonic()
            self.assertEqual(srv.request("GET", "/healthz").status, 200)
            self.assertLess(time.monotonic() - t0, 0.5)
            m = srv.request("GET", "/metrics").body
            self.assertRegex(m, r"(?m)^fs_redis_timeouts_total(\{[^}]*\})? [1-9]")
            # SIGTERM with a request in flight against the stalled Redis: bounded, exit 0
            c = srv.raw()
            c.send(fsserver.raw_request("POST", "/v1/launches/%s/reservations" % lid,
                                        {"sku": "a", "user_id": "u2"},
                                        {"Authorization": "Bearer " + fsserver.DEFAULT_API_KEYS[0]}))
            time.sleep(0.05)
            t0 = time.monotonic()
            self.assertEqual(srv.stop(), 0)
            self.assertLess(time.monotonic() - t0, 3.0)
            try:
                resp = c.read_response()
            except OSError:
                resp = None
            if resp is not None:
                self.assertEqual(resp.status, 503, resp)
            c.close()
            os.kill(rs.pid, signal.SIGCONT)
            stopped = False
            # a fresh server recovers, and whatever the stalled commands did keeps the invariant
            srv = Server(rs.url)
            r = srv.reserve(lid, "a", "u3")
            self.assertEqual(r.status, 201, r.body)
            import checks
            with rs.client() as cl:
                checks.check_invariants(cl, lid, ["a"])
        finally:
            if stopped:
                os.kill(rs.pid, signal.SIGCONT)
            if srv.alive():
                srv.stop()
            rs.cleanup()
            untrack(rs)

    def test_redis_stall_then_resume_same_server(self):
        rs = track(fsredis.RedisServer())
        rs.start()
        srv = Server(rs.url, env={"FLASHSALE_REDIS_TIMEOUT_MS": "300"})
        try:
            lid = unique()
            self.assertEqual(srv.admin_put_launch(lid, [sku("a", 5, 5)]).status, 200)
            self.assertEqual(srv.open(lid).status, 200)
            os.kill(rs.pid, signal.SIGSTOP)
            try:
                self.assertEqual(srv.reserve(lid, "a", "u1").status, 503)
            finally:
                os.kill(rs.pid, signal.SIGCONT)
            # the dropped connection is rebuilt by itself
            wait_until(lambda: srv.reserve(lid, "a", "u2").status == 201, 10,
                       what="reservations to work again after Redis resumed")
            srv.wait_ready(5)
            import checks
            with rs.client() as cl:
                checks.check_invariants(cl, lid, ["a"])
        finally:
            srv.stop()
            rs.cleanup()
            untrack(rs)

    def test_another_library_version_is_left_alone(self):
        """A rolling deploy: the server loads its own versioned library (flashsale_v<N>) and never
        replaces or removes another version's (here a stand-in for an older server's library
        with the same plain function names), which keeps working next to it."""
        old = ("#!lua name=flashsale\n"
               "redis.register_function('fs_reserve', function(keys, args) return 'old' end)\n")
        with self.redis.client() as c:
            c.call("FUNCTION", "LOAD", "REPLACE", old)
        srv = Server(self.redis.url)
        try:
            lid = unique()
            self.assertEqual(srv.admin_put_launch(lid, [sku("a", 5, 5)]).status, 200)
            self.assertEqual(srv.open(lid).status, 200)
            self.assertEqual(srv.reserve(lid, "a", "u1").status, 201)
            with self.redis.client() as c:
                names = sorted(dict(zip(lib[0::2], lib[1::2]))["library_name"]
                               for lib in c.call("FUNCTION", "LIST"))
                self.assertEqual(names[0], "flashsale")
                self.assertTrue(re.fullmatch(r"flashsale_v\d+", names[1]), names)
                self.assertEqual(c.call("FCALL", "fs_reserve", 0), "old")
                c.call("FUNCTION", "DELETE", "flashsale")
        finally:
            srv.stop()

    def test_function_flush_is_recovered(self):
        srv = Server(self.redis.url)
        try:
            lid = unique()
            self.assertEqual(srv.admin_put_launch(lid, [sku("a", 5, 5)]).status, 200)
            self.assertEqual(srv.open(lid).status, 200)
            with self.redis.client() as c:
                c.call("FUNCTION", "FLUSH")
            r = srv.reserve(lid, "a", "u1")
            self.assertIn(r.status, (201, 503), r.body)
            if r.status != 201:
                wait_until(lambda: srv.reserve(lid, "a", "u1").status == 201, 3,
                           what="reservations to work again after FUNCTION FLUSH")
            import checks
            with self.redis.client() as c:
                checks.check_invariants(c, lid, ["a"])
        finally:
            srv.stop()

    # -- signals and logs -------------------------------------------------------------------

    def test_sigterm_and_sigint_exit_0(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            srv = Server(self.redis.url)
            # an open idle connection must not hold up the shutdown
            c = srv.raw()
            try:
                c.send(fsserver.raw_request("GET", "/healthz"))
                self.assertEqual(c.read_response().status, 200)
                t0 = time.monotonic()
                self.assertEqual(srv.stop(sig=sig), 0)
                self.assertLess(time.monotonic() - t0, 6)
            finally:
                c.close()
            self.assertIn("event=listening", srv.log_text())

    def test_credentials_never_logged(self):
        api_keys = ["sk-live-SECRET-api-key-AAAA1111", "sk-live-SECRET-api-key-BBBB2222"]
        admin = "adm-SECRET-operator-token-CCCC3333"
        wrong = "sk-live-SECRET-wrong-guess-DDDD4444"
        rs = track(fsredis.RedisServer())
        rs.start()
        srv = Server(rs.url, api_keys=api_keys, admin_token=admin, log_level="debug")
        try:
            lid = unique()
            self.assertEqual(srv.admin_put_launch(lid, [sku("a", 5, 5)]).status, 200)
            self.assertEqual(srv.open(lid).status, 200)
            r = srv.reserve(lid, "a", "u1")
            self.assertEqual(srv.confirm(r.body["reservation_id"], "u1").status, 200)
            self.assertEqual(srv.reserve(lid, "a", "u2", auth=api_keys[1]).status, 201)
            self.assertEqual(srv.reserve(lid, "a", "u3", auth=wrong).status, 401)
            self.assertEqual(srv.admin_get(lid, auth=wrong).status, 401)
            self.assertEqual(srv.admin_get(lid, auth=api_keys[0]).status, 401)
            with srv.raw() as c:
                c.send(b"GET /admin/v1/launches/x HTTP/1.1\r\nAuthorization: Bearer " + admin.encode()
                       + b"\r\nBad Header\r\n\r\n")
                c.read_response()
            rs.kill()
            wait_until(lambda: srv.request("GET", "/readyz").status == 503, 5, what="/readyz 503")
            rs.restart()
            srv.wait_ready(15)
        finally:
            srv.stop()
            rs.cleanup()
            untrack(rs)
        log = srv.log_text() + srv.stdout_text()
        for secret in api_keys + [admin, wrong, "SECRET"]:
            self.assertNotIn(secret, log, "a credential appears in the log")
        for line in srv.log_text().splitlines():
            if line.startswith("==") or not line.strip():
                continue   # sanitizer output, if any, is judged by the exit code
            self.assertRegex(line, r"^ts=\S+ level=(debug|info|warn|error) event=\S+", line)



SLOW_DNS_C = r"""
/* getaddrinfo for the name slow-redis.fs-test: 2.5 s, then 127.0.0.1 (a slow name server). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netdb.h>
#include <string.h>
#include <unistd.h>
int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res)
{
    int (*real)(const char *, const char *, const struct addrinfo *, struct addrinfo **) =
        (int (*)(const char *, const char *, const struct addrinfo *, struct addrinfo **))
            dlsym(RTLD_NEXT, "getaddrinfo");
    if (node && strcmp(node, "slow-redis.fs-test") == 0) {
        usleep(2500000);
        node = "127.0.0.1";
    }
    return real(node, service, hints, res);
}
"""


class RedisHostNameTest(fsserver.ServerTestCase):
    """Redis given by a host name: hiredis 0.14 looks the name up inside its connect, on the
    event loop, so a slow name server froze the loop at every reconnect (no HTTP answered
    meanwhile). The server looks it up off the loop. A getaddrinfo that takes 2.5 s for one name
    (a preloaded shim) shows the difference."""
    server_env = {"FLASHSALE_THREADS": "1"}  # the class's own server is not used

    def test_a_slow_name_lookup_does_not_stop_the_loop(self):
        import shutil
        cc = shutil.which("cc") or shutil.which("gcc")
        if not cc:
            self.skipTest("no C compiler for the getaddrinfo shim")
        tmp = tempfile.mkdtemp(prefix="fs-dns-")
        with open(os.path.join(tmp, "slowdns.c"), "w") as f:
            f.write(SLOW_DNS_C)
        so = os.path.join(tmp, "slowdns.so")
        subprocess.run([cc, "-shared", "-fPIC", "-o", so, os.path.join(tmp, "slowdns.c"), "-ldl"],
                       check=True, timeout=60)
        srv = Server("redis://slow-redis.fs-test:%d/0" % self.redis.port,
                     env={"FLASHSALE_THREADS": "1", "LD_PRELOAD": so,
                          "ASAN_OPTIONS": "abort_on_error=0:verify_asan_link_order=0"})
        try:
            self.assertEqual(srv.request("GET", "/readyz").status, 200)
            mine = self.r.call("CLIENT", "ID")
            for line in self.r.call("CLIENT", "LIST").splitlines():
                f = dict(kv.split("=", 1) for kv in line.split(" ") if "=" in kv)
                if int(f["id"]) != mine:
                    self.r.call("CLIENT", "KILL", "ID", f["id"])
            # The server reconnects, looking the name up again (2.5 s); its loop answers
            # meanwhile, on a new connection each time.
            worst = 0.0
            end = time.monotonic() + 2.0
            while time.monotonic() < end:
                t0 = time.monotonic()
                c = srv.clone()
                self.assertEqual(c.request("GET", "/healthz").status, 200)
                c.close_conn()
                worst = max(worst, time.monotonic() - t0)
                time.sleep(0.05)
            self.assertLess(worst, 1.0, "the loop stopped for the name lookup")
            wait_until(lambda: srv.request("GET", "/readyz").status == 200, 10, what="reconnected")
        finally:
            srv.stop()


class RedisTlsTest(unittest.TestCase):
    """rediss://: hiredis 0.14 has no TLS, so each connection goes through a pump of ours
    (src/redis/redis_tls.h). A Redis that only listens for TLS and asks for client certificates
    (tls-auth-clients yes): the server (its command connections and its fs:stock subscriptions)
    and the relay work through it with the CA and a client certificate; a server that trusts
    another CA, or has no client certificate, stays not ready and says why."""

    @classmethod
    def setUpClass(cls):
        import fsreceiver
        cls.dir = tempfile.mkdtemp(prefix="fs-redis-tls-")
        cls.certs = fsreceiver.make_certs(cls.dir)
        cls.port = fsserver.free_port()
        j = lambda n: os.path.join(cls.dir, n)  # noqa: E731
        cls.cli = ["redis-cli", "-p", str(cls.port), "--tls", "--cacert", j("ca.crt"),
                   "--cert", j("client.crt"), "--key", j("client.key")]
        cls.redis = subprocess.Popen(
            ["redis-server", "--port", "0", "--tls-port", str(cls.port), "--bind", "127.0.0.1",
             "--tls-cert-file", j("server.crt"), "--tls-key-file", j("server.key"),
             "--tls-ca-cert-file", j("ca.crt"), "--tls-auth-clients", "yes", "--save", "",
             "--dir", cls.dir],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cls.addClassCleanup(lambda: (cls.redis.terminate(), cls.redis.wait(10)))
        wait_until(lambda: subprocess.run(cls.cli + ["PING"], capture_output=True,
                                          timeout=5).stdout.strip() == b"PONG",
                   10, what="redis-server with TLS")

    def env(self, **extra):
        e = {"FLASHSALE_REDIS_TLS_CA_FILE": self.certs.ca,
             "FLASHSALE_REDIS_TLS_CERT_FILE": os.path.join(self.dir, "client.crt"),
             "FLASHSALE_REDIS_TLS_KEY_FILE": os.path.join(self.dir, "client.key")}
        e.update(extra)
        return e

    def url(self):
        return "rediss://127.0.0.1:%d/0" % self.port

    def test_server_and_relay_over_tls(self):
        srv = Server(self.url(), env=self.env(FLASHSALE_THREADS="2"))
        try:
            lid = unique()
            self.assertEqual(srv.admin_put_launch(lid, [sku("a", 1)]).status, 200)
            self.assertEqual(srv.open(lid).status, 200)
            self.assertEqual(srv.reserve(lid, "a", "u1").status, 201)
            self.assertEqual(srv.reserve(lid, "a", "u2").status, 409)
            clients = subprocess.run(self.cli + ["CLIENT", "LIST"], capture_output=True,
                                     timeout=5).stdout.decode()
            self.assertGreaterEqual(clients.count(" sub=1 "), 2, "both loops' subscriptions")
            import fsreceiver
            relay = fsreceiver.Relay(self.url(), "http://127.0.0.1:9/orders", env=self.env())
            try:
                self.assertEqual(relay.request("GET", "/readyz").status, 200)
            finally:
                relay.stop()
        finally:
            srv.stop()

    def test_another_ca_or_no_client_certificate_is_not_ready(self):
        for env, says in ((self.env(FLASHSALE_REDIS_TLS_CA_FILE=self.certs.other_ca),
                           "certificate verify failed"),
                          ({"FLASHSALE_REDIS_TLS_CA_FILE": self.certs.ca}, "redis_tls_failed")):
            srv = Server(self.url(), env=env, wait_ready=False)
            try:
                wait_until(lambda: says in srv.log_text(), 10, what=says)
                self.assertEqual(srv.request("GET", "/readyz").status, 503)
            finally:
                srv.stop()

    def test_bad_tls_settings_stop_the_start(self):
        creds = {"FLASHSALE_API_KEYS": "k", "FLASHSALE_ADMIN_TOKEN": "a",
                 "FLASHSALE_LISTEN": "127.0.0.1:%d" % fsserver.free_port()}
        for extra, says in (({"FLASHSALE_REDIS_TLS_CA_FILE": "/nonexistent/ca.pem"},
                             b"cannot load CA file /nonexistent/ca.pem"),
                            ({"FLASHSALE_REDIS_TLS_CERT_FILE": self.certs.server_cert},
                             b"tls_cert_file and tls_key_file go together")):
            rc = run_bin([], env=clean_env(FLASHSALE_REDIS=self.url(), **creds, **extra))
            self.assertEqual(rc.returncode, 1, rc.stderr)
            self.assertIn(says, rc.stderr)


class RedisAuthTest(fsserver.ServerTestCase):
    """A Redis that asks for a password (requirepass, or an ACL user): the server, its fs:stock
    subscription and the relay authenticate with the password from the URL (percent-decoded);
    a wrong one keeps the server not ready, says so, and no password reaches a log."""
    server_env = {"FLASHSALE_THREADS": "1"}  # the class's own server is not used
    PASSWORD = "s3cret@pass word"

    def url(self, userinfo):
        return "redis://%s@127.0.0.1:%d/0" % (userinfo, self.redis.port)

    def setUp(self):
        self.r.call("CONFIG", "SET", "requirepass", self.PASSWORD)
        self.addCleanup(self.r.call, "CONFIG", "SET", "requirepass", "")

    def subscribed_clients(self):
        return sum(1 for line in self.r.call("CLIENT", "LIST").splitlines() if " sub=1 " in line)

    def test_password_from_the_url(self):
        srv = Server(self.url(":s3cret%40pass%20word"), env={"FLASHSALE_THREADS": "2"})
        try:
            lid = unique()
            self.assertEqual(srv.admin_put_launch(lid, [sku("a", 1)]).status, 200)
            self.assertEqual(srv.open(lid).status, 200)
            self.assertEqual(srv.reserve(lid, "a", "u1").status, 201)
            # both loops' subscriptions got in too
            wait_until(lambda: self.subscribed_clients() >= 2, 5, what="two subscriptions")
            import fsreceiver
            relay = fsreceiver.Relay(self.url(":s3cret%40pass%20word"), "http://127.0.0.1:9/orders")
            try:
                self.assertEqual(relay.request("GET", "/readyz").status, 200)
            finally:
                relay.stop()
            for text in (srv.log_text(), srv.stdout_text(), relay.log_text()):
                self.assertNotIn("s3cret", text)
        finally:
            srv.stop()

    def test_acl_user(self):
        self.r.call("ACL", "SETUSER", "fsuser", "on", ">u-pass", "~*", "&*", "+@all")
        self.addCleanup(self.r.call, "ACL", "DELUSER", "fsuser")
        srv = Server(self.url("fsuser:u-pass"))
        try:
            lid = unique()
            self.assertEqual(srv.admin_put_launch(lid, [sku("a", 1)]).status, 200)
            self.assertEqual(srv.open(lid).status, 200)
            self.assertEqual(srv.reserve(lid, "a", "u1").status, 201)
            users = [line for line in self.r.call("CLIENT", "LIST").splitlines()
                     if " user=fsuser " in line]
            self.assertGreaterEqual(len(users), 2, "the command connection and the subscription")
        finally:
            srv.stop()

    def test_wrong_password_is_not_ready_and_says_why(self):
        srv = Server(self.url(":not-the-password"), wait_ready=False)
        try:
            time.sleep(1.0)
            self.assertEqual(srv.request("GET", "/readyz").status, 503)
            wait_until(lambda: "WRONGPASS" in srv.log_text(), 5, what="the refusal in the log")
            self.assertNotIn("not-the-password", srv.log_text())
            r = srv.request("POST", "/v1/launches/x/reservations", {"sku": "a", "user_id": "u"})
            self.assertEqual(r.status, 503)
        finally:
            srv.stop()


if __name__ == "__main__":
    fsserver.main(timeout=115)
