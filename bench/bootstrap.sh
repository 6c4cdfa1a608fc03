#!/usr/bin/env bash
# bootstrap.sh - makes sure the Debian packages that `make bench` needs are
# installed: everything scripts/bootstrap.sh lists, plus the clients the
# benchmark compares against.  lua-sql-postgres is LuaSQL's PostgreSQL
# driver, built on libpq; libpq-dev gives the headers and pkg-config file
# for bench/libpq_bench.c.  As with scripts/bootstrap.sh, nothing is done
# when all are present; otherwise root on Debian gets them installed with
# apt-get, and anyone else the command to run.
set -eu

cd "$(dirname "$0")/.."

exec bash scripts/bootstrap.sh lua-sql-postgres libpq-dev
