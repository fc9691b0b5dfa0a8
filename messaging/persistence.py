"""Copying what Redis acknowledged into the database: the work of the persistence job.

The database is PostgreSQL, or SQLite (the ``make run`` default): every statement here is
portable (the ORM, one CASE update for the read markers), and tests/test_sqlite_processes.py
runs a worker on each.

Every step is idempotent: rows are inserted with ON CONFLICT DO NOTHING (the unique
(room, seq) constraint), state is written as absolute values, and Redis watermarks
move only after PostgreSQL committed. A job killed at any point is redone by the next.
With ``REDIS_WAIT_REPLICAS``, records reach PostgreSQL only once replicas have them.
"""

from __future__ import annotations

import logging
import re
import time

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Case, IntegerField, Value, When
from django.utils.dateparse import parse_datetime

from messaging import buffer, changes, events, metrics
from messaging.events import user_group
from messaging.models import Clap, Message, Notification
from messaging.wire import notification_frame, user_wire
from pubsub_site.redis_client import all_room_redis_urls
from rooms.models import Membership, Room
from rooms.selectors import room_can_read

logger = logging.getLogger(__name__)

BATCH = 500
MENTION = re.compile(r"(?<![\w@])@([\w.@+-]{1,150})")


def messages_persist_server(*, server: int) -> int:
    """Persist every dirty room on one Redis server until none is left; returns the records processed.

    While sends keep coming, each round waits PERSIST_LINGER_SECONDS before the next, so that
    a round carries a batch rather than the one or two messages of the last milliseconds
    (at 1,000 sends a second the worker spent 0.4 of a core on rounds that small)."""
    url = all_room_redis_urls()[server]
    processed = 0
    while True:
        for room_id in buffer.dirty_room_ids(url=url):
            processed += room_persist(room_id=room_id)
        if buffer.release_schedule(url=url):
            return processed
        time.sleep(settings.PERSIST_LINGER_SECONDS)


def room_persist(*, room_id: int) -> int:
    if not Room.objects.filter(pk=room_id).exists():
        logger.warning("room %s no longer exists; dropping its dirty mark", room_id)
        buffer.forget_room(room_id=room_id)
        return 0
    processed = messages_persist_room(room_id=room_id)
    changes_persist_room(room_id=room_id)
    reads_persist_room(room_id=room_id)
    buffer.clear_dirty(room_id=room_id)
    return processed


def messages_persist_room(*, room_id: int) -> int:
    """Insert the room's buffered messages; returns how many records were processed."""
    processed = 0
    while True:
        upto = buffer.persisted_upto(room_id=room_id)
        records = buffer.unpersisted_records(room_id=room_id, after=upto, limit=BATCH)
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
            )
            for r in records
        ]
        with transaction.atomic():
            Message.objects.bulk_create(rows, ignore_conflicts=True)
        processed += len(rows)
        metrics.PERSISTED_MESSAGES.inc(len(rows))
        buffer.mark_persisted(room_id=room_id, upto=records[-1]["seq"])
        notify_mentions(room_id=room_id, records=[r for r in records if "@" in r["body"]])


def changes_persist_room(*, room_id: int) -> None:
    """Write edits, deletions and claps to the rows PostgreSQL already has, in rev order."""
    while True:
        done_rev = buffer.changes_persisted_upto(room_id=room_id)
        persisted_seq = buffer.persisted_upto(room_id=room_id)
        pending = buffer.unpersisted_changes(room_id=room_id, after_rev=done_rev, limit=BATCH)
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
        buffer.mark_changes_persisted(room_id=room_id, upto_rev=ready[-1][1])
        if len(ready) < len(pending) or len(pending) < BATCH:
            return


def reads_persist_room(*, room_id: int) -> None:
    """Raise the read markers of the room's members in one statement (every sender's moves).

    Portable SQL (STYLE.md rule 13): a CASE over the members rather than PostgreSQL's
    ``UPDATE … FROM (VALUES …)``, which SQLite (the ``make run`` default) cannot parse."""
    reads = buffer.unpersisted_reads(room_id=room_id)
    if not reads:
        return
    marker = Case(
        *(When(user_id=user_id, then=Value(seq)) for user_id, seq in reads.items()),
        output_field=IntegerField(),
    )
    Membership.objects.filter(room_id=room_id, user_id__in=list(reads), last_read_seq__lt=marker).update(
        last_read_seq=marker
    )
    buffer.mark_reads_persisted(room_id=room_id, reads=reads)


def notify_mentions(*, room_id: int, records: list[dict]) -> None:
    """Store a notification for each @username who can read the room, and push it to them once.

    What counts is the message as it is now: one deleted (or hidden) before it was persisted
    notifies no one, and one edited since is read in its edited form (Redis holds both)."""
    if not records:
        return
    states = changes.states_of(room_id=room_id, seqs=[r["seq"] for r in records])
    current = []
    for record in records:
        state = states.get(record["seq"])
        if state is not None and state.deletion is not None:
            continue
        if state is not None and state.edit is not None:
            record = {**record, "body": state.edit["body"]}
        current.append(record)
    records = [r for r in current if "@" in r["body"]]
    if not records:
        return
    room = Room.objects.get(pk=room_id)
    usernames = {name.rstrip(".").lower() for r in records for name in MENTION.findall(r["body"])}
    if not usernames:
        return
    pattern = "^(" + "|".join(re.escape(n) for n in sorted(usernames)) + ")$"
    users = {u.username.lower(): u for u in get_user_model().objects.filter(username__iregex=pattern)}
    memberships = {m.user_id: m for m in Membership.objects.filter(room=room, user__in=users.values())}
    layer = get_channel_layer()
    for record in records:
        mentioned = {name.rstrip(".").lower() for name in MENTION.findall(record["body"])}
        for name in sorted(mentioned):
            user = users.get(name)
            if user is None or user.pk == record["author"]["id"]:
                continue
            if not room_can_read(room=room, membership=memberships.get(user.pk)):
                continue  # an outsider: no notification, nothing leaks
            notification, created = Notification.objects.get_or_create(
                user=user,
                room=room,
                seq=record["seq"],
                kind=Notification.Kind.MENTION,
                defaults={"from_user_id": record["author"]["id"], "excerpt": record["body"][:200]},
            )
            if created:
                frame = notification_frame(
                    kind="mention",
                    room=room.slug,
                    seq=record["seq"],
                    sender=user_wire(record["author"]["id"], record["author"]["username"]),
                    excerpt=notification.excerpt,
                )
                async_to_sync(layer.group_send)(user_group(user.pk), events.user_notify_event(frame=frame))
