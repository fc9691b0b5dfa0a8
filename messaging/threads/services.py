"""Writes of threads: where a thread reply goes, its root's summary told to the room, and who
follows a thread (its root's author and every replier, written by the persistence job; the
follow and unfollow buttons; how far one has read it).

A thread reply is sent as any message (messaging.services.message_send, with ``thread``): the
append script moves its thread's summary in the same step; this module tells the room of it.
"""

from __future__ import annotations

import logging

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db.models import F
from django.db.models.functions import Greatest

from messaging.frames import ClientError
from messaging.models import Message, ThreadFollow
from messaging.selectors import message_get
from messaging.store import threads as store
from messaging.threads.summaries import thread_summary_compute
from protocol import events
from protocol.events import room_group
from protocol.wire import thread_summary_frame
from rooms.models import Room

logger = logging.getLogger(__name__)


async def thread_root_for_send(*, room_id: int, seq: int) -> int:
    """The thread a reply sent into message ``seq``'s thread belongs to: ``seq``'s, or, when
    ``seq`` is itself a thread reply, its root's (threads do not nest). A message the room does
    not have is refused (``bad_request``)."""
    found = await database_sync_to_async(message_get)(room_id=room_id, seq=seq)
    if found is None:
        raise ClientError("bad_request", f"`thread`: this room has no message {seq}.")
    return found[0].get("thread") or seq


async def thread_summary_publish(
    *, room_id: int, room_slug: str, root: int, stored: bytes, missing: bool
) -> dict | None:
    """Tell the room's subscribers of the summary a thread reply moved (``stored``, as the
    append script wrote it), or, when Redis had none (``missing``), of the summary read from
    the messages and stored now. Returns the frame sent (None: another writer's was fuller)."""
    if missing:
        summary = await database_sync_to_async(thread_summary_compute)(room_id=room_id, root=root)
        if summary is None:  # the reply left the buffer and PostgreSQL in between: not possible
            logger.warning("thread %s/%s has a reply but no summary", room_id, root)
            return None
        # The room is dirty already (the reply's append marked it and claimed its job): the
        # root's new rev reaches PostgreSQL with that job, or the worker's sweep.
        written, summary, rev, _ = await store.summary_offer(room_id=room_id, root=root, summary=summary)
        if not written:
            return None
    else:
        summary, rev = store.thread_summary_parse(stored)
    frame = thread_summary_frame(room=room_slug, seq=root, rev=rev, summary=summary)
    await get_channel_layer().group_send(room_group(room_id), events.room_change_event(room_id=room_id, frame=frame))
    return frame


def thread_follows_after_batch(*, room_id: int, records: list[dict]) -> None:
    """Run by the persistence job after each batch it wrote (``persistence.AFTER_BATCH``): each
    reply's author follows its thread (again, if they had unfollowed it) and has read it up to
    their reply; each root's author follows it unless they unfollowed it. Idempotent."""
    replies = [r for r in records if r.get("thread")]
    if not replies:
        return
    roots = {r["thread"] for r in replies}
    root_authors = Message.objects.filter(room_id=room_id, seq__in=roots).values_list("seq", "author_id")
    ThreadFollow.objects.bulk_create(
        [ThreadFollow(user_id=author, room_id=room_id, root_seq=root) for root, author in root_authors],
        ignore_conflicts=True,
    )
    for reply in replies:
        author, root, seq = reply["author"]["id"], reply["thread"], reply["seq"]
        ThreadFollow.objects.bulk_create(
            [ThreadFollow(user_id=author, room_id=room_id, root_seq=root, last_read_seq=seq)], ignore_conflicts=True
        )
        ThreadFollow.objects.filter(user_id=author, room_id=room_id, root_seq=root).update(
            following=True, last_read_seq=Greatest(F("last_read_seq"), seq)
        )


def thread_follow_set(*, room: Room, user_id: int, root: int, following: bool) -> ThreadFollow:
    """The user follows the thread, or stops following it (the job will not follow it for
    them again, until they reply in it)."""
    follow, _ = ThreadFollow.objects.update_or_create(
        user_id=user_id, room=room, root_seq=root, defaults={"following": following}
    )
    return follow


def thread_mark_read(*, room: Room, user_id: int, root: int, seq: int, follows_by_default: bool) -> None:
    """The user has read the thread up to reply ``seq`` (a marker that only rises). With no row
    yet (the job writes them a moment after a reply), one is made: following when
    ``follows_by_default`` (they wrote the root or a reply)."""
    ThreadFollow.objects.bulk_create(
        [ThreadFollow(user_id=user_id, room=room, root_seq=root, following=follows_by_default, last_read_seq=seq)],
        ignore_conflicts=True,
    )
    ThreadFollow.objects.filter(user_id=user_id, room=room, root_seq=root).update(
        last_read_seq=Greatest(F("last_read_seq"), seq)
    )
