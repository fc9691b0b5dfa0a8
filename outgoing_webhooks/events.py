"""The events an outgoing webhook delivers, recorded where they become durable.

- ``message``: by the persistence job, after each batch of a room's messages
  (``messaging.store.persistence.AFTER_BATCH``): the send path does no extra work;
- ``edit``, ``delete``, ``clap``: by the same job, as it writes a batch of changes
  (``AFTER_CHANGES``), in rev order. Changes the job finds together coalesce as the socket's
  recovery does (``protocol.wire.changes_wire``): two edits of one message between two rounds
  are one ``edit`` with the latest body, claps carry the message's total;
- ``member_joined``: on the commit of the memberships (``rooms.joins.MEMBERS_JOINED``, one call a batch;
  from the first subscribes' batches on the event loop, ``amembers_joined``: one read there of
  whether any of the rooms has an endpoint for it, and Django's database thread only then).

Each event becomes one ``WebhookDelivery`` per active endpoint of the room that asked for its
kind, with an event id built from the room, seq and rev, so that a job redone after a crash
records nothing twice (the unique endpoint/event constraint). ``data`` is the event's frame as
sockets get it (``protocol.wire``).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterable

import orjson
from channels.db import database_sync_to_async
from django.db import connection, transaction

from messaging.models import Message
from messaging.store import changes
from messaging.store.changes import RedisState
from outgoing_webhooks import services
from outgoing_webhooks.models import WebhookDelivery, WebhookEndpoint
from protocol.wire import changes_wire, member_updated_frame, message_wire, now_iso, record_from_message, user_wire
from pubsub_site import async_db
from rooms.joins import NewMember
from rooms.models import Room

Event = WebhookEndpoint.Event

# The change frames' types, as the webhook events name them.
_CHANGE_EVENTS = {"message_updated": Event.EDIT, "message_deleted": Event.DELETE, "claps": Event.CLAP}


def _active_endpoints(room_id: int) -> list[WebhookEndpoint]:
    return list(WebhookEndpoint.objects.filter(room_id=room_id, active=True))


def _record(*, room_id: int, room_slug: str, endpoints: list[WebhookEndpoint], events: Iterable[tuple]) -> None:
    """Store a delivery of each (type, event id, frame) for each endpoint asking for its type,
    and queue the endpoints' delivery jobs once that is committed."""
    created_at = now_iso()
    rows, touched = [], set()
    for kind, event_id, frame in events:
        payload = orjson.dumps(
            {"id": event_id, "type": kind, "room": room_slug, "created_at": created_at, "data": frame}
        ).decode()
        for endpoint in endpoints:
            if kind in endpoint.events:
                rows.append(WebhookDelivery(endpoint=endpoint, event_id=event_id, type=kind, payload=payload))
                touched.add(endpoint.pk)
    if not rows:
        return
    with transaction.atomic():
        WebhookDelivery.objects.bulk_create(rows, ignore_conflicts=True)
        for endpoint_id in sorted(touched):
            transaction.on_commit(lambda endpoint_id=endpoint_id: services.delivery_enqueue(endpoint_id=endpoint_id))


def messages_persisted(*, room_id: int, records: list[dict]) -> None:
    """A batch of the room's messages is in the database: a ``message`` event each, in seq order."""
    endpoints = _active_endpoints(room_id)
    if not any(Event.MESSAGE in e.events for e in endpoints):
        return
    slug = Room.objects.filter(pk=room_id).values_list("slug", flat=True).first()
    if slug is None:
        return
    _record(
        room_id=room_id,
        room_slug=slug,
        endpoints=endpoints,
        events=((Event.MESSAGE.value, f"message:{room_id}:{r['seq']}", message_wire(r, room=slug)) for r in records),
    )


def changes_persisted(*, room_id: int, states: dict[int, RedisState], after_rev: int) -> None:
    """A round of the room's changes is in the database: an event for each change after
    ``after_rev`` of the messages in ``states`` (seq -> their Redis state), in rev order."""
    seqs = list(states)
    endpoints = _active_endpoints(room_id)
    wanted = {kind for e in endpoints for kind in e.events}
    if not wanted & {Event.EDIT, Event.DELETE, Event.CLAP}:
        return
    slug = Room.objects.filter(pk=room_id).values_list("slug", flat=True).first()
    if slug is None:
        return
    found = []
    for message in Message.objects.filter(room_id=room_id, seq__in=seqs).select_related("author"):
        record = record_from_message(message)
        state = changes.merge_state(record, states.get(message.seq))
        kind_revs = {
            "message_updated": state.edit_rev,
            "message_deleted": state.delete_rev,
            "claps": state.clap_rev,
        }
        for frame in changes_wire(record, state, room=slug, after_rev=after_rev):
            kind, rev = _CHANGE_EVENTS[frame["type"]], kind_revs[frame["type"]] or frame["rev"]
            found.append((rev, kind.value, f"{kind.value}:{room_id}:{message.seq}:{rev}", frame))
    found.sort(key=lambda event: event[0])
    _record(room_id=room_id, room_slug=slug, endpoints=endpoints, events=(event[1:] for event in found))


def members_joined(members: list[NewMember]) -> None:
    """People joined rooms (run on their memberships' commit, one call a batch of first
    visits): one query for the rooms' endpoints, then each room's events in one go."""
    by_room: dict[int, list[NewMember]] = {}
    for member in members:
        by_room.setdefault(member.room_id, []).append(member)
    endpoints_of: dict[int, list[WebhookEndpoint]] = {}
    for endpoint in WebhookEndpoint.objects.filter(room_id__in=by_room, active=True):
        if Event.MEMBER_JOINED in endpoint.events:
            endpoints_of.setdefault(endpoint.room_id, []).append(endpoint)
    for room_id, endpoints in endpoints_of.items():
        room_slug = by_room[room_id][0].room_slug
        _record(
            room_id=room_id,
            room_slug=room_slug,
            endpoints=endpoints,
            events=[
                (
                    Event.MEMBER_JOINED.value,
                    f"member_joined:{room_id}:{m.user_id}:{uuid.uuid4().hex}",
                    member_updated_frame(room=room_slug, user=user_wire(m.user_id, m.username), role=m.role),
                )
                for m in by_room[room_id]
            ],
        )


@functools.cache
def _member_joined_wanted_sql() -> str:
    """Whether any of the rooms (an array of ids) has an active endpoint for ``member_joined``
    (PostgreSQL: ``events`` is jsonb)."""
    meta = WebhookEndpoint._meta
    col = {f.name: connection.ops.quote_name(f.column) for f in meta.concrete_fields}
    return (
        f"SELECT 1 FROM {connection.ops.quote_name(meta.db_table)} "  # noqa: S608 (the model's names)
        f"WHERE {col['room']} = ANY(%s::bigint[]) AND {col['active']} AND {col['events']} @> %s::jsonb LIMIT 1"
    )


async def amembers_joined(members: list[NewMember]) -> None:
    """``members_joined`` from the event loop (the first subscribes' joins, rooms.joins): on
    PostgreSQL whether any of the rooms wants the event is read there, and the database thread
    records the events only when one does; elsewhere ``members_joined`` in that thread."""
    if async_db.native():
        room_ids = sorted({member.room_id for member in members})
        wanted = orjson.dumps([Event.MEMBER_JOINED.value]).decode()
        if not await async_db.fetchall(_member_joined_wanted_sql(), [room_ids, wanted]):
            return
    await database_sync_to_async(members_joined)(members)


members_joined.aio = amembers_joined  # rooms.joins runs it from the event loop
