"""The wire form of messages: the one place a message becomes what clients see.

The consumer, the history endpoint, the room page and the jobs all go through
``message_wire``; the JS client builds its markup from the same fields.
"""

from __future__ import annotations

import re
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
    # The revision of the last change of each kind, for recovery by ``rev``.
    edit_rev: int | None = None
    delete_rev: int | None = None
    clap_rev: int | None = None


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


def user_wire(user_id: int, username: str) -> dict:
    return {"id": user_id, "username": username}


def message_updated_wire(*, room: str, seq: int, body: str, rev: int) -> dict:
    return {"type": "message_updated", "room": room, "seq": seq, "body": body, "rev": rev}


def message_deleted_wire(*, room: str, seq: int, rev: int) -> dict:
    return {"type": "message_deleted", "room": room, "seq": seq, "rev": rev}


def claps_wire(*, room: str, seq: int, total: int, rev: int, user: dict | None, user_total: int | None) -> dict:
    return {
        "type": "claps",
        "room": room,
        "seq": seq,
        "total": total,
        "rev": rev,
        "user": user,
        "user_total": user_total,
    }


def changes_wire(record: dict, state: MessageState, *, room: str, after_rev: int) -> list[dict]:
    """The frames that bring a client that knew the room at ``after_rev`` up to date on one message."""

    def newer(kind_rev: int | None) -> bool:
        return kind_rev is None or kind_rev > after_rev

    seq, rev = record["seq"], state.rev if state.rev is not None else record["rev"]
    if state.deleted:
        return [message_deleted_wire(room=room, seq=seq, rev=rev)] if newer(state.delete_rev) else []
    frames = []
    if state.edited and newer(state.edit_rev):
        body = state.body if state.body is not None else record["body"]
        frames.append(message_updated_wire(room=room, seq=seq, body=body, rev=rev))
    if state.claps and newer(state.clap_rev):
        frames.append(claps_wire(room=room, seq=seq, total=state.claps, rev=rev, user=None, user_total=None))
    return frames


_LINK = re.compile(r"\bhttps?://[^\s<>\"']+", re.IGNORECASE)
_TRAILING = ".,;:!?)]}'\""


def body_parts(body: str) -> list[tuple[str, str]]:
    """Split text into plain parts and http(s) links; nothing else becomes markup.

    The JS client (static/js/room.js, bodyParts) follows the same rule.
    """
    parts: list[tuple[str, str]] = []
    position = 0
    for match in _LINK.finditer(body):
        url = match.group(0).rstrip(_TRAILING)
        start, end = match.start(), match.start() + len(url)
        if start > position:
            parts.append(("text", body[position:start]))
        parts.append(("link", url))
        position = end
    if position < len(body):
        parts.append(("text", body[position:]))
    return parts
