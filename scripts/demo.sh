#!/usr/bin/env bash
# demo.sh - runs examples/ssl.lua against throwaway servers: installs what
# is missing, builds, starts the servers of scripts/pgtest.sh, and stops
# them when the example ends.  The example is given the TLS server's address
# and the directory of the certificates made for it.
#
# PGC_SKIP_BUILD=1 skips `make`, as in scripts/run-tests.sh.
set -eu

cd "$(dirname "$0")/.."

bash scripts/bootstrap.sh
if [ "${PGC_SKIP_BUILD:-0}" != 1 ]; then
    make
fi

DEMO_DIR=$(mktemp -d "${TMPDIR:-/tmp}/pgc-demo.XXXXXX")
trap 'bash scripts/pgtest.sh stop "$DEMO_DIR"' EXIT

bash scripts/pgtest.sh start "$DEMO_DIR"
. "$DEMO_DIR/env.sh"

# Not exec: the trap must still stop the servers afterwards.
LUA_PATH="./lua/?.lua;./lua/?/init.lua;./spec/?.lua;;" \
LUA_CPATH="./lua/?.so;;" \
    lua5.4 examples/ssl.lua "$PGC_TEST_HOST" "$PGC_TEST_PORT" "$PGC_TEST_CERTS"
