"""Copying what Redis acknowledged into the database: the work of the persistence job.

The database is PostgreSQL, or SQLite (the ``make run`` default): every statement here is
portable (the ORM, one CASE update for the read markers), and tests/processes/test_sqlite_processes.py
runs a worker on each.

Every step is idempotent: rows are inserted with ON CONFLICT DO NOTHING (the unique
(room, seq) constraint), state is written as absolute values, and Redis watermarks
move only after PostgreSQL committed. A job killed at any point is redone by the next.
With ``REDIS_WAIT_REPLICAS``, records reach PostgreSQL only once replicas have them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from django.conf import settings
from django.db import connection, transaction
from django.utils.dateparse import parse_datetime

from messaging import metrics
from messaging.models import Clap, Message
from messaging.store import buffer, changes, pins, previews, reactions, watermarks
from pubsub_site.redis.client import all_room_redis_urls
from rooms.models import Membership, Room

logger = logging.getLogger(__name__)

BATCH = 500

# What runs after each batch of a room's messages is in the database (before it is marked
# so), with the batch's records: the mentions (messaging.notifications.mentions.notify_mentions,
# registered by messaging.apps) and the outgoing webhooks (outgoing_webhooks.events, registered
# by its app). A hook, not an import: the store never imports the layers above it.
AFTER_BATCH: list[Callable[..., None]] = []
# What runs after each round of a room's changes is in the database, before it is marked so,
# with their Redis states (seq -> changes.RedisState) and the rev the round started after: the
# link previews of edited messages (messaging.previews.previews_after_changes, registered by
# messaging.apps) and the outgoing webhooks (outgoing_webhooks.events.changes_persisted,
# registered by its app). Before the mark: a job killed in between runs them again (they are
# idempotent).
AFTER_CHANGES: list[Callable[..., None]] = []


def messages_persist_server(*, server: int) -> int:
    """Persist every dirty room on one Redis server until none is left; returns the records processed.

    While sends keep coming, each round waits PERSIST_LINGER_SECONDS before the next, so that
    a round carries a batch rather than the one or two messages of the last milliseconds
    (at 1,000 sends a second the worker spent 0.4 of a core on rounds that small)."""
    url = all_room_redis_urls()[server]
    processed = 0
    while True:
        for room_id in watermarks.dirty_room_ids(url=url):
            processed += room_persist(room_id=room_id)
        if watermarks.release_schedule(url=url):
            return processed
        time.sleep(settings.PERSIST_LINGER_SECONDS)


def room_persist(*, room_id: int) -> int:
    if not Room.objects.filter(pk=room_id).exists():
        logger.warning("room %s no longer exists; dropping its dirty mark", room_id)
        watermarks.forget_room(room_id=room_id)
        return 0
    processed = messages_persist_room(room_id=room_id)
    changes_persist_room(room_id=room_id)
    reads_persist_room(room_id=room_id)
    watermarks.clear_dirty(room_id=room_id)
    return processed


def messages_persist_room(*, room_id: int) -> int:
    """Insert the room's buffered messages; returns how many records were processed."""
    processed = 0
    while True:
        upto = watermarks.persisted_upto(room_id=room_id)
        records = watermarks.unpersisted_records(room_id=room_id, after=upto, limit=BATCH)
        if not records:
            return processed
        # With REDIS_WAIT_REPLICAS: only what a replica has too, so that a failover cannot
        # hand a seq written here to another message (raises NotReplicated: the job fails
        # and the sweep queues it again).
        buffer.confirm_replicated(room_id=room_id)
        rows = [
            Message(
                room_id=room_id,
                seq=r["seq"],
                rev=r["rev"],
                author_id=r["author"]["id"],
                body=r["body"],
                client_id=r["client_id"],
                sent_at=r["sent_at"],
                reply_to_seq=r.get("reply_to"),
                thread_seq=r.get("thread"),
                also_in_room=bool(r.get("also_in_room")),
            )
            for r in records
        ]
        with transaction.atomic():
            Message.objects.bulk_create(rows, ignore_conflicts=True)
        processed += len(rows)
        metrics.PERSISTED_MESSAGES.inc(len(rows))
        # Before the mark: a job killed in between runs them again (they are idempotent), so
        # no batch's mentions or webhook events are lost to a crash.
        for hook in AFTER_BATCH:
            hook(room_id=room_id, records=records)
        watermarks.mark_persisted(room_id=room_id, upto=records[-1]["seq"], records=records)
        if len(records) < BATCH:
            # Caught up with what the room held: what came meanwhile is the next round's (after
            # the linger, with the other rooms'). Going on here took it one or two messages at a
            # time, each batch paying its hooks' queries (~11 ms), while the other rooms waited:
            # at 1,500 sends a second over 10 rooms, PostgreSQL fell 2-5 s behind.
            return processed


def changes_persist_room(*, room_id: int) -> None:
    """Write edits, deletions, claps, reactions and pins to the rows PostgreSQL already has, in rev order."""
    while True:
        done_rev = watermarks.changes_persisted_upto(room_id=room_id)
        persisted_seq = watermarks.persisted_upto(room_id=room_id)
        pending = watermarks.unpersisted_changes(room_id=room_id, after_rev=done_rev, limit=BATCH)
        ready = []
        for seq, rev in pending:
            if seq > persisted_seq:
                break  # its row is not written yet; the next round takes it
            ready.append((seq, rev))
        if not ready:
            return
        seqs = [seq for seq, _ in ready]
        states = changes.states_of(room_id=room_id, seqs=seqs)
        claps_by_seq = changes.claps_by_user(room_id=room_id, seqs=seqs)
        with transaction.atomic():
            messages = {m.seq: m for m in Message.objects.filter(room_id=room_id, seq__in=seqs)}
            for seq, rev in ready:
                message, state = messages.get(seq), states[seq]
                if message is None:
                    continue
                if state.edit is not None:
                    message.body = state.edit["body"]
                    message.edited_at = parse_datetime(state.edit["at"])
                if state.deletion is not None:
                    message.deleted_at = parse_datetime(state.deletion["at"])
                    if state.deletion["hidden"]:
                        message.hidden_by_id = state.deletion["by"]
                message.rev = max(message.rev, rev)
            Message.objects.bulk_update(
                list(messages.values()), ["body", "edited_at", "deleted_at", "hidden_by", "rev"]
            )
            claps = [
                Clap(message=messages[seq], user_id=user_id, count=count)
                for seq, per_user in claps_by_seq.items()
                if seq in messages
                for user_id, count in per_user.items()
            ]
            Clap.objects.bulk_create(
                claps, update_conflicts=True, unique_fields=["message", "user"], update_fields=["count"]
            )
            previews.previews_persist(
                messages=messages, entries={seq: state.preview for seq, state in states.items() if state.preview}
            )
            reactions.reactions_persist(messages=messages, states=states)
            pins.pins_persist(messages=messages, states=states)
        for hook in AFTER_CHANGES:
            hook(room_id=room_id, states=states, after_rev=done_rev)
        watermarks.mark_changes_persisted(room_id=room_id, upto_rev=ready[-1][1])
        if len(ready) < len(pending) or len(pending) < BATCH:
            return


def reads_persist_room(*, room_id: int) -> None:
    """Raise the read markers of the room's members (every sender's moves), never lowering one:
    one statement for each 200 of them.

    Portable SQL (STYLE.md rule 13): a CASE over the members, which PostgreSQL and SQLite (the
    ``make run`` default) both run, rather than PostgreSQL's ``UPDATE … FROM (VALUES …) AS
    v(user_id, seq)``, which SQLite cannot parse. Written as SQL, not as the ORM's
    ``Case(When(…))``: resolving those expressions took 40% of the worker's CPU in the
    benchmark's rooms of 20 (py-spy)."""
    reads = watermarks.unpersisted_reads(room_id=room_id)
    if not reads:
        return
    meta = Membership._meta
    table = connection.ops.quote_name(meta.db_table)
    column = {f.attname: connection.ops.quote_name(f.column) for f in meta.concrete_fields}
    user, marker, room = column["user_id"], column["last_read_seq"], column["room_id"]
    pairs = list(reads.items())
    with connection.cursor() as cursor:
        for start in range(0, len(pairs), 200):
            chunk = pairs[start : start + 200]
            case = f"CASE {user} " + " ".join(["WHEN %s THEN %s"] * len(chunk)) + " END"
            sql = (
                f"UPDATE {table} SET {marker} = {case} "  # noqa: S608 (names from the model, values as parameters)
                f"WHERE {room} = %s AND {user} IN ({', '.join(['%s'] * len(chunk))}) AND {marker} < {case}"
            )
            flat = [value for pair in chunk for value in pair]
            cursor.execute(sql, [*flat, room_id, *(user_id for user_id, _ in chunk), *flat])
    watermarks.mark_reads_persisted(room_id=room_id, reads=reads)
