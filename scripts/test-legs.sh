#!/usr/bin/env bash
# The two legs of `make test`, side by side: the whole suite on PostgreSQL, and beside it the
# SQLite leg (`pytest -m sqlite`, the tests conftest.SQLITE_LEG names) on SQLite. They share
# nothing a test touches: each has its own database and its own Redis database (the tests flush
# theirs before each test, and the channel layer's pub/sub names carry the database number),
# every server a test starts listens on a free port, and each leg keeps its own pytest cache.
# The PostgreSQL leg prints as it goes; the SQLite leg's output goes to a log that is printed
# when both are done. The run fails if either leg does.
#
# Environment (the Makefile's test target sets every one): VENV, PG_DATABASE_URL, PG_REDIS_URL,
# SQLITE_DATABASE_URL, SQLITE_REDIS_URL, PYTEST_ARGS, SQLITE_PYTEST_ARGS.
set -uo pipefail

# The extra arguments, split as the shell splits a command line (quotes kept), as when the
# Makefile wrote them into the command.
eval "pg_args=(${PYTEST_ARGS:-})"
eval "sqlite_args=(${SQLITE_PYTEST_ARGS:-})"

mkdir -p var
sqlite_log=var/sqlite-leg.log

DATABASE_URL="$SQLITE_DATABASE_URL" REDIS_URL="$SQLITE_REDIS_URL" \
  "$VENV/bin/pytest" -m sqlite -o cache_dir=var/.pytest_cache_sqlite "${sqlite_args[@]}" \
  >"$sqlite_log" 2>&1 &
sqlite_pid=$!
trap 'kill "$sqlite_pid" 2>/dev/null' INT TERM
echo "The SQLite leg runs beside this one (pid $sqlite_pid, output in $sqlite_log when both are done)."

DATABASE_URL="$PG_DATABASE_URL" REDIS_URL="$PG_REDIS_URL" "$VENV/bin/pytest" "${pg_args[@]}"
pg_status=$?

wait "$sqlite_pid"
sqlite_status=$?
echo
echo "======== The SQLite leg (DATABASE_URL=$SQLITE_DATABASE_URL REDIS_URL=$SQLITE_REDIS_URL), exit $sqlite_status ========"
cat "$sqlite_log"
echo "======== PostgreSQL leg: exit $pg_status; SQLite leg: exit $sqlite_status ========"
[ "$pg_status" -eq 0 ] && [ "$sqlite_status" -eq 0 ]
