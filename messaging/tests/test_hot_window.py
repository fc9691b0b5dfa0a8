"""Redis's memory follows the send rate, not the history: a room's replay buffer keeps a
persisted message MESSAGE_HOT_SECONDS after it was sent at most (older replays read PostgreSQL),
a quiet room's buffer expires once PostgreSQL has all of it, and the worker keeps no result of
a finished job. What PostgreSQL does not have yet stays in Redis however old.

Runs on both databases (the SQLite leg takes every socket test)."""

from __future__ import annotations

import asyncio
import uuid

import django_rq
import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async

from messaging import services
from messaging.management.commands.jobs_worker import make_worker
from messaging.models import Message
from messaging.store import buffer, watermarks
from messaging.store.keys import RoomKeys
from messaging.store.persistence import messages_persist_server
from messaging.tests.wsclient import connected
from pubsub_site.redis_client import get_async_redis, get_redis

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("async_cleanup")]

persist = database_sync_to_async(messages_persist_server)


def _rows(room):
    return list(Message.objects.filter(room=room).order_by("seq").values_list("seq", "body"))


async def _buffered_bodies(room) -> list[str]:
    return [r["body"] for r in await buffer.arecords_between(room_id=room.pk, after=0, upto=1000)]


async def test_persisted_records_leave_the_buffer_after_the_hot_window_and_a_replay_reads_them_from_postgresql(
    alice, public_room, settings
):
    settings.MESSAGE_HOT_SECONDS = 1
    ws = await connected(alice)
    await ws.subscribe(public_room.slug)
    for i in range(3):
        await ws.post(public_room.slug, f"old {i}")
    await persist(server=0)
    assert await _buffered_bodies(public_room) == ["old 0", "old 1", "old 2"]
    await asyncio.sleep(1.2)
    await ws.post(public_room.slug, "new")
    await persist(server=0)

    assert await _buffered_bodies(public_room) == ["new"]
    again = await connected(alice)
    subscribed = await again.subscribe(public_room.slug, since=0)
    assert subscribed["recovered"] is True
    assert [m["body"] for m in await again.messages(4)] == ["old 0", "old 1", "old 2", "new"]
    await ws.close()
    await again.close()


async def test_a_quiet_rooms_buffer_expires_once_persisted_and_its_next_message_takes_the_expiry_off(
    alice, public_room, settings
):
    settings.MESSAGE_HOT_SECONDS = 60
    ws = await connected(alice)
    await ws.subscribe(public_room.slug)
    key, redis = RoomKeys(public_room.pk).buf, get_async_redis(public_room.pk)
    await ws.post(public_room.slug, "first")
    assert await redis.ttl(key) == -1  # nothing persisted: no expiry
    await persist(server=0)
    assert 0 < await redis.ttl(key) <= 60

    await ws.post(public_room.slug, "second")

    assert await redis.ttl(key) == -1
    assert await _buffered_bodies(public_room) == ["first", "second"]
    await ws.close()


async def test_a_buffer_that_expired_is_replayed_from_postgresql_and_the_room_goes_on(alice, public_room, settings):
    settings.MESSAGE_HOT_SECONDS = 1
    ws = await connected(alice)
    await ws.subscribe(public_room.slug)
    await ws.post(public_room.slug, "before the quiet")
    await persist(server=0)
    await asyncio.sleep(1.2)
    assert await get_async_redis(public_room.pk).exists(RoomKeys(public_room.pk).buf) == 0

    assert (await ws.post(public_room.slug, "after it"))["seq"] == 2
    again = await connected(alice)
    await again.subscribe(public_room.slug, since=0)
    assert [m["body"] for m in await again.messages(2)] == ["before the quiet", "after it"]
    await ws.close()
    await again.close()


async def test_records_postgresql_does_not_have_stay_in_redis_however_old(alice, public_room, settings):
    settings.MESSAGE_HOT_SECONDS = 1
    ws = await connected(alice)
    await ws.subscribe(public_room.slug)
    await ws.post(public_room.slug, "persisted")
    await ws.post(public_room.slug, "waiting")
    await asyncio.sleep(1.2)

    # The job wrote the first only (a batch boundary) and marks it.
    waiting = await database_sync_to_async(watermarks.mark_persisted)(room_id=public_room.pk, upto=1)

    assert waiting == 1
    assert await _buffered_bodies(public_room) == ["waiting"]
    assert await get_async_redis(public_room.pk).ttl(RoomKeys(public_room.pk).buf) == -1
    await ws.close()


def test_the_worker_keeps_no_result_of_a_finished_job(alice, public_room, settings):
    async_to_sync(services.message_send)(
        room_id=public_room.pk, room_slug=public_room.slug, author_id=alice.pk, author_username=alice.username,
        body="persisted by the worker", client_id=str(uuid.uuid4()),
    )  # fmt: skip
    queue = django_rq.get_queue("default")
    job_ids = queue.job_ids
    assert job_ids  # the send queued its persistence job
    redis = get_redis(url=settings.REDIS_URL)

    make_worker(["default"]).work(burst=True)

    assert _rows(public_room) == [(1, "persisted by the worker")]
    assert list(redis.scan_iter("rq:results:*")) == []
    assert not any(redis.exists(f"rq:job:{job_id}") for job_id in job_ids)
    assert queue.finished_job_registry.count == 0


def test_under_rqs_own_default_the_same_worker_would_keep_the_result(settings):
    """What the test above guards against: with rq's default (500 s) a finished job leaves its result."""
    settings.RQ_RESULT_TTL = 500
    queue = django_rq.get_queue("default")
    job = queue.enqueue("messaging.jobs.persist_messages", 0)

    make_worker(["default"]).work(burst=True)

    assert get_redis(url=settings.REDIS_URL).exists(f"rq:results:{job.id}") == 1
