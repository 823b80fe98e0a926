#!/usr/bin/env bash
# ab-bench.sh: two flashsale-server configurations side by side on one Redis, in-stock reservations.
#
#   loadtest/ab-bench.sh [-a 'VAR=value ...'] [-b 'VAR=value ...'] [-r ROUNDS] [-d SECONDS]
#                        [-c CONNECTIONS] [-H] [-R RATE] [-B BUILD_DIR] [-A BUILD_DIR_OF_A]
#                        [-k SKUS] [-1]
#
# Starts a redis-server and two servers (Release build, default event loops) on free 127.0.0.1
# ports: A with the environment settings of -a, B with those of -b (e.g. -a
# FLASHSALE_BATCH_LINGER_US=0). Each of ROUNDS rounds (default 8) runs wrk -t1 -c CONNECTIONS
# (default 100) for SECONDS (default 3) of in-stock reservations by random shoppers
# (loadtest/wrk/reserve-random.lua) against A, then against B, each run on a new SKU of a billion
# units; with -H each also runs GET /healthz first. Per run it prints requests/s, wrk's p99, the
# CPU per request of wrk, the server and Redis (µs), and the server's mean batch (reservations
# per fs_reserve call); then the medians of each side, and in how many rounds B did better. With
# -R, the open loop instead: flashsale-load --post at RATE reservations/s on both sides (-c 200
# -t 2, after 1 s of the same load, unmeasured), p50/p90/p99 from the intended send times, and
# the same CPU columns (the tool's under "load"). -A runs A's server from another build directory
# (two versions of the code, e.g. a worktree of the last commit built there). -k gives the launch
# SKUS SKUs (default and least: two per round; at most 100), those the runs do not use idle, as a
# launch's other SKUs are. -1 runs one server at a time: each run starts its side's server, waits
# a second, runs and stops it, so that neither side's own periodic work (the expiry sweeper, the
# sold-out checks, statistics) falls into the other side's runs. The machine is shared and its
# speed drifts: compare the sides of one run, not runs.
# Stops only what it started, by pid.
set -euo pipefail

A_ENV="" B_ENV="" ROUNDS=8 DURATION=3 CONNS=100 HEALTHZ="" RATE="" BUILD="" A_BUILD="" NSKUS=""
ONE_AT_A_TIME=""
while getopts "a:b:r:d:c:HR:B:A:k:1h" opt; do
  case $opt in
    a) A_ENV=$OPTARG ;; b) B_ENV=$OPTARG ;; r) ROUNDS=$OPTARG ;; d) DURATION=$OPTARG ;;
    c) CONNS=$OPTARG ;; H) HEALTHZ=1 ;; R) RATE=$OPTARG ;; B) BUILD=$OPTARG ;;
    A) A_BUILD=$OPTARG ;; k) NSKUS=$OPTARG ;; 1) ONE_AT_A_TIME=1 ;;
    h) sed -n '2,27p' "$0"; exit 0 ;;
    *) exit 2 ;;
  esac
done
case $ROUNDS in ''|*[!0-9]*|0) echo "ab-bench.sh: -r must be a number of rounds, 1 or more" >&2; exit 2 ;; esac
NSKUS=${NSKUS:-$((2 * ROUNDS))}
case $NSKUS in ''|*[!0-9]*) echo "ab-bench.sh: -k must be a number of SKUs" >&2; exit 2 ;; esac
if [ "$NSKUS" -lt $((2 * ROUNDS)) ] || [ "$NSKUS" -gt 100 ]; then
  echo "ab-bench.sh: -k must be from $((2 * ROUNDS)) (two per round) to 100 (a launch's most)" >&2
  exit 2
fi
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/bench-lib.sh"
bench_paths
bench_need ab-bench.sh wrk redis-server redis-cli curl python3
bench_build ab-bench.sh "$BUILD" flashsale-server flashsale-load

bench_workdir fs-ab-bench
bench_redis
REDIS_PID=${PIDS[0]}

SERVER_A=$SERVER
if [ -n "$A_BUILD" ]; then
  SERVER_A=$A_BUILD/src/flashsale-server
  [ -x "$SERVER_A" ] || { echo "ab-bench.sh: no $SERVER_A" >&2; exit 2; }
fi
start_server() { # side port env: starts it, its pid in SPID_<side>
  local side=$1 port=$2 env_words=$3 bin=$SERVER
  [ "$side" = A ] && bin=$SERVER_A
  # shellcheck disable=SC2086 # the settings are words
  env $env_words FLASHSALE_LISTEN=127.0.0.1:$port FLASHSALE_REDIS=redis://127.0.0.1:$RPORT/0 \
    FLASHSALE_API_KEYS=bench-key FLASHSALE_ADMIN_TOKEN=bench-admin FLASHSALE_LOG_LEVEL=warn \
    FLASHSALE_IDLE_TIMEOUT_MS=600000 FLASHSALE_MAX_CONNECTIONS_PER_ADDR=1000000 \
    "$bin" >"$WORK/server-$side.log" 2>&1 &
  PIDS+=($!)
  eval "SPID_$side=$!"
  bench_wait_ready "http://127.0.0.1:$port/readyz" "server $side ($env_words)" "$WORK/server-$side.log"
}
stop_server() { # side: stops the server of that side and waits for it
  local pid
  eval "pid=\$SPID_$1"
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
PORT_A=$(free_port)
PORT_B=$(free_port)
start_server A "$PORT_A" "$A_ENV"
[ -n "$ONE_AT_A_TIME" ] || start_server B "$PORT_B" "$B_ENV"

SKUS=$(python3 -c 'import json, sys
print(json.dumps([{"sku": "s%d" % i, "stock": 10 ** 9, "per_user_limit": 10 ** 6,
                   "price_cents": 1} for i in range(1, int(sys.argv[1]) + 1)]))' "$NSKUS")
admin() { curl -fsS -H "Authorization: Bearer bench-admin" "$@" >/dev/null; }
admin -X PUT "http://127.0.0.1:$PORT_A/admin/v1/launches/ab" \
  -d '{"name":"ab-bench","hold_seconds":3600,"skus":'"$SKUS"'}'
admin -X POST "http://127.0.0.1:$PORT_A/admin/v1/launches/ab/open"
[ -z "$ONE_AT_A_TIME" ] || stop_server A

batches() { # port: "calls reservations" of the server's fs_reserve calls so far
  curl -fsS "http://127.0.0.1:$1/metrics" |
    awk '/^fs_reserve_batches_total /{b=$2} /^fs_reserve_batched_total /{n=$2} END{print b+0, n+0}'
}
RUN=0
one_run() { # side what(hz|in): one wrk run, one line to $WORK/rows
  local side=$1 what=$2 port spid r0 s0 b0 n0 r1 s1 b1 n1 sku="" url script=()
  port=$PORT_A spid=$SPID_A
  [ "$side" = B ] && port=$PORT_B spid=$SPID_B
  url=http://127.0.0.1:$port/healthz
  if [ "$what" = in ]; then
    RUN=$((RUN + 1))
    sku=s$RUN url=http://127.0.0.1:$port/
    script=(-s "$HERE/wrk/reserve-random.lua")
  fi
  r0=$(cpu_seconds "$REDIS_PID"); s0=$(cpu_seconds "$spid"); read -r b0 n0 < <(batches "$port")
  times >"$WORK/times0" # this shell's finished children: only the client runs until times1
  if [ -n "$RATE" ]; then
    rm -f "$WORK/load.json"
    "$LOAD" --url "http://127.0.0.1:$port/v1/launches/ab/reservations" \
      -H "Authorization: Bearer bench-key" -H "Content-Type: application/json" \
      --post '{"sku":"'"$sku"'","user_id":"ol-{seq}"}' -c 200 -t 2 -R "$RATE" \
      -d "${DURATION}s" --warmup 1s -q --json "$WORK/load.json" >"$WORK/load.out" 2>&1 ||
      { echo "ab-bench.sh: flashsale-load failed:" >&2; cat "$WORK/load.out" >&2; exit 1; }
  else
    FS_LAUNCH=ab FS_SKU=$sku FS_KEY=bench-key \
      wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "${script[@]}" "$url" >"$WORK/wrk.out"
  fi
  times >"$WORK/times1"
  r1=$(cpu_seconds "$REDIS_PID"); s1=$(cpu_seconds "$spid"); read -r b1 n1 < <(batches "$port")
  python3 - "$side" "$what" "$RATE" "$WORK" "$s0" "$s1" "$r0" "$r1" "$b0" "$b1" "$n0" "$n1" \
    >>"$WORK/rows" <<'EOF'
import json, re, sys
side, what, rate, work = sys.argv[1:5]
s0, s1, r0, r1 = (float(x) for x in sys.argv[5:9])
b0, b1, n0, n1 = (int(float(x)) for x in sys.argv[9:13])
def secs(path):  # the second line of bash's `times`: children user and system, "0m1.234s 0m0.567s"
    line = open(path).read().splitlines()[1]
    return sum(int(m) * 60 + float(s) for m, s in re.findall(r"(\d+)m([\d.]+)s", line))
if rate:  # the open loop: n includes the warm-up's requests (the CPU windows include it too)
    d = json.load(open(work + "/load.json"))
    lat = d["latency_ms"]
    rps = d["requests_per_sec"]
    n = round(rps * (d["duration_s"] + d.get("warmup_s", 0))) or 1
    p99 = "%.2f/%.2f/%.2fms" % (lat["p50"], lat["p90"], lat["p99"])
else:
    out = open(work + "/wrk.out").read()
    n = int(re.search(r"(\d+) requests in", out).group(1)) or 1
    rps = float(re.search(r"Requests/sec:\s*([\d.]+)", out).group(1))
    p99 = re.search(r"^\s*99%\s+(\S+)", out, re.M).group(1)
client = (secs(work + "/times1") - secs(work + "/times0")) * 1e6 / n
srv = (s1 - s0) * 1e6 / n
red = (r1 - r0) * 1e6 / n
batch = (n1 - n0) / (b1 - b0) if b1 > b0 else 0
print(side, what, "%.0f" % rps, p99, "%.1f %.1f %.1f %.1f %.1f" % (client, srv, red, client + srv + red, batch))
EOF
  tail -1 "$WORK/rows" | awk -v lat="${RATE:+p50/p90/p99}" -v cl="${RATE:+load}" '{printf "%s %-7s %8s/s  %s %-8s  us per request: %s %5s  server %5s  Redis %5s  total %5s  batch %5s\n", $1, ($2=="in" ? "in-stock" : "healthz"), $3, (lat ? lat : "p99"), $4, (cl ? cl : "wrk"), $5, $6, $7, $8, $9}'
}

SETUP="a launch of $NSKUS SKUs, both servers running"
[ -z "$ONE_AT_A_TIME" ] || SETUP="a launch of $NSKUS SKUs, one server at a time"
if [ -n "$RATE" ]; then
  HEALTHZ=""
  echo "ab-bench: A = $SERVER_A ${A_ENV:-(defaults)}, B = $SERVER ${B_ENV:-(defaults)}; $ROUNDS rounds of ${DURATION}s, open loop at $RATE/s (flashsale-load -c 200 -t 2); $SETUP"
else
  echo "ab-bench: A = $SERVER_A ${A_ENV:-(defaults)}, B = $SERVER ${B_ENV:-(defaults)}; $ROUNDS rounds of ${DURATION}s, wrk -t1 -c$CONNS; $SETUP"
fi
for round in $(seq "$ROUNDS"); do
  for side in A B; do
    if [ -n "$ONE_AT_A_TIME" ]; then
      if [ "$side" = A ]; then start_server A "$PORT_A" "$A_ENV"; else start_server B "$PORT_B" "$B_ENV"; fi
      sleep 1 # its first SKU list and sweep
    fi
    [ -n "$HEALTHZ" ] && one_run "$side" hz
    one_run "$side" in
    [ -z "$ONE_AT_A_TIME" ] || stop_server "$side"
  done
done
python3 - "$WORK/rows" "$RATE" <<'EOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
open_loop = bool(sys.argv[2])
def col(side, what, i):
    return [float(r[i]) for r in rows if r[0] == side and r[1] == what]
for what, name in (("hz", "healthz"), ("in", "in-stock")):
    if not col("A", what, 2):
        continue
    for side in "AB":
        lat = ""
        if open_loop:
            p = [[float(x) for x in r[3][:-2].split("/")] for r in rows if r[0] == side and r[1] == what]
            lat = "p50/p90/p99 %.2f/%.2f/%.2f ms  " % tuple(statistics.median(x[k] for x in p) for k in range(3))
        print("median %s %-8s %8.0f/s  %sus per request: %s %5.1f  server %5.1f  Redis %5.1f  total %5.1f  batch %5.1f"
              % (side, name, statistics.median(col(side, what, 2)), lat, "load" if open_loop else "wrk",
                 *(statistics.median(col(side, what, i)) for i in (4, 5, 6, 7, 8))))
a, b = col("A", "in", 2), col("B", "in", 2)
ta, tb = col("A", "in", 7), col("B", "in", 7)
if open_loop:
    pa = [float(r[3][:-2].split("/")[2]) for r in rows if r[0] == "A"]
    pb = [float(r[3][:-2].split("/")[2]) for r in rows if r[0] == "B"]
    print("in-stock: B's p99 lower in %d of %d rounds, B's total CPU per request lower in %d"
          % (sum(y < x for x, y in zip(pa, pb)), len(pa), sum(y < x for x, y in zip(ta, tb))))
else:
    print("in-stock: B faster in %d of %d rounds, B's total CPU per request lower in %d"
          % (sum(y > x for x, y in zip(a, b)), len(a), sum(y < x for x, y in zip(ta, tb))))
if col("A", "hz", 2):
    ra = [i / h for i, h in zip(a, col("A", "hz", 2))]
    rb = [i / h for i, h in zip(b, col("B", "hz", 2))]
    print("in-stock / healthz, median of the rounds: A %.3f, B %.3f" % (statistics.median(ra), statistics.median(rb)))
EOF
