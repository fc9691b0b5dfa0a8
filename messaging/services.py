"""Writes of messages. The send path touches Redis only; PostgreSQL comes later, in a job."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import django_rq
import orjson
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import transaction

from messaging import buffer
from messaging.events import room_group
from messaging.models import Message
from messaging.selectors import room_counters
from messaging.wire import encode, message_wire, now_iso
from pubsub_site.redis_client import all_room_redis_urls, room_redis_url

logger = logging.getLogger(__name__)

PERSIST_BATCH = 500


@dataclass(frozen=True)
class SendResult:
    seq: int
    created: bool


async def message_send(
    *, room_id: int, room_slug: str, author_id: int, author_username: str, body: str, client_id: str
) -> SendResult:
    """Store a message durably in Redis, broadcast it, and schedule its persistence.

    The caller has checked the rights and validated ``body`` and ``client_id``.
    Raises redis.RedisError when Redis fails; nothing is stored then.
    """
    record = {
        "author": {"id": author_id, "username": author_username},
        "body": body,
        "client_id": client_id,
        "sent_at": now_iso(),
    }
    result = await buffer.append(room_id=room_id, record=record)
    if not result.initialised:
        # A fresh (or wiped) Redis: take the counters from PostgreSQL once.
        await database_sync_to_async(room_counters)(room_id=room_id)
        result = await buffer.append(room_id=room_id, record=record)
    if not result.created:
        return SendResult(seq=result.seq, created=False)

    frame = encode(message_wire(orjson.loads(result.record), room=room_slug))
    await get_channel_layer().group_send(
        room_group(room_id), {"type": "room.message", "room_id": room_id, "seq": result.seq, "frame": frame}
    )
    if result.schedule_persist:
        await asyncio.to_thread(persist_enqueue, server=all_room_redis_urls().index(room_redis_url(room_id)))
    return SendResult(seq=result.seq, created=True)


def persist_enqueue(*, server: int) -> None:
    from messaging.jobs import persist_messages

    django_rq.get_queue("default").enqueue(persist_messages, server)


def messages_persist_room(*, room_id: int) -> int:
    """Write the room's buffered messages to PostgreSQL; returns how many records were processed.

    Idempotent: the unique (room, seq) constraint turns a second write of a record
    into a no-op, and the buffer is trimmed only after the rows are committed.
    """
    processed = 0
    while True:
        upto = buffer.persisted_upto(room_id=room_id)
        records = buffer.unpersisted_records(room_id=room_id, after=upto, limit=PERSIST_BATCH)
        if not records:
            buffer.mark_persisted(room_id=room_id, upto=upto)
            return processed
        rows = [
            Message(
                room_id=room_id,
                seq=r["seq"],
                rev=r["rev"],
                author_id=r["author"]["id"],
                body=r["body"],
                client_id=r["client_id"],
                sent_at=r["sent_at"],
            )
            for r in records
        ]
        with transaction.atomic():
            Message.objects.bulk_create(rows, ignore_conflicts=True)
        processed += len(rows)
        left = buffer.mark_persisted(room_id=room_id, upto=records[-1]["seq"])
        if left == 0:
            return processed


def messages_persist_server(*, server: int) -> int:
    """Persist every dirty room on one Redis server until none is left."""
    url = all_room_redis_urls()[server]
    written = 0
    while True:
        room_ids = buffer.dirty_room_ids(url=url)
        for room_id in room_ids:
            written += messages_persist_room(room_id=room_id)
        if buffer.release_schedule(url=url):
            return written
