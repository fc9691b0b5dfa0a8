"""The database settings, read from the environment (``DATABASES`` and ``DB_POOL`` of the settings).

PostgreSQL through psycopg's pool, sized from the environment, or SQLite (the ``make run``
default) with WAL, a busy timeout and IMMEDIATE transactions; each choice says why below.
A bad combination fails loudly (ImproperlyConfigured), as every setting does.
"""

from __future__ import annotations

from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from pubsub_site.env import env_bool, env_float, env_int, env_str


def databases_from_env(*, production: bool, var_dir: Path) -> tuple[dict, bool]:
    """``DATABASES`` and whether PostgreSQL's connections are pooled (``DB_POOL``)."""
    if production:
        database_url = env_str("DATABASE_URL")
    else:
        database_url = env_str("DATABASE_URL", f"sqlite:///{var_dir / 'db.sqlite3'}")
    databases = {"default": dj_database_url.parse(database_url, conn_max_age=env_int("DB_CONN_MAX_AGE", 0))}
    pool = env_bool("DB_POOL", True)
    if databases["default"]["ENGINE"] == "django.db.backends.postgresql":
        databases["default"].setdefault("OPTIONS", {})
        databases["default"]["OPTIONS"].setdefault("connect_timeout", 5)
        if pool:
            # Under ASGI each HTTP request runs in a thread of its own (and the WebSockets'
            # database calls in one more), so persistent connections (CONN_MAX_AGE > 0) would
            # stay open, one per thread that ever ran. Without them, every database_sync_to_async
            # hop and every request opened a new PostgreSQL connection: a handshake paid a few
            # of them, and a reconnect storm queued behind the connects. psycopg's pool, shared
            # by the process's threads, fixes both: closing a connection (at the end of each hop
            # and request) returns it to the pool, which keeps DB_POOL_MIN_SIZE open and opens
            # up to DB_POOL_MAX_SIZE; a thread that finds none free waits DB_POOL_TIMEOUT
            # seconds, then fails. Django requires CONN_MAX_AGE=0 with a pool. No health check on
            # checkout: it is a round trip per database hop (7% of a handshake's CPU in the
            # benchmark's profile); a connection that died while idle (PostgreSQL restarted) fails
            # the one call that drew it (the WebSocket answers `unavailable`, the client retries),
            # and psycopg's pool drops it when it comes back broken.
            if databases["default"]["CONN_MAX_AGE"] != 0:
                raise ImproperlyConfigured("DB_CONN_MAX_AGE must be 0 with the connection pool (or set DB_POOL=0).")
            pool_min, pool_max = env_int("DB_POOL_MIN_SIZE", 2), env_int("DB_POOL_MAX_SIZE", 10)
            if not 0 <= pool_min <= pool_max or pool_max < 1:
                raise ImproperlyConfigured(
                    f"DB_POOL_MIN_SIZE={pool_min} and DB_POOL_MAX_SIZE={pool_max}: need 0 <= min <= max, max >= 1."
                )
            databases["default"]["OPTIONS"]["pool"] = {
                "min_size": pool_min,
                "max_size": pool_max,
                "timeout": env_float("DB_POOL_TIMEOUT", 5.0),
            }
    elif databases["default"]["ENGINE"] == "django.db.backends.sqlite3":
        # SQLite (the `make run` default) is written by the web process and the worker at once.
        # WAL lets readers go on while one writes; every transaction takes the write lock when it
        # begins (IMMEDIATE), so two writers queue on the busy timeout (SQLITE_TIMEOUT seconds)
        # instead of one failing with "database is locked" when its read turns into a write.
        databases["default"].setdefault("OPTIONS", {})
        databases["default"]["OPTIONS"].setdefault("timeout", env_float("SQLITE_TIMEOUT", 20.0))
        databases["default"]["OPTIONS"].setdefault("transaction_mode", "IMMEDIATE")
        databases["default"]["OPTIONS"].setdefault(
            "init_command", "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
        )
        sqlite_name = str(databases["default"]["NAME"])
        if sqlite_name and sqlite_name != ":memory:" and not sqlite_name.startswith("file:"):
            # The test database is a file next to it (test_<name>), not Django's in-memory one:
            # the suite's real processes (web, worker) must open the same database.
            sqlite_path = Path(sqlite_name)
            databases["default"]["TEST"] = {"NAME": str(sqlite_path.with_name(f"test_{sqlite_path.name}"))}
    return databases, pool
