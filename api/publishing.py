"""Publishing over HTTP: a request's message through the socket's own path (messaging.posting).

The room's access is read as a socket's subscribe reads it (rooms.services.aroom_access_for_subscriber:
one query; a public room is joined on the first message), then ``message_post`` checks and
stores it. An ``idempotency_key`` becomes the message's ``client_id``: a UUID derived from
(user, key), so that a retry of the same key by the same user in the same room is answered
with the message first stored (the append script's per-(room, author, client_id) dedupe,
kept ``MESSAGE_DEDUP_TTL`` seconds), never a second one.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

import orjson
from channels.db import database_sync_to_async

from api.errors import ApiError
from api.tokens import Grant
from messaging import frames
from messaging.frames import ClientError
from messaging.posting import message_post
from messaging.selectors import message_get
from messaging.services import ActionRefused
from protocol.wire import message_wire
from rooms.services import RoomAccess, RoomBanned, RoomNotFound, aroom_access_for_subscriber

IDEMPOTENCY_NAMESPACE = uuid.UUID("5b0f7d3e-2a4f-4c53-9a49-6a0a4fb1f1d2")


def client_id_for(*, user_id: int, idempotency_key: str | None) -> str:
    if idempotency_key is None:
        return str(uuid.uuid4())
    return str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{user_id}:{idempotency_key}"))


SLUG = re.compile(r"[-a-zA-Z0-9_]{1,100}")


def check_slug(slug: str) -> None:
    """A room's address is a slug (rooms.models.Room.slug): anything else names no room, and
    is answered so before it reaches a query (PostgreSQL refuses a NUL in text)."""
    if not SLUG.fullmatch(slug):
        raise ApiError("not_found", "No such room.")


async def room_access(*, slug: str, user_id: int, username: str) -> RoomAccess:
    check_slug(slug)
    try:
        return await aroom_access_for_subscriber(slug=slug, user_id=user_id, username=username)
    except RoomNotFound:
        raise ApiError("not_found", "No such room.") from None
    except RoomBanned:
        raise ApiError("forbidden", "You are banned from this room.") from None


@dataclass(frozen=True)
class Published:
    message: dict
    created: bool


async def publish(
    *,
    grant: Grant,
    slug: str,
    body: object,
    reply_to: int | None = None,
    idempotency_key: str | None = None,
    access: RoomAccess | None = None,
) -> Published:
    """Post ``body`` to room ``slug`` as the grant's user; raises ApiError."""
    if not grant.allows_publish(slug):
        raise ApiError("forbidden", "This token may not publish to this room.")
    try:
        text = frames.body({"body": body})
        access = access or await room_access(slug=slug, user_id=grant.user_id, username=grant.username)
        result = await message_post(
            access=access,
            author_id=grant.user_id,
            author_username=grant.username,
            body=text,
            client_id=client_id_for(user_id=grant.user_id, idempotency_key=idempotency_key),
            reply_to=reply_to,
            author_bot=grant.bot,
        )
    except (ActionRefused, ClientError) as refused:
        raise ApiError.of(refused) from None
    if result.created:
        return Published(message_wire(orjson.loads(result.record), room=access.slug), created=True)
    found = await database_sync_to_async(message_get)(room_id=access.room_id, seq=result.seq)
    if found is None:  # stored moments ago: only a wiped Redis and database lose it
        raise ApiError("unavailable", "The message was stored but cannot be read back; retry.")
    record, state = found
    return Published(message_wire(record, room=access.slug, state=state), created=False)
