"""The wire form of messages: the one place a message becomes what clients see.

The consumer, the history endpoint, the room page and the jobs all go through
``message_wire``; the JS client builds its markup from the same fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import orjson

if TYPE_CHECKING:
    from messaging.models import Message


@dataclass(frozen=True)
class MessageState:
    """What may change after a message is sent."""

    claps: int = 0
    edited: bool = False
    deleted: bool = False
    body: str | None = None  # the edited body, when edited
    rev: int | None = None  # the revision of the last change


FRESH = MessageState()


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def record_from_message(message: Message) -> dict:
    """The stored record of a PostgreSQL row, as the Redis buffer holds it."""
    return {
        "seq": message.seq,
        "rev": message.rev,
        "author": {"id": message.author_id, "username": message.author.username},
        "body": message.body,
        "client_id": str(message.client_id),
        "sent_at": message.sent_at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }


def message_wire(record: dict, *, room: str, state: MessageState = FRESH) -> dict:
    """The ``message`` frame for a record and its current state."""
    body = state.body if state.body is not None else record["body"]
    return {
        "type": "message",
        "room": room,
        "seq": record["seq"],
        "rev": state.rev if state.rev is not None else record["rev"],
        "author": record["author"],
        "body": "" if state.deleted else body,
        "client_id": record["client_id"],
        "sent_at": record["sent_at"],
        "claps": state.claps,
        "edited": state.edited,
        "deleted": state.deleted,
    }


def encode(frame: dict) -> str:
    return orjson.dumps(frame).decode()
