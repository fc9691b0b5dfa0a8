"""Reads of threads: a thread's page (its root and replies), and the threads a user follows in a
room with how many replies they have not read. Replies come from the buffer first, then from
PostgreSQL for what the buffer no longer holds, as every read of messages does."""

from __future__ import annotations

from dataclasses import dataclass

from messaging.models import Message, ThreadFollow
from messaging.selectors import HISTORY_MAX_LIMIT, message_get, messages_at, with_reply_quotes
from messaging.store import buffer
from messaging.threads.summaries import thread_summaries, with_thread_summaries
from protocol.wire import message_wire, reply_excerpt
from rooms.models import Room


class NoSuchThread(Exception):
    """The room has no such message, or it is a thread reply (a reply's thread is its root's)."""


def thread_root_get(*, room_id: int, seq: int) -> tuple[dict, object]:
    """The root of a thread: a message of the room that is no thread reply itself."""
    found = message_get(room_id=room_id, seq=seq)
    if found is None:
        raise NoSuchThread(f"This room has no message {seq}.")
    if found[0].get("thread"):
        raise NoSuchThread(f"Message {seq} is a thread reply; its thread is that of {found[0]['thread']}.")
    return found


def _reply_seqs(
    room_id: int, root: int, *, after: int = 0, before: int | None = None, limit: int | None = None
) -> list[int]:
    """The seqs of the thread's replies with after < seq < before, ascending; with ``limit``,
    the newest ``limit`` of them."""
    counters = buffer.counters(room_id=room_id)
    latest = counters[0] if counters else 0
    upto = latest if before is None else min(latest, before - 1)
    low = max(root, after)
    buffered = buffer.records_between(room_id=room_id, after=low, upto=upto) if upto > low else []
    seqs = [r["seq"] for r in buffered if r.get("thread") == root]
    first_buffered = buffered[0]["seq"] if buffered else upto + 1
    if limit is not None and len(seqs) >= limit:
        return seqs[-limit:]
    older = Message.objects.filter(room_id=room_id, thread_seq=root, seq__gt=low, seq__lt=first_buffered)
    older_seqs = list(older.order_by("-seq").values_list("seq", flat=True)[: (limit - len(seqs)) if limit else None])
    return sorted(older_seqs) + seqs


@dataclass(frozen=True)
class ThreadPage:
    root: dict  # the root message in its wire form (with its summary)
    replies: list[dict]  # a page of its replies, ascending
    has_more: bool  # older replies exist


def thread_page(*, room: Room, root: int, before: int | None = None, limit: int = 50) -> ThreadPage:
    """The root of a thread and its latest ``limit`` replies (before ``before``), in wire form. A
    deleted root is shown deleted: its thread stays readable."""
    root_record, root_state = thread_root_get(room_id=room.pk, seq=root)
    limit = max(1, min(limit, HISTORY_MAX_LIMIT))
    seqs = _reply_seqs(room.pk, root, before=before, limit=limit + 1)
    has_more = len(seqs) > limit
    seqs = seqs[-limit:]
    pairs = with_reply_quotes(room_id=room.pk, pairs=messages_at(room_id=room.pk, seqs=seqs))
    [(root_record, root_state)] = with_thread_summaries(room_id=room.pk, pairs=[(root_record, root_state)])
    return ThreadPage(
        root=message_wire(root_record, room=room.slug, state=root_state),
        replies=[message_wire(record, room=room.slug, state=state) for record, state in pairs],
        has_more=has_more,
    )


def thread_unread_count(*, room_id: int, root: int, user_id: int, last_read_seq: int) -> int:
    """Replies of the thread after ``last_read_seq`` that someone else wrote."""
    seqs = _reply_seqs(room_id, root, after=last_read_seq)
    if not seqs:
        return 0
    authors = {record["seq"]: record["author"]["id"] for record, _ in messages_at(room_id=room_id, seqs=seqs)}
    return sum(1 for seq in seqs if authors.get(seq) != user_id)


def threads_followed(*, room: Room, user_id: int, limit: int = 50) -> list[dict]:
    """The threads of the room the user follows, the most recently active first: each its root's
    seq, author and start, its summary and how many of its replies the user has not read."""
    follows = list(
        ThreadFollow.objects.filter(room=room, user_id=user_id, following=True).order_by("-root_seq")[:limit]
    )
    if not follows:
        return []
    summaries = thread_summaries(room_id=room.pk, seqs=[f.root_seq for f in follows])
    roots = {
        record["seq"]: (record, state)
        for record, state in messages_at(room_id=room.pk, seqs=[f.root_seq for f in follows])
    }
    listed = []
    for follow in follows:
        summary = summaries.get(follow.root_seq)
        root = roots.get(follow.root_seq)
        if summary is None or root is None:
            continue
        record, state = root
        listed.append(
            {
                "root": follow.root_seq,
                "author": record["author"],
                "excerpt": ""
                if state.deleted
                else reply_excerpt(state.body if state.body is not None else record["body"]),
                "deleted": state.deleted,
                "summary": summary[0],
                "last_read_seq": follow.last_read_seq,
                "unread": thread_unread_count(
                    room_id=room.pk, root=follow.root_seq, user_id=user_id, last_read_seq=follow.last_read_seq
                ),
            }
        )
    listed.sort(key=lambda t: -t["summary"]["last_seq"])
    return listed


def thread_follow_states(*, room: Room, user_id: int) -> dict[int, bool]:
    """root seq -> following, for every thread of the room the user has a say about (those they
    unfollowed included: the page does not follow them again on its own)."""
    return dict(ThreadFollow.objects.filter(room=room, user_id=user_id).values_list("root_seq", "following"))
