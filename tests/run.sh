#!/usr/bin/env bash
# Builds flashsale with AddressSanitizer + UndefinedBehaviorSanitizer and runs every test with ctest.
#
#   ./tests/run.sh              # everything
#   ./tests/run.sh -R admin     # extra arguments go to ctest unchanged
#
# Missing Debian packages are installed with apt-get when run as root; otherwise the script names
# them and stops. The script itself starts no Redis: each test that needs one starts its own
# throwaway redis-server on a free 127.0.0.1 port (tests/lib/fsredis.py) and stops it by pid when it
# ends, so a run never touches another Redis on the machine. Exits with ctest's status.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

PACKAGES=(
  build-essential cmake pkg-config
  libuv1-dev libhiredis-dev libssl-dev node-llhttp
  libjansson-dev libjsmn-dev libinih-dev libcmocka-dev
  redis-server python3 openssl curl
  chromium chromium-driver
)

# Prints the packages of "$@" that dpkg does not report as installed.
missing_packages() {
  local p status
  for p in "$@"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    if [[ "$status" != installed ]]; then
      printf '%s\n' "$p"
    fi
  done
}

ensure_packages() {
  local missing
  mapfile -t missing < <(missing_packages "${PACKAGES[@]}")
  if ((${#missing[@]} == 0)); then
    return 0
  fi
  if ((EUID != 0)); then
    echo "run.sh: missing Debian packages: ${missing[*]}" >&2
    echo "run.sh: install them as root (apt-get install ${missing[*]}) or run this script as root" >&2
    exit 1
  fi
  echo "run.sh: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y --no-install-recommends "${missing[@]}"
}

ensure_packages

BUILD_DIR=build-asan

# Sanitizer settings for tests: stop at the first error with a stack trace and a non-zero exit
# (not abort(), which would leave a core dump and hide the exit status from ctest); report leaks.
export ASAN_OPTIONS="halt_on_error=1:abort_on_error=0:detect_leaks=1:print_stacktrace=1:strict_string_checks=1:detect_stack_use_after_return=1"
export UBSAN_OPTIONS="halt_on_error=1:abort_on_error=0:print_stacktrace=1"
# The dashboard's browser test (headless chromium via chromedriver) must run, not skip, here.
export FS_REQUIRE_BROWSER=1

cmake -S . -B "$BUILD_DIR" \
  -DCMAKE_BUILD_TYPE=Debug \
  -DSANITIZE=address,undefined \
  -DFS_WERROR=ON
cmake --build "$BUILD_DIR" -j"$(nproc)"

status=0
ctest --test-dir "$BUILD_DIR" --output-on-failure -j2 "$@" || status=$?
exit "$status"
