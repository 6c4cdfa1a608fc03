#!/usr/bin/env bash
# run-tests.sh - the whole test command: installs what is missing, builds,
# starts throwaway servers (scripts/pgtest.sh), runs the busted specs
# against them and stops the servers again.
#
#   scripts/run-tests.sh                     every spec under spec/
#   scripts/run-tests.sh spec/infra_spec.lua arguments go to busted
#
# The last line of output is always "N passed, N failed, N skipped"; the
# exit status is 0 only when nothing failed.  The full busted output is
# also written to $PGC_TEST_LOG (by default a new file in the temporary
# directory, named on the line before the summary).
#
# PGC_SKIP_BUILD=1 skips `make`, for trying the specs against a build
# that is already in place.
set -u

cd "$(dirname "$0")/.." || exit 1

TEST_DIR=""

# Stops the servers if they run; safe to call more than once.
stop_servers() {
    if [ -n "$TEST_DIR" ]; then
        bash scripts/pgtest.sh stop "$TEST_DIR" || true
        TEST_DIR=""
    fi
}

# Stops the servers, prints the summary line and exits: 0 only when
# nothing failed and busted itself succeeded.
finish() {
    local passed=$1 failed=$2 skipped=$3 busted_status=$4
    stop_servers
    printf '%d passed, %d failed, %d skipped\n' "$passed" "$failed" "$skipped"
    if [ "$failed" -eq 0 ] && [ "$busted_status" -eq 0 ]; then
        exit 0
    fi
    exit 1
}

# Reports a failure before any spec could run.
abort() {
    echo "run-tests: $1" >&2
    finish 0 1 0 1
}

trap stop_servers EXIT
trap 'exit 130' INT TERM

bash scripts/bootstrap.sh || abort "missing packages"

if [ "${PGC_SKIP_BUILD:-0}" != 1 ]; then
    make || abort "build failed"
fi

TEST_DIR=$(mktemp -d "${TMPDIR:-/tmp}/pgc-test.XXXXXX") ||
    abort "cannot make a temporary directory"
bash scripts/pgtest.sh start "$TEST_DIR" || abort "servers did not start"
. "$TEST_DIR/env.sh"

LOG=${PGC_TEST_LOG:-$(mktemp "${TMPDIR:-/tmp}/pgc-test-log.XXXXXX")}

if [ $# -eq 0 ]; then
    set -- spec
fi

LUA_PATH="./lua/?.lua;./lua/?/init.lua;./spec/?.lua;;" \
LUA_CPATH="./lua/?.so;;" \
    lua5.4 /usr/bin/busted --lua=lua5.4 -o utfTerminal "$@" 2>&1 | tee "$LOG"
busted_status=${PIPESTATUS[0]}

# utfTerminal ends with a line like
#   12 successes / 1 failure / 0 errors / 2 pending : 3.1 seconds
# with the numbers in colour and the nouns singular or plural.
counts='[0-9]+ success(es)? / [0-9]+ failures? / [0-9]+ errors?'
counts="$counts / [0-9]+ pending"
summary=$(sed 's/\x1b\[[0-9;]*m//g' "$LOG" | grep -oE "$counts" | tail -n 1)

echo "run-tests: busted output in $LOG"

if [ -z "$summary" ]; then
    echo "run-tests: no summary from busted (status $busted_status)" >&2
    finish 0 1 0 1
fi

# The fields are: count word / count word / count word / count word.
read -r successes _ _ failures _ _ errors _ _ pending _ <<<"$summary"
finish "$successes" $((failures + errors)) "$pending" "$busted_status"
