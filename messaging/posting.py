"""Posting a message, whoever posts it: the one path a socket's `send`, the HTTP API's
publish and an incoming webhook all take (docs/api.md).

The guarantee: a message enters a room only after the same checks wherever it comes
from: the poster may post there (not a spectator, the room not locked, the poster not
muted), the reply's original exists, and the limits (the per-user send window and the
room's slow mode) are counted in the Redis call that stores it (messaging.services.message_send,
which also waits for replicas when ``REDIS_WAIT_REPLICAS`` asks). A retry of a stored
``client_id`` by the same author is answered with its seq, never stored twice.

The other actions' limits (edits, claps) are counted here too, per user and room, in the
room's Redis (the `limits` library's async API, moving window).
"""

from __future__ import annotations

import asyncio
import functools
import time
import weakref

from django.conf import settings
from limits import parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter

from messaging.frames import ClientError
from messaging.services import ActionRefused, SendResult, message_reply_quote, message_send
from messaging.store.buffer import SendLimits
from messaging.threads.services import thread_root_for_send, thread_summary_publish
from pubsub_site.redis.client import get_async_redis, room_redis_url
from rooms.services import RoomAccess


def check_may_post(access: RoomAccess) -> None:
    """What a send checks, and an edit and typing too: new content in the room."""
    if not access.can_post:
        raise ActionRefused("forbidden", "Spectators cannot post; join the room to take part.")
    if access.locked:
        raise ActionRefused("room_locked", "The room is locked.")
    if access.is_muted():
        raise ActionRefused("muted", "You are muted in this room.", until=access.muted_until.isoformat())


async def message_post(
    *,
    access: RoomAccess,
    author_id: int,
    author_username: str,
    body: str,
    client_id: str,
    reply_to: int | None = None,
    thread: int | None = None,
    also_in_room: bool = False,
    known_seq: int | None = None,
    author_bot: bool = False,
    attachments: list[dict] | None = None,
) -> SendResult:
    """Check that the author may post in the room (``access``, read at subscribe or for
    the request) and store the message through ``message_send``.

    ``body`` and ``client_id`` are validated already. ``known_seq``: the room's latest seq
    as the caller knows it (a socket's subscription), so that a reply to a later seq is
    refused without a read. ``thread``: a thread reply's root, or a reply of that thread
    (threads do not nest: it goes to the root's thread); its root's summary is told to the
    room once stored. ``attachments``: the wire forms of the files this send claimed
    (attachments.services.attachments_claim). Raises ActionRefused."""
    check_may_post(access)
    reply = None
    if reply_to is not None:
        if known_seq is not None and reply_to > known_seq:
            # Past the room's latest seq as this socket knows it: no such message (yet).
            raise ActionRefused("bad_request", f"`reply_to`: this room has no message {reply_to}.")
        reply = await message_reply_quote(room_id=access.room_id, seq=reply_to)
    if thread is not None:
        if known_seq is not None and thread > known_seq:
            raise ActionRefused("bad_request", f"`thread`: this room has no message {thread}.")
        try:
            thread = await thread_root_for_send(room_id=access.room_id, seq=thread)
        except ClientError as refused:  # no such root (the same answer on every path)
            raise ActionRefused(refused.code, refused.detail) from None
    slow_mode_seconds = 0 if access.can_moderate else access.slow_mode_seconds
    result = await message_send(
        room_id=access.room_id,
        room_slug=access.slug,
        author_id=author_id,
        author_username=author_username,
        body=body,
        client_id=client_id,
        limits=send_limits(slow_mode_seconds=slow_mode_seconds),
        reply=reply,
        thread=thread,
        also_in_room=also_in_room and thread is not None,
        author_bot=author_bot,
        attachments=attachments,
    )
    if thread is not None and result.created:
        await thread_summary_publish(
            room_id=access.room_id,
            room_slug=access.slug,
            root=thread,
            stored=result.thread_summary,
            missing=result.thread_summary_missing,
        )
    return result


def send_limits(*, slow_mode_seconds: int) -> SendLimits:
    """The limits on a user's new messages, for ``message_send`` (``slow_mode_seconds`` 0:
    the room is not in slow mode, or the user moderates it)."""
    per_window, window_ms = window(settings.WS_RATE_LIMITS["send"])
    return SendLimits(per_window=per_window, window_ms=window_ms, slow_mode_ms=slow_mode_seconds * 1000)


@functools.lru_cache(maxsize=16)
def window(limit: str) -> tuple[int, int]:
    """(amount, window in ms) of a limit such as "10/2second": parsed once per text, not per send."""
    item = parse(limit)
    return item.amount, item.get_expiry() * 1000


_limiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, MovingWindowRateLimiter]] = (
    weakref.WeakKeyDictionary()
)


def _limiter(room_id: int) -> MovingWindowRateLimiter:
    url = room_redis_url(room_id)
    per_loop = _limiters.setdefault(asyncio.get_running_loop(), {})
    limiter = per_loop.get(url)
    if limiter is None:
        storage = RedisStorage(
            "async+" + url,
            implementation="redispy",
            connection_pool=get_async_redis(url=url).connection_pool,
            key_prefix="pubsub:ratelimit:ws",
        )
        limiter = per_loop[url] = MovingWindowRateLimiter(storage)
    return limiter


async def retry_after(*, action: str, room_id: int, user_id: int) -> float | None:
    """Count one ``action`` (a key of ``WS_RATE_LIMITS``); None when allowed, else seconds
    until it would be."""
    item = parse(settings.WS_RATE_LIMITS[action])
    limiter = _limiter(room_id)
    identifiers = (action, str(room_id), str(user_id))
    if await limiter.hit(item, *identifiers):
        return None
    stats = await limiter.get_window_stats(item, *identifiers)
    return max(0.1, round(stats.reset_time - time.time(), 2))


async def check_action_limit(*, action: str, room_id: int, user_id: int) -> None:
    """Count one ``action``; raise ActionRefused (``rate_limited``) past its limit."""
    wait = await retry_after(action=action, room_id=room_id, user_id=user_id)
    if wait is not None:
        raise ActionRefused("rate_limited", "Too many requests; slow down.", retry_after=wait)
