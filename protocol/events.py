"""Events for connected clients, sent over the channel layer: the catalogue of layer events.

Group names come from ids only. Events that follow a database write go out on
commit, so no client hears of a change that was rolled back. Every layer event is built
here, one function each (its ``"type"`` names the consumer's handler: ``room.message`` ->
``room_message``), as ``protocol.wire`` builds every client frame; no other module
writes an event's ``"type"`` (tests/architecture/test_catalogues.py). One exception by necessity: the
append script publishes ``room.message`` from Lua (messaging.store.buffer), the shape of
``room_message_event``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from redis.exceptions import RedisError

from protocol.details import adetails_raise, details_raise
from protocol.wire import encode, member_left_frame, member_updated_frame, room_updated_frame, user_wire
from rooms.models import Room

logger = logging.getLogger(__name__)


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


def room_group(room_id: int) -> str:
    """Subscribers of the room: its messages and changes."""
    return f"room.{room_id}"


def activity_group(room_id: int) -> str:
    """Every connection of the room's members: new-message activity, for unread counts."""
    return f"activity.{room_id}"


def session_fingerprint(session_key: str | None) -> str:
    """Names a session in events without putting its key in Redis."""
    return hashlib.sha256((session_key or "").encode()).hexdigest()[:32]


# --- The layer events, one builder each --------------------------------------------------

# Told to every consumer of a process whose layer connection came back (messaging.realtime.layers).
LAYER_RECONNECTED = {"type": "layer.reconnected"}
# Put in a socket's own inbox by its process when it drains (messaging.realtime.drain): the
# consumer handles it after the frames before it, then sends `reconnect` and closes with 1012.
SOCKET_DRAIN = {"type": "socket.drain"}


def room_message_event(*, room_id: int, seq: int, record: str, ts: float) -> dict:
    return {"type": "room.message", "room_id": room_id, "seq": seq, "record": record, "ts": ts}


def room_change_event(*, room_id: int, frame: dict) -> dict:
    """An edit, a deletion, reactions or a pin (``frame``: its client frame, encoded once for every socket)."""
    return {"type": "room.change", "room_id": room_id, "frame": encode(frame)}


def room_claps_event(*, room_id: int, seq: int, rev: int, frame: dict, board: dict) -> dict:
    return {
        "type": "room.claps",
        "room_id": room_id,
        "seq": seq,
        "rev": rev,
        "frame": encode(frame),
        "board": encode(board),
    }


def room_activity_event(*, room_id: int, seq: int, authors: list[int] | None) -> dict:
    return {"type": "room.activity", "room_id": room_id, "seq": seq, "authors": authors}


def room_typing_event(*, room_id: int, user: dict) -> dict:
    return {"type": "room.typing", "room_id": room_id, "user": user}


def room_presence_event(*, room_id: int, joins: list[dict], leaves: list[dict], count: int) -> dict:
    return {"type": "room.presence", "room_id": room_id, "joins": joins, "leaves": leaves, "count": count}


def user_read_event(*, room_id: int, seq: int) -> dict:
    return {"type": "user.read", "room_id": room_id, "seq": seq}


def user_notify_event(*, frame: dict) -> dict:
    return {"type": "user.notify", "frame": encode(frame)}


def user_sessions_ended_event(*, detail: str, keep: list[str] | None = None) -> dict:
    """The user's sessions ended; those whose fingerprints are in ``keep`` stay."""
    event = {"type": "user.sessions_ended", "detail": detail}
    if keep is not None:
        event["keep"] = keep
    return event


def send_to_group(group: str, event: dict) -> None:
    send = async_to_sync(get_channel_layer().group_send)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        send(group, event)
        return
    # Synchronous code on a thread whose event loop is running (Playwright's sync API marks
    # the browser tests' main thread so): async_to_sync refuses to run there, so the send
    # runs on a thread of its own. Views, jobs and commands never take this branch.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(send, group, event).result(timeout=30)


def send_to_group_on_commit(group: str, event: dict) -> None:
    transaction.on_commit(lambda: send_to_group(group, event))


def user_kicked_on_commit(*, user_id: int, room: Room, reason: str) -> None:
    """End the user's subscription to the room on every connection of theirs."""
    send_to_group_on_commit(
        user_group(user_id), {"type": "user.kicked", "room_id": room.pk, "room": room.slug, "reason": reason}
    )


def membership_changed_on_commit(*, user_id: int, room: Room) -> None:
    """Tell the user's connections to reload their cached rights in the room."""
    send_to_group_on_commit(user_group(user_id), {"type": "user.membership", "room_id": room.pk})


def direct_joined_on_commit(*, user_id: int, room: Room, title: str) -> None:
    """The user is in a direct conversation they were not in: their open sockets follow its
    activity (unread counts) and the page lists it, under ``title`` (the others' names)."""
    send_to_group_on_commit(
        user_group(user_id), {"type": "user.direct_joined", "room_id": room.pk, "room": room.slug, "title": title}
    )


def room_state_changed_on_commit(*, room: Room) -> None:
    """Tell the room's subscribers its lock, archive or slow mode changed (an archived room is
    as read-only as a locked one)."""
    send_to_group_on_commit(
        room_group(room.pk),
        {
            "type": "room.state",
            "room_id": room.pk,
            "locked": room.read_only,
            "slow_mode_seconds": room.slow_mode_seconds,
        },
    )


def room_notice_event(*, room_id: int, frames: list[dict]) -> dict:
    """Frames about the room itself, for its subscribers (``LayerEvents.room_notice``): one
    as ``frame``, several (new members written together, rooms.joins) as ``frames``."""
    texts = [encode(frame) for frame in frames]
    return {
        "type": "room.notice",
        "room_id": room_id,
        **({"frame": texts[0]} if len(texts) == 1 else {"frames": texts}),
    }


def room_notice_on_commit(*, room_id: int, frame: dict) -> None:
    """A frame about the room itself (its name, topic, members) to its subscribers, who
    may see it all on the room page. On commit, the room's details revision is raised and the
    frame carries the new value (protocol.details)."""

    def send() -> None:
        stamped = {**frame, "details": details_raise(room_id)}
        send_to_group(room_group(room_id), room_notice_event(room_id=room_id, frames=[stamped]))

    transaction.on_commit(send)


def member_updated_on_commit(*, room_id: int, room_slug: str, user_id: int, username: str, role: str) -> None:
    """Someone joined the room, or their role in it changed: the member lists show it."""
    frame = member_updated_frame(room=room_slug, user=user_wire(user_id, username), role=role)
    room_notice_on_commit(room_id=room_id, frame=frame)


async def members_joined_send(*, room_id: int, room_slug: str, members: list[tuple[int, str, str]]) -> None:
    """``member_updated_on_commit``'s frames for several new members of one room ((user id,
    username, role) each), in one event, sent now: for async code whose write has committed
    already (rooms.joins, the first subscribes' joins written in batches)."""
    details = await adetails_raise(room_id)  # one change of the room's details: one value for all
    frames = [
        {**member_updated_frame(room=room_slug, user=user_wire(user_id, username), role=role), "details": details}
        for user_id, username, role in members
    ]
    await get_channel_layer().group_send(room_group(room_id), room_notice_event(room_id=room_id, frames=frames))


def member_left_on_commit(*, room: Room, user_id: int, username: str) -> None:
    """Someone left the room, or was removed or banned from it."""
    frame = member_left_frame(room=room.slug, user=user_wire(user_id, username))
    room_notice_on_commit(room_id=room.pk, frame=frame)


def room_updated_on_commit(*, room: Room) -> None:
    """The room's name, topic or archive state changed."""
    frame = room_updated_frame(room=room.slug, name=room.name, topic=room.topic, archived=room.archived)
    room_notice_on_commit(room_id=room.pk, frame=frame)


def session_logged_out(sender, request, user, **kwargs) -> None:
    """Django's user_logged_out: the session's other sockets (other tabs) stop at once.

    They are told through the user's group, with the session named by a fingerprint; a
    consumer compares it with its own, so no query runs per message afterwards."""
    session_key = getattr(getattr(request, "session", None), "session_key", None)
    if user is None or not session_key:
        return
    try:
        send_to_group(user_group(user.pk), {"type": "user.logged_out", "session": session_fingerprint(session_key)})
    except RedisError:
        # Logging out must work with Redis down; the sockets then close with the layer.
        logger.warning("could not tell the sockets of user %s that the session logged out", user.pk)


def user_sessions_ended_on_commit(*, user_id: int, detail: str) -> None:
    """Every session of the user ended (the account was deactivated, or its password
    changed): each open socket of theirs ends as a logged-out one does, and closes (1008)."""
    send_to_group_on_commit(user_group(user_id), user_sessions_ended_event(detail=detail))


def room_access_changed_on_commit(*, room: Room) -> None:
    """Who may read the room changed (it became private): every subscriber reads its rights
    again, and one who may no longer read it is told `kicked`."""
    send_to_group_on_commit(room_group(room.pk), {"type": "room.access_changed", "room_id": room.pk})


# --- Writes made outside the services (the admin, `changepassword`, a shell) ---------------
# Deactivating an account, changing its password and making a room private change who may
# read what, wherever they are written. These receivers compare the saved row with the one
# being saved and tell the sockets on commit; a save that names its fields (a log-in's
# `last_login`) and none of these costs no query.

_USER_FIELDS = frozenset({"is_active", "password"})
_ROOM_FIELDS = frozenset({"visibility"})


def _before_save(instance, fields: frozenset[str], update_fields, raw: bool = False) -> dict | None:
    if raw or instance.pk is None or instance._state.adding:  # raw: loaddata, no socket concerned
        return None
    if update_fields is not None and not fields.intersection(update_fields):
        return None
    return type(instance)._default_manager.filter(pk=instance.pk).values(*sorted(fields)).first()


def user_before_save(sender, instance, update_fields=None, raw: bool = False, **kwargs) -> None:
    instance._sessions_before = _before_save(instance, _USER_FIELDS, update_fields, raw)


def sessions_end_told_by_caller(user) -> None:
    """The code about to save ``user`` tells the sockets itself, with more to say than this
    module knows (accounts.services.user_sessions_end: which session changed the password and
    stays, that the account was deleted): ``user_after_save`` then sends nothing for this save."""
    user._sessions_end_told = True


def user_after_save(sender, instance, created: bool = False, **kwargs) -> None:
    before = instance.__dict__.pop("_sessions_before", None)
    told = instance.__dict__.pop("_sessions_end_told", False)
    if created or before is None or told:
        return
    if before["is_active"] and not instance.is_active:
        user_sessions_ended_on_commit(user_id=instance.pk, detail="This account was deactivated.")
    elif before["password"] != instance.password:
        user_sessions_ended_on_commit(user_id=instance.pk, detail="The password changed; sign in again.")


def room_before_save(sender, instance, update_fields=None, raw: bool = False, **kwargs) -> None:
    instance._visibility_before = _before_save(instance, _ROOM_FIELDS, update_fields, raw)


def room_after_save(sender, instance, created: bool = False, **kwargs) -> None:
    before = instance.__dict__.pop("_visibility_before", None)
    if created or before is None:
        return
    if before["visibility"] == Room.Visibility.PUBLIC and instance.visibility != Room.Visibility.PUBLIC:
        room_access_changed_on_commit(room=instance)
