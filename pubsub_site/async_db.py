"""Reads on the WebSocket path, on the event loop: no hop to a database thread.

Guarantee: a read made here sees what a query through Django's connection would see at
the same moment (the same database, committed rows: autocommit, read committed), and a
failure is raised as ``django.db.DatabaseError``, as Django raises it. On PostgreSQL the
query runs on psycopg's asyncio connections, at most ``WS_DB_CONNECTIONS`` per event
loop, opened on first use and kept; on any other database (SQLite in development) the
synchronous function the caller names runs in Django's database thread instead
(``database_sync_to_async``), as every other database call of a consumer does.

Why: every handshake and every subscribe reads a row or two. Through
``database_sync_to_async`` a one-row read cost the web process about 300 µs of CPU
(the hop to the database thread and back with their GIL hand-offs, and Django's cursor
wrapper), a query on an asyncio connection about 70 µs (measured on the benchmark's
machine), and a thousand handshakes at once are a core's work. Only the socket's hot
path comes here: its reads, and one write, the first subscribes' joins of public rooms
(rooms.joins: a single statement, which autocommit makes a transaction of its own). Every
other write, and every read that is not on that path, stays with the ORM. The reads
that wait at the same time can go as one query (``fetchall_together``, pubsub_site.coalesce):
psycopg's own work per query was then the larger part of a handshake's database cost.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Hashable, Sequence
from datetime import UTC

import psycopg
from django.conf import settings
from django.db import DatabaseError, connections
from django.utils import timezone
from psycopg import pq

from pubsub_site import coalesce


def native() -> bool:
    """Whether reads run here on the loop (PostgreSQL), rather than in Django's thread."""
    return settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"


def row_datetime(value):
    """A datetime column of a raw query's row as the ORM would give it: SQLite (development)
    hands raw queries naive UTC datetimes, PostgreSQL aware ones."""
    if value is not None and timezone.is_naive(value):
        return timezone.make_aware(value, UTC)
    return value


async def fetchall(sql: str, params: Sequence) -> list[tuple]:
    """The rows of ``sql`` (a read, or one statement that writes and returns rows), on the
    running loop's connections. PostgreSQL only: callers check ``native()`` and otherwise
    run their synchronous form in Django's thread."""
    return await _connections().fetchall(sql, params)


async def fetchall_together(
    sql: str, key: Hashable, *, params: Callable[[list], Sequence], key_of: Callable[[tuple], Hashable]
) -> list[tuple]:
    """The rows of ``sql`` that are ``key``'s, read with the same reads of other callers
    that wait at the same time: one query for all of them (pubsub_site.coalesce).

    ``sql`` reads many keys at once (``= ANY(%s)``, ``unnest``): ``params(keys)`` are its
    parameters for a batch's keys, ``key_of(row)`` the key a row answers. A caller gets
    the rows whose ``key_of`` is its key (none: an empty list), as a query for its key
    alone would have returned them. PostgreSQL only, as ``fetchall``."""
    in_flight = max(1, settings.WS_DB_CONNECTIONS // 2)  # a batch in flight a connection, half of them
    coalescer = coalesce.for_loop(
        ("sql", sql), lambda: coalesce.Coalescer(_rows_by_key(sql, params, key_of), in_flight=in_flight)
    )
    return await coalescer.get(key)


def _rows_by_key(sql: str, params: Callable[[list], Sequence], key_of: Callable[[tuple], Hashable]):
    async def many(keys: list) -> list[list[tuple]]:
        found: dict[Hashable, list[tuple]] = {}
        for row in await fetchall(sql, params(keys)):
            found.setdefault(key_of(row), []).append(row)
        return [found.get(key, []) for key in keys]

    return many


class _Connections:
    """A few asyncio connections of one event loop, lent one query at a time.

    Not psycopg_pool's AsyncConnectionPool: that runs tasks of its own on the loop, and the
    test suite makes a loop per test; these are plain connections, which ``close`` ends
    without a loop (a loop that is gone cannot run a coroutine any more)."""

    def __init__(self, params: dict, size: int) -> None:
        self.params = params
        self.idle: list[psycopg.AsyncConnection] = []
        self.slots = asyncio.Semaphore(size)
        self.all: weakref.WeakSet[psycopg.AsyncConnection] = weakref.WeakSet()

    async def fetchall(self, sql: str, params: Sequence) -> list[tuple]:
        async with self.slots:
            conn = self.idle.pop() if self.idle else None
            try:
                if conn is None:
                    conn = await psycopg.AsyncConnection.connect(**self.params, autocommit=True)
                    self.all.add(conn)
                cursor = conn.cursor()
                await cursor.execute(sql, params)
                rows = await cursor.fetchall()
            except psycopg.Error as error:
                raise DatabaseError(str(error)) from error
            finally:
                if conn is not None:
                    self._put_back(conn)
            return rows

    def _put_back(self, conn: psycopg.AsyncConnection) -> None:
        """Keep the connection for the next query only if it is idle: a broken one, or one
        whose query was cancelled half-way (its socket went away), is ended; the next query
        opens another."""
        if conn.closed or conn.broken or conn.pgconn.transaction_status != pq.TransactionStatus.IDLE:
            if not conn.closed:
                conn.pgconn.finish()
            return
        self.idle.append(conn)

    def close(self) -> None:
        for conn in list(self.all):
            if not conn.closed:
                conn.pgconn.finish()
        self.idle.clear()


_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Connections] = weakref.WeakKeyDictionary()


def _connections() -> _Connections:
    loop = asyncio.get_running_loop()
    conns = _by_loop.get(loop)
    if conns is None:
        params = connections["default"].get_connection_params()
        params.pop("cursor_factory", None)  # Django's synchronous cursor class
        # Django turns psycopg's prepared statements off (a transaction-pooling PgBouncer
        # before 1.21 cannot keep them); these few queries run thousands of times a
        # second, and prepared they cost PostgreSQL less (a one-row read: 130 µs instead of
        # 190 µs a round trip on the benchmark's machine). OPTIONS["prepare_threshold"] =
        # None in DATABASES turns them off here too.
        options = settings.DATABASES["default"].get("OPTIONS", {})
        params["prepare_threshold"] = options.get("prepare_threshold", 5)
        conns = _by_loop[loop] = _Connections(params, settings.WS_DB_CONNECTIONS)
    return conns


def close_for_loop(loop: asyncio.AbstractEventLoop | None = None) -> None:
    """End the connections of ``loop`` (the running one by default; tests make a loop each)."""
    conns = _by_loop.pop(loop or asyncio.get_running_loop(), None)
    if conns is not None:
        conns.close()


def close_all() -> None:
    """End every loop's connections (before a test database is dropped)."""
    for loop in list(_by_loop):
        close_for_loop(loop)
