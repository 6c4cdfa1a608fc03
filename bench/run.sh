#!/usr/bin/env bash
# run.sh - the benchmark that `make bench` runs, after bench/bootstrap.sh
# and `make`: builds the C side of the benchmark into bench/bin/, starts a
# throwaway server (scripts/pgtest.sh), makes the data once, runs every
# measurement (bench/run.lua) and stops the server, whatever happens.
#
#   bench/run.sh                   everything, 5 runs of each case
#   PGC_BENCH_RUNS=1 bench/run.sh  one run of each, to try it quickly
#
# Every client connects as trustuser to database pgtest over TCP on
# 127.0.0.1, without TLS.  The data: bench_rows(id int, name text, score
# float8) with 1,000,000 rows, and bench_ins of the same shape, unlogged,
# for the inserts (each insert run truncates it first).
set -eu

cd "$(dirname "$0")/.."

CC=${CC:-gcc}
CFLAGS=${CFLAGS:--O2 -g}
WARN="-Wall -Wextra -Werror -std=gnu99"

BENCH_DIR=""

# Stops the server if it runs; safe to call more than once.
stop_server() {
    if [ -n "$BENCH_DIR" ]; then
        bash scripts/pgtest.sh stop "$BENCH_DIR" || true
        BENCH_DIR=""
    fi
}

trap stop_server EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------
# The C side: the libpq floor and the monotonic clock for Lua
# ---------------------------------------------------------------------

if pkg-config --exists libpq 2>/dev/null; then
    LIBPQ_CFLAGS=$(pkg-config --cflags libpq)
    LIBPQ_LIBS=$(pkg-config --libs libpq)
else
    LIBPQ_CFLAGS="-I$(pg_config --includedir)"
    LIBPQ_LIBS="-L$(pg_config --libdir) -lpq"
fi

LUA_CFLAGS=$(pkg-config --cflags lua5.4)

mkdir -p bench/bin
# The flags split into words on purpose.
# shellcheck disable=SC2086
$CC $CFLAGS $WARN $LIBPQ_CFLAGS bench/libpq_bench.c \
    -o bench/bin/libpq_bench $LIBPQ_LIBS
# shellcheck disable=SC2086
$CC $CFLAGS $WARN -shared -fPIC $LUA_CFLAGS \
    bench/benchclock.c -o bench/bin/benchclock.so
# shellcheck disable=SC2086
$CC $CFLAGS $WARN -shared -fPIC $LUA_CFLAGS \
    bench/luarows.c -o bench/bin/luarows.so

# ---------------------------------------------------------------------
# The server and the data
# ---------------------------------------------------------------------

BENCH_DIR=$(mktemp -d "${TMPDIR:-/tmp}/pgc-bench.XXXXXX")
echo "bench: starting a throwaway server" >&2
bash scripts/pgtest.sh start "$BENCH_DIR" >/dev/null
# shellcheck source=/dev/null
. "$BENCH_DIR/env.sh"

# Runs SQL from standard input as trustuser and prints what it returns.
bench_sql() {
    PGSSLMODE=disable psql -X -q -A -t -v ON_ERROR_STOP=1 \
        -h "$PGC_TEST_HOST" -p "$PGC_TEST_PORT" -U trustuser -d pgtest
}

echo "bench: making 1,000,000 rows" >&2
bench_sql <<'SQL'
create table bench_rows (id int, name text, score float8);
select setseed(0.25) \g /dev/null
insert into bench_rows
    select i, md5(i::text), random() * 1000
    from generate_series(1, 1000000) as i;
create unlogged table bench_ins (id int, name text, score float8);
vacuum analyze bench_rows;
SQL

# On a virtual machine a wake-up across virtual CPUs can cost more than
# the whole round trip (here 85 us against 9 us on one CPU), and which
# case gets which is up to the scheduler: without pinning, a round trip
# case measures where its processes happened to land.  So the server is
# pinned to one CPU; the round trip and insert cases run the client on
# that same CPU, and the bulk reads run it on another, where it decodes
# while the server sends, as with a server on another machine.
# PGC_BENCH_PIN=0 leaves placement to the scheduler.
PGC_BENCH_SERVER_CPU=""
PGC_BENCH_OTHER_CPU=""
if [ "${PGC_BENCH_PIN:-1}" != 0 ] && command -v taskset >/dev/null; then
    cpus=$(sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' /proc/self/status |
        tr ',' '\n' |
        while IFS=- read -r low high; do seq "$low" "${high:-$low}"; done)
    if [ "$(echo "$cpus" | wc -l)" -ge 2 ]; then
        PGC_BENCH_OTHER_CPU=$(echo "$cpus" | head -n 1)
        PGC_BENCH_SERVER_CPU=$(echo "$cpus" | tail -n 1)
        postmaster=$(head -n 1 "$PGC_TEST_DIR/tls/data/postmaster.pid")
        for pid in "$postmaster" $(ps -o pid= --ppid "$postmaster"); do
            taskset -a -p -c "$PGC_BENCH_SERVER_CPU" "$pid" >/dev/null
        done
    fi
fi
export PGC_BENCH_SERVER_CPU PGC_BENCH_OTHER_CPU

PGC_BENCH_SERVER=$(echo "select 'PostgreSQL ' || current_setting('server_version')" |
    bench_sql)
PGC_BENCH_CPU=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
PGC_BENCH_NPROC=$(nproc)
PGC_BENCH_SYSTEM=$(uname -sm)
export PGC_BENCH_SERVER PGC_BENCH_CPU PGC_BENCH_NPROC PGC_BENCH_SYSTEM

# ---------------------------------------------------------------------
# The measurements
# ---------------------------------------------------------------------

lua5.4 bench/run.lua
