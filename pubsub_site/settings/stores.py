"""The data stores: the database, Redis, the channel layer, the cache, sessions and rq.

DATABASE_URL and its pool (pubsub_site.databases), REDIS_URL and the other Redis URLs
(ROOM_REDIS_URLS, CHANNEL_REDIS_URLS; pubsub_site.redis.urls), REDIS_WAIT_*, the channel
layer, the cache, the session engine and rq's queues and worker, all from the environment;
outside production the database defaults to SQLite under VAR_DIR and Redis to the local one.
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from pubsub_site.databases import databases_from_env
from pubsub_site.env import env_int, env_nonnegative_int, env_redis_url, env_redis_urls, env_str
from pubsub_site.redis.urls import channel_layer_host, database_of, rq_queue_connection
from pubsub_site.settings.core import PRODUCTION, VAR_DIR

# --- Data stores -----------------------------------------------------------

# DATABASE_URL (PostgreSQL, or SQLite by default outside production) with psycopg's pool
# (DB_POOL, DB_POOL_MIN_SIZE, DB_POOL_MAX_SIZE, DB_POOL_TIMEOUT) or SQLite's WAL and busy
# timeout (SQLITE_TIMEOUT): pubsub_site.databases says why each is as it is.
DATABASES, DB_POOL = databases_from_env(production=PRODUCTION, var_dir=VAR_DIR)

# Every Redis setting takes a plain URL (redis://host:port/db) or a Sentinel service
# (redis+sentinel://host:port,host:port,host:port/mastername/db: the Sentinels, the name
# they monitor the primary under, the database), read by pubsub_site.redis.urls; a list
# setting separates its URLs with commas. With Sentinel, each new connection asks the
# Sentinels where the primary is, so rooms, the channel layer, rq and the cache follow a
# failover (docs/deploy.md, "When a Redis machine dies").
REDIS_URL = env_redis_url("REDIS_URL") if PRODUCTION else env_redis_url("REDIS_URL", "redis://127.0.0.1:6379/0")
# Room state (sequence numbers, message buffers, rate limits) is spread over these
# servers by room id; one room always lives on one server.
ROOM_REDIS_URLS = env_redis_urls("ROOM_REDIS_URLS", [REDIS_URL])
# An ack means the message is on this many replicas too (Redis's WAIT, in the same round
# trip as the append script; REDIS_WAIT_TIMEOUT_MS at most): a failover to a replica then
# loses no acked message. A message not confirmed in time is answered `unavailable` and not
# broadcast; the client's retry with the same client_id waits again, then acks it. 0: no
# WAIT (a lost primary may take up to a second of acked messages with it).
REDIS_WAIT_REPLICAS = env_nonnegative_int("REDIS_WAIT_REPLICAS", 0)
REDIS_WAIT_TIMEOUT_MS = env_nonnegative_int("REDIS_WAIT_TIMEOUT_MS", 500)
if REDIS_WAIT_REPLICAS and not REDIS_WAIT_TIMEOUT_MS:
    # WAIT's 0 is "forever": a lost replica would hang every send.
    raise ImproperlyConfigured("REDIS_WAIT_TIMEOUT_MS must be more than 0 with REDIS_WAIT_REPLICAS.")

# The channel layer: messaging.realtime.layers.FanoutChannelLayer, channels-redis's pub/sub layer
# (one Redis subscription per group and process, one PUBLISH per group send) with each
# room's messages ordered once per process and written to every subscribed socket
# (messaging.realtime.fanout), and a resync of every consumer of the process when its connection to
# Redis came back. It may drop what it cannot deliver: the per-room buffer in Redis is the
# source of truth, and the fan-out fills any gap in `seq` from it. A web process that
# cannot keep up is disconnected by Redis (its pubsub output buffer limit), and then every
# socket of that process resyncs.
# redis is pinned below 8: redis-py 8 reads with a 5 s socket timeout by default, and idle
# layer connections then died of spurious TimeoutErrors.
# Pub/sub channels belong to the whole Redis server, not to a database number: the layer's
# channel names carry the database of CHANNEL_REDIS_URLS, so two sites (or a test run and
# a benchmark) on one server with different databases never hear each other's rooms.
# A Sentinel service becomes channels-redis's Sentinel form of a host (a dict).
CHANNEL_REDIS_URLS = env_redis_urls("CHANNEL_REDIS_URLS", [REDIS_URL])
_channel_db = database_of(CHANNEL_REDIS_URLS[0]) if CHANNEL_REDIS_URLS else 0
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "messaging.realtime.layers.FanoutChannelLayer",
        "CONFIG": {
            "hosts": [channel_layer_host(url) for url in CHANNEL_REDIS_URLS],
            "prefix": env_str("CHANNEL_LAYER_PREFIX", f"pubsub:layer:{_channel_db}:"),
        },
    }
}

CACHES = {
    "default": {
        "BACKEND": "pubsub_site.cache.RedisCache",
        # A list: Django splits a string at commas (its replicas), and a Sentinel URL has some.
        "LOCATION": [REDIS_URL],
        "KEY_PREFIX": "pubsub:cache",
        "OPTIONS": {"pool_class": "pubsub_site.redis.client.SharedConnectionPool"},
    }
}
# Sessions are written to PostgreSQL and the cache, and read from the cache (Redis): a
# WebSocket handshake, a thousand of them in a reconnect storm, reads its session without a
# database query; after a cache flush a session is read from PostgreSQL again.
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"

RQ_QUEUES = {
    # {"URL": REDIS_URL}, or django-rq's SENTINELS form; the send path enqueues through the
    # process's own client for REDIS_URL (messaging.services.persist_enqueue).
    "default": {**rq_queue_connection(REDIS_URL), "DEFAULT_TIMEOUT": 300},
    # Link previews (messaging.previews): fetches of other sites, which may take seconds each,
    # in a queue of their own that the worker takes after "default", so that no persistence
    # job waits behind a batch of them.
    "previews": {**rq_queue_connection(REDIS_URL), "DEFAULT_TIMEOUT": 300},
    # Outgoing webhooks (outgoing_webhooks.services): deliveries to other sites, likewise.
    "webhooks": {**rq_queue_connection(REDIS_URL), "DEFAULT_TIMEOUT": 300},
}
RQ_SHOW_ADMIN_LINK = True
# The jobs are short, idempotent batches: run them in the worker process itself rather
# than in a work horse forked per job (a fork per job took 0.3-0.6 of a core at 25-100
# sends a second in the benchmark). A SIGKILL takes the job with the worker; the next
# worker's start-up sweep redoes it. RQ_WORKER_CLASS=rq.worker.Worker brings the fork back.
RQ = {"WORKER_CLASS": env_str("RQ_WORKER_CLASS", "rq.worker.SimpleWorker")}
# Seconds the worker keeps a finished job and its result in Redis (rq's default is 500). Every
# job here is fire-and-forget and nothing reads a result, while rq keeps each one as a stream of
# its own (about 4.6 KiB): at 20 sends a second, 90% of the soak's Redis growth was results.
# Failed jobs stay in the failed registry, as rq keeps them.
RQ_RESULT_TTL = env_int("RQ_RESULT_TTL", 0)
