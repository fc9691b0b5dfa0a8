"""Web Push: who is pushed for a new message, one push per user however many arrive, and the sending.

Who: after each batch of messages is in the database (``messaging.store.persistence.AFTER_BATCH``,
after the mentions hook made that batch's notifications), each message's recipients by their
notification settings for the room (``messaging.notifications.preferences.recipients``: the
people it mentions, the other members of a direct conversation, members who chose "all"; not
a room set to "nothing" or snoozed); of those, the ones with no open socket anywhere
(``messaging.store.online``: a socket shows them the message live) and at least one push
subscription. A message is queued once per user (a redone
persistence job pushes nobody twice: the ``seen`` key).

Coalescing, per user, in Redis (the first room server):
- ``pubsub:push:pending:<user>``: the events not yet pushed (JSON, a list);
- ``pubsub:push:window:<user>``: lives WEBPUSH_COALESCE_SECONDS after a push was queued;
- ``pubsub:push:due``: users whose pending events go out when their window ends (scored by when).
The first event of a quiet user queues the push job at once (the window opens); the events of
the next WEBPUSH_COALESCE_SECONDS wait, and when the window ends go out together as one
notification ("3 new mentions in #room"). A due user is queued by the next persistence batch or,
when nobody writes, by the workers' sweep (every PERSIST_SWEEP_SECONDS): a coalesced push may
come that much after its window ends.

Sending: ``push_deliver`` encrypts (RFC 8291, aes128gcm) and signs (VAPID, RFC 8292) with
pywebpush. A 404 or 410 deletes the subscription (the browser dropped it); a 429, a 5xx or no
answer is retried PUSH_RETRY_DELAYS later (``pubsub:push:retry``, also flushed by the sweep,
no rq scheduler needed); any other answer is recorded on the subscription and given up.
"""

from __future__ import annotations

import json
import logging
import time

import django_rq
import redis
import requests
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone
from pywebpush import WebPushException, webpush

from messaging.models import Notification
from messaging.notifications.mentions import records_as_now
from messaging.notifications.preferences import ALL, recipients
from messaging.store.online import users_online
from pubsub_site.redis.client import get_redis
from rooms.models import Membership, Room
from rooms.selectors import room_can_read, room_title_for
from webpush.models import PushSubscription

logger = logging.getLogger(__name__)

SEND_PUSHES = "webpush.jobs.send_pushes"
RETRY_PUSH = "webpush.jobs.retry_push"

PENDING_KEY = "pubsub:push:pending:{user_id}"
WINDOW_KEY = "pubsub:push:window:{user_id}"
SEEN_KEY = "pubsub:push:seen:{user_id}:{room_id}:{seq}"
DUE_KEY = "pubsub:push:due"
RETRY_KEY = "pubsub:push:retry"
# Pending events and seen marks are dropped after a day (a user whose pushes all failed).
KEEP_SECONDS = 24 * 3600
# What a push service keeps a push for while the device is offline (the TTL header).
PUSH_TTL_SECONDS = 12 * 3600
PUSH_TIMEOUT_SECONDS = 10
# A failed push is tried again after these delays, then given up.
PUSH_RETRY_DELAYS = (5, 30, 120)
EXCERPT_CHARS = 140
# What a push carries is at most this (push services take 4 KB of ciphertext).
PAYLOAD_MAX_BYTES = 3000
# Pending events looked at per push (a burst is summarised, not listed).
PENDING_MAX = 100


def push_enabled() -> bool:
    return settings.WEBPUSH_VAPID is not None


def _client() -> redis.Redis:
    return get_redis(None)


def _queue():
    return django_rq.get_queue("default", connection=get_redis(url=settings.REDIS_URL))


# --- Subscriptions -------------------------------------------------------------------------


def subscription_save(*, user, endpoint: str, p256dh: str, auth: str, user_agent: str = "") -> PushSubscription:
    """Store the browser's subscription for ``user``; a browser subscribing again (even for
    another account signed in on it) keeps one row, now theirs."""
    fields = {"user": user, "p256dh": p256dh, "auth": auth, "user_agent": user_agent[:300]}
    try:
        with transaction.atomic():
            subscription, _ = PushSubscription.objects.update_or_create(endpoint=endpoint, defaults=fields)
    except IntegrityError:  # two requests of one browser at once: the other made the row
        subscription, _ = PushSubscription.objects.update_or_create(endpoint=endpoint, defaults=fields)
    return subscription


def subscription_delete(*, user, endpoint: str) -> bool:
    """Forget the user's subscription at ``endpoint``; False if they had none there."""
    deleted, _ = PushSubscription.objects.filter(user=user, endpoint=endpoint).delete()
    return bool(deleted)


# --- Who is pushed ---------------------------------------------------------------------------


def _excerpt(body: str) -> str:
    text = " ".join(body.split())
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1] + "…"


def push_targets(*, room_id: int, records: list[dict]) -> list[tuple[int, dict]]:
    """(user id, event) for each message of ``records`` and each user to push it to.

    Who could be pushed at all is asked first (two queries and a read of who is online,
    whatever the batch's size); most batches stop there, before the room and the messages'
    state are read."""
    seqs = [r["seq"] for r in records]
    # Who each message mentions, as the mentions hook decided (it may read the room, exists;
    # it made no row for a message deleted before it was persisted).
    mentioned: dict[int, set[int]] = {}
    for seq, user_id in Notification.objects.filter(
        room_id=room_id, kind=Notification.Kind.MENTION, seq__in=seqs
    ).values_list("seq", "user_id"):
        mentioned.setdefault(seq, set()).add(user_id)
    # People of the room or mentioned in it with a subscription and no socket open.
    everyone_mentioned = set().union(*mentioned.values())
    members = Membership.objects.filter(room_id=room_id, banned=False).values("user_id")
    subscribed = set(
        PushSubscription.objects.filter(Q(user_id__in=members) | Q(user_id__in=everyone_mentioned))
        .filter(user__is_active=True)
        .values_list("user_id", flat=True)
    )
    away = subscribed - users_online(user_ids=sorted(subscribed))
    if not away:
        return []
    room = Room.objects.filter(pk=room_id).first()
    if room is None:
        return []
    current = records_as_now(room_id=room_id, records=records)  # deleted ones left out, edits read
    # Only where someone away could hear of a message not naming them ("all", a direct
    # conversation) is each message asked about; otherwise only those that name someone away.
    every_message_counts = room.is_direct or (
        Membership.objects.filter(room=room, user_id__in=away, notify_level=ALL).exists()
    )
    wanted = []
    for record in current:
        named = mentioned.get(record["seq"], set())
        if not every_message_counts and not named & away:
            continue
        # By each reader's notification settings for the room (a room set to "nothing",
        # or snoozed, pushes nothing; "all" pushes every message).
        reasons = recipients(room=room, author_id=record["author"]["id"], mentioned_user_ids=named)
        wanted.extend((user_id, kind, record) for user_id, kind in reasons.items() if user_id in away)
    if not wanted:
        return []
    memberships = {m.user_id: m for m in Membership.objects.filter(room=room, user_id__in=away).select_related("user")}
    titles: dict[int, str] = {}
    targets = []
    for user_id, kind, record in wanted:
        membership = memberships.get(user_id)
        if not room_can_read(room=room, membership=membership):
            continue
        if user_id not in titles:
            titles[user_id] = room_title_for(room=room, user=membership.user) if room.is_direct else room.name
        targets.append((user_id, push_event(room=room, record=record, kind=kind, room_title=titles[user_id])))
    return targets


def push_event(*, room: Room, record: dict, kind: str, room_title: str) -> dict:
    """What one message means to one recipient, as it waits to be pushed (``push_payload``)."""
    return {
        "kind": kind,
        "room": room.slug,
        "room_title": room_title,
        "direct": room.is_direct,
        "seq": record["seq"],
        "sender": record["author"]["username"],
        "excerpt": _excerpt(record["body"]),
        "url": f"{room.get_absolute_url()}#seq-{record['seq']}",
    }


def push_after_batch(*, room_id: int, records: list[dict]) -> None:
    """The persistence job's hook: queue the pushes a batch of messages calls for."""
    if not push_enabled() or not records:
        return
    client = _client()
    for user_id, event in push_targets(room_id=room_id, records=records):
        push_queue_event(client=client, user_id=user_id, event=event)
    push_flush_due(client=client)


def push_queue_event(*, client: redis.Redis, user_id: int, event: dict) -> bool:
    """Add ``event`` to the user's pending pushes: queued at once when no window is open, else
    due when it ends. False when this message was already queued for them."""
    seen = SEEN_KEY.format(user_id=user_id, room_id=event["room"], seq=event["seq"])
    if not client.set(seen, 1, nx=True, ex=KEEP_SECONDS):
        return False
    pending = PENDING_KEY.format(user_id=user_id)
    pipe = client.pipeline(transaction=True)
    pipe.rpush(pending, json.dumps(event))
    pipe.expire(pending, KEEP_SECONDS)
    pipe.execute()
    window_ms = max(1, int(settings.WEBPUSH_COALESCE_SECONDS * 1000))
    if client.set(WINDOW_KEY.format(user_id=user_id), 1, nx=True, px=window_ms):
        client.zrem(DUE_KEY, user_id)
        _queue().enqueue(SEND_PUSHES, user_id)
    else:
        remaining_ms = client.pttl(WINDOW_KEY.format(user_id=user_id))
        client.zadd(DUE_KEY, {user_id: time.time() + max(remaining_ms, 0) / 1000}, nx=True)
    return True


def push_flush_due(*, client: redis.Redis) -> int:
    """Queue the pushes whose coalescing window ended, and the retries whose delay passed;
    returns how many jobs were queued. Safe from any number of workers at once: a ZREM
    decides who queues each."""
    if not push_enabled():
        return 0
    now = time.time()
    queued = 0
    window_ms = max(1, int(settings.WEBPUSH_COALESCE_SECONDS * 1000))
    # Both read in one round trip: every persistence batch asks, and mostly neither has any.
    pipe = client.pipeline(transaction=False)
    pipe.zrangebyscore(DUE_KEY, "-inf", now)
    pipe.zrangebyscore(RETRY_KEY, "-inf", now)
    due, retries = pipe.execute()
    for member in due:
        if client.zrem(DUE_KEY, member):
            user_id = int(member)
            client.set(WINDOW_KEY.format(user_id=user_id), 1, px=window_ms)  # what comes next waits again
            _queue().enqueue(SEND_PUSHES, user_id)
            queued += 1
    for member in retries:
        if client.zrem(RETRY_KEY, member):
            retry = json.loads(member)
            _queue().enqueue(RETRY_PUSH, retry["subscription"], retry["payload"], retry["attempt"])
            queued += 1
    return queued


# --- What is pushed ---------------------------------------------------------------------------


def push_payload(events: list[dict]) -> dict:
    """The notification for one or more pending events: {title, body, room, seq, url, tag, count}.

    One event: the room and the sender, the message's excerpt, its link. Several: how many,
    and where; the body is the latest message, the link the earliest (read on from there)."""
    first, last = events[0], events[-1]
    if len(events) == 1:
        if first["direct"]:
            title = f"{first['sender']} (direct message)"
        else:
            title = f"#{first['room_title']} · {first['sender']}"
    else:
        rooms = {e["room"] for e in events}
        kinds = {e["kind"] for e in events}
        noun = "mentions" if kinds == {"mention"} else "messages"
        if len(rooms) == 1:
            where = first["room_title"] if first["direct"] else f"#{first['room_title']}"
            title = f"{len(events)} new {noun} in {where}"
        else:
            title = f"{len(events)} new {noun} in {len(rooms)} rooms"
    return {
        "title": title[:200],
        "body": first["excerpt"] if len(events) == 1 else f"{last['sender']}: {last['excerpt']}",
        "room": first["room"],
        "seq": first["seq"],
        "url": first["url"],
        # One notification per room on the device: a newer push replaces the one shown.
        "tag": f"room-{first['room']}",
        "count": len(events),
    }


def _encoded(payload: dict) -> str:
    data = json.dumps(payload, ensure_ascii=False)
    while len(data.encode()) > PAYLOAD_MAX_BYTES and len(payload["body"]) > 20:
        payload = {**payload, "body": payload["body"][: len(payload["body"]) // 2] + "…"}
        data = json.dumps(payload, ensure_ascii=False)
    return data


def _pending_take(*, client: redis.Redis, user_id: int) -> list[dict]:
    """Take the user's pending events (atomically: an event is in one push, never two)."""
    pending = PENDING_KEY.format(user_id=user_id)
    pipe = client.pipeline(transaction=True)
    pipe.lrange(pending, 0, -1)
    pipe.delete(pending)
    raw, _ = pipe.execute()
    return [json.loads(item) for item in raw]


def push_send_pending(*, user_id: int) -> int:
    """Send the user's pending events as one notification to each of their subscriptions;
    returns how many subscriptions took it."""
    if not push_enabled():
        return 0
    client = _client()
    events = _pending_take(client=client, user_id=user_id)
    if not events:
        return 0
    if user_id in users_online(user_ids=[user_id]):
        return 0  # they came back meanwhile: their page shows it
    data = _encoded(push_payload(events[-PENDING_MAX:] if len(events) > PENDING_MAX else events))
    sent = 0
    for subscription_id in PushSubscription.objects.filter(user_id=user_id).values_list("id", flat=True):
        sent += push_deliver(subscription_id=subscription_id, data=data, attempt=0) == "sent"
    return sent


def _failed(subscription: PushSubscription, reason: str) -> None:
    PushSubscription.objects.filter(pk=subscription.pk).update(
        last_failure_at=timezone.now(), failures=F("failures") + 1, last_error=reason[:300]
    )


def push_deliver(*, subscription_id: int, data: str, attempt: int) -> str:
    """Push ``data`` to one subscription: "sent", "gone" (404/410: deleted), "retry" (queued
    again after a delay), "failed" (given up) or "missing" (deleted meanwhile)."""
    subscription = PushSubscription.objects.filter(pk=subscription_id).first()
    if subscription is None or not push_enabled():
        return "missing"
    keys = settings.WEBPUSH_VAPID
    try:
        webpush(
            subscription_info=subscription.info(),
            data=data,
            vapid_private_key=keys.private_key,
            vapid_claims={"sub": keys.subject},  # a new dict each time: pywebpush writes aud and exp into it
            ttl=PUSH_TTL_SECONDS,
            timeout=PUSH_TIMEOUT_SECONDS,
            headers={"Urgency": "high"},
        )
    except WebPushException as error:
        status = error.response.status_code if error.response is not None else None
        if status in (404, 410):
            PushSubscription.objects.filter(pk=subscription.pk).delete()
            logger.info("push subscription %s is gone (%s): deleted", subscription.pk, status)
            return "gone"
        reason = f"{status} {error.response.reason}" if error.response is not None else str(error)
        return _retry_or_give_up(
            subscription, data, attempt, reason, retry=status is None or status == 429 or status >= 500
        )
    except requests.RequestException as error:
        return _retry_or_give_up(subscription, data, attempt, repr(error), retry=True)
    PushSubscription.objects.filter(pk=subscription.pk).update(
        last_success_at=timezone.now(), failures=0, last_error=""
    )
    return "sent"


def _retry_or_give_up(subscription: PushSubscription, data: str, attempt: int, reason: str, *, retry: bool) -> str:
    _failed(subscription, reason)
    if not retry or attempt >= len(PUSH_RETRY_DELAYS):
        logger.warning("push to subscription %s failed (%s); given up", subscription.pk, reason)
        return "failed"
    member = json.dumps({"subscription": subscription.pk, "payload": data, "attempt": attempt + 1})
    _client().zadd(RETRY_KEY, {member: time.time() + PUSH_RETRY_DELAYS[attempt]})
    logger.info(
        "push to subscription %s failed (%s); tried again in %ss", subscription.pk, reason, PUSH_RETRY_DELAYS[attempt]
    )
    return "retry"
