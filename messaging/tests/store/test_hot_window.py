"""Redis's memory follows the send rate, not the history: a room's replay buffer keeps a
persisted message MESSAGE_HOT_SECONDS after it was sent at most (older replays read PostgreSQL),
a quiet room's buffer expires once PostgreSQL has all of it, a UUIDv7 send's dedupe key leaves
MESSAGE_HOT_SECONDS after its message is persisted (a later retry is answered from PostgreSQL),
and the worker keeps no result of a finished job. What PostgreSQL does not have yet stays in
Redis however old.

Runs on both databases (the SQLite leg takes every socket test)."""

from __future__ import annotations

import asyncio
import time
import uuid

import django_rq
import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from django.db import DatabaseError

from messaging import metrics, services
from messaging.frames import client_id_time, uuid7
from messaging.management.commands.jobs_worker import make_worker
from messaging.models import Message
from messaging.store import buffer, watermarks
from messaging.store.keys import RoomKeys
from messaging.store.persistence import messages_persist_server
from messaging.tests.wsclient import connected
from pubsub_site.redis.client import get_async_redis, get_redis

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("async_cleanup")]

persist = database_sync_to_async(messages_persist_server)


def _rows(room):
    return list(Message.objects.filter(room=room).order_by("seq").values_list("seq", "body"))


rows = database_sync_to_async(_rows)


@pytest.fixture
def asked(monkeypatch):
    """The sends that asked PostgreSQL whether they are a stored retry."""
    calls = []
    real = services.apersisted_send_seq

    async def counting(**kwargs):
        calls.append(kwargs["client_id"])
        return await real(**kwargs)

    monkeypatch.setattr(services, "apersisted_send_seq", counting)
    monkeypatch.setattr(services, "_retry_checks_resume_at", 0.0)
    return calls


def test_a_uuid7_says_when_it_was_made_and_another_uuid_does_not():
    assert abs(client_id_time(uuid7(1_800_000_000.25)) - 1_800_000_000.25) < 0.001
    assert uuid.UUID(uuid7()).version == 7
    assert client_id_time(str(uuid.uuid4())) is None


async def test_a_late_retry_after_its_dedupe_key_left_redis_is_answered_from_postgresql_and_stores_nothing(
    alice, bob, public_room, settings, asked
):
    settings.MESSAGE_HOT_SECONDS = 1
    sender, watcher = await connected(bob), await connected(alice)
    await sender.subscribe(public_room.slug)
    await watcher.subscribe(public_room.slug)
    client_id = uuid7()
    first = await sender.post(public_room.slug, "once", client_id)
    await watcher.recv_type("message")
    key, redis = RoomKeys(public_room.pk).client_id(client_id, bob.pk), get_async_redis(public_room.pk)
    assert await redis.ttl(key) > 3600  # kept until persisted
    await persist(server=0)
    assert 0 < await redis.ttl(key) <= 1
    await asyncio.sleep(1.2)
    assert await redis.exists(key) == 0
    answered = metrics.RETRIES_ANSWERED_BY_DATABASE._value.get()

    again = await sender.post(public_room.slug, "once", client_id)

    assert again["seq"] == first["seq"] == 1
    assert asked == [client_id]
    assert metrics.RETRIES_ANSWERED_BY_DATABASE._value.get() == answered + 1
    assert await watcher.nothing_more()  # nothing broadcast
    assert (await sender.post(public_room.slug, "next", uuid7()))["seq"] == 2  # no seq was taken
    await persist(server=0)
    assert await rows(public_room) == [(1, "once"), (2, "next")]
    await sender.close()
    await watcher.close()


async def test_fresh_uuid7_sends_and_other_uuids_are_answered_by_redis_alone(alice, public_room, settings, asked):
    settings.MESSAGE_HOT_SECONDS = 1
    ws = await connected(alice)
    await ws.subscribe(public_room.slug)
    v7, v4 = uuid7(), str(uuid.uuid4())
    assert (await ws.post(public_room.slug, "v7", v7))["seq"] == 1
    assert (await ws.post(public_room.slug, "v4", v4))["seq"] == 2
    await persist(server=0)
    keys, redis = RoomKeys(public_room.pk), get_async_redis(public_room.pk)

    assert await redis.ttl(keys.client_id(v7, alice.pk)) <= 1
    assert await redis.ttl(keys.client_id(v4, alice.pk)) > 3600  # its age is unknown: MESSAGE_DEDUP_TTL
    assert (await ws.post(public_room.slug, "v4", v4))["seq"] == 2
    assert asked == []
    await ws.close()


async def test_another_authors_late_uuid7_with_the_same_client_id_is_a_new_message_of_theirs(
    alice, bob, public_room, asked
):
    client_id = uuid7(time.time() - 3600)  # made an hour ago: asked of PostgreSQL
    bob_ws, alice_ws = await connected(bob), await connected(alice)
    await bob_ws.subscribe(public_room.slug)
    await alice_ws.subscribe(public_room.slug)
    assert (await bob_ws.post(public_room.slug, "bob's", client_id))["seq"] == 1
    await persist(server=0)

    assert (await alice_ws.post(public_room.slug, "alice's", client_id))["seq"] == 2

    assert asked == [client_id, client_id]
    await persist(server=0)
    assert await rows(public_room) == [(1, "bob's"), (2, "alice's")]
    await bob_ws.close()
    await alice_ws.close()


async def test_a_late_retry_goes_on_with_redis_alone_while_postgresql_cannot_answer(alice, public_room, monkeypatch):
    calls = []

    async def down(**kwargs):
        calls.append(kwargs)
        raise DatabaseError("connection refused")

    monkeypatch.setattr(services, "apersisted_send_seq", down)
    monkeypatch.setattr(services, "_retry_checks_resume_at", 0.0)
    skipped = metrics.RETRY_CHECKS.labels(outcome="skipped")._value.get()
    ws = await connected(alice)
    await ws.subscribe(public_room.slug)
    client_id = uuid7(time.time() - 3600)

    assert (await ws.post(public_room.slug, "still stored", client_id))["seq"] == 1
    assert (await ws.post(public_room.slug, "still stored", client_id))["seq"] == 1  # Redis's dedupe

    assert len(calls) == 1  # after a failure the process's sends stop asking for a while
    assert metrics.RETRY_CHECKS.labels(outcome="skipped")._value.get() == skipped + 2
    monkeypatch.setattr(services, "_retry_checks_resume_at", 0.0)  # the pause is over
    assert (await ws.post(public_room.slug, "asks again", uuid7(time.time() - 3600)))["seq"] == 2
    assert len(calls) == 2
    await ws.close()


@pytest.mark.postgresql_only(reason="the reads made together run on PostgreSQL; SQLite reads in Django's thread")
async def test_the_late_sends_that_wait_together_ask_postgresql_in_one_query(alice, bob, public_room, async_db_queries):
    an_hour_ago = time.time() - 3600
    old_id = uuid7(an_hour_ago)
    ws = await connected(alice)
    await ws.subscribe(public_room.slug)
    await ws.post(public_room.slug, "old", old_id)
    await persist(server=0)
    await get_async_redis(public_room.pk).delete(RoomKeys(public_room.pk).client_id(old_id, alice.pk))
    async_db_queries.clear()

    def send(author, body, client_id):
        return services.message_send(
            room_id=public_room.pk, room_slug=public_room.slug, author_id=author.pk,
            author_username=author.username, body=body, client_id=client_id,
        )  # fmt: skip

    sent = await asyncio.gather(
        send(alice, "old", old_id), *(send(bob, f"new {i}", uuid7(an_hour_ago)) for i in range(4))
    )

    assert len(async_db_queries) == 1
    assert sent[0].seq == 1 and sent[0].created is False
    assert sorted(s.seq for s in sent[1:]) == [2, 3, 4, 5] and all(s.created for s in sent[1:])
    await ws.close()


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
    persisted_id, waiting_id = uuid7(), uuid7()
    await ws.post(public_room.slug, "persisted", persisted_id)
    await ws.post(public_room.slug, "waiting", waiting_id)
    await asyncio.sleep(1.2)

    # The job wrote the first only (a batch boundary) and marks it.
    first = (await buffer.arecords_between(room_id=public_room.pk, after=0, upto=1))[0]
    waiting = await database_sync_to_async(watermarks.mark_persisted)(room_id=public_room.pk, upto=1, records=[first])

    assert waiting == 1
    assert await _buffered_bodies(public_room) == ["waiting"]
    keys, redis = RoomKeys(public_room.pk), get_async_redis(public_room.pk)
    assert await redis.ttl(keys.buf) == -1
    assert await redis.ttl(keys.client_id(waiting_id, alice.pk)) > 3600
    assert await redis.ttl(keys.client_id(persisted_id, alice.pk)) <= 1
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
