#!/bin/sh
# Start a Redis Sentinel (docker-compose.yml's `ha` profile, or a machine of its own:
# docs/deploy.md, "When a Redis machine dies"). Sentinel rewrites its configuration file
# with what it learns (the replicas, the other Sentinels, who is primary after a failover),
# so the file lives on the Sentinel's volume and is written from these settings only once.
#
#   REDIS_MASTER_NAME            the service's name (pubsub), in the site's redis+sentinel:// URL
#   REDIS_PRIMARY_HOST, _PORT    the first primary (redis, 6379); a name is written down as
#                                the address it resolves to now
#   SENTINEL_QUORUM              Sentinels that must agree the primary is down (2 of 3)
#   SENTINEL_DOWN_AFTER_MS       how long without an answer before one says so (5000)
#   SENTINEL_FAILOVER_TIMEOUT_MS (30000)
#   SENTINEL_DIR                 where the file lives (/data)
#   SENTINEL_SERVER              the command to run (default: the image's entrypoint with redis-server)
#   REDIS_PASSWORD               see auth.sh: the Redis servers', the other Sentinels' and this
#                                one's password, written into the file at every start (so a
#                                new password takes effect), past what Sentinel rewrote
set -eu
. "$(dirname "$0")/auth.sh"

name="${REDIS_MASTER_NAME:-pubsub}"
dir="${SENTINEL_DIR:-/data}"
conf="$dir/sentinel.conf"
if [ ! -s "$conf" ]; then
  # Sentinel is given the primary's address, not its name: it keeps a name it was given and
  # resolves it again later, also once the primary is gone, and a name that no longer
  # resolves (a compose service whose container is dead) can take Docker's DNS 10-20 s to
  # answer, during which Sentinel's loop is blocked, it enters TILT mode again and again and
  # never fails over (seen in tests/container/test_redis_failover.py). An address that is
  # already one, or a name that does not resolve, is written as it is.
  primary="${REDIS_PRIMARY_HOST:-redis}"
  case "$primary" in
    *[!0-9.]*) primary=$(getent hosts "$primary" | awk 'NR == 1 {print $1}' | grep . || echo "$primary") ;;
  esac
  cat > "$conf" <<CONF
port ${SENTINEL_PORT:-26379}
dir $dir
sentinel resolve-hostnames yes
sentinel monitor $name $primary ${REDIS_PRIMARY_PORT:-6379} ${SENTINEL_QUORUM:-2}
sentinel down-after-milliseconds $name ${SENTINEL_DOWN_AFTER_MS:-5000}
sentinel failover-timeout $name ${SENTINEL_FAILOVER_TIMEOUT_MS:-30000}
sentinel parallel-syncs $name 1
CONF
fi
# The password lines, again at every start: dropped, then written from REDIS_PASSWORD.
(
  umask 077
  grep -v -E '^(requirepass|masterauth|user |sentinel (auth-pass|auth-user|sentinel-pass|sentinel-user) )' "$conf" > "$conf.new" || true
  sentinel_auth_conf "$name" >> "$conf.new"
  cat "$conf.new" > "$conf" && rm -f "$conf.new"
)
if [ -z "${SENTINEL_SERVER:-}" ]; then
  if command -v docker-entrypoint.sh >/dev/null 2>&1; then
    SENTINEL_SERVER="docker-entrypoint.sh redis-server"  # drops root, as the image does
  else
    SENTINEL_SERVER="redis-server"
  fi
fi
# shellcheck disable=SC2086 # word splitting wanted: a command and its options
exec $SENTINEL_SERVER "$conf" --sentinel
