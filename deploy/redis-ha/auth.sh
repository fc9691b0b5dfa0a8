# Sourced by redis-start.sh and sentinel-start.sh: the password every Redis and Sentinel asks.
#
#   REDIS_PASSWORD   the password (letters, digits, - and _ only); empty: none (development)
#   REDIS_USERNAME   the site's ACL user (pubsub): the site's URLs carry it and the password
#                    (redis://pubsub:PASSWORD@redis:6379/0). The default user takes the same
#                    password, for redis-cli in the containers (REDISCLI_AUTH), replication
#                    (masterauth) and the Sentinels (auth-pass); no one gets in without it.
#
# Whoever can write to Redis can forge a session or run code in the web processes and the
# workers (rq's jobs, the cache): Redis is never left open, even on a private network.

redis_auth_check() {
  case "${REDIS_PASSWORD:-}" in
    *[!A-Za-z0-9_-]*) echo "REDIS_PASSWORD: letters, digits, - and _ only" >&2; exit 2 ;;
  esac
}

# The lines a Redis server's configuration starts with; nothing without a password.
redis_auth_conf() {
  redis_auth_check
  [ -n "${REDIS_PASSWORD:-}" ] || return 0
  echo "user default on >${REDIS_PASSWORD} ~* &* +@all"
  echo "user ${REDIS_USERNAME:-pubsub} on >${REDIS_PASSWORD} ~* &* +@all"
  echo "masterauth ${REDIS_PASSWORD}"
}

# The lines a Sentinel's configuration gets at each start (the watched servers' password,
# the other Sentinels', and its own).
sentinel_auth_conf() {
  redis_auth_check
  [ -n "${REDIS_PASSWORD:-}" ] || return 0
  echo "requirepass ${REDIS_PASSWORD}"
  echo "sentinel auth-pass ${1} ${REDIS_PASSWORD}"
  echo "sentinel sentinel-pass ${REDIS_PASSWORD}"
}
