#!/usr/bin/env bash
# server-cost.sh: what one request costs flashsale-server in user-space instructions, repeatably.
#
#   loadtest/server-cost.sh [-b BUILD_DIR] [-d SECONDS]
#
# Starts a redis-server and flashsale-server (Release build, one event loop) under valgrind's
# callgrind on free 127.0.0.1 ports, creates a launch with a SKU of a billion units (and one with
# generous rate limits), then for GET /healthz, in-stock reservations and in-stock reservations
# with rate limits on, runs wrk (-t1 -c20, SECONDS each, default 4) and prints the instructions the
# server executed per answered request (system calls and the kernel are not counted; Redis is not
# under valgrind). Under valgrind the server is the bottleneck, so batches are smaller than at full
# speed: compare runs of this script with each other, not with the rush benchmark.
# Stops only what it started, by pid.
set -euo pipefail

BUILD="" DURATION=4
while getopts "b:d:h" opt; do
  case $opt in
    b) BUILD=$OPTARG ;; d) DURATION=$OPTARG ;;
    h) sed -n '2,13p' "$0"; exit 0 ;;
    *) exit 2 ;;
  esac
done
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/bench-lib.sh"
bench_paths
bench_need server-cost.sh valgrind callgrind_control wrk redis-server redis-cli curl python3
bench_build server-cost.sh "$BUILD" flashsale-server

bench_workdir fs-server-cost
SPORT=$(free_port)
URL=http://127.0.0.1:$SPORT
KEY=cost-key-$RANDOM$RANDOM
ADMIN=cost-admin-$RANDOM$RANDOM

bench_redis
FLASHSALE_THREADS=1 FLASHSALE_LISTEN=127.0.0.1:$SPORT FLASHSALE_REDIS=redis://127.0.0.1:$RPORT/0 \
  FLASHSALE_API_KEYS=$KEY FLASHSALE_ADMIN_TOKEN=$ADMIN FLASHSALE_LOG_LEVEL=warn \
  FLASHSALE_IDLE_TIMEOUT_MS=600000 \
  valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out" "$SERVER" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
PIDS+=($SERVER_PID)
bench_wait_ready "$URL/readyz" server-cost.sh "$WORK/server.log"
admin() { curl -fsS -H "Authorization: Bearer $ADMIN" "$@" >/dev/null; }
admin -X PUT "$URL/admin/v1/launches/cost" -d '{"name":"cost","hold_seconds":3600,"skus":[
  {"sku":"big","stock":1000000000,"per_user_limit":1000000,"price_cents":1}]}'
admin -X POST "$URL/admin/v1/launches/cost/open"
admin -X PUT "$URL/admin/v1/launches/cost-rl" -d '{"name":"cost","hold_seconds":3600,"skus":[
  {"sku":"big","stock":1000000000,"per_user_limit":1000000,"price_cents":1}],
  "rate_limit":{"shopper_per_sec":1000,"shopper_burst":1000,"address_per_sec":1000000,"address_burst":1000000}}'
admin -X POST "$URL/admin/v1/launches/cost-rl/open"

echo "flashsale-server user-space instructions per request (callgrind, one loop, wrk -t1 -c20 -d${DURATION}s):"
measure() { # name launch [wrk script] [path]
  callgrind_control -z "$SERVER_PID" >/dev/null 2>&1
  FS_KEY=$KEY FS_LAUNCH=$2 FS_SKU=big wrk -t1 -c20 -d"${DURATION}s" ${3:+-s "$HERE/wrk/$3"} "$URL/${4:-}" >"$WORK/wrk.out"
  callgrind_control -d "$1" "$SERVER_PID" >/dev/null 2>&1
  local n ir f
  n=$(awk '/requests in/ {print $1}' "$WORK/wrk.out")
  f=$(ls -t "$WORK"/callgrind.out.* | head -1)
  ir=$(awk '/^(summary|totals):/ {print $2; exit}' "$f")
  printf '  %-40s %8d  (%d requests)\n' "$1" $((ir / n)) "$n"
}
measure "GET /healthz" cost "" healthz
measure "reserve, in-stock" cost reserve-random.lua
measure "reserve, in-stock, rate limits on" cost-rl reserve-random.lua
