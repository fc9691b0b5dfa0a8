"""Writes of messages and their state. The per-message path touches Redis only;
PostgreSQL gets the rows later, from the persistence job (messaging.store.persistence).

Order inside each service: the Redis write, then the broadcast, then the job enqueue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass

import django_rq
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import DatabaseError
from redis.exceptions import RedisError

from messaging import frames, job_paths, metrics
from messaging.selectors import apersisted_send_seq, message_get, room_counters
from messaging.store import buffer, changes
from messaging.store.keys import RoomKeys
from protocol import events
from protocol.events import activity_group, room_group, user_group
from protocol.wire import (
    clap_board_frame,
    claps_wire,
    message_deleted_wire,
    message_updated_wire,
    now_iso,
    reply_wire,
    user_wire,
)
from pubsub_site.redis.client import all_room_redis_urls, get_async_redis, get_redis, room_redis_url

logger = logging.getLogger(__name__)


class ActionRefused(Exception):
    """The action is not allowed or not possible; ``code`` is a wire-contract error code,
    ``extra`` the error frame's other fields (``retry_after`` for ``rate_limited``)."""

    def __init__(self, code: str, detail: str, **extra: object):
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.extra = extra


@dataclass(frozen=True)
class SendResult:
    seq: int
    created: bool
    record: bytes | str = b""  # the stored record (JSON) of a new message; empty for a retry
    # A thread reply: its thread's summary as stored with it (messaging.threads.services).
    thread_summary: bytes = b""
    thread_summary_missing: bool = False


# --- Coalescing: one broadcast per key and interval, per process and event loop ---


class Coalescer:
    """Collects updates per key and calls ``flush(key, payload)`` once per ``delay``.

    The last payload for a key wins; the flush reads the current state itself, so
    what goes out is never older than what came in.
    """

    def __init__(self, delay: float, flush: Callable[[Hashable, object], Awaitable[None]]):
        self.delay = delay
        self.flush = flush
        self.pending: dict[Hashable, object] = {}

    def add(self, key: Hashable, payload: object) -> None:
        first = key not in self.pending
        self.pending[key] = payload
        if first:
            asyncio.get_running_loop().call_later(self.delay, self._start_flush, key)

    def _start_flush(self, key: Hashable) -> None:
        payload = self.pending.pop(key, None)
        task = asyncio.ensure_future(self.flush(key, payload))
        task.add_done_callback(_log_failure)


def _log_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("coalesced broadcast failed", exc_info=task.exception())


_coalescers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Coalescer]] = weakref.WeakKeyDictionary()


def coalescer_for(name: str, delay: float, flush: Callable[[Hashable, object], Awaitable[None]]) -> Coalescer:
    per_loop = _coalescers.setdefault(asyncio.get_running_loop(), {})
    if name not in per_loop:
        per_loop[name] = Coalescer(delay, flush)
    return per_loop[name]


# Past this many authors in one coalesced activity event, it names none: every socket
# then reads its user's read marker again (messaging.realtime.consumers.RoomsConsumer.room_activity).
ACTIVITY_AUTHORS_MAX = 50


def _activity_add(room_id: int, seq: int, author_id: int) -> None:
    """New messages up to ``seq`` in the room, one by ``author_id``: the members' sockets hear
    of it once per ACTIVITY_COALESCE_SECONDS, with who wrote (an author's read marker moved
    with their message, which their other tabs learn from this)."""
    coalescer = coalescer_for("activity", settings.ACTIVITY_COALESCE_SECONDS, _flush_activity)
    latest, authors = coalescer.pending.get(room_id) or (0, set())
    if authors is not None:
        authors.add(author_id)
        if len(authors) > ACTIVITY_AUTHORS_MAX:
            authors = None
    coalescer.add(room_id, (max(latest, seq), authors))


async def _flush_activity(room_id: int, payload: tuple[int, set[int] | None]) -> None:
    seq, authors = payload
    await get_channel_layer().group_send(
        activity_group(room_id),
        events.room_activity_event(room_id=room_id, seq=seq, authors=sorted(authors) if authors is not None else None),
    )


async def _flush_claps(key: tuple[int, int], payload: tuple[str, dict, int, set[int]]) -> None:
    room_id, seq = key
    room_slug, last_user, last_user_total, board_users = payload
    total, rev = await changes.aclap_snapshot(room_id=room_id, seq=seq)
    board = await changes.aclap_counts_for(room_id=room_id, user_ids=sorted(board_users))
    frame = claps_wire(room=room_slug, seq=seq, total=total, rev=rev, user=last_user, user_total=last_user_total)
    board_frame = clap_board_frame(room=room_slug, board=board)
    await get_channel_layer().group_send(
        room_group(room_id), events.room_claps_event(room_id=room_id, seq=seq, rev=rev, frame=frame, board=board_frame)
    )


def _schedule_persist(room_id: int) -> Awaitable[None]:
    return asyncio.to_thread(persist_enqueue, server=all_room_redis_urls().index(room_redis_url(room_id)))


def persist_enqueue(*, server: int) -> None:
    # By its path (messaging.job_paths), as rq stores it: messaging.jobs is not imported here.
    # Through the process's client for the queue's Redis: one pool (a Sentinel service's
    # included), not a connection per job as django-rq would make from RQ_QUEUES.
    queue = django_rq.get_queue("default", connection=get_redis(url=settings.REDIS_URL))
    queue.enqueue(job_paths.PERSIST_MESSAGES, server)


def attachments_withdraw_enqueue(*, room_id: int, seq: int) -> None:
    """A deleted or hidden message's files leave the storage later (attachments.jobs); they
    are refused to everyone from the moment the deletion is stored (attachments.selectors).
    A job lost is made up by the periodic ``attachments_cleanup``."""
    try:
        django_rq.get_queue("default", connection=get_redis(url=settings.REDIS_URL)).enqueue(
            job_paths.WITHDRAW_ATTACHMENTS, room_id, seq
        )
    except RedisError as error:
        logger.warning("attachments of %s/%s not queued for removal: %r", room_id, seq, error)


# --- Messages ----------------------------------------------------------------


async def _broadcast_stored(layer, group: str, room_id: int, seq: int, record: bytes | str) -> None:
    """Publish a stored message to its room's group: the event the append script would have
    published (messaging.realtime.fanout.RoomFanout.offer); `ts`, when it goes out, for the fan-outs'
    delivery latency (messaging.metrics). A failure is logged: the subscribers' gap fill or
    resubscription recovers the message from the buffer."""
    record = record.decode() if isinstance(record, bytes) else record
    event = events.room_message_event(room_id=room_id, seq=seq, record=record, ts=time.time())
    try:
        await layer.group_send(group, event)
    except RedisError as error:
        logger.warning("message %s/%s stored but not broadcast: %r", room_id, seq, error)


# A UUIDv7 client_id made this far ahead of the server's clock, at most, is taken as fresh.
CLIENT_CLOCK_AHEAD = 60.0
# How long a send waits for PostgreSQL to say whether its client_id is stored, at most; and
# after PostgreSQL failed to, how long the process's sends go on without asking.
PERSISTED_RETRY_TIMEOUT = 2.0
PERSISTED_RETRY_PAUSE = 1.0
_retry_checks_resume_at = 0.0


def _may_be_a_late_retry(client_id: str) -> bool:
    """Whether Redis may no longer know this send's ``client_id`` although it is stored.

    A UUIDv7's dedupe key leaves Redis ``MESSAGE_HOT_SECONDS`` after its message is persisted
    (messaging.store.watermarks.mark_persisted); one made within the last half of that window
    (by its own time, allowing the client's clock CLIENT_CLOCK_AHEAD) cannot be older than its
    key, and Redis answers it. Another UUID's key lives ``MESSAGE_DEDUP_TTL`` (7 days): Redis
    answers it too. Only a UUIDv7 from further back (a late retry, or a client's clock far
    behind) is asked of PostgreSQL."""
    made = frames.client_id_time(client_id)
    if made is None:
        return False
    now = time.time()
    return not (now - settings.MESSAGE_HOT_SECONDS / 2 <= made <= now + CLIENT_CLOCK_AHEAD)


async def _persisted_retry_seq(room_id: int, author_id: int, client_id: str) -> int | None:
    """The seq PostgreSQL keeps the send under, when it is a retry of a persisted message.

    A send waits at most PERSISTED_RETRY_TIMEOUT for the answer, far less than Redis keeps a
    dedupe key after the message is persisted: a message persisted meanwhile still has its key
    when the append script runs. When PostgreSQL cannot answer, the sends go on with Redis's
    dedupe alone (counted; logged once, then not asked for PERSISTED_RETRY_PAUSE): sends do not
    stop with the database, and only a late retry could then be stored twice."""
    global _retry_checks_resume_at
    if time.monotonic() < _retry_checks_resume_at:
        metrics.RETRY_CHECKS.labels(outcome="skipped").inc()
        return None
    try:
        async with asyncio.timeout(PERSISTED_RETRY_TIMEOUT):
            found = await apersisted_send_seq(room_id=room_id, author_id=author_id, client_id=client_id)
    except (DatabaseError, TimeoutError) as error:
        metrics.RETRY_CHECKS.labels(outcome="skipped").inc()
        if time.monotonic() >= _retry_checks_resume_at:
            logger.warning("late retries are checked with Redis alone for %s s: %r", PERSISTED_RETRY_PAUSE, error)
        _retry_checks_resume_at = time.monotonic() + PERSISTED_RETRY_PAUSE
        return None
    metrics.RETRY_CHECKS.labels(outcome="asked").inc()
    return found


async def message_send(
    *,
    room_id: int,
    room_slug: str,
    author_id: int,
    author_username: str,
    body: str,
    client_id: str,
    limits: buffer.SendLimits = buffer.NO_LIMITS,
    reply: dict | None = None,
    thread: int | None = None,
    also_in_room: bool = False,
    author_bot: bool = False,
    attachments: list[dict] | None = None,
) -> SendResult:
    """Store a message durably in Redis, broadcast it, and schedule its persistence.

    The caller has checked the rights and validated ``body`` and ``client_id``, and says
    which ``limits`` apply (``messaging.posting.send_limits``): they are checked and
    counted in the Redis call that stores the message. A retry of a stored ``client_id``
    is answered with its ``seq``, never refused: by Redis's dedupe key, or, for a UUIDv7 made
    before Redis's hot window (a late retry, ``_may_be_a_late_retry``), by PostgreSQL's unique
    key, read before the append. Raises ActionRefused (``rate_limited``,
    with ``retry_after``) when the author must wait, redis.RedisError when storing fails:
    nothing is stored either way (but for NotReplicated, below).

    With ``REDIS_WAIT_REPLICAS`` an ack also means that many replicas have the message: the
    append script and a WAIT go in one round trip, and the message is broadcast only once
    confirmed (the script does not publish it then), so that no subscriber sees a message a
    failover could lose and whose seq it could hand out again. Not confirmed in time, the
    send raises ``buffer.NotReplicated`` (a RedisError: the client is told `unavailable`)
    with the message stored on the primary only and not broadcast; the client's retry
    (same ``client_id``) finds it stored, waits again, and once a replica has it broadcasts
    the stored record (the fan-outs drop a seq they have, should it go out twice) and acks.
    """
    record = {
        "author": user_wire(author_id, author_username, bot=author_bot),
        "body": body,
        "client_id": client_id,
        "sent_at": now_iso(),
    }
    if reply is not None:  # a reply: the original's seq and its quote (message_reply_quote)
        record["reply_to"] = reply["seq"]
        record["reply"] = reply
    if thread is not None:  # a thread reply: its root's seq (messaging.threads)
        record["thread"] = thread
        if also_in_room:
            record["also_in_room"] = True
    if attachments:  # their wire forms, claimed by this send (attachments.services.attachments_claim)
        record["attachments"] = attachments
    if _may_be_a_late_retry(client_id):
        persisted_seq = await _persisted_retry_seq(room_id, author_id, client_id)
        if persisted_seq is not None:
            metrics.RETRIES_ANSWERED_BY_DATABASE.inc()
            return SendResult(seq=persisted_seq, created=False)
    layer = get_channel_layer()
    group = room_group(room_id)
    wait = buffer.replica_wait()
    # Stored and broadcast in one Redis call when the room's server carries its group (and
    # no replica has to confirm the message before it goes out).
    channel = None if wait is not None else layer.script_broadcast_channel(group, room_redis_url(room_id))
    result = await buffer.append(room_id=room_id, record=record, limits=limits, broadcast_to=channel, wait=wait)
    if not result.initialised:
        # A fresh (or wiped) Redis: take the counters from PostgreSQL once.
        await database_sync_to_async(room_counters)(room_id=room_id)
        result = await buffer.append(room_id=room_id, record=record, limits=limits, broadcast_to=channel, wait=wait)
    if result.refused_by is not None:
        detail = (
            f"Slow mode: one message every {limits.slow_mode_ms // 1000} s."
            if result.refused_by == buffer.SLOW_MODE
            else "Too many requests; slow down."
        )
        raise ActionRefused("rate_limited", detail, retry_after=max(0.1, round(result.wait_ms / 1000, 2)))
    if wait is not None and result.replicas < wait.replicas:
        metrics.REPLICA_WAIT_TIMEOUTS.inc()
        if result.schedule_persist:  # the script claimed the job: queue it (it too waits for replicas)
            with contextlib.suppress(RedisError):
                await _schedule_persist(room_id)
        raise buffer.NotReplicated(wait, result.replicas)
    if not result.created:
        if wait is not None and result.record:
            # Its first attempt may have been answered `unavailable` before a replica had
            # it, and then it was not broadcast: now it is confirmed, it goes out.
            await _broadcast_stored(layer, group, room_id, result.seq, result.record)
            _activity_add(room_id, result.seq, author_id)
        return SendResult(seq=result.seq, created=False)

    # From here on the message is stored: a failure must not turn the ack into
    # `unavailable` ("nothing was stored"). A lost broadcast is recovered by the
    # subscribers' gap fill or resubscription; a job not queued, by the next send
    # after SCHEDULED_TTL_MS or by the worker's periodic sweep.
    metrics.MESSAGES_SENT.inc()
    if not result.broadcast:
        await _broadcast_stored(layer, group, room_id, result.seq, result.record)
    _activity_add(room_id, result.seq, author_id)
    if result.schedule_persist:
        try:
            await _schedule_persist(room_id)
        except RedisError as error:
            logger.warning("message %s/%s stored, its persistence job not queued: %r", room_id, result.seq, error)
    return SendResult(
        seq=result.seq,
        created=True,
        record=result.record,
        thread_summary=result.thread_summary,
        thread_summary_missing=result.thread_summary_missing,
    )


async def message_reply_quote(*, room_id: int, seq: int) -> dict:
    """The quote a reply to message ``seq`` of the room carries (protocol.wire.reply_wire):
    one read of the original, from the buffer or PostgreSQL. A reply to a deleted message is
    allowed (its quote says so); to a message the room does not have, refused."""
    found = await database_sync_to_async(message_get)(room_id=room_id, seq=seq)
    if found is None:
        raise ActionRefused("bad_request", f"`reply_to`: this room has no message {seq}.")
    return reply_wire(*found)


_REFUSALS = {
    changes.NOT_INITIALISED: ("unavailable", "The room's state is being restored; retry."),
    changes.NO_SUCH_MESSAGE: ("not_found", "No such message."),
    changes.ALREADY_DELETED: ("not_found", "The message was deleted."),
}


def _refuse(status: int) -> ActionRefused:
    code, detail = _REFUSALS[status]
    return ActionRefused(code, detail)


async def _message_or_refuse(room_id: int, seq: int):
    found = await database_sync_to_async(message_get)(room_id=room_id, seq=seq)
    if found is None:
        raise ActionRefused("not_found", "No such message.")
    return found


async def message_clap(
    *, room_id: int, room_slug: str, seq: int, user_id: int, username: str, count: int
) -> changes.ClapResult:
    """Add up to ``count`` claps, capped per user and message; the room hears of it coalesced."""
    result = await changes.clap(room_id=room_id, seq=seq, user_id=user_id, count=count)
    if result.status == changes.NOT_INITIALISED:
        await database_sync_to_async(room_counters)(room_id=room_id)
        result = await changes.clap(room_id=room_id, seq=seq, user_id=user_id, count=count)
    if result.status == changes.AUTHOR_UNKNOWN:
        # The message left the buffer: its author comes from PostgreSQL.
        record, _ = await _message_or_refuse(room_id, seq)
        result = await changes.clap(
            room_id=room_id, seq=seq, user_id=user_id, count=count, author_hint=record["author"]["id"]
        )
    if result.status < 0:
        raise _refuse(result.status)
    if result.status == 1:
        coalescer = coalescer_for("claps", settings.CLAP_COALESCE_SECONDS, _flush_claps)
        previous = coalescer.pending.get((room_id, seq))
        board_users = {user_id, result.author_id} | (previous[3] if previous else set())
        coalescer.add((room_id, seq), (room_slug, user_wire(user_id, username), result.user_total, board_users))
        if result.schedule_persist:
            await _schedule_persist(room_id)
    return result


async def message_edit(*, room_id: int, room_slug: str, seq: int, user_id: int, body: str) -> int:
    """The author changes the body of their message; returns the new ``rev``."""
    record, state = await _message_or_refuse(room_id, seq)
    if record["author"]["id"] != user_id:
        raise ActionRefused("forbidden", "Only the author can edit a message.")
    if state.deleted:
        raise ActionRefused("not_found", "The message was deleted.")
    result = await changes.edit(room_id=room_id, seq=seq, body=body, at=now_iso())
    if result.status < 0:
        raise _refuse(result.status)
    frame = message_updated_wire(room=room_slug, seq=seq, body=body, rev=result.rev)
    await get_channel_layer().group_send(room_group(room_id), events.room_change_event(room_id=room_id, frame=frame))
    if result.schedule_persist:
        await _schedule_persist(room_id)
    return result.rev


class NotTheAuthor(ActionRefused):
    """The message is someone else's. A moderator hides it instead, through the moderation
    act that checks the role order and records it (messaging.moderation.room_message_hide)."""

    def __init__(self) -> None:
        super().__init__("forbidden", "Only the author or a moderator can delete a message.")


async def message_delete(*, room_id: int, room_slug: str, seq: int, user_id: int) -> int:
    """The author deletes their message; it keeps its ``seq``. Raises NotTheAuthor for
    someone else's."""
    record, state = await _message_or_refuse(room_id, seq)
    if record["author"]["id"] != user_id:
        raise NotTheAuthor
    if state.deleted:
        raise ActionRefused("not_found", "The message was already deleted.")
    result = await changes.adelete(room_id=room_id, seq=seq, at=now_iso(), by=user_id, hidden=False)
    if result.status < 0:
        raise _refuse(result.status)
    frame = message_deleted_wire(room=room_slug, seq=seq, rev=result.rev)
    await get_channel_layer().group_send(room_group(room_id), events.room_change_event(room_id=room_id, frame=frame))
    if result.schedule_persist:
        await _schedule_persist(room_id)
    if record.get("attachments"):
        await asyncio.to_thread(attachments_withdraw_enqueue, room_id=room_id, seq=seq)
    return result.rev


def message_hide(*, room_id: int, room_slug: str, seq: int, moderator_id: int) -> int | None:
    """A moderator hides a message from outside a WebSocket (the admin, the moderation page).

    The caller has checked the moderator's rights. Returns the new ``rev``, or None
    when the message was already deleted.
    """
    result = changes.delete(room_id=room_id, seq=seq, at=now_iso(), by=moderator_id, hidden=True)
    if result.status == changes.ALREADY_DELETED:
        return None
    if result.status == changes.NOT_INITIALISED:
        room_counters(room_id=room_id)
        result = changes.delete(room_id=room_id, seq=seq, at=now_iso(), by=moderator_id, hidden=True)
    if result.status < 0:
        raise _refuse(result.status)
    frame = message_deleted_wire(room=room_slug, seq=seq, rev=result.rev)
    async_to_sync(get_channel_layer().group_send)(
        room_group(room_id), events.room_change_event(room_id=room_id, frame=frame)
    )
    if result.schedule_persist:
        persist_enqueue(server=all_room_redis_urls().index(room_redis_url(room_id)))
    attachments_withdraw_enqueue(room_id=room_id, seq=seq)  # a no-op job for a message without files
    return result.rev


async def message_mark_read(*, room_id: int, user_id: int, seq: int) -> None:
    raised, marker, schedule = await changes.mark_read(room_id=room_id, user_id=user_id, seq=seq)
    if raised:
        await get_channel_layer().group_send(user_group(user_id), events.user_read_event(room_id=room_id, seq=marker))
    if schedule:
        await _schedule_persist(room_id)


async def typing_announce(*, room_id: int, user_id: int, username: str, renew: bool = False) -> bool:
    """Tell the room the user is typing, at most once per TYPING_INTERVAL across their tabs;
    with ``renew`` (they sent a message since, which ended their typing) at once."""
    key = f"{RoomKeys(room_id).prefix}:typing:{user_id}"
    claimed = await get_async_redis(room_id).set(key, 1, nx=not renew, px=int(settings.TYPING_INTERVAL * 1000))
    if not claimed:
        return False
    await get_channel_layer().group_send(
        room_group(room_id), events.room_typing_event(room_id=room_id, user=user_wire(user_id, username))
    )
    return True
