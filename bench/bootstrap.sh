#!/usr/bin/env bash
# bootstrap.sh - make sure the Debian packages that `make bench` needs are
# installed: first everything scripts/bootstrap.sh lists (build, server,
# lua-socket), then the two clients the benchmark compares against.
#
# As scripts/bootstrap.sh: when every package is present this does nothing
# and touches no network; otherwise, as root on Debian, it installs the
# missing ones with apt-get, and anywhere else prints the command to run
# and exits 1.
#
#   bench/bootstrap.sh                  check, install what is missing
#   bench/bootstrap.sh --print-packages print the bench-only packages
set -eu

cd "$(dirname "$0")/.."

# lua-sql-postgres is LuaSQL's PostgreSQL driver, built on libpq;
# libpq-dev gives the headers and pkg-config file for bench/libpq_bench.c.
PACKAGES="
    lua-sql-postgres
    libpq-dev
"

if [ "${1:-}" = "--print-packages" ]; then
    echo $PACKAGES
    exit 0
fi

bash scripts/bootstrap.sh

# Fully installed only: a removed package whose configuration files
# remain is still known to `dpkg -s`, with another status line.
is_installed() {
    dpkg -s "$1" 2>/dev/null | grep -q '^Status: install ok installed$'
}

missing=""
for package in $PACKAGES; do
    if ! is_installed "$package"; then
        missing="$missing $package"
    fi
done

if [ -z "$missing" ]; then
    exit 0
fi

echo "bench/bootstrap: missing packages:$missing" >&2

if [ "$(id -u)" -eq 0 ] && [ -f /etc/debian_version ]; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y $missing
    exit 0
fi

echo "bench/bootstrap: install them with:" >&2
echo "    sudo apt-get install -y$missing" >&2
exit 1
