#!/usr/bin/env bash
# bootstrap.sh - make sure the Debian packages that the build, the tests and
# the demo need are installed.
#
# When every package is present this does nothing and touches no network.
# Otherwise, as root on Debian, it installs the missing ones with apt-get;
# anywhere else it prints the command to run and exits 1.
#
#   scripts/bootstrap.sh                  check, install what is missing
#   scripts/bootstrap.sh --print-packages print the package list and exit
set -eu

# The postgresql package pulls in the distribution's server (15 on
# Debian 12): initdb, pg_ctl and postgres are used by scripts/pgtest.sh.
PACKAGES="
    build-essential
    pkg-config
    lua5.4
    liblua5.4-dev
    libgnutls28-dev
    gnutls-bin
    openssl
    lua-busted
    lua-socket
    lua-cjson
    luarocks
    postgresql
    ca-certificates
    valgrind
"

if [ "${1:-}" = "--print-packages" ]; then
    echo $PACKAGES
    exit 0
fi

# Further packages named on the command line are checked too (make bench
# adds the clients it compares against).
PACKAGES="$PACKAGES $*"

# A package counts as present only when dpkg reports it fully installed:
# a removed package whose configuration files remain is still known to
# `dpkg -s`, with a different status line.
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

echo "bootstrap: missing packages:$missing" >&2

if [ "$(id -u)" -eq 0 ] && [ -f /etc/debian_version ]; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y $missing
    exit 0
fi

echo "bootstrap: install them with:" >&2
echo "    sudo apt-get install -y$missing" >&2
exit 1
