"""Reads of messages: the Redis buffer first, PostgreSQL for what it no longer holds."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from dataclasses import dataclass

from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Exists, OuterRef, Prefetch, Q, QuerySet, Sum
from django.utils.text import Truncator

from messaging.models import Message, Notification, Reaction
from messaging.store import buffer, changes, message_extras
from messaging.store import pins as pins_store
from messaging.store import reactions as reactions_store
from messaging.store.previews import row_preview
from messaging.threads.summaries import thread_summary_changes, with_thread_summaries
from protocol.wire import MessageState, changes_wire, message_wire, record_from_message, reply_wire
from pubsub_site import async_db, coalesce
from rooms.models import Membership, Report, Room

HISTORY_MAX_LIMIT = 200


def room_counters(*, room_id: int) -> tuple[int, int]:
    """The room's (seq, rev), initialising Redis from PostgreSQL when it holds nothing."""
    found = buffer.counters(room_id=room_id)
    if found is not None:
        return found
    with connection.cursor() as cursor:
        cursor.execute(_counters_sql(), [room_id])
        seq, rev = _initial_counters(cursor.fetchone())
    buffer.init_counters(room_id=room_id, seq=seq, rev=rev)
    found = buffer.counters(room_id=room_id)
    assert found is not None
    return found


async def aroom_counters(*, room_id: int) -> tuple[int, int]:
    """room_counters for async code: Redis through the event loop's client and, when Redis
    holds nothing for the room (after Redis lost its data, every room's first subscriber),
    PostgreSQL read on the loop too (pubsub_site.async_db; a thread hop elsewhere).

    The calls that wait together read each room once (pubsub_site.coalesce): a new room's
    first twenty subscribers, arriving together, made twenty reads of PostgreSQL and twenty
    initialisations of its counters."""
    return await coalesce.for_loop("room_counters", lambda: coalesce.Coalescer(_rooms_counters)).get(room_id)


async def _rooms_counters(room_ids: list[int]) -> list[tuple[int, int]]:
    rooms = list(dict.fromkeys(room_ids))
    counters = await asyncio.gather(*(_aroom_counters(room_id=room_id) for room_id in rooms))
    found = dict(zip(rooms, counters, strict=True))
    return [found[room_id] for room_id in room_ids]


async def _aroom_counters(*, room_id: int) -> tuple[int, int]:
    found = await buffer.acounters(room_id=room_id)
    if found is not None:
        return found
    if not async_db.native():
        return await database_sync_to_async(room_counters)(room_id=room_id)
    (row,) = await async_db.fetchall(_counters_sql(), [room_id])
    seq, rev = _initial_counters(row)
    await buffer.ainit_counters(room_id=room_id, seq=seq, rev=rev)
    found = await buffer.acounters(room_id=room_id)
    assert found is not None
    return found


@functools.cache
def _counters_sql() -> str:
    """The room's highest seq and rev in PostgreSQL."""
    table = Message._meta.db_table
    room, seq, rev = (Message._meta.get_field(name).column for name in ("room", "seq", "rev"))
    return f'SELECT MAX("{seq}"), MAX("{rev}") FROM "{table}" WHERE "{room}" = %s'  # noqa: S608 (model names)


def _initial_counters(row: tuple) -> tuple[int, int]:
    """(seq, rev) for Redis from ``_counters_sql``'s row: rev is never below seq."""
    latest, latest_rev = row[0] or 0, row[1] or 0
    return latest, max(latest_rev, latest)


def _state_of_row(message: Message) -> MessageState:
    preview, preview_rev = row_preview(message)
    return MessageState(
        claps=message.clap_total or 0,
        edited=message.edited_at is not None,
        deleted=message.is_deleted,
        rev=message.rev,
        preview=preview,
        preview_rev=preview_rev,
    )


def _pg_messages(room_id: int, **filters) -> list[tuple[dict, MessageState]]:
    rows = (
        Message.objects.filter(room_id=room_id, **filters)
        .select_related("author", "link_preview", "pin__pinned_by")
        .prefetch_related("attachments", Prefetch("reactions", queryset=Reaction.objects.select_related("user")))
        .annotate(clap_total=Sum("claps__count"))
        .order_by("seq")
    )
    return [(record_from_message(row), _with_row_extras(row, _state_of_row(row))) for row in rows]


def _with_row_extras(row: Message, state: MessageState) -> MessageState:
    """The state with the row's reactions and pin (prefetched with it: ``_pg_messages``)."""
    summary = reactions_store.summary_of_rows(list(row.reactions.all()))
    pin = getattr(row, "pin", None)
    return dataclasses.replace(
        state,
        reactions=summary.entries,
        pin=message_extras.pin_wire_state(pins_store.pin_state_of_row(pin)) if pin is not None else None,
    )


def _with_current_state(room_id: int, pairs: list[tuple[dict, MessageState | None]]) -> list[tuple[dict, MessageState]]:
    states = changes.states_of(room_id=room_id, seqs=[record["seq"] for record, _ in pairs])
    merged = [(record, changes.merge_state(record, states.get(record["seq"]), fallback)) for record, fallback in pairs]
    return message_extras.with_extras(pairs=merged, states=states)


def messages_between(*, room_id: int, after: int, upto: int) -> list[tuple[dict, MessageState]]:
    """Every message with after < seq <= upto, ascending, with its current state.

    The buffer is read before PostgreSQL: the job only trims what PostgreSQL
    already has, so whatever left the buffer meanwhile is found there.
    """
    if upto <= after:
        return []
    buffered = buffer.records_between(room_id=room_id, after=after, upto=upto)
    first_buffered = buffered[0]["seq"] if buffered else upto + 1
    # The buffer usually holds the whole range: then PostgreSQL is not asked (a reconnect
    # storm resubscribes with `since` by the thousand, and gaps are filled during an outage).
    older = (
        _pg_messages(room_id, seq__gt=after, seq__lt=first_buffered, seq__lte=upto)
        if first_buffered > after + 1
        else []
    )
    return _with_current_state(room_id, [*older, *((record, None) for record in buffered)])


def with_reply_quotes(*, room_id: int, pairs: list[tuple[dict, MessageState]]) -> list[tuple[dict, MessageState]]:
    """The pairs, each reply's record with the quote of its original as it is now (``reply``:
    edited, or deleted since the reply was sent). An original among the pairs is read there;
    the others with one Redis call and one PostgreSQL query for them all, and only when the
    pairs hold a reply to a message outside them."""
    wanted = {record["reply_to"] for record, _ in pairs if record.get("reply_to")}
    if not wanted:
        return pairs
    originals = {record["seq"]: (record, state) for record, state in pairs if record["seq"] in wanted}
    missing = sorted(wanted - originals.keys())
    if missing:
        states = changes.states_of(room_id=room_id, seqs=missing)
        rows = {
            row.seq: row
            for row in Message.objects.filter(room_id=room_id, seq__in=missing)
            .select_related("author")
            .prefetch_related("attachments")
            .annotate(clap_total=Sum("claps__count"))
        }
        # What PostgreSQL has not written yet is in the buffer: the reply's own record
        # carries the original's quote as it was when the reply was sent.
        snapshots = {r["reply_to"]: r["reply"] for r, _ in pairs if r.get("reply_to") in missing and r.get("reply")}
        for seq in missing:
            row = rows.get(seq)
            if row is not None:
                record, fallback = record_from_message(row), _state_of_row(row)
            elif seq in snapshots:
                snapshot = snapshots[seq]
                record = {"seq": seq, "rev": 0, "author": snapshot["author"], "body": snapshot["excerpt"]}
                fallback = MessageState(deleted=bool(snapshot.get("deleted")))
            else:
                continue
            originals[seq] = (record, changes.merge_state(record, states.get(seq), fallback))
    quoted = []
    for record, state in pairs:
        original = originals.get(record.get("reply_to"))
        if original is not None:
            record = {**record, "reply": reply_wire(*original)}
        quoted.append((record, state))
    return quoted


def messages_replay(*, room_id: int, after: int, upto: int) -> list[tuple[dict, MessageState]]:
    """messages_between, the replies with their quotes as they are now and the threads' roots with
    their summaries (a subscribe's replay)."""
    pairs = with_reply_quotes(room_id=room_id, pairs=messages_between(room_id=room_id, after=after, upto=upto))
    return with_thread_summaries(room_id=room_id, pairs=pairs)


def messages_at(*, room_id: int, seqs: list[int]) -> list[tuple[dict, MessageState]]:
    """The messages with these seqs, ascending, with their current state: one Redis round
    trip for the buffered ones, one query for the others, one round trip for their state.
    The buffer is read first, for the reason ``messages_between`` gives."""
    if not seqs:
        return []
    buffered = {record["seq"]: record for record in buffer.records_at(room_id=room_id, seqs=seqs)}
    missing = [seq for seq in seqs if seq not in buffered]
    older = _pg_messages(room_id, seq__in=missing) if missing else []
    pairs = sorted([*older, *((record, None) for record in buffered.values())], key=lambda pair: pair[0]["seq"])
    return _with_current_state(room_id, pairs)


def changes_after(*, room_id: int, room_slug: str, rev: int, upto_seq: int, limit: int) -> list[dict] | None:
    """Frames for every message with seq <= upto_seq edited, deleted or clapped after ``rev``;
    None when more than ``limit`` messages changed (the client then reloads).

    What it reads is bounded by ``limit``, whatever the room's history: the changed seqs by
    revision (Redis's ``changes``, PostgreSQL's index on (room, rev)), then those messages."""
    seqs = set(changes.changed_seqs_after(room_id=room_id, rev=rev, upto_seq=upto_seq, limit=limit + 1))
    # PostgreSQL knows changes whose traces Redis lost (a wiped Redis).
    seqs.update(
        Message.objects.filter(room_id=room_id, rev__gt=rev, seq__lte=upto_seq)
        .order_by("rev")
        .values_list("seq", flat=True)[: limit + 1]
    )
    if len(seqs) > limit:
        return None
    frames: list[dict] = []
    for record, state in messages_at(room_id=room_id, seqs=sorted(seqs)):
        frames += changes_wire(record, state, room=room_slug, after_rev=rev)
    # A thread's summary is a change of its root (messaging.threads).
    frames += thread_summary_changes(room_id=room_id, room_slug=room_slug, seqs=sorted(seqs), after_rev=rev)
    return frames


@dataclass(frozen=True)
class HistoryPage:
    messages: list[dict]
    has_more: bool  # older messages exist (newer ones, after ``after``)
    has_newer: bool = False  # around a message: newer messages exist
    latest: int = 0  # the room's latest seq when the page was read


def message_history(
    *, room: Room, before: int | None = None, after: int | None = None, around: int | None = None, limit: int = 50
) -> HistoryPage:
    """A page of the room's messages in their wire form, ascending.

    ``seq`` is dense, so a page is a range of sequence numbers. ``around`` centres the
    page on that message (a search result, a mention).
    """
    latest, _ = room_counters(room_id=room.pk)
    limit = max(1, min(limit, HISTORY_MAX_LIMIT))
    has_newer = False
    if around is not None:
        lo = max(0, min(around, latest) - limit // 2 - 1)
        upto = min(latest, lo + limit)
        lo = max(0, upto - limit)
        has_more, has_newer = lo > 0, upto < latest
    elif after is not None:
        upto = min(after + limit, latest)
        lo, has_more = after, upto < latest
    else:
        upto = latest if before is None else min(before - 1, latest)
        lo = max(0, upto - limit)
        has_more = lo > 0
    pairs = with_reply_quotes(room_id=room.pk, pairs=messages_between(room_id=room.pk, after=lo, upto=upto))
    pairs = with_thread_summaries(room_id=room.pk, pairs=pairs)
    return HistoryPage(
        messages=[message_wire(record, room=room.slug, state=state) for record, state in pairs],
        has_more=has_more,
        has_newer=has_newer,
        latest=latest,
    )


def message_get(*, room_id: int, seq: int) -> tuple[dict, MessageState] | None:
    """One message's record and current state, from the buffer or PostgreSQL."""
    if seq < 1:
        return None
    pairs = messages_between(room_id=room_id, after=seq - 1, upto=seq)
    return pairs[0] if pairs else None


async def apersisted_send_seq(*, room_id: int, author_id: int, client_id: str) -> int | None:
    """The seq under which PostgreSQL keeps the author's send ``client_id`` in the room, or None:
    the unique key (room, author, client_id) answers a retry that comes after its dedupe key left
    Redis (messaging.services.message_send). On PostgreSQL the sends that ask at the same time
    ask with one query (pubsub_site.async_db.fetchall_together); elsewhere (SQLite) in Django's
    thread. Raises django.db.DatabaseError when the database cannot answer."""
    if not async_db.native():
        return await database_sync_to_async(_persisted_send_seq)(room_id, author_id, client_id)
    rows = await async_db.fetchall_together(
        _persisted_sends_sql(),
        (room_id, author_id, client_id),
        params=_persisted_sends_params,
        key_of=lambda row: (row[0], row[1], str(row[2])),
    )
    return rows[0][3] if rows else None


def _persisted_send_seq(room_id: int, author_id: int, client_id: str) -> int | None:
    return (
        Message.objects.filter(room_id=room_id, author_id=author_id, client_id=client_id)
        .values_list("seq", flat=True)
        .first()
    )


@functools.cache
def _persisted_sends_sql() -> str:
    """The stored (room, author, client_id, seq) of many sends: the unique key's index, once each."""
    table = Message._meta.db_table
    room, author, client_id, seq = (
        Message._meta.get_field(name).column for name in ("room", "author", "client_id", "seq")
    )
    return (
        f'SELECT m."{room}", m."{author}", m."{client_id}", m."{seq}" FROM "{table}" m '  # noqa: S608 (model names)
        "JOIN unnest(%s::bigint[], %s::bigint[], %s::uuid[]) AS k(room, author, client_id) "
        f'ON m."{room}" = k.room AND m."{author}" = k.author AND m."{client_id}" = k.client_id'
    )


def _persisted_sends_params(keys: list[tuple[int, int, str]]) -> tuple[list, list, list]:
    rooms, authors, client_ids = zip(*keys, strict=True)
    return list(rooms), list(authors), list(client_ids)


def message_seq_of_send(*, room_id: int, author_id: int, client_id: str) -> int | None:
    """The seq of the author's send ``client_id`` in the room, once stored, read from the live
    store's dedupe key (a UUIDv7's lives until MESSAGE_HOT_SECONDS after its message is persisted,
    by when the persistence job has written the seq on the file's row; another UUID's
    MESSAGE_DEDUP_TTL); None before. For what must follow a message
    at once, before the sender's own bookkeeping catches up: an attachment's first reader
    (attachments.selectors), in the moment before the persistence job or the sender's socket
    has written the seq on the file's row."""
    return buffer.stored_seq(room_id=room_id, author_id=author_id, client_id=client_id)


def unread_counts(*, user_id: int, room_ids: list[int]) -> dict[int, int]:
    """Messages after the user's read marker, per room (Redis first, PostgreSQL's marker else)."""
    stored = dict(
        Membership.objects.filter(user_id=user_id, room_id__in=room_ids).values_list("room_id", "last_read_seq")
    )
    counts = {}
    for room_id in room_ids:
        latest, _ = room_counters(room_id=room_id)
        marker = changes.read_markers(room_id=room_id, user_ids=[user_id]).get(user_id, stored.get(room_id, 0))
        counts[room_id] = max(0, latest - marker)
    return counts


UNREAD_MENTIONS_MAX = 99  # per room: a badge says "@99" at most


def unread_mention_seqs(*, user_id: int, room_ids: list[int]) -> dict[int, list[int]]:
    """The seqs of the user's mentions after their read marker, per room (those with any): one
    query, then Redis's newer marker for the rooms that have some (as ``unread_counts``)."""
    stored = dict(
        Membership.objects.filter(user_id=user_id, room_id__in=room_ids).values_list("room_id", "last_read_seq")
    )
    if not stored:
        return {}
    after = Q()
    for room_id, marker in stored.items():
        after |= Q(room_id=room_id, seq__gt=marker)
    found: dict[int, list[int]] = {}
    rows = Notification.objects.filter(after, user_id=user_id, kind=Notification.Kind.MENTION).values_list(
        "room_id", "seq"
    )
    for room_id, seq in rows.order_by("room_id", "seq"):
        found.setdefault(room_id, []).append(seq)
    for room_id in list(found):
        marker = changes.read_markers(room_id=room_id, user_ids=[user_id]).get(user_id, stored[room_id])
        seqs = [seq for seq in found[room_id] if seq > marker][-UNREAD_MENTIONS_MAX:]
        if seqs:
            found[room_id] = seqs
        else:
            del found[room_id]
    return found


def top_clapped_messages(*, room: Room, limit: int = 10) -> list[dict]:
    """The room's most clapped messages in their wire form, most clapped first."""
    pairs = []
    for seq, _ in changes.top_clapped_seqs(room_id=room.pk, limit=limit):
        pair = message_get(room_id=room.pk, seq=seq)
        if pair is not None and not pair[1].deleted:
            pairs.append(pair)
    if pairs:
        return [
            message_wire(record, room=room.slug, state=state)
            for record, state in with_reply_quotes(room_id=room.pk, pairs=pairs)
        ]
    # A Redis that lost its ranking: PostgreSQL's totals.
    rows = (
        Message.objects.filter(room=room, deleted_at__isnull=True, hidden_by__isnull=True)
        .prefetch_related("attachments")
        .annotate(clap_total=Sum("claps__count"))
        .filter(clap_total__gt=0)
        .order_by("-clap_total", "seq")[:limit]
    )
    pairs = [(record_from_message(row), _state_of_row(row)) for row in rows]
    return [
        message_wire(record, room=room.slug, state=state)
        for record, state in with_reply_quotes(room_id=room.pk, pairs=pairs)
    ]


def clap_board(*, room: Room) -> list[dict]:
    """Claps given and received per member in the room, most active first."""
    given, received = changes.clap_counts(room_id=room.pk)
    user_ids = set(given) | set(received)
    names = dict(get_user_model().objects.filter(pk__in=user_ids).values_list("pk", "username"))
    board = [
        {"id": u, "username": names.get(u, "?"), "given": given.get(u, 0), "received": received.get(u, 0)}
        for u in user_ids
    ]
    return sorted(board, key=lambda row: (-(row["given"] + row["received"]), row["username"].lower()))


def notifications_readable(*, user) -> QuerySet:
    """The user's notifications they may still read, newest first: none from a room they are
    banned from or (private) no longer in, and none of a message since deleted or hidden in
    PostgreSQL (``notifications_not_deleted`` checks what Redis knows and PostgreSQL not yet)."""
    membership = Membership.objects.filter(room=OuterRef("room"), user=user)
    deleted = Message.objects.filter(room=OuterRef("room"), seq=OuterRef("seq"), deleted_at__isnull=False)
    return (
        Notification.objects.filter(user=user)
        .filter(Q(room__visibility=Room.Visibility.PUBLIC) | Exists(membership))
        .exclude(Exists(membership.filter(banned=True)))
        .exclude(Exists(deleted))
    )


def notifications_not_deleted(notifications: list) -> list:
    """``notifications`` less those of messages deleted or hidden in the last moments (in Redis,
    not yet written to PostgreSQL by the persistence job)."""
    seqs_by_room: dict[int, list[int]] = {}
    for notification in notifications:
        seqs_by_room.setdefault(notification.room_id, []).append(notification.seq)
    deleted = {
        (room_id, seq)
        for room_id, seqs in seqs_by_room.items()
        for seq, state in changes.states_of(room_id=room_id, seqs=seqs).items()
        if state.deletion is not None
    }
    return [n for n in notifications if (n.room_id, n.seq) not in deleted]


def notifications_unread_count(*, user) -> int:
    """How many of ``notifications_readable`` are unread (Redis's deletions counted too)."""
    unread = list(notifications_readable(user=user).filter(read_at__isnull=True).only("room_id", "seq"))
    return len(notifications_not_deleted(unread))


# --- Reports (the moderation page's list; the acts: messaging.moderation) ---


@dataclass(frozen=True)
class ReportedMessage:
    """A report with what the moderators need to judge it."""

    report: Report
    author: str
    excerpt: str
    exists: bool
    deleted: bool


REPORT_EXCERPT_CHARS = 200


def report_list_open(*, room: Room, limit: int = 100) -> list[ReportedMessage]:
    """The room's open reports, oldest first, each with its message as the room shows it now."""
    reports = room.reports.filter(status=Report.Status.OPEN).select_related("reporter").order_by("created_at", "pk")
    found_by_seq: dict[int, dict | None] = {}
    listed = []
    for report in reports[:limit]:
        if report.seq not in found_by_seq:
            found = message_get(room_id=room.pk, seq=report.seq)
            found_by_seq[report.seq] = message_wire(found[0], room=room.slug, state=found[1]) if found else None
        wire = found_by_seq[report.seq]
        listed.append(
            ReportedMessage(
                report=report,
                author=wire["author"]["username"] if wire else "",
                excerpt=Truncator(wire["body"]).chars(REPORT_EXCERPT_CHARS) if wire else "",
                exists=wire is not None,
                deleted=bool(wire and wire["deleted"]),
            )
        )
    return listed
