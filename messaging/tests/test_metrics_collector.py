"""The scrape-time collector reads the persistence backlog and lag and the job queue from the
real Redis, and survives a Redis that does not answer."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import django_rq
import pytest
from asgiref.sync import async_to_sync
from rq import SimpleWorker

from messaging.metrics_collector import RedisStateCollector, persistence_backlog
from messaging.store import buffer
from messaging.store.persistence import messages_persist_room
from pubsub_site.live_status import Readings
from rooms.services import room_create

pytestmark = pytest.mark.django_db(transaction=True)


def collect() -> Readings:
    return Readings(RedisStateCollector().collect())


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def append(room_id: int, author, *, sent_at: datetime) -> int:
    record = {
        "author": {"id": author.pk, "username": author.username},
        "body": "hello",
        "client_id": str(uuid.uuid4()),
        "sent_at": iso(sent_at),
    }
    result = async_to_sync(buffer.append)(room_id=room_id, record=record)
    assert result.created
    return result.seq


def noop() -> None:
    return None


def fail() -> None:
    raise RuntimeError("this job fails on purpose")


def test_backlog_and_lag_are_read_from_the_buffers_past_each_watermark(alice, settings):
    now = datetime.now(UTC)
    lobby = room_create(creator=alice, name="Lobby")
    attic = room_create(creator=alice, name="Attic")
    for room in (lobby, attic):
        buffer.init_counters(room_id=room.pk, seq=0, rev=0)
    append(lobby.pk, alice, sent_at=now - timedelta(seconds=30))  # the oldest
    append(lobby.pk, alice, sent_at=now - timedelta(seconds=2))
    append(attic.pk, alice, sent_at=now - timedelta(seconds=12))

    rooms, backlog, lag = persistence_backlog(settings.ROOM_REDIS_URLS[0])
    assert (rooms, backlog) == (2, 3)
    assert 30 <= lag < 40

    readings = collect()
    assert readings.total("pubsub_persist_backlog_messages") == 3
    assert readings.total("pubsub_persist_dirty_rooms") == 2
    assert 30 <= readings.total("pubsub_persist_lag_seconds") < 40
    assert readings.by("pubsub_collector_up", "source") == [
        ("jobs/default", 1.0),
        ("jobs/previews", 1.0),
        ("jobs/webhooks", 1.0),
        ("rooms/0", 1.0),
    ]

    # PostgreSQL gets the oldest room's messages: the lag is now the other room's.
    messages_persist_room(room_id=lobby.pk)
    rooms, backlog, lag = persistence_backlog(settings.ROOM_REDIS_URLS[0])
    assert backlog == 1
    assert 12 <= lag < 22
    messages_persist_room(room_id=attic.pk)
    rooms, backlog, lag = persistence_backlog(settings.ROOM_REDIS_URLS[0])
    assert (backlog, lag) == (0, 0.0)  # rooms stay dirty until the job clears them, with nothing behind


def test_nothing_waits_nothing_lags():
    readings = collect()
    assert readings.total("pubsub_persist_backlog_messages") == 0
    assert readings.total("pubsub_persist_lag_seconds") == 0
    assert readings.total("pubsub_persist_dirty_rooms") == 0


def test_the_job_queue_its_failures_and_its_workers():
    queue = django_rq.get_queue("default")
    queue.enqueue(fail)
    readings = collect()
    assert readings.by("pubsub_jobs_queued", "queue") == [("default", 1.0), ("previews", 0.0), ("webhooks", 0.0)]
    assert readings.total("pubsub_jobs_failed") == 0

    SimpleWorker([queue], connection=queue.connection).work(burst=True)  # runs it: it fails
    queue.enqueue(noop)
    queue.enqueue(noop)
    readings = collect()
    assert readings.total("pubsub_jobs_queued") == 2
    assert readings.total("pubsub_jobs_failed") == 1
    assert readings.total("pubsub_jobs_running") == 0
    assert readings.total("pubsub_rq_workers") == 0  # the burst worker has left


def test_a_room_server_that_does_not_answer_is_reported_not_raised(settings):
    settings.ROOM_REDIS_URLS = [settings.ROOM_REDIS_URLS[0], "redis://127.0.0.1:1/0"]
    readings = collect()
    assert dict(readings.by("pubsub_collector_up", "source")) == {
        "rooms/0": 1.0,
        "rooms/1": 0.0,
        "jobs/default": 1.0,
        "jobs/previews": 1.0,
        "jobs/webhooks": 1.0,
    }
    assert [server for server, _ in readings.by("pubsub_persist_backlog_messages", "server")] == ["0"]
