"""The frames the server sends to clients: the one place each is built (docs/protocol.md).

The wire form of messages first: the consumer, the history endpoint, the room page and
the jobs all go through ``message_wire``; the JS client builds its markup from the same
fields. Then every other frame, one function each: this module is the catalogue of client
frames, as ``protocol.events`` is that of layer events; no other module writes a frame's
``"type"`` (tests/architecture/test_catalogues.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import orjson
from django.conf import settings
from django.urls import reverse

if TYPE_CHECKING:
    from attachments.models import Attachment
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
    # The message's link card (``message_preview_wire``), None: none; and its change's rev.
    preview: dict | None = None
    preview_rev: int | None = None
    # Emoji reactions: ((emoji, ((user id, username), …)), …) in the order they were put on.
    reactions: tuple = ()
    reaction_rev: int | None = None
    # The pin: {"pinned", "by": {id, username}, "at"} (None: never pinned, as far as known).
    pin: dict | None = None
    pin_rev: int | None = None


FRESH = MessageState()


def iso_time(moment: datetime) -> str:
    """A moment as the wire and the stored records write it: UTC, milliseconds, ``Z``. One
    format, so that two of them compare as strings (messaging.store.watermarks does)."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now_iso() -> str:
    return iso_time(datetime.now(UTC))


def record_from_message(message: Message) -> dict:
    """The stored record of a PostgreSQL row, as the Redis buffer holds it."""
    record = {
        "seq": message.seq,
        "rev": message.rev,
        "author": {"id": message.author_id, "username": message.author.username},
        "body": message.body,
        "client_id": str(message.client_id),
        "sent_at": iso_time(message.sent_at),
    }
    if message.reply_to_seq is not None:
        # Its quote (``reply``) is read with the original: messaging.selectors.with_reply_quotes.
        record["reply_to"] = message.reply_to_seq
    if message.thread_seq is not None:
        record["thread"] = message.thread_seq
        if message.also_in_room:
            record["also_in_room"] = True
    # The caller prefetches them (messaging.selectors): a message without any costs nothing.
    attachments = [attachment_wire(a) for a in message.attachments.all() if a.deleted_at is None]
    if attachments:
        record["attachments"] = attachments
    return record


def attachment_wire(attachment: Attachment) -> dict:
    """An attachment as a ``message`` frame lists it (docs/protocol.md "Attachments"): its
    URLs are the app's, which check the reader's rights each time (attachments.views)."""
    wire = {
        "id": str(attachment.id),
        "name": attachment.name,
        "size": attachment.size,
        "type": attachment.content_type,
        "url": reverse("attachment-file", args=[attachment.id, attachment.name]),
    }
    if attachment.width is not None:
        wire["width"], wire["height"] = attachment.width, attachment.height
    if attachment.thumb_key:
        wire["thumb_url"] = reverse("attachment-thumb", args=[attachment.id])
    return wire


def message_wire(record: dict, *, room: str, state: MessageState = FRESH) -> dict:
    """The ``message`` frame for a record and its current state."""
    body = state.body if state.body is not None else record["body"]
    frame = {
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
    if state.reactions and not state.deleted:
        # Present only on a message with reactions (docs/protocol.md): a new one has none.
        frame["reactions"] = reactions_summary_wire(state.reactions)
    if state.pin and state.pin["pinned"] and not state.deleted:
        frame["pinned"] = {"by": state.pin["by"], "at": state.pin["at"]}
    if record.get("attachments") and not state.deleted:
        # Present only on a message with files (docs/protocol.md "Attachments").
        frame["attachments"] = record["attachments"]
    reply_to = record.get("reply_to")
    if reply_to:
        # Present only on a reply (an extension of the contract: docs/protocol.md).
        frame["reply_to"] = reply_to
        frame["reply"] = record.get("reply") or {"seq": reply_to, "author": None, "excerpt": "", "deleted": False}
    if state.preview and not state.deleted:
        frame["preview"] = state.preview  # only with a card (docs/protocol.md, "Link previews")
    if record.get("thread"):
        # A thread reply (docs/protocol.md, threads): its root's seq; shown in the room too?
        frame["thread"] = record["thread"]
        frame["also_in_room"] = bool(record.get("also_in_room"))
    if record.get("thread_summary"):
        # A thread's root, as the history and a replay read it (messaging.threads.selectors).
        frame["thread_summary"] = record["thread_summary"]
    return frame


def thread_summary_wire(*, count: int, last_seq: int, last_reply_at: str, repliers: list[dict]) -> dict:
    """What a thread's root shows under it: how many replies, the last one's seq and time, and
    the last repliers (newest first, at most three)."""
    return {"count": count, "last_seq": last_seq, "last_reply_at": last_reply_at, "repliers": repliers}


def thread_summary_frame(*, room: str, seq: int, rev: int, summary: dict) -> dict:
    """A thread's summary changed (a reply was sent): a change of its root, by ``rev``."""
    return {"type": "thread_summary", "room": room, "seq": seq, "rev": rev, **summary}


REPLY_EXCERPT_CHARS = 100


def reply_excerpt(body: str) -> str:
    """The start of a message on one line, as a reply's quote shows it (room.js: replyExcerpt)."""
    line = " ".join(body.split())
    return line if len(line) <= REPLY_EXCERPT_CHARS else line[:REPLY_EXCERPT_CHARS] + "…"


def reply_wire(record: dict, state: MessageState) -> dict:
    """The quote of ``record`` (its current ``state``) that a reply to it carries: who wrote it
    and how it starts; a deleted original keeps its seq and author, not its text."""
    body = state.body if state.body is not None else record["body"]
    return {
        "seq": record["seq"],
        "author": record["author"],
        "excerpt": "" if state.deleted else reply_excerpt(body),
        "deleted": state.deleted,
    }


def encode(frame: dict) -> str:
    return orjson.dumps(frame).decode()


def user_wire(user_id: int, username: str, *, bot: bool = False) -> dict:
    """A user on the wire; ``"bot": true`` only for a bot account (docs/protocol.md)."""
    if bot:
        return {"id": user_id, "username": username, "bot": True}
    return {"id": user_id, "username": username}


def message_updated_wire(*, room: str, seq: int, body: str, rev: int) -> dict:
    return {"type": "message_updated", "room": room, "seq": seq, "body": body, "rev": rev}


def message_deleted_wire(*, room: str, seq: int, rev: int) -> dict:
    return {"type": "message_deleted", "room": room, "seq": seq, "rev": rev}


def preview_card_wire(*, url: str, title: str, description: str, image: str, site_name: str) -> dict:
    """A link card as a message carries it (``preview``): ``image`` and ``site_name`` only when known."""
    card = {"url": url, "title": title, "description": description}
    if image:
        card["image"] = image
    if site_name:
        card["site_name"] = site_name
    return card


def message_preview_wire(*, room: str, seq: int, preview: dict | None, rev: int) -> dict:
    """A message's link card arrived, changed, or went (``preview`` null: removed, or the link edited away)."""
    return {"type": "message_preview", "room": room, "seq": seq, "preview": preview, "rev": rev}


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
    if state.preview_rev is not None and state.preview_rev > after_rev:
        frames.append(message_preview_wire(room=room, seq=seq, preview=state.preview, rev=rev))
    if (state.reactions or state.reaction_rev is not None) and newer(state.reaction_rev):
        frames.append(reactions_wire(room=room, seq=seq, reactions=state.reactions, rev=rev))
    if state.pin is not None and newer(state.pin_rev):
        frames.append(pinned_wire(room=room, seq=seq, pin=state.pin, rev=rev, message=reply_wire(record, state)))
    return frames


def reactions_summary_wire(reactions: tuple) -> list[dict]:
    """A message's reactions as frames carry them: each emoji, how many, and the first
    ``REACTIONS_USERS_LISTED`` who put it on."""
    listed = settings.REACTIONS_USERS_LISTED
    return [
        {
            "emoji": emoji,
            "count": len(reactors),
            "users": [user_wire(uid, name) for uid, name in reactors[:listed]],
        }
        for emoji, reactors in reactions
    ]


def reactions_wire(*, room: str, seq: int, reactions: tuple, rev: int) -> dict:
    """A message's reactions changed: the whole summary (empty: none left) at ``rev``."""
    return {"type": "reactions", "room": room, "seq": seq, "reactions": reactions_summary_wire(reactions), "rev": rev}


def pinned_wire(*, room: str, seq: int, pin: dict, rev: int, message: dict | None) -> dict:
    """A message was pinned or unpinned; ``message`` is its quote (``reply_wire``) for the pinned list."""
    return {
        "type": "pinned",
        "room": room,
        "seq": seq,
        "pinned": pin["pinned"],
        "by": pin["by"],
        "at": pin["at"],
        "rev": rev,
        "message": message if pin["pinned"] else None,
    }


# --- The other frames (docs/protocol.md), by the frame they answer or the event they tell ---


def pong_frame() -> dict:
    return {"type": "pong"}


def reconnect_frame(*, after_ms: int) -> dict:
    """The web process is going away (a restart or a deploy): the socket is closed with 1012
    next; the client reconnects after ``after_ms`` (messaging.realtime.drain)."""
    return {"type": "reconnect", "after_ms": after_ms}


def ack_frame(*, room: str, client_id: str, seq: int) -> dict:
    return {"type": "ack", "room": room, "client_id": client_id, "seq": seq}


def error_frame(*, code: str, detail: str, **extra) -> dict:
    return {"type": "error", "code": code, "detail": detail, **extra}


def subscribed_frame(*, room: str, seq: int, rev: int, recovered: bool, details: int) -> dict:
    """``details``: the room's details revision when the subscription started (protocol.details)."""
    return {"type": "subscribed", "room": room, "seq": seq, "rev": rev, "recovered": recovered, "details": details}


def unsubscribed_frame(*, room: str) -> dict:
    return {"type": "unsubscribed", "room": room}


def presence_frame(*, room: str, online: list[dict], count: int) -> dict:
    return {"type": "presence", "room": room, "online": online, "count": count}


def presence_diff_frame(*, room: str, joins: list[dict], leaves: list[dict], count: int) -> dict:
    return {"type": "presence_diff", "room": room, "joins": joins, "leaves": leaves, "count": count}


def typing_frame(*, room: str, user: dict) -> dict:
    return {"type": "typing", "room": room, "user": user}


def clap_board_frame(*, room: str, board: dict[int, tuple[int, int]]) -> dict:
    """Each user's claps given and received in the room (``board``: id -> (given, received))."""
    return {
        "type": "clap_board",
        "room": room,
        "users": [{"id": u, "given": g, "received": r} for u, (g, r) in board.items()],
    }


def unread_frame(*, room: str, count: int, seq: int) -> dict:
    return {"type": "unread", "room": room, "count": count, "seq": seq}


def kicked_frame(*, room: str, reason: str) -> dict:
    return {"type": "kicked", "room": room, "reason": reason}


def direct_joined_frame(*, room: str, title: str) -> dict:
    return {"type": "direct_joined", "room": room, "title": title}


def notification_frame(*, kind: str, room: str, seq: int, sender: dict, excerpt: str, **extra) -> dict:
    return {"type": "notification", "kind": kind, "room": room, "seq": seq, "from": sender, "excerpt": excerpt, **extra}


def member_updated_frame(*, room: str, user: dict, role: str) -> dict:
    return {"type": "member_updated", "room": room, "user": user, "role": role}


def member_left_frame(*, room: str, user: dict) -> dict:
    return {"type": "member_left", "room": room, "user": user}


def room_updated_frame(*, room: str, name: str, topic: str, archived: bool) -> dict:
    return {"type": "room_updated", "room": room, "name": name, "topic": topic, "archived": archived}


def notify_settings_frame(*, room: str, level: str, snoozed_until: datetime | None) -> dict:
    """The user's notification settings for a room changed (rooms.notify_settings): to their pages."""
    until = None
    if snoozed_until is not None:
        until = snoozed_until.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return {"type": "notify_settings", "room": room, "level": level, "snoozed_until": until}
