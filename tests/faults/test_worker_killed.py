"""The worker killed mid-batch, twice in a row.

Six thousand messages (twelve batches) are stored with no worker running (through
``messaging.services.message_send``, the Redis path a `send` frame takes: an ack is its
return), then a worker is SIGKILLed in the middle of a batch's INSERT after it has committed
some batches, and the next one too; the third persists everything, each message once."""

from __future__ import annotations

import asyncio
import time

import psycopg
import pytest
import redis
from django.db import connection
from rq.registry import StartedJobRegistry

from messaging.services import message_send
from pubsub_site.redis_client import close_async_clients_for_running_loop
from rooms.services import room_create
from tests.conftest import database_url
from tests.faults.kit import ACKED, Ledger, base_env, pg_rows, report, verdict_row, verify, wait_for_rows

pytestmark = pytest.mark.processes

TOTAL = 6_000


def inserts_waiting(dbname: str) -> int:
    """INSERTs into the message table waiting for the lock the test holds."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND state = 'active' "
            "AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO \"messaging_message\"%%'",
            [dbname],
        )
        return cursor.fetchone()[0]


def kill_mid_insert(cluster, worker, room_id: int, dbname: str, after_rows: int, timeout: float = 60) -> int:
    """Let the worker commit at least ``after_rows`` rows, then SIGKILL it in the middle of
    its next batch's INSERT, and return the rows committed by then.

    The test holds a lock on the message table so that the INSERT is certainly in flight
    (waiting on the lock) when the signal lands, and not already committed: a worker killed
    at a random moment would mostly die between batches."""
    deadline = time.monotonic() + timeout
    while len(pg_rows([room_id])) < after_rows:
        assert time.monotonic() < deadline, f"the worker did not commit {after_rows} rows within {timeout} s"
        time.sleep(0.005)
    with psycopg.connect(database_url()) as blocker:
        blocker.execute("LOCK TABLE messaging_message IN SHARE MODE")
        committed = len(pg_rows([room_id]))
        while not inserts_waiting(dbname):
            assert time.monotonic() < deadline, f"the worker ran no INSERT within {timeout} s"
            time.sleep(0.005)
        cluster.kill_worker(worker)
        blocker.rollback()
    return committed


def test_a_worker_killed_mid_batch_twice_in_a_row_loses_nothing(make_cluster, alice):
    env = base_env()
    cluster = make_cluster(env)
    room = room_create(creator=alice, name="Backlog")
    ledger = Ledger()

    async def preload():
        gate = asyncio.Semaphore(64)

        async def one(i: int) -> None:
            send = ledger.new(room.slug, f"bulk {i}")
            async with gate:
                result = await message_send(
                    room_id=room.pk,
                    room_slug=room.slug,
                    author_id=alice.pk,
                    author_username=alice.username,
                    body=send.body,
                    client_id=send.client_id,
                )
            send.seq, send.attempts = result.seq, [ACKED]

        started = time.monotonic()
        await asyncio.gather(*(one(i) for i in range(TOTAL)))
        await close_async_clients_for_running_loop()
        return time.monotonic() - started

    elapsed = asyncio.run(preload())
    assert pg_rows([room.pk]) == []
    dbname = connection.settings_dict["NAME"]

    first = kill_mid_insert(cluster, cluster.start_worker(), room.pk, dbname, after_rows=1_000)
    second = kill_mid_insert(cluster, cluster.start_worker(), room.pk, dbname, after_rows=first + 1_000)
    time.sleep(0.5)  # the killed worker's backend ends and rolls its INSERT back
    rows_after_kills = len(pg_rows([room.pk]))
    registry = StartedJobRegistry("default", connection=redis.Redis.from_url(env["REDIS_URL"]))
    orphaned = len(registry.get_job_ids(cleanup=False))
    started = time.monotonic()
    cluster.start_worker()
    rows = wait_for_rows([room.pk], TOTAL)
    verdict = verify(ledger, rows, [], {room.slug: room.pk})
    caught_up = time.monotonic() - started
    report(
        "worker SIGKILLed mid-batch, twice in a row",
        f"{TOTAL} messages acked with no worker running ({TOTAL / elapsed:.0f}/s)",
        f"first worker killed during an INSERT with {first} rows committed, the second during an INSERT "
        f"with {second}; {orphaned} jobs left in the started registry; the third worker had all "
        f"{len(rows)} rows {time.monotonic() - started:.1f} s after it started",
        verdict.line(),
    )
    verdict_row("the worker SIGKILLed mid-batch, twice in a row", verdict, caught_up)
    # Each kill cut a batch in the middle: none of it was committed, and the next worker wrote it.
    assert 1_000 <= first < second == rows_after_kills < TOTAL
    assert not verdict.problems, verdict.problems
    assert verdict.rows == verdict.acked == TOTAL
