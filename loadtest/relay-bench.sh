#!/usr/bin/env bash
# relay-bench.sh: deliveries per second of flashsale-relay to a local receiver, with 1 and 4 relay
# processes (or any list given with -r).
#
# For each relay count it starts a private redis-server and receivers on free loopback ports
# (tests/lib/fsreceiver.py: verifies every signature; several processes share one port with
# SO_REUSEPORT), starts the relays, then writes N well-formed order entries at once (one EVAL of
# XADDs into the order streams of a new launch with K SKUs, registered in fs:launches as the
# server would) and measures the time until every entry is acknowledged by the consumer group
# (XINFO GROUPS lag 0 and nothing pending): deliveries/s = N / that time. The relays discover the
# launch within 50 ms of the write, which is included. Also printed: CPU time (user + system) the
# relays and the receivers used per delivery, a figure less sensitive to other load on the machine
# (1e6 / relay_cpu_us_per_delivery is what one relay could do on one free core).
#
# Usage: loadtest/relay-bench.sh [-n ORDERS] [-r "1 4"] [-k SKUS] [-i MAX_IN_FLIGHT]
#                                [-R RECEIVERS] [-t]   (-t: HTTPS with a test CA)
# Needs: build/src/relay/flashsale-relay (or $FLASHSALE_RELAY_BIN), redis-server, redis-cli,
# curl, python3, openssl (for -t). Everything on 127.0.0.1; every process it starts is stopped on
# exit. Prints one line per relay count and a summary.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RELAY=${FLASHSALE_RELAY_BIN:-$ROOT/build/src/relay/flashsale-relay}
RECEIVER=$ROOT/tests/lib/fsreceiver.py
N=20000
COUNTS="1 4"
SKUS=4
INFLIGHT=16
RECEIVERS=2
TLS=0
TIMEOUT_S=120
SECRET=whsec-bench-0123456789abcdef

usage() { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
while getopts "n:r:k:i:R:th" o; do
  case $o in
    n) N=$OPTARG ;; r) COUNTS=$OPTARG ;; k) SKUS=$OPTARG ;; i) INFLIGHT=$OPTARG ;;
    R) RECEIVERS=$OPTARG ;; t) TLS=1 ;; *) usage ;;
  esac
done
[ -x "$RELAY" ] || { echo "relay-bench: no relay binary at $RELAY (build first)" >&2; exit 1; }

. "$ROOT/loadtest/bench-lib.sh"
bench_workdir relay-bench
now() { date +%s.%N; }

CA_ARGS=()
RCV_TLS=()
SCHEME=http
if [ "$TLS" = 1 ]; then
  PYTHONPATH=$ROOT/tests/lib python3 -c "import fsreceiver; fsreceiver.make_certs('$WORK')"
  CA_ARGS=(FLASHSALE_RELAY_CA_FILE="$WORK/ca.crt")
  RCV_TLS=(--cert "$WORK/server.crt" --key "$WORK/server.key")
  SCHEME=https
fi

# Writes N order entries for launch $1 over $SKUS SKUs in one EVAL (atomic: all appear at once).
LOAD='
local L, n, k = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call("SADD", "fs:launches", L)
for s = 1, k do redis.call("RPUSH", "fs:launch:{" .. L .. "}:skus", "s" .. s) end
for i = 1, n do
  local s = "s" .. (i % k + 1)
  redis.call("XADD", "fs:{" .. L .. ":" .. s .. "}:orders", "*", "order_id", L .. "-" .. i,
    "reservation_id", "r" .. i, "launch", L, "sku", s, "user_id", "u" .. i, "qty", "1",
    "price_cents", "79900", "payment_ref", "", "confirmed_at", "2026-11-27T01:02:03.456Z")
end
return n'
# Undelivered entries of launch $1: never read (lag) + pending, over its SKUs; -1 before the
# relays created the groups.
LEFT='
local L, k, total = ARGV[1], tonumber(ARGV[2]), 0
for s = 1, k do
  local key = "fs:{" .. L .. ":s" .. s .. "}:orders"
  local ok, groups = pcall(redis.call, "XINFO", "GROUPS", key)
  if not ok or #groups == 0 then return -1 end
  local g = {}
  for i = 1, #groups[1], 2 do g[groups[1][i]] = groups[1][i + 1] end
  if type(g["lag"]) ~= "number" then return -1 end
  total = total + g["lag"] + g["pending"]
end
return total'

run() {  # $1 = relay count; prints "relays=.. orders=.. seconds=.. deliveries_per_s=.."
  local count=$1 rport hport launch
  rport=$(free_port)
  redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" \
    --daemonize no >"$WORK/redis-$count.log" 2>&1 &
  local redis_pid=$!
  PIDS+=("$redis_pid")
  for _ in $(seq 100); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.05; done
  hport=$(free_port)
  local rcv_pids=()
  for i in $(seq "$RECEIVERS"); do
    python3 "$RECEIVER" --port "$hport" --reuse-port --secret "$SECRET" "${RCV_TLS[@]}" \
      >"$WORK/rcv-$count-$i.out" 2>&1 &
    rcv_pids+=($!)
    PIDS+=($!)
  done
  for _ in $(seq 100); do
    [ "$(grep -c listening "$WORK"/rcv-"$count"-*.out 2>/dev/null | awk -F: '{s+=$2} END {print s+0}')" = "$RECEIVERS" ] && break
    sleep 0.05
  done
  local relay_pids=() ports=()
  for i in $(seq "$count"); do
    local p; p=$(free_port); ports+=("$p")
    env "${CA_ARGS[@]}" FLASHSALE_REDIS="redis://127.0.0.1:$rport/0" \
      FLASHSALE_RELAY_TARGET="$SCHEME://127.0.0.1:$hport/orders" FLASHSALE_RELAY_SECRET="$SECRET" \
      FLASHSALE_RELAY_LISTEN="127.0.0.1:$p" FLASHSALE_RELAY_MAX_IN_FLIGHT="$INFLIGHT" \
      FLASHSALE_RELAY_DISCOVER_INTERVAL_MS=50 FLASHSALE_RELAY_BLOCK_MS=100 \
      FLASHSALE_LOG_LEVEL=warn "$RELAY" >"$WORK/relay-$count-$i.log" 2>&1 &
    relay_pids+=($!)
    PIDS+=($!)
  done
  for p in "${ports[@]}"; do
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$p/readyz" >/dev/null && break; sleep 0.05; done
  done
  launch="bench$count"
  local t0 t1 left
  t0=$(now)
  redis-cli -p "$rport" EVAL "$LOAD" 0 "$launch" "$N" "$SKUS" >/dev/null
  local deadline=$(( $(date +%s) + TIMEOUT_S ))
  while :; do
    left=$(redis-cli -p "$rport" EVAL "$LEFT" 0 "$launch" "$SKUS")
    [ "$left" = 0 ] && break
    if [ "$(date +%s)" -ge "$deadline" ]; then echo "relay-bench: timed out ($left left)" >&2; exit 1; fi
    sleep 0.02
  done
  t1=$(now)
  # CPU seconds (user + system) used so far by the relays and by the receivers.
  local relay_cpu rcv_cpu
  relay_cpu=$(cpu_seconds "${relay_pids[@]}")
  rcv_cpu=$(cpu_seconds "${rcv_pids[@]}")
  local delivered=0
  for p in "${ports[@]}"; do
    local d; d=$(curl -sf "http://127.0.0.1:$p/metrics" | awk '$1=="fs_relay_delivered_total"{print $2}')
    delivered=$((delivered + ${d%.*}))
  done
  for p in "${relay_pids[@]}" "${rcv_pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${relay_pids[@]}" "${rcv_pids[@]}"; do wait "$p" 2>/dev/null || true; done
  local accepted bad
  accepted=$(cat "$WORK"/rcv-"$count"-*.out | sed -n 's/^stats //p' | python3 -c 'import sys,json; print(sum(json.loads(l)["accepted"] for l in sys.stdin))')
  bad=$(cat "$WORK"/rcv-"$count"-*.out | sed -n 's/^stats //p' | python3 -c 'import sys,json; print(sum(json.loads(l)["bad_signatures"] for l in sys.stdin))')
  kill -TERM "$redis_pid" 2>/dev/null || true
  wait "$redis_pid" 2>/dev/null || true
  python3 -c "
t = $t1 - $t0
print('relays=%d orders=%d skus=%d max_in_flight=%d receivers=%d scheme=%s seconds=%.2f deliveries_per_s=%.0f acked_by_relays=%d accepted_by_receivers=%d bad_signatures=%d relay_cpu_us_per_delivery=%.0f receiver_cpu_us_per_delivery=%.0f'
      % ($count, $N, $SKUS, $INFLIGHT, $RECEIVERS, '$SCHEME', t, $N / t, $delivered, $accepted, $bad,
         $relay_cpu * 1e6 / $N, $rcv_cpu * 1e6 / $N))"
}

echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $(nproc) cores, $(uname -sr), load average $(cut -d' ' -f1-3 /proc/loadavg), $("$RELAY" --version)"
for c in $COUNTS; do run "$c"; done
