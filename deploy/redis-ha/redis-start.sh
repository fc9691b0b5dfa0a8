#!/bin/sh
# Start a Redis of the Sentinel-watched service (docker-compose.yml's `ha` profile, or a
# machine of its own: docs/deploy.md, "When a Redis machine dies").
#
# It asks the Sentinels who the primary is now and starts as that primary's replica, so a
# machine that comes back after a failover (or a new one) joins as a replica at once, with
# a fresh copy, instead of coming back as a second primary with stale data that the
# Sentinels convert only 10-20 s later. When no Sentinel answers (the very first start),
# it starts as the replica of REDIS_REPLICA_OF, or as the primary when that is empty.
#
#   REDIS_SENTINELS     "sentinel-1:26379 sentinel-2:26379 sentinel-3:26379"
#   REDIS_MASTER_NAME   the name the Sentinels monitor the primary under (pubsub)
#   REDIS_REPLICA_OF    "host port" of the first primary; empty on the first primary itself
#   REDIS_PORT          this server's port (6379)
#   REDIS_SELF          this machine's addresses, to recognise itself as the primary
#                       (default: `hostname -i`)
#   REDIS_SERVER        the command to run (default: the image's entrypoint with redis-server)
#   REDIS_PASSWORD, REDIS_USERNAME   see auth.sh: with a password, the server starts from a
#                       configuration file (REDIS_AUTH_DIR, /data) holding its users; the
#                       Sentinels are asked with it too (REDISCLI_AUTH)
#
# Arguments are redis-server's (--appendonly yes ...).
set -eu
. "$(dirname "$0")/auth.sh"

port="${REDIS_PORT:-6379}"
if [ -n "${REDIS_PASSWORD:-}" ]; then
  export REDISCLI_AUTH="$REDIS_PASSWORD"
fi
self="${REDIS_SELF:-$(hostname -i 2>/dev/null || true)}"
primary=""
for sentinel in ${REDIS_SENTINELS:-}; do
  answer=$(redis-cli -h "${sentinel%:*}" -p "${sentinel##*:}" --raw \
    SENTINEL get-master-addr-by-name "${REDIS_MASTER_NAME:-pubsub}" 2>/dev/null | tr '\n' ' ') || answer=""
  host=$(echo "$answer" | awk '{print $1}')
  answer_port=$(echo "$answer" | awk '{print $2}')
  case "$answer_port" in
    ''|*[!0-9]*) continue ;;  # no answer, or an error: ask the next one
  esac
  primary="$host $answer_port"
  break
done
if [ -z "$primary" ] && [ -n "${REDIS_REPLICA_OF:-}" ]; then
  # The first primary's address rather than its name, as sentinel-start.sh does for Sentinel:
  # a replica resolves its primary's name again when it reconnects, and a name that no
  # longer resolves (a compose service whose container is dead) took Docker's DNS 13-20 s to
  # answer in tests/container. A name that does not resolve stays a name.
  host=${REDIS_REPLICA_OF% *}
  case "$host" in
    *[!0-9.]*) host=$(getent hosts "$host" | awk 'NR == 1 {print $1}' | grep . || echo "$host") ;;
  esac
  primary="$host ${REDIS_REPLICA_OF#* }"
fi

replicaof=""
if [ -n "$primary" ]; then
  host=${primary% *}
  primary_port=${primary#* }
  is_self=no
  for address in $self; do
    if [ "$address" = "$host" ] && [ "$primary_port" = "$port" ]; then is_self=yes; fi
  done
  [ "$is_self" = yes ] || replicaof="--replicaof $host $primary_port"
fi

if [ -z "${REDIS_SERVER:-}" ]; then
  if command -v docker-entrypoint.sh >/dev/null 2>&1; then
    REDIS_SERVER="docker-entrypoint.sh redis-server"  # drops root, as the image does
  else
    REDIS_SERVER="redis-server"
  fi
fi
echo "redis-start: ${replicaof:-a primary} (the Sentinels said: ${primary:-nothing})" >&2
if [ -n "${REDIS_PASSWORD:-}" ]; then
  # A configuration file, not arguments: a password on the command line shows in `ps`.
  conf="${REDIS_AUTH_DIR:-/data}/pubsub-auth.conf"
  (umask 077 && redis_auth_conf > "$conf")
  # shellcheck disable=SC2086 # word splitting wanted: a command and its options
  exec $REDIS_SERVER "$conf" --port "$port" "$@" $replicaof
fi
# shellcheck disable=SC2086 # word splitting wanted: a command and its options
exec $REDIS_SERVER --port "$port" "$@" $replicaof
