"""The worker killed mid-batch, twice in a row.

Six thousand messages (twelve batches) are stored with no worker running (through
``messaging.services.message_send``, the Redis path a `send` frame takes: an ack is its
return), then a worker is SIGKILLed in the middle of a batch's INSERT after it has committed
two batches, and the next one too; the third persists everything, each message once."""

from __future__ import annotations

import asyncio
import time
import uuid

import psycopg
import pytest
import redis
from django.db import connection
from psycopg import sql
from rq.registry import StartedJobRegistry

from messaging.models import Message
from messaging.services import message_send
from messaging.store import watermarks
from messaging.store.persistence import BATCH
from pubsub_site.redis.client import close_async_clients_for_running_loop
from rooms.services import room_create
from tests.conftest import database_url
from tests.faults.kit import ACKED, Ledger, base_env, pg_rows, report, verdict_row, verify, wait_for_rows

pytestmark = pytest.mark.processes

TOTAL = 6_000
assert TOTAL > 5 * BATCH, "the two kills need five batches and leave the third worker some"


def hold_seq(room_id: int, author_id: int, seq: int) -> psycopg.Connection:
    """A connection whose open transaction has inserted a row with the room's ``seq``.

    Until it ends, the worker's INSERT of the batch holding ``seq`` waits on it (ON CONFLICT
    must know whether that row commits), with the batch's rows before ``seq`` written but
    not committed, while the batches before it commit. However fast the worker runs, it
    cannot get past that INSERT: the kill lands in it whatever the machine's load."""
    meta = Message._meta
    names = ("room", "seq", "author", "body", "client_id", "sent_at", "rev", "also_in_room")
    insert = sql.SQL("INSERT INTO {} ({}) VALUES (%s, %s, %s, %s, %s, now(), 0, false)").format(
        sql.Identifier(meta.db_table), sql.SQL(", ").join(sql.Identifier(meta.get_field(n).column) for n in names)
    )
    holder = psycopg.connect(database_url())
    holder.execute(insert, [room_id, seq, author_id, "the test's placeholder, never committed", uuid.uuid4()])
    return holder


def inserts_held_by(holder: psycopg.Connection, dbname: str) -> list[int]:
    """The backends whose INSERT into the message table waits on ``holder``'s transaction."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND state = 'active' "
            "AND query LIKE 'INSERT INTO \"messaging_message\"%%' AND %s = ANY(pg_blocking_pids(pid))",
            [dbname, holder.info.backend_pid],
        )
        return [pid for (pid,) in cursor.fetchall()]


def backend_alive(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid])
        return cursor.fetchone() is not None


def wait_for(predicate, what: str, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"{what} within {timeout} s"
        time.sleep(0.01)
    return value


def kill_mid_insert(cluster, room_id: int, author_id: int, dbname: str, batches: int) -> int:
    """Start a worker, let it commit ``batches`` batches past the room's watermark, SIGKILL
    it in the middle of the next batch's INSERT, and return the rows committed by then.

    A worker killed at a random moment would mostly die between batches; one held by a row
    of the test's (``hold_seq``) is certainly in an INSERT, not yet committed, when the
    signal lands. Returns once the killed worker's PostgreSQL backend has ended (and rolled
    its INSERT back)."""
    watermark = watermarks.persisted_upto(room_id=room_id)  # where the worker starts
    holder = hold_seq(room_id, author_id, watermark + (batches + 1) * BATCH)
    try:
        worker = cluster.start_worker()
        (backend,) = wait_for(
            lambda: inserts_held_by(holder, dbname), f"the worker's INSERT of batch {batches + 1} did not wait"
        )
        committed = len(pg_rows([room_id]))
        cluster.kill_worker(worker)
    finally:
        holder.rollback()
        holder.close()
    wait_for(lambda: not backend_alive(backend), "the killed worker's backend did not end")
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

    first = kill_mid_insert(cluster, room.pk, alice.pk, dbname, batches=2)
    second = kill_mid_insert(cluster, room.pk, alice.pk, dbname, batches=2)
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
    # Each worker committed two batches and was killed in the third: none of that one was
    # committed (nor by its backend once the worker was gone), and the next worker wrote it.
    assert (first, second, rows_after_kills) == (2 * BATCH, 4 * BATCH, 4 * BATCH)
    assert not verdict.problems, verdict.problems
    assert verdict.rows == verdict.acked == TOTAL
