#!/bin/sh
# Install the Debian packages nscollect needs, and only those that are
# missing. `make deps` (run by `make test` and `make demo`) needs the base
# list; `tests/deps.sh extra` adds the tools of the long runs (make tsan,
# fuzz, valgrind, crashtest, bench).
pkgs="gcc make libcurl4-openssl-dev libsqlite3-dev libjsmn-dev libconfig-dev
      libssl-dev zlib1g-dev libmicrohttpd-dev python3 sqlite3 openssl curl man-db groff-base strace libtsan2
      python3-yaml systemd prometheus"
[ "${1:-}" = extra ] && pkgs="$pkgs clang libclang-rt-14-dev valgrind time"
missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
        missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "deps: installing$missing"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq || true
$SUDO apt-get install -y -qq $missing
