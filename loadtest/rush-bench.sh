#!/usr/bin/env bash
# rush-bench.sh: the reservation path at the machine's limit, side by side in one run.
#
#   loadtest/rush-bench.sh [-c CONNECTIONS] [-t WRK_THREADS] [-d SECONDS] [-r ROUNDS] [-b BUILD_DIR]
#                          [-T SERVER_THREADS] [-L LOAD_THREADS] [-W WARMUP_SECONDS] [-o RESULTS.md]
#
# Starts its own redis-server and flashsale-server (Release build; default build-release) on free
# 127.0.0.1 ports, creates a launch with a sold-out SKU and SKUs of a billion units, then runs
# ROUNDS interleaved rounds (even ones in the reverse order) of, each with the same wrk settings:
#   healthz   GET /healthz (the bare HTTP ceiling of our own code)
#   sold-out  reservations on the sold-out SKU
#   in-stock  reservations on a SKU of a billion units by 50,000 different shoppers per wrk thread
#   in-stock-rl  the same on a launch with rate limits on (generous: nothing refused)
#   fcall-1   redis-benchmark calling fs_reserve_group (fs_reserve_plain before API 4) directly,
#             one request per call, unpipelined
#   fcall-16  the same, pipelined 16 deep
# then ROUNDS rounds of the open loop (flashsale-load --post: the closed-loop maximum, then
# in-stock reservations at 50/65/80% of it, while the server's own latency histogram is read
# around the 80% run; then GET /healthz at the 80% run's rate: the floor that the tool, the
# kernel and the machine set for any request), the RSS of the server with 10,000 idle keep-alive
# connections, and the counter invariant after every phase; it reports medians and the ratios the
# issue asks for, and for the wrk runs the CPU time per request of wrk, the server and Redis.
# Every run that makes reservations does so on a SKU of its own, created empty, so that rounds
# are alike: a SKU carrying the holds of earlier rounds (hundreds of thousands; a real launch's
# SKU has a few thousand units) makes each of Redis's writes slower as its hashes and sorted set
# grow and rehash.
# -T sets the server's event loops (FLASHSALE_THREADS; default: the server's own, one per core).
# -L sets flashsale-load's threads in the open loop, its maximum included (default 2: with one,
# the tool needs more of a core at 80% than a fair share of two cores among four busy threads).
# -W sets flashsale-load's warm-up before each of its runs (default 1: the load runs that long
# first, unmeasured; the first second of a run carries the server accepting every connection
# and whatever else is cold, and was most of a 4-second open loop's p99; 0: none).
# Everything it starts is stopped by pid at the end.
set -euo pipefail

CONNS=100 WRK_THREADS=1 DURATION=5 ROUNDS=3 BUILD="" OUT="" SERVER_THREADS="" LOAD_THREADS=2
WARMUP=1
while getopts "c:t:d:r:b:o:T:L:W:h" opt; do
  case $opt in
    c) CONNS=$OPTARG ;; t) WRK_THREADS=$OPTARG ;; d) DURATION=$OPTARG ;; r) ROUNDS=$OPTARG ;;
    b) BUILD=$OPTARG ;; o) OUT=$OPTARG ;; T) SERVER_THREADS=$OPTARG ;; L) LOAD_THREADS=$OPTARG ;;
    W) WARMUP=$OPTARG ;;
    h) sed -n '2,33p' "$0"; exit 0 ;;
    *) exit 2 ;;
  esac
done
# Each round reserves on 6 SKUs of its own, and a launch holds at most 100.
case $ROUNDS in
  ''|*[!0-9]*) echo "rush-bench.sh: -r must be a number of rounds, 1 to 16" >&2; exit 2 ;;
esac
if [ "$ROUNDS" -lt 1 ] || [ "$ROUNDS" -gt 16 ]; then
  echo "rush-bench.sh: -r must be 1 to 16 (each round reserves on 6 SKUs of its own, and a launch" \
    "holds at most 100)" >&2
  exit 2
fi

case $WARMUP in
  ''|*[!0-9]*) echo "rush-bench.sh: -W must be a whole number of seconds of warm-up, 0 or more" >&2; exit 2 ;;
esac
case $LOAD_THREADS in
  ''|*[!0-9]*|0) echo "rush-bench.sh: -L must be a number of load threads, 1 or more" >&2; exit 2 ;;
esac
case $SERVER_THREADS in
  '') unset FLASHSALE_THREADS ;;
  *[!0-9]*|0) echo "rush-bench.sh: -T must be a number of event loops, 1 or more" >&2; exit 2 ;;
  *) export FLASHSALE_THREADS=$SERVER_THREADS ;;
esac

HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/bench-lib.sh"
bench_paths
bench_need rush-bench.sh wrk redis-server redis-benchmark redis-cli curl python3
bench_build rush-bench.sh "$BUILD" flashsale-server flashsale-load

bench_workdir fs-rush
SPORT=$(free_port)
KEY=bench-key-$RANDOM$RANDOM
ADMIN=bench-admin-$RANDOM$RANDOM
URL=http://127.0.0.1:$SPORT
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

bench_redis
REDIS_PID=${PIDS[-1]}

FLASHSALE_LISTEN=127.0.0.1:$SPORT FLASHSALE_REDIS=redis://127.0.0.1:$RPORT/0 \
  FLASHSALE_API_KEYS=$KEY FLASHSALE_ADMIN_TOKEN=$ADMIN FLASHSALE_LOG_LEVEL=warn \
  FLASHSALE_IDLE_TIMEOUT_MS=600000 FLASHSALE_MAX_CONNECTIONS_PER_ADDR=1000000 "$SERVER" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
PIDS+=($SERVER_PID)
bench_wait_ready "$URL/readyz" rush-bench.sh "$WORK/server.log"

admin() { curl -fsS -H "Authorization: Bearer $ADMIN" "$@"; }
# SKUs of a billion units, one per run that reserves (see above): big-R (wrk) and direct-R
# (redis-benchmark) per round R, ol-K per flashsale-load run (ROUNDS maxima, 3 * ROUNDS open loop).
big_skus() { # prefix count
  local i
  for i in $(seq "$2"); do
    printf ',{"sku":"%s-%d","stock":1000000000,"per_user_limit":1000000,"price_cents":1}' "$1" "$i"
  done
}
admin -X PUT "$URL/admin/v1/launches/bench" -d '{"name":"Rush bench","hold_seconds":3600,"skus":[
  {"sku":"gone","stock":0,"per_user_limit":1,"price_cents":1}'"$(big_skus big "$ROUNDS")$(big_skus direct "$ROUNDS")$(big_skus ol $((4 * ROUNDS)))"']}' >/dev/null
admin -X POST "$URL/admin/v1/launches/bench/open" >/dev/null
# The same in-stock SKU with rate limits on, generous enough that nothing is refused: it measures
# what evaluating them costs (wrk's requests all come from 127.0.0.1, hence the address limit).
admin -X PUT "$URL/admin/v1/launches/bench-rl" -d '{"name":"Rush bench, rate limited","hold_seconds":3600,
  "skus":['"$(big_skus big "$ROUNDS" | cut -c2-)"'],
  "rate_limit":{"shopper_per_sec":1000,"shopper_burst":1000,"address_per_sec":1000000,"address_burst":1000000}}' >/dev/null
admin -X POST "$URL/admin/v1/launches/bench-rl/open" >/dev/null

# The counter invariant of every SKU, from the operator API (exact counters from Redis).
check_invariant() {
  for l in bench bench-rl; do admin "$URL/admin/v1/launches/$l"; echo; done | python3 -c '
import json, sys
skus = [s for line in sys.stdin if line.strip() for s in json.loads(line)["skus"]]
bad = [s for s in skus if s["available"] + s["held"] + s["sold"] != s["total"]
       or min(s["available"], s["held"], s["sold"]) < 0 or s["held"] + s["sold"] > s["total"]]
print("ok" if not bad else "BROKEN %r" % bad)'
}

# The machine's CPU counters (/proc/stat) around each run: the share the hypervisor gave to other
# machines (steal) and the share idle, per run name, in cpu.tsv.
cpu_note() { # name /proc/stat-cpu-line-before
  python3 -c '
import sys
a = [int(x) for x in sys.argv[2].split()[1:9]]
b = [int(x) for x in open("/proc/stat").readline().split()[1:9]]
d = [y - x for x, y in zip(a, b)]
t = sum(d) or 1
with open(sys.argv[3], "a") as f:
    f.write("%s\t%.2f\t%.2f\n" % (sys.argv[1], 100.0 * d[7] / t, 100.0 * (d[3] + d[4]) / t))
' "$1" "$2" "$WORK/cpu.tsv" || true
}

export FS_LAUNCH=bench FS_KEY=$KEY
# wrk prints "Requests/sec: N" and, with --latency, "50%" and "99%" lines. Around each run, the
# CPU time of wrk (bash's `times`: this shell's finished children, and nothing else runs between
# the two), the server and Redis go to cost.tsv: where each request's time went, a figure that
# the machine's drift moves far less than requests/s.
wrk_run() { # name script sku
  local out c0 s0 r0 s1 r1
  c0=$(head -1 /proc/stat)
  s0=$(cpu_seconds "$SERVER_PID") r0=$(cpu_seconds "$REDIS_PID")
  times > "$WORK/times0"
  if [ -n "$2" ]; then
    out=$(FS_LAUNCH=${4:-bench} FS_SKU=$3 wrk -t"$WRK_THREADS" -c"$CONNS" -d"${DURATION}s" --latency -s "$HERE/wrk/$2" "$URL/")
  else
    out=$(wrk -t"$WRK_THREADS" -c"$CONNS" -d"${DURATION}s" --latency "$URL/healthz")
  fi
  times > "$WORK/times1"
  s1=$(cpu_seconds "$SERVER_PID") r1=$(cpu_seconds "$REDIS_PID")
  cpu_note "$1" "$c0"
  echo "$out" > "$WORK/$1.last"
  python3 -c '
import re, sys
def children_s(path):  # the second line of `times`: children user and system, "1m2.345s 0m0.678s"
    line = open(path).read().splitlines()[1]
    return sum(int(m) * 60 + float(s) for m, s in re.findall(r"(\d+)m([\d.]+)s", line))
name, t0, t1, s0, s1, r0, r1, last, path = sys.argv[1:10]
n = int(re.search(r"(\d+) requests in", open(last).read()).group(1)) or 1
client = children_s(t1) - children_s(t0)
with open(path, "a") as f:
    f.write("%s\t%.2f\t%.2f\t%.2f\n" % (name, client * 1e6 / n,
                                      (float(s1) - float(s0)) * 1e6 / n, (float(r1) - float(r0)) * 1e6 / n))
' "$1" "$WORK/times0" "$WORK/times1" "$s0" "$s1" "$r0" "$r1" "$WORK/$1.last" \
    "$WORK/cost.tsv" || true
  python3 -c '
import re, sys
name, path, text = sys.argv[1], sys.argv[2], open(sys.argv[3]).read()
def ms(label):
    m = re.search(r"^\s*%s\s+([\d.]+)(us|ms|s)\s*$" % re.escape(label), text, re.M)
    if not m: return float("nan")
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
total = re.search(r"(\d+) requests in", text).group(1)
with open(path, "a") as f:
    f.write("%s\t%.0f\t%.3f\t%.3f\t%s\t%s\n" % (name, rps, ms("50%"), ms("99%"), total, non2xx.group(1) if non2xx else "0"))
' "$1" "$WORK/results.tsv" "$WORK/$1.last"
}

# The library's API version, as the server calls it (FS_FN in src/stock/stock.h).
API=$(sed -n 's/^#!lua name=flashsale_v\([0-9][0-9]*\)$/\1/p' "$REPO/lua/flashsale.lua")
# The function the server calls for a batch of plain requests (grouped_holds on, the default):
# fs_reserve_group where the library has it, else fs_reserve_plain. Ids are two random numbers
# (one would repeat within a run: 20,000 draws of 10^9 meet about once in five runs).
FCALL_FN=fs_reserve_plain
grep -q "^register('fs_reserve_group'" "$REPO/lua/flashsale.lua" && FCALL_FN=fs_reserve_group
fcall_run() { # name pipeline sku
  local p="{bench:$3}"
  local out held0 held1 req=(rid-__rand_int__-__rand_int__ shopper-__rand_int__ 127.0.0.1)
  # fs_reserve_group: the group, the call's one address, the shopper.
  [ "$FCALL_FN" = fs_reserve_group ] && req=(g__rand_int__-__rand_int__ 127.0.0.1 shopper-__rand_int__)
  held0=$(redis-cli -p "$RPORT" HGET "fs:$p:sku" held)
  out=$(redis-benchmark -p "$RPORT" -c "$CONNS" -n $((CONNS * 400)) -P "$2" -r 1000000000 --csv \
    FCALL "${FCALL_FN}_v$API" 6 "fs:$p:sku" "fs:$p:holds" "fs:$p:users" "fs:$p:held" "fs:$p:rlu" \
    "fs:$p:rla" 1 "${req[@]}" 2>/dev/null | tail -1)
  case "$out" in '"FCALL'*) ;; *) echo "rush-bench.sh: redis-benchmark failed: $out" >&2; return 1 ;; esac
  # Every call must have taken its unit (an error reply would count as a request too).
  held1=$(redis-cli -p "$RPORT" HGET "fs:$p:sku" held)
  if [ $((held1 - held0)) -ne $((CONNS * 400)) ]; then
    echo "rush-bench.sh: redis-benchmark made $((held1 - held0)) reservations, not $((CONNS * 400))" >&2
    return 1
  fi
  # "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
  echo "$out" | python3 -c '
import csv, sys
row = next(csv.reader(sys.stdin))
print("%s\t%.0f\t%.3f\t%.3f\t0\t0" % (sys.argv[1], float(row[1]), float(row[4]), float(row[6])))' "$1" >> "$WORK/results.tsv"
}

# Make the sold-out SKU known as sold out (the first answer comes from Redis).
curl -s -o /dev/null -H "Authorization: Bearer $KEY" -d '{"sku":"gone","user_id":"warm"}' "$URL/v1/launches/bench/reservations"

LOOPS_DESC=${SERVER_THREADS:-"default, one per core ($(nproc))"}
echo "rush-bench: $ROUNDS rounds x ${DURATION}s, wrk -t$WRK_THREADS -c$CONNS, server event loops: $LOOPS_DESC" >&2
INVARIANTS=()
for round in $(seq "$ROUNDS"); do
  echo "round $round/$ROUNDS" >&2
  # Even rounds run in the reverse order, so that no run always comes right after the same
  # one (a run that follows a reserving one finds Redis with more in memory, and the machine
  # drifts within a round): the per-round ratios are balanced between the two orders.
  runs=(healthz sold-out in-stock in-stock-rl)
  [ $((round % 2)) -eq 0 ] && runs=(in-stock-rl in-stock sold-out healthz)
  for r in "${runs[@]}"; do
    case $r in
      healthz) wrk_run healthz "" "" ;;
      sold-out) wrk_run sold-out reserve-static.lua gone ;;
      in-stock) wrk_run in-stock reserve-random.lua "big-$round" ;;
      in-stock-rl) wrk_run in-stock-rl reserve-random.lua "big-$round" bench-rl ;;
    esac
  done
  INVARIANTS+=("round $round: $(check_invariant)")
  fcall_run fcall-1 1 "direct-$round"
  fcall_run fcall-16 16 "direct-$round"
  INVARIANTS+=("round $round after redis-benchmark: $(check_invariant)")
done

# Open loop: in-stock reservations at fractions of the measured maximum, latency from intended
# send times. Both the maximum and the open-loop runs use flashsale-load in plain mode with
# --post (requests formatted before the run, as cheap per request as wrk), so the maximum is
# that of the same client: closed loop with as many connections. Each of ROUNDS rounds measures
# the maximum, then runs 50%, 65% and 80% of that round's own maximum, seconds later: the speed
# of a shared machine drifts, and 80% of a maximum measured minutes earlier can be more than the
# machine then has. Each figure is the median over the rounds (the p99 column also gives the
# range); the maximum reported is the median of the rounds' maxima.
OL_CONNS=$((CONNS * 2))
OL_RUN=0
fl_run() { # json-path flashsale-load-args...: one run, its CPU noted under the json's name
  local json=$1 c0 name; shift
  c0=$(head -1 /proc/stat)
  "$LOAD" "$@" -t "$LOAD_THREADS" -d "${DURATION}s" --warmup "${WARMUP}s" -q --json "$json" \
    >/dev/null 2>&1 || true
  name=$(basename "$json" .json)
  cpu_note "${name%-*}" "$c0" # without the round
}
fl_post() { # json-path extra-args... (each run on the next SKU ol-K)
  local json=$1; shift
  OL_RUN=$((OL_RUN + 1))
  fl_run "$json" --url "$URL/v1/launches/bench/reservations" -H "Authorization: Bearer $KEY" \
    -H "Content-Type: application/json" --post '{"sku":"ol-'"$OL_RUN"'","user_id":"ol-{seq}"}' "$@"
}
fl_get() { # json-path extra-args...: GET /healthz
  local json=$1; shift
  fl_run "$json" --url "$URL/healthz" "$@"
}
# The server's own histogram of reservation latency (from the complete request to the answer):
# its cumulative counts per bucket, "le count" lines.
reserve_hist() {
  curl -fsS "$URL/metrics" | sed -n 's/^fs_http_request_duration_seconds_bucket{route="reserve",le="\([^"]*\)"} \([0-9]*\)$/\1 \2/p'
}
rps_of() { # json-path: its requests/s as an integer, 0 if the run failed
  python3 -c 'import json, sys
try:
    print(int(json.load(open(sys.argv[1]))["requests_per_sec"]))
except Exception:
    print(0)' "$1"
}
OPEN_LINES=()
MAXES=()
for round in $(seq "$ROUNDS"); do
  fl_post "$WORK/ol-max-$round.json" -c "$CONNS"
  RMAX=$(rps_of "$WORK/ol-max-$round.json")
  MAXES+=("$RMAX")
  [ "$RMAX" -gt 0 ] || continue
  for pct in 50 65 80; do
    RATE=$((RMAX * pct / 100))
    echo "open loop, round $round/$ROUNDS, at $pct% of this round's $RMAX/s: $RATE/s" >&2
    if [ $pct = 80 ]; then reserve_hist > "$WORK/hist-0-$round" || true; fi
    fl_post "$WORK/ol-$pct-$round.json" -c "$OL_CONNS" -R "$RATE"
    if [ $pct = 80 ]; then reserve_hist > "$WORK/hist-1-$round" || true; fi
  done
  # The floor: /healthz (no Redis, no reservation) at the rate of the 80% run, right after it.
  # What is left of the reservations' p99 above it is what the reservation path adds at that
  # rate; the rest is the tool, the kernel and the machine.
  echo "open loop, round $round/$ROUNDS, /healthz at $RATE/s" >&2
  fl_get "$WORK/hz-80-$round.json" -c "$OL_CONNS" -R "$RATE"
done
MAX=$(python3 -c 'import statistics, sys
v = [int(x) for x in sys.argv[1:] if int(x) > 0]
print(int(statistics.median(v)) if v else 0)' "${MAXES[@]}")
open_row() { # label json-paths...: one row of the open-loop table, medians over the runs
  python3 -c '
import json, statistics, sys
label, paths = sys.argv[1], sys.argv[2:]
runs = []
for path in paths:
    try:
        runs.append(json.load(open(path)))
    except Exception:
        pass
if not runs:
    print("| %s | unavailable | | | | | | | |" % label); sys.exit()
med = lambda f: statistics.median(f(d) for d in runs)
p99 = sorted(d["latency_ms"]["p99"] for d in runs)
held = sum(1 for d in runs if d["rate_held"])
bad = sum(sum(v for k, v in d["status"].items() if not k.startswith("2")) for d in runs)
print("| %s | %.0f | %.0f | %d of %d | %.2f | %.2f | %.2f (%.2f-%.2f) | %.2f | %d |" % (label,
      med(lambda d: d["target_rate"]), med(lambda d: d["requests_per_sec"]), held, len(runs),
      med(lambda d: d["latency_ms"]["p50"]), med(lambda d: d["latency_ms"]["p90"]),
      statistics.median(p99), p99[0], p99[-1], med(lambda d: d["latency_ms"]["max"]), bad))
' "$@"
}
if [ "$MAX" -gt 0 ]; then
  for pct in 50 65 80; do
    OPEN_LINES+=("$(open_row "reserve, $pct%" "$WORK"/ol-"$pct"-*.json)")
  done
fi
OPEN_LINES+=("$(open_row "\`GET /healthz\`, the 80% rate" "$WORK"/hz-80-*.json)")
# What the server itself saw of the 80% runs: the share of their reservations it answered within
# each of its histogram's bounds (counted from the complete request, so without the time in
# socket buffers and in the load tool).
SERVER_SEEN=$(python3 - "$WORK" "$ROUNDS" <<'PY'
import os, sys
work, rounds = sys.argv[1], int(sys.argv[2])
total, within = 0, {}
for r in range(1, rounds + 1):
    try:
        a = dict(l.split() for l in open(os.path.join(work, "hist-0-%d" % r)))
        b = dict(l.split() for l in open(os.path.join(work, "hist-1-%d" % r)))
    except (OSError, ValueError):
        continue
    n = int(b["+Inf"]) - int(a.get("+Inf", 0))
    total += n
    for le in b:
        within[le] = within.get(le, 0) + int(b[le]) - int(a.get(le, 0))
if not total:
    print("unavailable")
else:
    les = [le for le in ("0.001", "0.0025", "0.005", "0.01") if le in within]
    print(", ".join("%.2f%% within %g ms" % (100.0 * within[le] / total, float(le) * 1000) for le in les)
          + " (%d reservations)" % total)
PY
)
INVARIANTS+=("after the open-loop runs: $(check_invariant)")
OPEN="closed-loop maximum of flashsale-load --post (-c $CONNS -t $LOAD_THREADS, median of $ROUNDS rounds: ${MAXES[*]}): $MAX/s; each round's open-loop runs (-c $OL_CONNS -t $LOAD_THREADS, arrivals sent in 100 µs steps; every flashsale-load run after $WARMUP s of the same load, unmeasured) at shares of that round's maximum, then \`GET /healthz\` at the 80% run's rate (the floor: the tool, the kernel and the HTTP server at that rate), medians over the rounds:"
OPEN+=$'\n\n| run | offered /s | achieved /s | rate held | p50 ms | p90 ms | p99 ms (range) | max ms | non-2xx (all rounds) |'
OPEN+=$'\n| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |'
for l in "${OPEN_LINES[@]}"; do OPEN+=$'\n'"$l"; done
OPEN+=$'\n\n- the server\'s own latency histogram over the 80% runs, their warm-ups included (from the complete request to the answer written): '"$SERVER_SEEN"

# Memory: RSS of the server before and with 10,000 idle keep-alive connections. And do they slow
# others down? healthz runs just before they open and while they stay open, as many each as the
# other runs (compared with the main rounds' healthz, minutes earlier, the machine's drift
# swamped the answer).
for _ in $(seq "$ROUNDS"); do wrk_run healthz-before-idle "" ""; done
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$SERVER_PID/status"; }
RSS0=$(rss_kb)
python3 - "$SPORT" "$WORK/idle.ready" "$WORK/idle.done" <<'PY' &
import os, socket, sys, time
port, ready, done = int(sys.argv[1]), sys.argv[2], sys.argv[3]
conns = []
for i in range(10000):
    s = socket.create_connection(("127.0.0.1", port))
    conns.append(s)
# one request on each, so that each connection has been through a request and is idle
for s in conns:
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
for s in conns:
    s.recv(4096)
open(ready, "w").close()
deadline = time.time() + 120
while not os.path.exists(done) and time.time() < deadline:
    time.sleep(0.1)
PY
IDLE_PID=$!
PIDS+=($IDLE_PID)
for _ in $(seq 1200); do [ -e "$WORK/idle.ready" ] && break; sleep 0.1; done
sleep 0.5
RSS1=$(rss_kb)
for _ in $(seq "$ROUNDS"); do wrk_run healthz-10k-idle "" ""; done
touch "$WORK/idle.done"
wait "$IDLE_PID" 2>/dev/null || true
INVARIANTS+=("end: $(check_invariant)")

REPORT=$(python3 - "$WORK/results.tsv" "$RSS0" "$RSS1" "$OPEN" "$CONNS" "$WRK_THREADS" "$DURATION" "$ROUNDS" "$(nproc)" "$FCALL_FN" "$LOOPS_DESC" "$WORK/cpu.tsv" "$WORK/cost.tsv" <<'PY'
import statistics, sys
path, rss0, rss1, open_line, conns, wt, dur, rounds, cores, fn, loops, cpu_path, cost_path = sys.argv[1:14]
rows = {}
for line in open(path):
    name, rps, p50, p99, total, non2xx = line.rstrip("\n").split("\t")
    rows.setdefault(name, []).append((float(rps), float(p50), float(p99), int(total), int(non2xx)))
med = {k: tuple(statistics.median(r[i] for r in v) for i in range(3)) for k, v in rows.items()}
out = []
out.append("| run | requests/s (median) | rounds: min-max | p50 ms | p99 ms | rounds |")
out.append("| --- | ---: | ---: | ---: | ---: | ---: |")
labels = {"healthz": "`GET /healthz`", "sold-out": "reserve, sold-out SKU", "in-stock": "reserve, in-stock SKU",
          "in-stock-rl": "reserve, in-stock SKU, rate limits on (none refused)",
          "fcall-1": "`redis-benchmark` FCALL %s, unpipelined" % fn, "fcall-16": "`redis-benchmark` FCALL %s, pipelined 16" % fn,
          "healthz-before-idle": "`GET /healthz` just before the 10,000 idle connections open",
          "healthz-10k-idle": "`GET /healthz` with 10,000 idle connections open"}
for k in ["healthz", "sold-out", "in-stock", "in-stock-rl", "fcall-1", "fcall-16", "healthz-before-idle", "healthz-10k-idle"]:
    if k in med:
        v = [r[0] for r in rows[k]]
        out.append("| %s | %.0f | %.0f-%.0f | %.2f | %.2f | %d |" % (labels[k], med[k][0], min(v), max(v), med[k][1], med[k][2], len(rows[k])))
h, so, ins, f1 = (med.get(k, (float("nan"),))[0] for k in ("healthz", "sold-out", "in-stock", "fcall-1"))

def per_round(a, b):
    """a / b of each round (runs a seconds apart, so the machine's drift mostly cancels): median, min-max."""
    if a not in rows or b not in rows:
        return "n/a"
    v = sorted(x[0] / y[0] for x, y in zip(rows[a], rows[b]))
    return "%.2f (%.2f-%.2f)" % (statistics.median(v), v[0], v[-1])

out.append("")
out.append("| ratio | of the medians | of each round: median (min-max) | target |")
out.append("| --- | ---: | ---: | ---: |")
out.append("| sold-out / healthz | %.2f | %s | >= 0.9 |" % (so / h, per_round("sold-out", "healthz")))
out.append("| in-stock / healthz | %.2f | %s | >= 0.6 |" % (ins / h, per_round("in-stock", "healthz")))
out.append("| in-stock / redis-benchmark unpipelined | %.2f | %s | >= 1.0 |" % (ins / f1, per_round("in-stock", "fcall-1")))
if "in-stock-rl" in med:
    out.append("| in-stock with rate limits on / off | %.2f | %s | >= 0.9 |" % (med["in-stock-rl"][0] / ins, per_round("in-stock-rl", "in-stock")))
if "healthz-10k-idle" in med and "healthz-before-idle" in med:
    out.append("| healthz with 10k idle / just before | %.2f | (runs before, then with them) | (no slowdown) |" % (med["healthz-10k-idle"][0] / med["healthz-before-idle"][0]))
cost = {}
try:
    for line in open(cost_path):
        name, c, sv, rd = line.rstrip("\n").split("\t")
        cost.setdefault(name, []).append((float(c), float(sv), float(rd)))
except (OSError, ValueError):
    pass
if "healthz" in cost:
    # CPU time per request is what two cores shared by client, server and Redis divide among
    # them: its ratio is the requests/s ratio the machine would give with no idle time and no
    # drift (the requests/s ratios above have both).
    out.append("")
    out.append("| CPU per request, µs (medians over the rounds) | wrk | server | Redis | total | healthz's total / this total |")
    out.append("| --- | ---: | ---: | ---: | ---: | ---: |")
    hz_total = statistics.median(sum(x) for x in cost["healthz"])
    for k in ["healthz", "sold-out", "in-stock", "in-stock-rl"]:
        if k in cost:
            m = [statistics.median(x[i] for x in cost[k]) for i in range(3)]
            total = statistics.median(sum(x) for x in cost[k])
            out.append("| %s | %.1f | %.1f | %.1f | %.1f | %.2f |" % (labels[k], m[0], m[1], m[2], total, hz_total / total))
out.append("")
out.append("- open loop, in-stock reservations (target: p99 <= 10 ms at 80%% of the maximum); %s" % open_line)
out.append("")
per = (int(rss1) - int(rss0)) * 1024 / 10000
out.append("- server RSS: %d KiB before, %d KiB with 10,000 idle keep-alive connections: %.0f bytes per idle connection (target <= 4096)" % (int(rss0), int(rss1), per))
out.append("- settings: wrk -t%s -c%s, %s s per run, %s interleaved rounds, %s cores shared by client, server and Redis; server event loops: %s" % (wt, conns, dur, rounds, cores, loops))
cpu = {}
try:
    for line in open(cpu_path):
        name, steal, idle = line.rstrip("\n").split("\t")
        cpu.setdefault(name, []).append((float(steal), float(idle)))
except (OSError, ValueError):
    pass
cpu_names = [("healthz", "healthz"), ("sold-out", "sold-out"), ("in-stock", "in-stock"),
             ("in-stock-rl", "rate limits on"), ("ol-max", "open-loop maximum"),
             ("ol-80", "open loop at 80%"), ("hz-80", "healthz at the 80% rate")]
parts = ["%s %.1f%% / %.0f%% (max %.1f%%)" % (label, statistics.median(s for s, _ in cpu[k]),
         statistics.median(i for _, i in cpu[k]), max(s for s, _ in cpu[k]))
         for k, label in cpu_names if k in cpu]
if parts:
    out.append("- the machine's CPU during the runs (/proc/stat), medians over the rounds: stolen by the hypervisor for other machines / idle: " + "; ".join(parts))
for k in ("in-stock", "in-stock-rl"):
    bad = sum(r[4] for r in rows.get(k, []))
    if bad:
        out.append("- %s runs had %d non-2xx answers (should be 0)" % (k, bad))
print("\n".join(out))
PY
)
echo
echo "$REPORT"
echo
printf 'invariant: %s\n' "${INVARIANTS[@]}"
if [ -n "$OUT" ]; then
  {
    echo "# Rush benchmark: latest run"
    echo
    echo "Command: \`loadtest/rush-bench.sh -c $CONNS -t $WRK_THREADS -d $DURATION -r $ROUNDS${SERVER_THREADS:+ -T $SERVER_THREADS} -L $LOAD_THREADS -W $WARMUP\` ($(date -u +%Y-%m-%dT%H:%MZ))"
    echo
    echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))," \
      "$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, $(uname -sr);" \
      "Redis $(redis-server --version | awk '{print $3}' | tr -d 'v='), wrk $(wrk -v 2>&1 | head -1 | awk '{print $2}')." \
      "Client, server and Redis share the machine, which other work may share too."
    echo
    echo "$REPORT"
    echo
    printf -- '- invariant %s\n' "${INVARIANTS[@]}"
  } > "$OUT"
  echo "wrote $OUT" >&2
fi
