# bench-lib.sh: what the benchmark scripts of loadtest/ share. Sourced, not run:
#   . "$(dirname "$0")/bench-lib.sh"
#
#   bench_workdir NAME     WORK = a new private directory /tmp/NAME.XXXXXX, PIDS = (); on exit
#                          (and on INT/TERM) every pid added to PIDS is stopped and waited for,
#                          and WORK is removed. Only those processes: never anything by name.
#   free_port              prints a free TCP port on 127.0.0.1
#   bench_redis            starts a redis-server without persistence on a free 127.0.0.1 port,
#                          data and log in WORK; waits for PING; sets RPORT, adds its pid to PIDS
#   bench_paths            REPO (the checkout), BUILD (unless set: REPO/build-release), SERVER and
#                          LOAD (flashsale-server and flashsale-load in BUILD)
#   bench_need WHO TOOL... exits 2 with "WHO: TOOL is not installed" for the first TOOL not on PATH
#   bench_build WHO BUILD_DIR TARGET...
#                          builds the CMake targets (flashsale-server, flashsale-load) as Release
#                          into BUILD_DIR unless each one's binary is already there
#   bench_wait_ready URL WHO [LOG]
#                          polls URL (up to 30 s) until it answers 2xx; otherwise prints
#                          "WHO: URL did not answer", the LOG file if given, and exits 1

bench_cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}

bench_workdir() {
  WORK=$(mktemp -d "/tmp/$1.XXXXXX")
  PIDS=()
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

cpu_seconds() {  # sum of utime + stime of the given pids, in seconds
  local tck; tck=$(getconf CLK_TCK)
  for p in "$@"; do awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0; done |
    awk -v t="$tck" '{s += $1} END {printf "%.2f", s / t}'
}

bench_redis() {
  RPORT=$(free_port)
  redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" \
    --daemonize no >"$WORK/redis.log" 2>&1 &
  PIDS+=($!)
  local _
  for _ in $(seq 100); do redis-cli -p "$RPORT" ping >/dev/null 2>&1 && return 0; sleep 0.05; done
  echo "redis-server on port $RPORT did not answer PING" >&2
  cat "$WORK/redis.log" >&2
  exit 1
}

bench_paths() {
  REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  BUILD=${BUILD:-$REPO/build-release}
  SERVER=$BUILD/src/flashsale-server
  LOAD=$BUILD/loadtest/flashsale-load
}

bench_need() {
  local who=$1 tool
  shift
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "$who: $tool is not installed" >&2; exit 2; }
  done
}

bench_build() {
  local who=$1 build=$2 target missing=""
  shift 2
  for target in "$@"; do
    case $target in
      flashsale-server) [ -x "$build/src/flashsale-server" ] || missing=1 ;;
      flashsale-load) [ -x "$build/loadtest/flashsale-load" ] || missing=1 ;;
      *) missing=1 ;;
    esac
  done
  [ -n "$missing" ] || return 0
  echo "$who: building Release into $build" >&2
  cmake -S "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$build" -j"$(nproc)" --target "$@" >/dev/null
}

bench_wait_ready() {
  local _
  for _ in $(seq 300); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "$2: $1 did not answer" >&2
  [ -n "${3:-}" ] && cat "$3" >&2
  exit 1
}
