"""Threads' summaries as the history, a replay and a recovery by ``rev`` show them.

Redis holds each summary (messaging.store.threads); a root at or below the room's floor whose
summary Redis lost is read from PostgreSQL and the buffer. Below ``messaging.selectors``: it
reads the store and the models only.
"""

from __future__ import annotations

from messaging.models import Message
from messaging.store import buffer
from messaging.store import threads as store
from protocol.wire import record_from_message, thread_summary_frame, thread_summary_wire

REPLIERS_SHOWN = 3


def _buffered_from(room_id: int, after: int) -> list[dict]:
    counters = buffer.counters(room_id=room_id)
    latest = counters[0] if counters else 0
    return buffer.records_between(room_id=room_id, after=after, upto=latest) if latest > after else []


def thread_summary_compute(*, room_id: int, root: int) -> dict | None:
    """The summary of ``root``'s thread read from the messages (the buffer, then PostgreSQL for
    what it no longer holds); None when it has no reply."""
    buffered = _buffered_from(room_id, root)
    first_buffered = buffered[0]["seq"] if buffered else None
    replies = [r for r in buffered if r.get("thread") == root]
    older = Message.objects.filter(room_id=room_id, thread_seq=root)
    if first_buffered is not None:
        older = older.filter(seq__lt=first_buffered)
    count = older.count() + len(replies)
    if not count:
        return None
    repliers: list[dict] = []
    for author in [r["author"] for r in reversed(replies)]:
        if len(repliers) < REPLIERS_SHOWN and all(a["id"] != author["id"] for a in repliers):
            repliers.append(author)
    last = replies[-1] if replies else None
    if len(repliers) < REPLIERS_SHOWN or last is None:
        rows = older.select_related("author").order_by("-seq")[:100]
        for row in rows:
            if last is None:
                last = {"seq": row.seq, "sent_at": record_from_message(row)["sent_at"]}
            if len(repliers) < REPLIERS_SHOWN and all(a["id"] != row.author_id for a in repliers):
                repliers.append({"id": row.author_id, "username": row.author.username})
    return thread_summary_wire(count=count, last_seq=last["seq"], last_reply_at=last["sent_at"], repliers=repliers)


def thread_summaries(*, room_id: int, seqs: list[int]) -> dict[int, tuple[dict, int | None]]:
    """The summaries of the threads these messages are roots of: seq -> (summary, rev of its last
    change, None when it was read from the messages). Messages with no reply are left out. One
    Redis call; PostgreSQL only for roots whose summary Redis may have lost."""
    found, floor = store.summaries_of(room_id=room_id, seqs=seqs)
    result: dict[int, tuple[dict, int | None]] = dict(found)
    candidates = {seq for seq in seqs if seq not in found and seq <= floor}
    if not candidates:
        return result
    # Which of them have replies at all: one query and one read of the buffer, then a summary
    # read for those only.
    roots = set(
        Message.objects.filter(room_id=room_id, thread_seq__in=candidates)
        .order_by()
        .values_list("thread_seq", flat=True)
        .distinct()
    )
    roots.update(r["thread"] for r in _buffered_from(room_id, min(candidates)) if r.get("thread") in candidates)
    for seq in sorted(roots):
        summary = thread_summary_compute(room_id=room_id, root=seq)
        if summary is not None:
            result[seq] = (summary, None)
    return result


def with_thread_summaries(*, room_id: int, pairs: list) -> list:
    """The (record, state) pairs, each thread root's record with its ``thread_summary``."""
    summaries = thread_summaries(room_id=room_id, seqs=[r["seq"] for r, _ in pairs if not r.get("thread")])
    if not summaries:
        return pairs
    return [
        ({**record, "thread_summary": summaries[record["seq"]][0]} if record["seq"] in summaries else record, state)
        for record, state in pairs
    ]


def thread_summary_changes(*, room_id: int, room_slug: str, seqs: list[int], after_rev: int) -> list[dict]:
    """``thread_summary`` frames for those of these messages (changed after ``after_rev``) whose
    thread's summary changed after it. A summary read from the messages has no rev: sent."""
    frames = []
    for seq, (summary, rev) in sorted(thread_summaries(room_id=room_id, seqs=seqs).items()):
        if rev is None or rev > after_rev:
            frames.append(thread_summary_frame(room=room_slug, seq=seq, rev=rev or after_rev, summary=summary))
    return frames
