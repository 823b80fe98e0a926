#!/usr/bin/env python3
"""lua-cost.py: what one reservation costs Redis, in instructions (repeatable on a noisy machine).

    loadtest/lua-cost.py [-n BATCH] [-b BATCHES] [--limits off|on|both] [--call group|plain|full]
                         [LIBRARY.lua ...]

Runs a redis-server on a free 127.0.0.1 port under valgrind --tool=callgrind, loads each library
(default lua/flashsale.lua; several: an A/B, each in its own run), creates a launch with a SKU of
a billion units (and, for --limits on, generous rate limits that refuse nothing), warms the
shopper and TAT hashes with 50 batches, then counts the instructions Redis executes for BATCHES
fs_reserve calls of BATCH requests each (5,000 shoppers, random reservation ids; everything from
reading the command off the socket to writing the reply) and prints them per reservation. The
calls are what the server sends for one-unit requests without idempotency keys (--call group,
the default): fs_reserve_group (a group id and the one address of the call, then one argument
per request) where the library has it, else fs_reserve_plain (three per request) where it has
that, else fs_reserve (five); --call plain or full asks for one of the latter where the library
has it.
Timings on a shared 2-core machine vary by 10-20% between runs; these counts vary by under 1%.
Needs valgrind and redis-server; stops only the server it started.
"""
import argparse
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "lib"))
from fsredis import Redis, free_port  # noqa: E402


def api_suffix(text):
    m = re.search(r"^local API = '([^']+)'", text, re.M)
    if not m:
        sys.exit("lua-cost.py: no API version in the library")
    return "_v" + m.group(1)


def measure(path, limits, n, batches, call):
    text = open(path).read()
    v = api_suffix(text)
    order = ["group", "plain", "full"]
    call = next(c for c in order[order.index(call):]
                if c == "full" or "register('fs_reserve_%s'" % c in text)
    work = tempfile.mkdtemp(prefix="fs-lua-cost.")
    port = free_port()
    out = os.path.join(work, "callgrind.out")
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out, "redis-server", "--port",
         str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", work],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        r = None
        for _ in range(300):
            try:
                r = Redis(port=port, timeout=120)
                r.call("PING")
                break
            except OSError:
                r = None
                time.sleep(0.1)
        if r is None:
            sys.exit("lua-cost.py: redis-server under valgrind did not start")
        r.call("FUNCTION", "LOAD", "REPLACE", text)
        L = "cost"
        launch, skus = "fs:launch:{%s}" % L, "fs:launch:{%s}:skus" % L
        r.call("FCALL", "fs_launch_put" + v, 3, launch, skus, "fs:launches", L, "cost", 3600, 0, 0,
               1, "big", 10**9, 10**6, 1)
        r.call("FCALL", "fs_launch_state" + v, 2, launch, skus, "open")
        if limits == "on":
            r.call("FCALL", "fs_launch_rate_limit" + v, 2, launch, skus, 10**6, 1000, 10**9, 10**6)
        p = "fs:{%s:big}" % L
        keys = [p + ":sku", p + ":holds", p + ":users", p + ":held", p + ":rlu", p + ":rla"]
        rnd = random.Random(1)

        def command():
            a = [str(n)]
            if call == "group":  # one address for the call, as the server sends it then
                a += ["g%016x" % rnd.getrandbits(64), "127.0.0.1"]
            for _ in range(n):
                rid, user = "r%016x" % rnd.getrandbits(64), "u%d" % rnd.randrange(5000)
                a += {"group": [user], "plain": [rid, user, "127.0.0.1"],
                      "full": [rid, user, "1", "0", "127.0.0.1"]}[call]
            fn = {"group": "fs_reserve_group", "plain": "fs_reserve_plain", "full": "fs_reserve"}
            return ["FCALL", fn[call] + v, "6"] + keys + a

        for _ in range(50):
            r.call(*command())
        cmds = [command() for _ in range(batches)]
        subprocess.run(["callgrind_control", "-z", str(proc.pid)], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=True)
        for c in cmds:
            reply = r.call(*c)
            if reply[0] != "o" * n:
                sys.exit("lua-cost.py: a reservation was not ok: %r" % reply[0])
        subprocess.run(["callgrind_control", "-d", "measured", str(proc.pid)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        r.close()
    finally:
        proc.terminate()
        proc.wait()
    total = 0
    for f in os.listdir(work):
        if f.startswith("callgrind.out."):
            for line in open(os.path.join(work, f)):
                if line.startswith(("summary:", "totals:")):
                    total = max(total, int(line.split()[1]))
    shutil.rmtree(work, ignore_errors=True)
    if not total:
        sys.exit("lua-cost.py: callgrind wrote no counts")
    return total / float(n * batches), call


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=16, help="requests per fs_reserve call (default 16)")
    ap.add_argument("-b", type=int, default=100, help="calls measured (default 100)")
    ap.add_argument("--limits", choices=("off", "on", "both"), default="both")
    ap.add_argument("--call", choices=("group", "plain", "full"), default="group",
                    help="fs_reserve_group (default), fs_reserve_plain or fs_reserve, or the next "
                         "of these the library has")
    ap.add_argument("library", nargs="*", default=[os.path.join(REPO, "lua", "flashsale.lua")])
    a = ap.parse_args()
    for tool in ("valgrind", "callgrind_control", "redis-server"):
        if not shutil.which(tool):
            sys.exit("lua-cost.py: %s is not installed (apt-get install valgrind redis-server)" % tool)
    if not 1 <= a.n <= 1000 or a.b < 1:
        sys.exit("lua-cost.py: -n must be 1..1000 and -b at least 1")
    modes = ("off", "on") if a.limits == "both" else (a.limits,)
    print("Redis instructions per reservation, in calls of %d (%d calls):" % (a.n, a.b))
    for path in a.library:
        for m in modes:
            cost, call = measure(path, m, a.n, a.b, a.call)
            print("  %-40s %-5s limits %-3s %8.0f" % (os.path.relpath(path), call, m, cost),
                  flush=True)


if __name__ == "__main__":
    main()
