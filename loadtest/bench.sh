#!/usr/bin/env bash
# bench.sh: flashsale-load vs wrk, closed loop, same endpoint, connections, threads and duration.
#
#   loadtest/bench.sh [-c CONNECTIONS] [-t THREADS] [-d SECONDS] [-r ROUNDS] [-u URL] [-b BUILD_DIR]
#   loadtest/bench.sh rush [rush-bench.sh options]    the reservation path (issues 4 and 5): runs
#                                                      loadtest/rush-bench.sh, see its -h
#
# Without -u it starts its own redis-server and flashsale-server on free loopback ports and loads
# the server's /healthz (a trivial static answer); both are stopped at the end (by pid). Rounds are
# interleaved (wrk, flashsale-load, wrk, ...) so that drift of the machine hits both tools alike;
# the table shows the medians of requests/s, p50 and p99, and the ratio flashsale-load / wrk.
# Goal (issue 3): requests/s ratio >= 0.90, latency percentiles within 10%.
# It also shows each tool's CPU time (user + sys) per answered request: the two tools share the
# machine with the server, so the one that needs less CPU leaves more to the server; this column
# stays meaningful when other load on the machine makes requests/s noisy.
set -euo pipefail
if [ "${1:-}" = rush ]; then
  shift
  exec "$(dirname "$0")/rush-bench.sh" "$@"
fi

CONNS=50 THREADS=2 DURATION=5 ROUNDS=3 URL="" BUILD=""
while getopts "c:t:d:r:u:b:h" opt; do
  case $opt in
    c) CONNS=$OPTARG ;; t) THREADS=$OPTARG ;; d) DURATION=$OPTARG ;; r) ROUNDS=$OPTARG ;;
    u) URL=$OPTARG ;; b) BUILD=$OPTARG ;;
    h) sed -n '2,15p' "$0"; exit 0 ;;
    *) exit 2 ;;
  esac
done

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
BUILD=${BUILD:-$REPO/build}
LOAD=$BUILD/loadtest/flashsale-load
SERVER=$BUILD/src/flashsale-server
command -v wrk >/dev/null || { echo "bench.sh: wrk is not installed (apt-get install wrk)" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "bench.sh: /usr/bin/time is missing (apt-get install time)" >&2; exit 2; }
[ -x "$LOAD" ] || { echo "bench.sh: $LOAD not built (cmake --build $BUILD)" >&2; exit 2; }

. "$HERE/bench-lib.sh"
bench_workdir fs-bench

if [ -z "$URL" ]; then
  [ -x "$SERVER" ] || { echo "bench.sh: $SERVER not built" >&2; exit 2; }
  bench_redis
  SPORT=$(free_port)
  FLASHSALE_LISTEN=127.0.0.1:$SPORT FLASHSALE_REDIS=redis://127.0.0.1:$RPORT/0 \
  FLASHSALE_API_KEYS=bench-key FLASHSALE_ADMIN_TOKEN=bench-admin FLASHSALE_LOG_LEVEL=warn \
    "$SERVER" >"$WORK/server.log" 2>&1 &
  PIDS+=($!)
  URL=http://127.0.0.1:$SPORT/healthz
  bench_wait_ready "$URL" bench.sh "$WORK/server.log"
fi

echo "bench: $URL, $CONNS connections, $THREADS threads, ${DURATION}s per run, $ROUNDS interleaved rounds" >&2
for r in $(seq "$ROUNDS"); do
  /usr/bin/time -f "%U %S" -o "$WORK/wrk.$r.cpu" timeout $((DURATION + 30)) \
    wrk -t "$THREADS" -c "$CONNS" -d "${DURATION}s" --latency "$URL" >"$WORK/wrk.$r.txt"
  /usr/bin/time -f "%U %S" -o "$WORK/load.$r.cpu" timeout $((DURATION + 30)) \
    "$LOAD" --url "$URL" -t "$THREADS" -c "$CONNS" -d "${DURATION}s" -q \
    --json "$WORK/load.$r.json" >"$WORK/load.$r.txt"
  echo "  round $r done" >&2
done

python3 - "$WORK" "$ROUNDS" "$CONNS" "$THREADS" "$DURATION" <<'PY'
import json, re, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
conns, threads, dur = sys.argv[3], sys.argv[4], sys.argv[5]

def cpu_us(path, requests):
    user, sys_ = (float(x) for x in open(path).read().split()[-2:])
    return (user + sys_) * 1e6 / requests if requests else float("nan")

def ms(text):
    m = re.match(r"([\d.]+)(us|ms|s)$", text)
    v, u = float(m.group(1)), m.group(2)
    return v / 1000 if u == "us" else v * 1000 if u == "s" else v

wrk, load = [], []
for r in range(1, rounds + 1):
    t = open("%s/wrk.%d.txt" % (work, r)).read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
    p50 = ms(re.search(r"^\s+50%\s+(\S+)", t, re.M).group(1))
    p99 = ms(re.search(r"^\s+99%\s+(\S+)", t, re.M).group(1))
    n = int(re.search(r"(\d+) requests in", t).group(1))
    wrk.append((rps, p50, p99, cpu_us("%s/wrk.%d.cpu" % (work, r), n)))
    j = json.load(open("%s/load.%d.json" % (work, r)))
    load.append((j["requests_per_sec"], j["latency_ms"]["p50"], j["latency_ms"]["p99"],
                 cpu_us("%s/load.%d.cpu" % (work, r), j["requests"])))

def med(rows, i):
    return statistics.median(row[i] for row in rows)

print("closed loop, %s connections, %s threads, %ss per run, median of %d interleaved rounds"
      % (conns, threads, dur, rounds))
print("%-16s %14s %10s %10s %14s" % ("tool", "requests/s", "p50 ms", "p99 ms", "CPU us/req"))
for name, rows in (("wrk", wrk), ("flashsale-load", load)):
    print("%-16s %14.0f %10.3f %10.3f %14.2f" % (name, med(rows, 0), med(rows, 1), med(rows, 2), med(rows, 3)))
ratio = [med(load, i) / med(wrk, i) if med(wrk, i) else float("nan") for i in range(4)]
print("%-16s %14.3f %10.3f %10.3f %14.3f" % ("ratio load/wrk", ratio[0], ratio[1], ratio[2], ratio[3]))
print("per round (req/s): wrk %s | flashsale-load %s" % (
    " ".join("%.0f" % x[0] for x in wrk), " ".join("%.0f" % x[0] for x in load)))
print("goal: requests/s ratio >= 0.90 -> %s" % ("met" if ratio[0] >= 0.9 else "NOT met"))
PY
