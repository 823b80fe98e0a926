#!/usr/bin/env bash
# Runs flashsale locally with a demo launch, from a fresh clone:
#
#   ./deploy/quickstart.sh            # build, start Redis + server, create the demo, wait for Ctrl-C
#   ./deploy/quickstart.sh --no-wait  # same, but leave them running and exit
#   ./deploy/quickstart.sh --stop     # stop what an earlier --no-wait run left running
#
# Installs missing Debian packages (as root), builds a Release binary into build-release/, starts a
# redis-server on 127.0.0.1 (AOF on, data in ./var/redis) and flashsale-server with credentials
# generated once into ./var/credentials.env, creates and opens the launch `demo-phone` from
# deploy/demo-launch.json, and prints ready-to-paste curl commands.
#
# Environment: QUICKSTART_REDIS_PORT (default 6390), FLASHSALE_LISTEN (default 127.0.0.1:8080);
# FLASHSALE_LOG_LEVEL and FLASHSALE_THREADS are passed on to the server.
#
# Only processes this script started are ever stopped: their pids (with the kernel's start time,
# so that a reused pid is never mistaken for ours) are kept in ./var/redis.pid and ./var/server.pid.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=deploy/packages.sh
source deploy/packages.sh
ROOT=$PWD
VAR=$ROOT/var
BUILD_DIR=$ROOT/build-release
SERVER_BIN=$BUILD_DIR/src/flashsale-server
REDIS_PORT=${QUICKSTART_REDIS_PORT:-6390}
LISTEN=${FLASHSALE_LISTEN:-127.0.0.1:8080}
LAUNCH=demo-phone

PACKAGES=(
  build-essential cmake pkg-config
  libuv1-dev libhiredis-dev libssl-dev node-llhttp
  libjansson-dev libjsmn-dev libinih-dev
  redis-server python3 openssl curl
)

say() { printf 'quickstart: %s\n' "$*" >&2; }
die() {
  say "$*"
  exit 1
}

usage() {
  sed -n '2,7s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

# ---------------------------------------------------------------------------------------------
# Processes we started: "<pid> <start time>" in $VAR/<name>.pid

# Prints the kernel start time of pid $1 (field 22 of /proc/<pid>/stat); fails if there is no
# such process or it is a zombie.
proc_start_time() {
  local stat rest
  local -a fields
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  rest=${stat##*) }
  read -r -a fields <<<"$rest"
  [[ "${fields[0]}" != Z ]] || return 1
  printf '%s\n' "${fields[19]}"
}

# Writes the pid file for process $2 under name $1.
record_pid() {
  local st
  st=$(proc_start_time "$2") || die "$1 (pid $2) exited right after it started; see $VAR/$1.log"
  printf '%s %s\n' "$2" "$st" >"$VAR/$1.pid"
}

# Prints the pid recorded under name $1 if that very process is still running; fails otherwise
# (and removes a stale pid file).
our_pid() {
  local file=$VAR/$1.pid pid st now
  [[ -f "$file" ]] || return 1
  read -r pid st <"$file" || true
  if [[ "$pid" =~ ^[0-9]+$ ]] && now=$(proc_start_time "$pid") && [[ "$now" == "$st" ]]; then
    printf '%s\n' "$pid"
    return 0
  fi
  rm -f "$file"
  return 1
}

# Stops the process recorded under name $1 (SIGTERM, then SIGKILL after $2 seconds).
stop_ours() {
  local name=$1 grace=$2 pid i
  pid=$(our_pid "$name") || return 0
  say "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < grace * 10; i++)); do
    proc_start_time "$pid" >/dev/null || break
    sleep 0.1
  done
  if proc_start_time "$pid" >/dev/null; then
    say "$name (pid $pid) did not stop within ${grace}s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true # reap it if it is our child
  rm -f "$VAR/$name.pid"
}

stop_all() {
  stop_ours server 15
  stop_ours redis 30
}

# ---------------------------------------------------------------------------------------------
# Redis

redis_ping() {
  [[ "$(timeout 2 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]]
}

port_open() { # host port
  # shellcheck disable=SC2016 # $1 and $2 expand in the inner bash
  timeout 1 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

start_redis() {
  local pid i
  if pid=$(our_pid redis); then
    if redis_ping; then
      say "reusing redis-server on 127.0.0.1:$REDIS_PORT (pid $pid, started earlier by this script)"
      return 0
    fi
    die "redis-server pid $pid (ours) is running but does not answer on 127.0.0.1:$REDIS_PORT; try $0 --stop"
  fi
  if port_open 127.0.0.1 "$REDIS_PORT"; then
    die "127.0.0.1:$REDIS_PORT is taken by a process this script did not start; set QUICKSTART_REDIS_PORT to a free port"
  fi
  mkdir -p "$VAR/redis"
  # setsid: Ctrl-C in the terminal reaches only this script, which then stops the server before
  # Redis, in that order.
  setsid redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --protected-mode yes \
    --dir "$VAR/redis" --appendonly yes --appendfsync everysec \
    --daemonize no --logfile "$VAR/redis.log" </dev/null &
  pid=$!
  record_pid redis "$pid"
  for ((i = 0; i < 100; i++)); do
    redis_ping && break
    proc_start_time "$pid" >/dev/null || die "redis-server exited; see $VAR/redis.log"
    sleep 0.1
  done
  redis_ping || die "redis-server does not answer on 127.0.0.1:$REDIS_PORT; see $VAR/redis.log"
  say "redis-server listening on 127.0.0.1:$REDIS_PORT (pid $pid, AOF in $VAR/redis)"
}

# ---------------------------------------------------------------------------------------------
# Credentials: generated once, kept in $VAR/credentials.env (mode 600)

load_credentials() {
  local file=$VAR/credentials.env line
  if [[ ! -s "$file" ]]; then
    (
      umask 077
      {
        echo "# Generated by deploy/quickstart.sh; delete this file to get new credentials."
        echo "FLASHSALE_ADMIN_TOKEN=$(openssl rand -hex 24)"
        echo "FLASHSALE_API_KEYS=$(openssl rand -hex 24)"
      } >"$file.tmp"
      mv "$file.tmp" "$file"
    )
    say "generated credentials in $file"
  fi
  chmod 600 "$file"
  ADMIN_TOKEN='' API_KEYS=''
  while IFS= read -r line; do
    case "$line" in
      FLASHSALE_ADMIN_TOKEN=*) ADMIN_TOKEN=${line#*=} ;;
      FLASHSALE_API_KEYS=*) API_KEYS=${line#*=} ;;
    esac
  done <"$file"
  [[ -n "$ADMIN_TOKEN" && -n "$API_KEYS" ]] || die "$file lacks FLASHSALE_ADMIN_TOKEN or FLASHSALE_API_KEYS; delete it to regenerate"
  API_KEY=${API_KEYS%%,*}
}

# ---------------------------------------------------------------------------------------------
# Server

# Base URL for curl from FLASHSALE_LISTEN (a wildcard host is reached through 127.0.0.1).
base_url() {
  local host=${LISTEN%:*} port=${LISTEN##*:}
  case "$host" in
    '' | '*' | 0.0.0.0) host=127.0.0.1 ;;
    '[::]') host='[::1]' ;;
  esac
  printf 'http://%s:%s\n' "$host" "$port"
}

start_server() {
  local pid i code
  stop_ours server 15 # a server left by an earlier --no-wait run: restart it on the new build
  local host=${URL#http://}
  if port_open "${host%:*}" "${host##*:}"; then
    say "$LISTEN is taken by a process this script did not start; set FLASHSALE_LISTEN to a free address"
    return 1
  fi
  setsid env \
    FLASHSALE_LISTEN="$LISTEN" \
    FLASHSALE_REDIS="redis://127.0.0.1:$REDIS_PORT/0" \
    FLASHSALE_API_KEYS="$API_KEYS" \
    FLASHSALE_ADMIN_TOKEN="$ADMIN_TOKEN" \
    "$SERVER_BIN" </dev/null >>"$VAR/server.log" 2>&1 &
  pid=$!
  record_pid server "$pid"
  for ((i = 0; i < 300; i++)); do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$URL/readyz" || true)
    [[ "$code" == 200 ]] && break
    if ! proc_start_time "$pid" >/dev/null; then
      wait "$pid" 2>/dev/null || true
      rm -f "$VAR/server.pid"
      say "flashsale-server exited; last lines of $VAR/server.log:"
      tail -n 5 "$VAR/server.log" >&2
      return 1
    fi
    sleep 0.1
  done
  if [[ "$code" != 200 ]]; then
    say "flashsale-server is not ready after 30 s (GET /readyz: $code); see $VAR/server.log"
    return 1
  fi
  say "flashsale-server ready on $URL (pid $pid, log $VAR/server.log)"
}

# Sends an admin request; prints the body; fails unless the status is 200.
admin() { # method path [curl args...]
  local method=$1 path=$2 out code
  shift 2
  out=$(curl -s -w '\n%{http_code}' -X "$method" -H "Authorization: Bearer $ADMIN_TOKEN" \
    "$@" "$URL$path") || return 1
  code=${out##*$'\n'}
  printf '%s\n' "${out%$'\n'*}"
  [[ "$code" == 200 ]]
}

create_demo() {
  local body
  if ! body=$(admin PUT "/admin/v1/launches/$LAUNCH" -H 'Content-Type: application/json' \
    --data-binary "@$ROOT/deploy/demo-launch.json"); then
    say "could not create the demo launch: $body"
    say "(to start from scratch: $0 --stop && rm -rf ./var)"
    return 1
  fi
  if ! body=$(admin POST "/admin/v1/launches/$LAUNCH/open"); then
    say "could not open the demo launch: $body"
    say "(to start from scratch: $0 --stop && rm -rf ./var)"
    return 1
  fi
  say "launch $LAUNCH is open"
}

print_howto() {
  # shellcheck disable=SC2016 # printed for the user's shell to expand
  local auth_key='-H "Authorization: Bearer $FS_KEY"'
  # shellcheck disable=SC2016
  local auth_admin='-H "Authorization: Bearer $FS_ADMIN"'
  local json="-H 'Content-Type: application/json'"
  local rid_of="python3 -c 'import json,sys; print(json.load(sys.stdin)[\"reservation_id\"])'"
  cat <<EOF

flashsale is running.
  server  $URL   (log: ./var/server.log)
  redis   127.0.0.1:$REDIS_PORT   (data: ./var/redis, log: ./var/redis.log)
  credentials (also in ./var/credentials.env):
    API key      $API_KEY
    admin token  $ADMIN_TOKEN

Paste into a shell:

export FS_URL=$URL FS_KEY=$API_KEY FS_ADMIN=$ADMIN_TOKEN

# the launch as shoppers see it
curl -s $auth_key \$FS_URL/v1/launches/$LAUNCH; echo

# reserve one black phone for alice (holds it for 600 s)
RID=\$(curl -s $auth_key $json -H 'Idempotency-Key: demo-1' -d '{"sku":"phone-15-black","user_id":"alice","qty":1}' \$FS_URL/v1/launches/$LAUNCH/reservations | tee /dev/stderr | $rid_of); echo

# look at it, then confirm it (the order goes to the Redis stream fs:{$LAUNCH:phone-15-black}:orders)
curl -s $auth_key "\$FS_URL/v1/reservations/\$RID?user_id=alice"; echo
curl -s $auth_key $json -d '{"user_id":"alice","payment_ref":"pay-demo-1"}' \$FS_URL/v1/reservations/\$RID/confirm; echo

# reserve a blue one and cancel it (the unit goes back to available)
RID2=\$(curl -s $auth_key $json -H 'Idempotency-Key: demo-2' -d '{"sku":"phone-15-blue","user_id":"alice"}' \$FS_URL/v1/launches/$LAUNCH/reservations | tee /dev/stderr | $rid_of); echo
curl -s $auth_key $json -d '{"user_id":"alice"}' \$FS_URL/v1/reservations/\$RID2/cancel; echo

# operator: exact counters, restock 500 blue phones, pause and reopen
curl -s $auth_admin \$FS_URL/admin/v1/launches/$LAUNCH; echo
curl -s $auth_admin $json -d '{"delta":500}' \$FS_URL/admin/v1/launches/$LAUNCH/skus/phone-15-blue/restock; echo
curl -s $auth_admin -X POST \$FS_URL/admin/v1/launches/$LAUNCH/pause; echo
curl -s $auth_admin -X POST \$FS_URL/admin/v1/launches/$LAUNCH/open; echo

# service
curl -s \$FS_URL/readyz; echo
curl -s \$FS_URL/metrics | grep ^fs_reservations_total

# operator tools: the dashboard (paste the admin token) and the command line
#   $URL/admin/
export FLASHSALE_URL=\$FS_URL FLASHSALE_ADMIN_TOKEN=\$FS_ADMIN
$BUILD_DIR/src/cli/flashsale-cli launch show $LAUNCH
$BUILD_DIR/src/cli/flashsale-cli watch $LAUNCH --iterations 3

# rehearse launch day: three colours, ten times more shoppers than units, a spike at opening
# (creates its own launch; progress on the terminal, then PASS/FAIL per invariant)
FLASHSALE_ADMIN_TOKEN=\$FS_ADMIN FLASHSALE_API_KEYS=\$FS_KEY $BUILD_DIR/loadtest/flashsale-load \\
  --campaign loadtest/campaigns/phone-launch.ini --server \$FS_URL \\
  --redis redis://127.0.0.1:$REDIS_PORT/0 --html launch.html --json launch.json

EOF
}

# ---------------------------------------------------------------------------------------------

WAIT=1
case "${1:-}" in
  '') ;;
  --no-wait) WAIT=0 ;;
  --stop)
    [[ $# -eq 1 ]] || {
      usage >&2
      exit 2
    }
    mkdir -p "$VAR"
    if ! our_pid server >/dev/null && ! our_pid redis >/dev/null; then
      say "nothing to stop (no server or redis started by this script is running)"
      exit 0
    fi
    stop_all
    say "stopped"
    exit 0
    ;;
  -h | --help)
    usage
    exit 0
    ;;
  *)
    usage >&2
    exit 2
    ;;
esac
[[ $# -le 1 ]] || {
  usage >&2
  exit 2
}

ensure_packages quickstart "${PACKAGES[@]}"

say "building Release into build-release/"
cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DFS_WERROR=ON >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)" --target flashsale-server flashsale-load flashsale-cli flashsale-relay
[[ -x "$SERVER_BIN" ]] || die "build did not produce $SERVER_BIN"

mkdir -p "$VAR"
URL=$(base_url)
load_credentials
if [[ "$WAIT" == 1 ]]; then
  trap 'echo >&2; stop_all; exit 0' INT TERM
fi
start_redis

if ! start_server || ! create_demo; then
  if [[ "$WAIT" == 1 ]]; then
    stop_all
  else
    say "left running; stop with: ./deploy/quickstart.sh --stop"
  fi
  exit 1
fi

print_howto

if [[ "$WAIT" == 0 ]]; then
  echo "Left running. Stop with: ./deploy/quickstart.sh --stop"
  exit 0
fi

echo "Press Ctrl-C to stop the server and Redis."
server_pid=$(our_pid server) || true
while [[ -n "$server_pid" ]] && proc_start_time "$server_pid" >/dev/null; do
  # `wait` returns at once when the server exits; the INT/TERM trap interrupts it.
  wait "$server_pid" 2>/dev/null || true
done
say "flashsale-server stopped by itself; last lines of $VAR/server.log:"
tail -n 5 "$VAR/server.log" >&2 || true
stop_all
exit 1
