#!/bin/bash
# As the official postgres image's entrypoint, in short: on the first start (an empty
# PGDATA), initdb with POSTGRES_USER as the superuser and POSTGRES_PASSWORD as its
# password, create POSTGRES_DB, accept password logins from any address (scram-sha-256)
# and trust local socket logins; then run postgres as the postgres user.
set -euo pipefail

if [ "${1:0:1}" = - ]; then
  set -- postgres "$@"
fi

if [ "$1" = postgres ] && [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 700 "$PGDATA"
  chmod 3777 /var/run/postgresql
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [ "$1" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
  : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}"
  user=${POSTGRES_USER:-postgres}
  db=${POSTGRES_DB:-$user}
  initdb --pgdata="$PGDATA" --username="$user" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
    --encoding=UTF8 --locale=C.UTF-8 --auth-local=trust --auth-host=scram-sha-256
  echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  if [ "$db" != postgres ]; then
    # A private socket directory and no TCP: nothing (pg_isready included) sees this
    # temporary server as the real one.
    tmp_socket=$(mktemp -d)
    pg_ctl --pgdata="$PGDATA" --wait --silent -o "-c listen_addresses='' -k $tmp_socket" start
    psql --host="$tmp_socket" --username="$user" --dbname=postgres --set ON_ERROR_STOP=1 --quiet \
      --command="CREATE DATABASE \"$db\""
    pg_ctl --pgdata="$PGDATA" --wait --silent --mode=fast stop
    rmdir "$tmp_socket"
  fi
  echo "PostgreSQL init process complete; ready for start up."
fi

exec "$@"
