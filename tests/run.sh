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
# shellcheck source=deploy/packages.sh
source deploy/packages.sh

PACKAGES=(
  build-essential cmake pkg-config
  libuv1-dev libhiredis-dev libssl-dev node-llhttp
  libjansson-dev libjsmn-dev libinih-dev libcmocka-dev
  redis-server python3 openssl curl
  chromium chromium-driver
)

ensure_packages run.sh "${PACKAGES[@]}"

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
