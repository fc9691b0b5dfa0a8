"""Where a Redis is: a plain URL, or a service that Redis Sentinel watches.

Every setting that names a Redis (``REDIS_URL``, ``ROOM_REDIS_URLS``, ``CHANNEL_REDIS_URLS``)
takes one of:

- a plain URL, as redis-py reads it: ``redis://[[user]:password@]host:port/db``,
  ``rediss://...`` (TLS), ``unix:///path/to/redis.sock?db=0``;
- a Sentinel service: ``redis+sentinel://[[user]:password@]host:port,host:port,.../master/db``
  (``db`` defaults to 0, a sentinel's port to 26379). The hosts are the Sentinels, ``master``
  the name they monitor the primary under (``sentinel monitor <master> ...``); the user and
  password are the Redis servers' (primary and replicas). ``?sentinel_password=...`` (and
  ``sentinel_username``) authenticate to the Sentinels themselves when they ask for it.
  Each new connection asks the Sentinels where the primary is now, so after a failover
  every client follows the promoted replica. (This form has no TLS: Sentinels and Redis
  servers on a private network. A managed service with TLS, such as ElastiCache, gives one
  endpoint that follows its failovers: a plain ``rediss://`` URL.)

The form is the one of the redis-sentinel-url package and of several other clients
(Sidekiq's, go-redis's ``FailoverOptions`` URL). A list setting separates its URLs with
commas too; a comma followed by something that is not a URL (no ``://``) continues the
Sentinel URL before it: ``redis+sentinel://a:26379,b:26379/rooms-1/0,redis+sentinel://a:26379,b:26379/rooms-2/0``
is two services.

No Django here: deploy/healthcheck.py uses it too.
"""

from __future__ import annotations

import functools
import socket
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

SENTINEL_SCHEME = "redis+sentinel"
PLAIN_SCHEMES = ("redis", "rediss", "unix")
DEFAULT_SENTINEL_PORT = 26379
_SENTINEL_OPTIONS = ("sentinel_password", "sentinel_username")
_FORMS = "redis://host:port/db or redis+sentinel://host:port,host:port/mastername/db"


class RedisUrlError(ValueError):
    """A Redis URL that cannot be used; the message says why and shows the forms."""


@dataclass(frozen=True)
class SentinelService:
    """A primary that Sentinels watch, and how to talk to it."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = None

    @property
    def identity(self) -> tuple[frozenset, str]:
        """Two URLs with the same Sentinels and master name reach the same server,
        whichever it is at the moment (the database number aside)."""
        return frozenset(self.sentinels), self.master

    def connection_kwargs(self) -> dict:
        """redis-py's keyword arguments for a connection to the primary (not to a Sentinel)."""
        kwargs: dict = {"db": self.db}
        if self.username is not None:
            kwargs["username"] = self.username
        if self.password is not None:
            kwargs["password"] = self.password
        return kwargs

    def sentinel_kwargs(self, **options) -> dict:
        """Keyword arguments for the connections to the Sentinels: short timeouts, so that a
        dead Sentinel costs a second before the next is asked."""
        kwargs = {"socket_connect_timeout": 1, "socket_timeout": 1, **options}
        if self.sentinel_username is not None:
            kwargs["username"] = self.sentinel_username
        if self.sentinel_password is not None:
            kwargs["password"] = self.sentinel_password
        return kwargs


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    netloc, slash, tail = rest.partition("/")
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    return f"{scheme}://{netloc}{slash}{tail}"


def _host_port(item: str, url: str, default_port: int) -> tuple[str, int]:
    try:
        parts = urlsplit(f"//{item}")
        port = parts.port
    except ValueError:
        raise RedisUrlError(f"{redact(url)}: {item!r} is not host:port.") from None
    if not parts.hostname or parts.username is not None or parts.path:
        raise RedisUrlError(f"{redact(url)}: {item!r} is not host:port.")
    return parts.hostname, port or default_port


def _database(text: str, url: str) -> int:
    try:
        db = int(text)
    except ValueError:
        db = -1
    if db < 0:
        raise RedisUrlError(f"{redact(url)}: the database {text!r} is not a number >= 0.")
    return db


def parse_sentinel_url(url: str) -> SentinelService:
    rest = url.strip()[len(SENTINEL_SCHEME) + 3 :]
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else (unquote(user) or None)
        if not colon:
            username = None  # "password@host", as redis-py reads a lone userinfo
    if not hosts.strip(","):
        raise RedisUrlError(f"{redact(url)}: no Sentinel host:port; write {_FORMS}.")
    sentinels = tuple(_host_port(h.strip(), url, DEFAULT_SENTINEL_PORT) for h in hosts.split(",") if h.strip())
    master, _, db_text = path.strip("/").partition("/")
    master = unquote(master)
    if not master:
        raise RedisUrlError(f"{redact(url)}: no master name after the Sentinels; write {_FORMS}.")
    if "/" in db_text:
        raise RedisUrlError(f"{redact(url)}: too many parts after the Sentinels; write {_FORMS}.")
    db = _database(db_text, url) if db_text else 0
    options = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in _SENTINEL_OPTIONS:
            raise RedisUrlError(f"{redact(url)}: unknown option {key!r} (known: {', '.join(_SENTINEL_OPTIONS)}).")
        options[key] = value
    return SentinelService(sentinels, master, db, username, password, **options)


def _check_plain(url: str) -> None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError on a port that is not a number)
    except ValueError:
        raise RedisUrlError(f"{redact(url)}: the port is not a number; write {_FORMS}.") from None
    if parts.scheme == "unix":
        if not parts.path:
            raise RedisUrlError(f"{redact(url)}: no socket path; write unix:///path/to/redis.sock?db=0.")
        return
    if "," in parts.netloc:
        raise RedisUrlError(f"{redact(url)}: several hosts in a plain URL; for Sentinels write {_FORMS}.")
    db_text = parts.path.strip("/")
    if db_text:
        _database(db_text, url)


def parse_redis_url(url: str) -> SentinelService | None:
    """The Sentinel service a URL names, or None for a plain URL (checked: a URL redis-py
    could not use raises RedisUrlError, with what is wrong and the two forms)."""
    scheme, sep, _ = url.strip().partition("://")
    if not sep:
        raise RedisUrlError(f"{redact(url)!r} is not a Redis URL; write {_FORMS}.")
    if scheme == SENTINEL_SCHEME:
        return parse_sentinel_url(url)
    if scheme not in PLAIN_SCHEMES:
        raise RedisUrlError(
            f"{redact(url)}: unknown scheme {scheme!r} (known: {', '.join((*PLAIN_SCHEMES, SENTINEL_SCHEME))})."
        )
    _check_plain(url)
    return None


def split_redis_urls(value: str) -> list[str]:
    """A comma-separated list of Redis URLs, where a Sentinel URL's own commas (between
    its Sentinels) do not separate: a piece without ``://`` continues the URL before it."""
    urls: list[str] = []
    for piece in value.split(","):
        piece = piece.strip()
        if not piece:
            continue
        if "://" in piece or not urls:
            urls.append(piece)
        elif urls[-1].startswith(f"{SENTINEL_SCHEME}://") and "/" not in urls[-1].partition("://")[2]:
            urls[-1] += "," + piece  # still in the list of Sentinels
        else:
            raise RedisUrlError(
                f"{redact(piece)!r} (after {redact(urls[-1])!r}) is not a Redis URL: a plain URL names one"
                f" server; write {_FORMS}."
            )
    for url in urls:
        parse_redis_url(url)
    return urls


def database_of(url: str) -> int:
    """The database number a URL names (0 when it names none)."""
    service = parse_redis_url(url)
    if service is not None:
        return service.db
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    if "db" in query:
        return int(query["db"])
    return int(parts.path.strip("/") or 0) if parts.scheme != "unix" else 0


# --- clients ---------------------------------------------------------------------------

# A peer that died without a word (a machine lost, not a process) is noticed by TCP
# keepalive in about 20 s on an idle connection (a subscriber), instead of hours; commands
# have their own socket timeout.
KEEPALIVE = {
    "socket_keepalive": True,
    "socket_keepalive_options": {
        option: value
        for option, value in (
            (getattr(socket, "TCP_KEEPIDLE", None), 10),
            (getattr(socket, "TCP_KEEPINTVL", None), 3),
            (getattr(socket, "TCP_KEEPCNT", None), 3),
        )
        if option is not None
    },
}


@functools.cache
def _blocking_sentinel_pool_class(sentinel_module, blocking_pool):
    class BlockingSentinelConnectionPool(sentinel_module.SentinelConnectionPool, blocking_pool):
        """A Sentinel pool that, like ``BlockingConnectionPool``, waits ``timeout`` seconds for
        a free connection rather than failing at once when ``max_connections`` are in use."""

    return BlockingSentinelConnectionPool


def sync_pool(url: str, *, blocking_timeout: float | None = None, **options):
    """A new synchronous connection pool for ``url`` (a ``BlockingConnectionPool`` waiting
    ``blocking_timeout`` seconds for a free connection when given; else a plain one)."""
    import redis  # noqa: PLC0415 (redis only where a client is made: parsing a URL, as the settings do, needs none)
    import redis.sentinel  # noqa: PLC0415 (redis only where a client is made: parsing a URL, as the settings do, needs none)

    service = parse_redis_url(url)
    if service is None:
        if blocking_timeout is None:
            return redis.ConnectionPool.from_url(url, **options)
        return redis.BlockingConnectionPool.from_url(url, timeout=blocking_timeout, **options)
    manager = redis.sentinel.Sentinel(service.sentinels, sentinel_kwargs=service.sentinel_kwargs(**_driver(options)))
    kwargs = {**KEEPALIVE, **options, **service.connection_kwargs()}
    if blocking_timeout is None:
        return redis.sentinel.SentinelConnectionPool(service.master, manager, **kwargs)
    pool_class = _blocking_sentinel_pool_class(redis.sentinel, redis.BlockingConnectionPool)
    return pool_class(service.master, manager, timeout=blocking_timeout, **kwargs)


def async_pool(url: str, *, blocking_timeout: float | None = None, **options):
    """The same for redis.asyncio: bound to the running event loop's first use."""
    import redis.asyncio as aioredis  # noqa: PLC0415 (redis only where a client is made: parsing a URL, as the settings do, needs none)
    import redis.asyncio.sentinel  # noqa: PLC0415 (redis only where a client is made: parsing a URL, as the settings do, needs none)

    service = parse_redis_url(url)
    if service is None:
        if blocking_timeout is None:
            return aioredis.ConnectionPool.from_url(url, **options)
        return aioredis.BlockingConnectionPool.from_url(url, timeout=blocking_timeout, **options)
    manager = redis.asyncio.sentinel.Sentinel(
        service.sentinels, sentinel_kwargs=service.sentinel_kwargs(**_driver(options))
    )
    kwargs = {**KEEPALIVE, **options, **service.connection_kwargs()}
    if blocking_timeout is None:
        return redis.asyncio.sentinel.SentinelConnectionPool(service.master, manager, **kwargs)
    pool_class = _blocking_sentinel_pool_class(redis.asyncio.sentinel, aioredis.BlockingConnectionPool)
    return pool_class(service.master, manager, timeout=blocking_timeout, **kwargs)


def _driver(options: dict) -> dict:
    return {"driver_info": options["driver_info"]} if "driver_info" in options else {}


def sync_client(url: str, **options):
    """A new synchronous client of its own for ``url`` (plain or Sentinel), as
    ``redis.Redis.from_url`` makes one."""
    import redis  # noqa: PLC0415 (redis only where a client is made: parsing a URL, as the settings do, needs none)

    return redis.Redis(connection_pool=sync_pool(url, **options))


def channel_layer_host(url: str) -> str | dict:
    """A channels-redis ``hosts`` entry: the URL itself when plain (as always), else the
    Sentinel form channels-redis's ``create_pool`` reads (``sentinels``, ``master_name``,
    ``sentinel_kwargs`` and the primary's connection arguments)."""
    service = parse_redis_url(url)
    if service is None:
        return url
    return {
        "sentinels": list(service.sentinels),
        "master_name": service.master,
        "sentinel_kwargs": service.sentinel_kwargs(),
        "socket_connect_timeout": 2,
        **KEEPALIVE,
        **service.connection_kwargs(),
    }


def rq_queue_connection(url: str) -> dict:
    """The connection part of a django-rq ``RQ_QUEUES`` entry: ``URL`` when plain (as
    always), else django-rq's Sentinel form (``SENTINELS``, ``MASTER_NAME``, ...)."""
    service = parse_redis_url(url)
    if service is None:
        return {"URL": url}
    config: dict = {
        "SENTINELS": list(service.sentinels),
        "MASTER_NAME": service.master,
        "DB": service.db,
        "SENTINEL_KWARGS": service.sentinel_kwargs(),
        "CONNECTION_KWARGS": {"socket_connect_timeout": 2, **KEEPALIVE},
    }
    if service.password is not None:
        config["PASSWORD"] = service.password
    if service.username is not None:
        config["USERNAME"] = service.username
    return config
