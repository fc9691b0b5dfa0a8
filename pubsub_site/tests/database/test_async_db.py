"""The socket path's reads on the event loop (pubsub_site.async_db), on real PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest
from django.db import DatabaseError
from psycopg import pq

from pubsub_site import async_db

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("async_cleanup"),
    pytest.mark.postgresql_only(
        reason="async_db reads on psycopg's asyncio connections; other databases take the thread hop"
    ),
]


async def test_it_reads_rows_and_reuses_its_connection():
    assert await async_db.fetchall("SELECT %s::int + 1", [41]) == [(42,)]
    first = async_db._connections().idle[0]
    assert await async_db.fetchall("SELECT 1", []) == [(1,)]
    assert async_db._connections().idle == [first]


async def test_a_failing_query_is_a_django_database_error_and_the_connection_stays_usable():
    with pytest.raises(DatabaseError):
        await async_db.fetchall("SELECT * FROM no_such_table", [])
    assert await async_db.fetchall("SELECT 2", []) == [(2,)]


async def test_a_query_cancelled_half_way_leaves_no_busy_connection_behind():
    """A handshake cancelled during its query (the server shutting down): the connection
    lent next is idle, not still running the cancelled query."""
    slow = asyncio.ensure_future(async_db.fetchall("SELECT pg_sleep(2)", []))
    await asyncio.sleep(0.2)
    slow.cancel()
    with pytest.raises(asyncio.CancelledError):
        await slow
    for conn in async_db._connections().idle:
        assert conn.pgconn.transaction_status == pq.TransactionStatus.IDLE
    assert await asyncio.wait_for(async_db.fetchall("SELECT 3", []), 1) == [(3,)]


async def test_no_more_than_ws_db_connections_at_once(settings):
    settings.WS_DB_CONNECTIONS = 2
    async_db.close_for_loop()
    results = await asyncio.gather(*(async_db.fetchall("SELECT pg_sleep(0.05), %s", [i]) for i in range(6)))
    assert [row[0][1] for row in results] == list(range(6))
    assert len(async_db._connections().all) == 2
