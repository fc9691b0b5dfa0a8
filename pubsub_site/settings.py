"""Settings for pubsub_site, read from the environment in this one file.

DJANGO_ENV chooses the profile:
- ``development`` (the default): DEBUG on, SQLite under var/, the local Redis.
- ``production``: DEBUG off (DEBUG=1 is refused), and SECRET_KEY (not the development
  one), ALLOWED_HOSTS, DATABASE_URL and REDIS_URL must be set, or the process refuses to
  start; ``manage.py load_demo`` refuses to run.
"""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import limits
from django.core.exceptions import ImproperlyConfigured

from pubsub_site.databases import databases_from_env
from pubsub_site.env import (
    env_bool,
    env_float,
    env_int,
    env_list,
    env_nonnegative_int,
    env_redis_url,
    env_redis_urls,
    env_str,
)
from pubsub_site.redis.urls import channel_layer_host, database_of, rq_queue_connection
from pubsub_site.vapid import vapid_keys_from_env

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

DJANGO_ENV = env_str("DJANGO_ENV", "development")
if DJANGO_ENV not in {"development", "production"}:
    raise ImproperlyConfigured(f"DJANGO_ENV={DJANGO_ENV!r}: use 'development' or 'production'.")
PRODUCTION = DJANGO_ENV == "production"

# Development only: it is in this public repository, so production refuses it.
DEVELOPMENT_SECRET_KEY = "dev-insecure-9x!q2m#v7w@k4e8r1t5y0u3i6o-p_a&s*d(f)g=h+j"  # noqa: S105
if PRODUCTION:
    SECRET_KEY = env_str("SECRET_KEY")
    if len(SECRET_KEY) < 50:
        raise ImproperlyConfigured("SECRET_KEY must be at least 50 characters in production.")
    if SECRET_KEY == DEVELOPMENT_SECRET_KEY or SECRET_KEY.startswith("dev-insecure-"):
        raise ImproperlyConfigured("SECRET_KEY is the development key, which is public: set a secret one.")
else:
    SECRET_KEY = env_str("SECRET_KEY", DEVELOPMENT_SECRET_KEY)

DEBUG = env_bool("DEBUG", default=not PRODUCTION)
if PRODUCTION and DEBUG:
    # DEBUG shows settings and tracebacks to anyone, and keeps every query in memory.
    raise ImproperlyConfigured("DEBUG cannot be on with DJANGO_ENV=production; unset DEBUG.")
ALLOWED_HOSTS = (
    env_list("ALLOWED_HOSTS")
    if PRODUCTION
    else env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
)
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "servestatic",
    "channels",
    "django_rq",
    "axes",
    "accounts",
    "rooms",
    "messaging",
    "outgoing_webhooks",
    "ninja",  # the API's docs page from its own static files (no CDN)
    "api",
    "webpush",
    "attachments",
]

MIDDLEWARE = [
    # First: /metrics is answered before the Host check and the HTTPS redirect (Prometheus
    # asks each replica by its address); every other request passes through untouched.
    "pubsub_site.metrics_http.MetricsEndpointMiddleware",
    # Second: the API's requests (/api/v1/) skip the browser's middleware (api/middleware.py).
    "api.middleware.ApiMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "pubsub_site.middleware.ContentSecurityPolicyMiddleware",
    "servestatic.middleware.ServeStaticMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "pubsub_site.middleware.RqDashboardIndexMiddleware",
    # Last, as django-axes asks: it turns a lock-out into its answer.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "pubsub_site.urls"
ASGI_APPLICATION = "pubsub_site.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "messaging.context_processors.navigation",
                "webpush.context_processors.push",
            ],
        },
    },
]

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

# --- Auth ------------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# A password-reset link works this long (seconds), and once: Django's token is made from the
# password's hash and the last log-in, so using it (or logging in) spends it.
PASSWORD_RESET_TIMEOUT = env_int("PASSWORD_RESET_TIMEOUT", 3600)
# An address-verification link (accounts.services) works this long (seconds).
EMAIL_VERIFY_TIMEOUT = env_int("EMAIL_VERIFY_TIMEOUT", 3 * 24 * 3600)
# Whether sign-up asks for an e-mail address (it is always verified before it is used).
SIGNUP_EMAIL_REQUIRED = env_bool("SIGNUP_EMAIL_REQUIRED", False)
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "room-list"
# The room every new account joins and lands in after signing up, by name (created, public,
# by the first one to sign up when it does not exist yet); empty: new accounts land on the room list.
DEFAULT_ROOM = env_str("DEFAULT_ROOM", "Lobby").strip()
LOGOUT_REDIRECT_URL = "login"

# django-axes checks every log-in first; ModelBackend then authenticates (and is
# the backend sessions name, e.g. after sign-up).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# After AXES_FAILURE_LIMIT wrong passwords for one username from one address, that
# pair is locked out for AXES_COOLOFF_TIME (counted from the last failure); the
# log-in page answers 429 with Retry-After. Attempts are kept in the database
# (visible in the admin); a successful log-in resets the count.
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("AXES_COOLOFF_MINUTES", 60))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_HTTP_RESPONSE_CODE = 429
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "pubsub_site.ratelimit.axes_lockout_response"
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"


def _rate(name: str, default: str) -> str:
    """A rate in the `limits` notation, e.g. "10/hour" or "5 per minute"."""
    value = env_str(name, default)
    try:
        limits.parse(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not a rate; write e.g. '10/hour'.") from None
    return value


# Page rate limits (pubsub_site/ratelimit.py), counted in Redis over a moving window.
RATE_LIMITS = {
    "signup": _rate("RATE_LIMIT_SIGNUP", "10/hour"),  # sign-up attempts per client address
    "room_create": _rate("RATE_LIMIT_ROOM_CREATE", "10/hour"),  # room creation attempts per user
    "report": _rate("RATE_LIMIT_REPORT", "30/hour"),  # message reports per user
    "direct_open": _rate("RATE_LIMIT_DIRECT_OPEN", "60/hour"),  # direct conversations opened per user
    "search": _rate("RATE_LIMIT_SEARCH", "30/minute"),  # searches (/search/ with a query) per user
    "attachment_upload": _rate("RATE_LIMIT_ATTACHMENT_UPLOAD", "60/minute"),  # attachment uploads per user
    # Password spraying (pubsub_site.ratelimit.login_refused): failed log-ins per address over
    # every username (more than AXES_FAILURE_LIMIT), and per username over every address.
    "login_address": _rate("RATE_LIMIT_LOGIN_FAILURES_PER_ADDRESS", "20/hour"),
    "login_account": _rate("RATE_LIMIT_LOGIN_FAILURES_PER_ACCOUNT", "15/hour"),
    # Password-reset requests per client address, per e-mail address asked about, and the
    # mails actually sent per account (accounts.jobs: whatever the spelling of the address).
    "password_reset": _rate("RATE_LIMIT_PASSWORD_RESET", "20/hour"),
    "password_reset_email": _rate("RATE_LIMIT_PASSWORD_RESET_EMAIL", "5/hour"),
    "password_reset_account": _rate("RATE_LIMIT_PASSWORD_RESET_ACCOUNT", "5/hour"),
    # Verification links sent per user (sign-up address, address changes).
    "email_verify": _rate("RATE_LIMIT_EMAIL_VERIFY", "10/hour"),
}

# WebSocket rate limits per user and room (messaging/realtime/throttle.py), in the room's
# Redis, so they hold across web processes. "10/2second" is 5 a second on average
# with bursts of 10.
# Requests per API token (or incoming webhook), whatever they ask (api/auth.py); what they
# do is limited as a socket's is (WS_RATE_LIMITS: sends, edits, claps per user).
API_RATE_LIMIT = _rate("API_RATE_LIMIT", "600/minute")
WS_RATE_LIMITS = {
    "send": _rate("WS_RATE_LIMIT_SEND", "10/2second"),
    "clap": _rate("WS_RATE_LIMIT_CLAP", "20/2second"),
    "edit": _rate("WS_RATE_LIMIT_EDIT", "20/minute"),
    "react": _rate("WS_RATE_LIMIT_REACT", "20/10second"),
    "pin": _rate("WS_RATE_LIMIT_PIN", "20/minute"),
}
# A connection refused this many times within WS_FLOOD_WINDOW seconds is closed (1008).
WS_FLOOD_REFUSALS = env_int("WS_FLOOD_REFUSALS", 20)
WS_FLOOD_WINDOW = 10
# Subscribe frames one socket may send (counted by the socket itself, moving window); past
# it a subscribe is answered `rate_limited`. A subscribe is the costliest frame (a replay).
WS_SUBSCRIBE_RATE = _rate("WS_SUBSCRIBE_RATE", "20/10second")
# The largest frame a client may send (bytes); a bigger one closes the socket with 1009. Not
# read from the environment: every web command (Procfile, Dockerfile, the benchmark) passes the
# same number to uvicorn as --ws-max-size, so that it refuses such a frame from its header,
# before buffering it (pubsub_site/tests/deploy/test_web_server_commands.py holds them to it).
WS_FRAME_MAX_BYTES = 64 * 1024
# Open sockets one user may have in one web process (a tab is one); the next one is closed
# with 1008 after an `error` frame `too_many_sockets`. 0: no cap. (The benchmark and the
# reconnect storm test hold 50 tabs per user in one process.)
WS_MAX_SOCKETS_PER_USER = env_int("WS_MAX_SOCKETS_PER_USER", 100)
# Rooms one socket may follow at once; a subscribe past it is answered `too_many_subscriptions`.
WS_MAX_SUBSCRIPTIONS = env_int("WS_MAX_SUBSCRIPTIONS", 100)
for _name in ("WS_MAX_SUBSCRIPTIONS",):
    if globals()[_name] < 1:
        raise ImproperlyConfigured(f"{_name}={globals()[_name]}: at least 1.")
if WS_MAX_SOCKETS_PER_USER < 0:
    raise ImproperlyConfigured(f"WS_MAX_SOCKETS_PER_USER={WS_MAX_SOCKETS_PER_USER}: 0 (no cap) or more.")

# --- Internationalisation, static files -------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "var" / "staticfiles"
# Uploads (avatars), through default_storage. The site serves MEDIA_URL itself unless
# SERVE_MEDIA is off (a proxy or a bucket serving it instead: docs/deploy.md).
MEDIA_URL = "/media/"
MEDIA_ROOT = env_str("MEDIA_ROOT", str(BASE_DIR / "var" / "media"))
SERVE_MEDIA = env_bool("SERVE_MEDIA", True)
AVATAR_MAX_BYTES = env_int("AVATAR_MAX_BYTES", 5 * 1024 * 1024)
AVATAR_SIZE = 256  # pixels, square
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "servestatic.storage.CompressedManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
SERVESTATIC_USE_FINDERS = DEBUG

# --- Attachments (attachments/: docs/protocol.md "Attachments", docs/deploy.md) ---------
# Files go through the "attachments" storage: the filesystem under ATTACHMENT_ROOT (var/)
# unless AWS_STORAGE_BUCKET_NAME names a (private) S3 bucket; then django-storages' S3
# backend, with presigned URLs of ATTACHMENT_URL_SECONDS. AWS_S3_ENDPOINT_URL points it at
# an S3-compatible server (SeaweedFS in the tests and the compose stack). Credentials: the
# instance's IAM role (boto3's chain), or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY.
ATTACHMENT_MAX_BYTES = env_int("ATTACHMENT_MAX_BYTES", 25 * 1024 * 1024)
ATTACHMENT_DAILY_BYTES = env_int("ATTACHMENT_DAILY_BYTES", 500 * 1024 * 1024)  # per user, a rolling 24 h
ATTACHMENTS_PER_MESSAGE = env_int("ATTACHMENTS_PER_MESSAGE", 10)
# Content types (as guessed from the file's name; images are checked by decoding them):
# exact ("application/pdf") or a family ("image/*").
ATTACHMENT_TYPES = env_list(
    "ATTACHMENT_TYPES",
    [
        "image/*",
        "audio/*",
        "video/*",
        "text/*",
        "application/pdf",
        "application/zip",
        "application/gzip",
        "application/json",
        "application/msword",
        "application/vnd.openxmlformats-officedocument.*",
        "application/vnd.oasis.opendocument.*",
    ],
)
ATTACHMENT_URL_SECONDS = env_int("ATTACHMENT_URL_SECONDS", 60)  # a presigned URL's life
# Uploads never sent by then are removed by `manage.py attachments_cleanup` (docs/deploy.md).
ATTACHMENT_UNCLAIMED_HOURS = env_int("ATTACHMENT_UNCLAIMED_HOURS", 24)
# Set when nginx fronts the app and serves ATTACHMENT_ROOT from this internal
# location (deploy/nginx.conf): the app then answers with X-Accel-Redirect.
ATTACHMENT_X_ACCEL_PREFIX = env_str("ATTACHMENT_X_ACCEL_PREFIX", "")
AWS_STORAGE_BUCKET_NAME = env_str("AWS_STORAGE_BUCKET_NAME", "")
# Where browsers reach the endpoint, when not at AWS_S3_ENDPOINT_URL: a proxy that forwards to
# it with the endpoint's Host (the compose stack's nginx, /_s3), so that the signature holds.
AWS_S3_PUBLIC_URL = env_str("AWS_S3_PUBLIC_URL", "")
if AWS_STORAGE_BUCKET_NAME:
    STORAGES["attachments"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": AWS_STORAGE_BUCKET_NAME,
            "endpoint_url": env_str("AWS_S3_ENDPOINT_URL", "") or None,
            "region_name": env_str("AWS_S3_REGION_NAME", "") or None,
            "default_acl": None,  # the bucket's: private, no public ACL
            "querystring_auth": True,
            "querystring_expire": ATTACHMENT_URL_SECONDS,
            "file_overwrite": False,
            "signature_version": "s3v4",
            "addressing_style": env_str("AWS_S3_ADDRESSING_STYLE", "") or None,
        },
    }
else:
    STORAGES["attachments"] = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        # Outside MEDIA_ROOT: /media/ must never serve them (attachments.views does, checking).
        "OPTIONS": {"location": env_str("ATTACHMENT_ROOT", str(VAR_DIR / "attachments"))},
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Security --------------------------------------------------------------

X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)
if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True

# --- Messaging -------------------------------------------------------------

MESSAGE_MAX_LENGTH = 4000
# Redis keeps a persisted message this long (seconds) at most: in the room's replay buffer (from
# when it was sent) and, for a UUIDv7 client_id, its dedupe key (from when it was persisted).
# Older replays read PostgreSQL, and a later retry is answered from its unique key (room, author,
# client_id): Redis's memory follows the send rate, not the history (docs/deploy.md, Redis memory).
MESSAGE_HOT_SECONDS = env_int("MESSAGE_HOT_SECONDS", 600)
# A dedupe key of another UUID (not a v7: its age is unknown) lives this long (seconds), as does
# any whose message is never persisted (its room deleted first).
MESSAGE_DEDUP_TTL = env_int("MESSAGE_DEDUP_TTL", 7 * 24 * 3600)
# How many persisted messages each room keeps in its Redis buffer for fast replay, at most
# (and none older than MESSAGE_HOT_SECONDS).
MESSAGE_BUFFER_KEEP = env_int("MESSAGE_BUFFER_KEEP", 1000)
# Past this many missed messages, subscribe answers recovered: false.
MESSAGE_REPLAY_LIMIT = 1000
# Past this many revisions between a subscribe's `rev` and the room's (messages and changes
# alike), subscribe answers recovered: false and replays nothing: the changes a client missed
# are read by revision, so what a subscribe reads is bounded by this, not by the room's history.
CHANGE_REPLAY_LIMIT = env_int("CHANGE_REPLAY_LIMIT", 2000)
# Each worker queues a persistence job this often (seconds) when rooms wait and none is
# scheduled: after a job failed (PostgreSQL down) or was lost (Redis restarted).
PERSIST_SWEEP_SECONDS = env_int("PERSIST_SWEEP_SECONDS", 10)
# While sends keep coming, the persistence job waits this long between rounds, so a round
# carries a batch (the ack-to-row lag grows by as much; its target is p99 < 1 s).
PERSIST_LINGER_SECONDS = env_float("PERSIST_LINGER_SECONDS", 0.1)
# A client that stops reading: once this much waits for it beyond what the server and the
# kernel buffer for its socket, its connection is closed (bytes; see messaging.realtime.sockets.Outbox).
WS_SEND_BACKLOG_MAX_BYTES = env_int("WS_SEND_BACKLOG_MAX_BYTES", 2 * 1024 * 1024)
# WebSocket handshakes at work at once per web process; more wait their turn for up to
# WS_HANDSHAKE_WAIT seconds, then are closed with 1013 and the clients retry with backoff
# (see pubsub_site.asgi.HandshakeLimit). A wait costs nothing; a 1013 costs a handshake and
# a retry: in the benchmark's 2,000-client storm a 2 s wait made 2,800 of them. uvicorn
# keeps a waiting handshake open as long as it takes (daphne drops it after 5 s: under
# daphne, keep this under 5). 0: no limit.
WS_HANDSHAKE_LIMIT = env_int("WS_HANDSHAKE_LIMIT", 10)
WS_HANDSHAKE_WAIT = env_float("WS_HANDSHAKE_WAIT", 10.0)
# On SIGTERM a web process closes its sockets (1012, after a `reconnect` frame) spread evenly
# over WS_DRAIN_SECONDS, each after the frame it is handling, and only then lets uvicorn shut
# down (messaging.realtime.drain). Each `reconnect` frame asks the client to wait a random
# 0..WS_RECONNECT_JITTER_MS ms. Keep WS_DRAIN_SECONDS + WS_DRAIN_LINGER_SECONDS + uvicorn's
# --timeout-graceful-shutdown (+ 2 s of close grace) under the time the supervisor waits
# before SIGKILL (compose's stop_grace_period).
WS_DRAIN_SECONDS = env_float("WS_DRAIN_SECONDS", 5.0)
# Once drained, the process stays alive this long, its listener still closed, before uvicorn
# shuts down. Why: a proxy that still has the process's address (nginx re-resolves `web`
# every 5 s, deploy/nginx.conf) gets its connect refused at once by the kernel and tries the
# next replica; once the process (and its container's address) is gone, the same connect
# goes unanswered until proxy_connect_timeout (1 s), then 502. docker-compose.yml sets it
# above nginx's resolver validity; 0 (a proxy that needs no such wait, make cluster): none.
WS_DRAIN_LINGER_SECONDS = env_float("WS_DRAIN_LINGER_SECONDS", 0.0)
WS_RECONNECT_JITTER_MS = env_int("WS_RECONNECT_JITTER_MS", 500)
# PostgreSQL connections per web process for the reads of handshakes and subscribes, made
# on the event loop (pubsub_site.async_db), besides the pool of DB_POOL_MAX_SIZE.
WS_DB_CONNECTIONS = env_int("WS_DB_CONNECTIONS", 4)
if WS_DB_CONNECTIONS < 1:
    raise ImproperlyConfigured(f"WS_DB_CONNECTIONS={WS_DB_CONNECTIONS}: at least 1.")

# --- Metrics (Prometheus, /metrics; docs/deploy.md "Metrics") -----------------

# /metrics answers clients in these networks (CIDR, comma-separated; the address uvicorn
# gives, which behind nginx is the real client's) or presenting `Authorization: Bearer
# METRICS_TOKEN`; anyone else gets a 404.
METRICS_ALLOWED_NETS = env_list("METRICS_ALLOWED_NETS", ["127.0.0.1/32", "::1/128"])
for _net in METRICS_ALLOWED_NETS:
    try:
        ipaddress.ip_network(_net, strict=False)
    except ValueError:
        raise ImproperlyConfigured(f"METRICS_ALLOWED_NETS: {_net!r} is not a network; write e.g. 10.0.0.0/8.") from None
# Empty: no token is accepted. A token is a password: at least 16 characters.
METRICS_TOKEN = env_str("METRICS_TOKEN", "")
if METRICS_TOKEN and len(METRICS_TOKEN) < 16:
    raise ImproperlyConfigured("METRICS_TOKEN must be at least 16 characters (or empty: no token).")
# The worker serves its own /metrics on this port when no PROMETHEUS_MULTIPROC_DIR is
# shared with the web processes (Docker); 0: it does not (jobs_worker --metrics-port).
METRICS_WORKER_PORT = env_int("METRICS_WORKER_PORT", 0)
# How often each web process samples its sockets' outbox backlog and its event loop's lag.
METRICS_SAMPLE_SECONDS = env_float("METRICS_SAMPLE_SECONDS", 5.0)
# A web process's garbage collector makes no full collection of its own, but one this often
# (seconds), freeing the cycles that grew old before they became garbage
# (pubsub_site.gc_policy). 0: Python's own rule.
GC_FULL_WALK_SECONDS = env_int("GC_FULL_WALK_SECONDS", 1800)
if GC_FULL_WALK_SECONDS < 0:
    raise ImproperlyConfigured(f"GC_FULL_WALK_SECONDS={GC_FULL_WALK_SECONDS}: 0 (off) or more seconds.")

# --- Outbound HTTP (link previews, webhooks: pubsub_site.outbound) ------------

# Networks (CIDR, comma-separated) the site may fetch from although they are not public
# (private, loopback...). Empty by default: only public addresses. Tests allow 127.0.0.1/32.
OUTBOUND_ALLOWED_NETWORKS = env_list("OUTBOUND_ALLOWED_NETWORKS", [])
for _net in OUTBOUND_ALLOWED_NETWORKS:
    try:
        ipaddress.ip_network(_net, strict=False)
    except ValueError:
        raise ImproperlyConfigured(
            f"OUTBOUND_ALLOWED_NETWORKS: {_net!r} is not a network; write e.g. 10.0.0.0/8."
        ) from None

# Link previews (messaging.previews): a card for the first link of a message, fetched by a job
# through pubsub_site.outbound and kept per URL this long (seconds) before it is fetched again.
LINK_PREVIEWS = env_bool("LINK_PREVIEWS", True)
LINK_PREVIEW_TTL = env_int("LINK_PREVIEW_TTL", 24 * 3600)
LINK_PREVIEW_TIMEOUT = env_float("LINK_PREVIEW_TIMEOUT", 5.0)
LINK_PREVIEW_MAX_BYTES = env_int("LINK_PREVIEW_MAX_BYTES", 1_000_000)
LINK_PREVIEW_IMAGE_MAX_BYTES = env_int("LINK_PREVIEW_IMAGE_MAX_BYTES", 2_000_000)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        # django-axes logs every successful log-in at INFO; failures and lock-outs are warnings.
        "axes": {"level": "WARNING"},
    },
}

# Presence: a connection refreshes its entry every PRESENCE_HEARTBEAT seconds; a
# process that dies without saying goodbye has its users leave within
# PRESENCE_TTL + PRESENCE_HEARTBEAT seconds (45 + 15 = 60).
PRESENCE_TTL = env_int("PRESENCE_TTL", 45)
PRESENCE_HEARTBEAT = env_int("PRESENCE_HEARTBEAT", 15)
# Who came and went is broadcast at most this often per room, over every web process (seconds),
# and a presence frame names at most PRESENCE_LIST_MAX people (with the count of all).
PRESENCE_COALESCE_SECONDS = env_float("PRESENCE_COALESCE_SECONDS", 1.0)
PRESENCE_LIST_MAX = env_int("PRESENCE_LIST_MAX", 100)
# One `typing` event per user and room at most this often (seconds).
TYPING_INTERVAL = 2.0
# Claps on one message are broadcast at most this often per web process (seconds).
CLAP_COALESCE_SECONDS = 0.1
# Emoji reactions (messaging.reactions): distinct emoji on one message, emoji one user puts
# on one message, and the reactors a `reactions` frame names per emoji (its count is of all).
REACTIONS_MAX_EMOJI_PER_MESSAGE = env_int("REACTIONS_MAX_EMOJI_PER_MESSAGE", 20)
REACTIONS_MAX_PER_USER_PER_MESSAGE = env_int("REACTIONS_MAX_PER_USER_PER_MESSAGE", 10)
REACTIONS_USERS_LISTED = env_int("REACTIONS_USERS_LISTED", 50)
# Pinned messages a room holds at most (messaging.pins).
PINS_MAX_PER_ROOM = env_int("PINS_MAX_PER_ROOM", 50)
for _name in (
    "REACTIONS_MAX_EMOJI_PER_MESSAGE",
    "REACTIONS_MAX_PER_USER_PER_MESSAGE",
    "REACTIONS_USERS_LISTED",
    "PINS_MAX_PER_ROOM",
):
    if globals()[_name] < 1:
        raise ImproperlyConfigured(f"{_name}={globals()[_name]}: at least 1.")
# New-message activity (unread counts) is broadcast at most this often per room and process.
ACTIVITY_COALESCE_SECONDS = 1.0

# --- E-mail (the digests of missed mentions: messaging.notifications.digests) -------

# The site's address as people reach it, for links in e-mails. Production: https and the
# first ALLOWED_HOSTS, unless set.
_site_host = ALLOWED_HOSTS[0].lstrip(".") if ALLOWED_HOSTS else "localhost"
if PRODUCTION:
    SITE_URL = env_str("SITE_URL", "" if _site_host == "*" else f"https://{_site_host}")
    if not SITE_URL:
        raise ImproperlyConfigured("SITE_URL is required when ALLOWED_HOSTS starts with '*'.")
else:
    SITE_URL = env_str("SITE_URL", "http://localhost:8000")
if urlsplit(SITE_URL).scheme not in {"http", "https"} or not urlsplit(SITE_URL).netloc:
    raise ImproperlyConfigured(f"SITE_URL={SITE_URL!r} is not an address; write e.g. https://chat.example.com.")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", f"pubsub <noreply@{urlsplit(SITE_URL).hostname}>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# With EMAIL_HOST, e-mail goes out by SMTP (port 587 with STARTTLS unless told otherwise).
# Without it, the console backend writes e-mails to the log: fine in development; in
# production accounts.apps warns at every start that nothing is being sent.
EMAIL_HOST = env_str("EMAIL_HOST", "")
if EMAIL_HOST:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_PORT = env_int("EMAIL_PORT", 587)
    EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
    EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
    EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
    EMAIL_TIMEOUT = 10  # a hung SMTP server fails the digest (retried), not the worker
else:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
# How often one of the workers queues the job that sends the digests that are due (seconds;
# the workers' sweep thread runs every PERSIST_SWEEP_SECONDS, so no more often than that).
MENTION_EMAIL_SWEEP_SECONDS = env_int("MENTION_EMAIL_SWEEP_SECONDS", 60)

# --- Outgoing webhooks (outgoing_webhooks/services.py; docs/api.md "Outgoing webhooks") ---
# Each request: this timeout, this much of the answer read at most, no redirect followed.
WEBHOOK_TIMEOUT_SECONDS = env_float("WEBHOOK_TIMEOUT_SECONDS", 5.0)
WEBHOOK_RESPONSE_MAX_BYTES = env_int("WEBHOOK_RESPONSE_MAX_BYTES", 65536)
# A failed delivery waits BASE * 2**(attempts-1) seconds (at most MAX), its second half random.
WEBHOOK_RETRY_BASE_SECONDS = env_float("WEBHOOK_RETRY_BASE_SECONDS", 10.0)
WEBHOOK_RETRY_MAX_SECONDS = env_float("WEBHOOK_RETRY_MAX_SECONDS", 3600.0)
# An endpoint is disabled (and the room's admins e-mailed) after this many failures in a row,
# or after failing this long without a success.
WEBHOOK_DISABLE_AFTER_FAILURES = env_int("WEBHOOK_DISABLE_AFTER_FAILURES", 15)
WEBHOOK_DISABLE_AFTER_HOURS = env_float("WEBHOOK_DISABLE_AFTER_HOURS", 24.0)
# One delivery job sends for this long, then queues itself again (the worker persists messages too).
WEBHOOK_JOB_BUDGET_SECONDS = env_float("WEBHOOK_JOB_BUDGET_SECONDS", 10.0)
# Delivered rows are kept in the log this many days.
WEBHOOK_LOG_DAYS = env_int("WEBHOOK_LOG_DAYS", 7)

# --- Web Push ----------------------------------------------------------------
# The VAPID pair that signs pushes (pubsub_site/vapid.py): None turns push off and the pages
# offer nothing. Development makes a pair once, in var/vapid.json; production uses the
# environment's or none. WEBPUSH_COALESCE_SECONDS: after a push, a user's next events wait
# this long and go out as one (webpush.services).
WEBPUSH_VAPID = vapid_keys_from_env(production=PRODUCTION, var_dir=VAR_DIR, site_host=urlsplit(SITE_URL).hostname)
WEBPUSH_COALESCE_SECONDS = env_float("WEBPUSH_COALESCE_SECONDS", 5.0)
