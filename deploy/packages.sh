# shellcheck shell=bash
# Sourced by deploy/quickstart.sh and tests/run.sh: installs the Debian packages a script needs.
#
#   ensure_packages NAME PACKAGE...
#
# Installs, with apt-get, whichever of the packages dpkg does not report as installed (running
# apt-get update first, and only then). Not root: names the missing packages and exits 1. NAME
# prefixes the messages. Every build and test dependency comes from Debian's packages.

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
  local name=$1 missing
  shift
  mapfile -t missing < <(missing_packages "$@")
  if ((${#missing[@]} == 0)); then
    return 0
  fi
  if ((EUID != 0)); then
    echo "$name: missing Debian packages: ${missing[*]}" >&2
    echo "$name: install them as root (apt-get install ${missing[*]}) or run this script as root" >&2
    exit 1
  fi
  echo "$name: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y --no-install-recommends "${missing[@]}"
}
