"""E-mail for missed mentions: one digest, at most once an hour, to people who are away.

Direct messages count as mentions (their ``direct`` notifications are digested too), and a
room the user set to "nothing", or snoozed, is left out of the digest while it is so
(messaging.notifications.preferences).

A mention is missed when, MENTION_EMAIL_DELAY after its notification was made, it is
still unread in both of the site's senses: the notification was not seen on the
notifications page (``read_at``) and the user's read marker in the room (Redis first,
then ``Membership.last_read_seq``, as the unread counts read it) is below its message.
A user is away when no socket of theirs is open in any web process (messaging.realtime.online).
A user with a Web Push subscription (webpush.models.PushSubscription: the reverse relation
``push_subscriptions``) gets no digest: their mentions are pushed to their devices, once each;
a subscription the push service drops (404, 410) is deleted, and the e-mails come back.

``mention_digests_send`` (the job, queued every MENTION_EMAIL_SWEEP_SECONDS by one of the
workers) finds users with such mentions not yet covered by a digest, and for each claims
the digest with one conditional UPDATE of their accounts.Profile: it moves
``mention_emailed_upto`` (the highest Notification id covered) and
``last_mention_email_at`` together, only if both still hold what this worker read. Of two
workers, one updates the row and sends; the other updates nothing and sends nothing. A
digest that fails to send is handed back (the same UPDATE the other way) for the next sweep.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import django_rq
from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db.models import F, Q
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from accounts.models import Profile
from messaging import job_paths
from messaging.models import Message, Notification
from messaging.notifications.preferences import should_notify
from messaging.store import changes
from messaging.store.online import users_online
from rooms.models import Membership
from rooms.selectors import room_can_read

logger = logging.getLogger(__name__)

# A mention unread this long after it was made, while its user is away, is e-mailed.
MENTION_EMAIL_DELAY = timedelta(minutes=10)
# At most one digest per user in this long.
MENTION_EMAIL_INTERVAL = timedelta(hours=1)
# Older mentions are never e-mailed (the first sweep after the feature shipped does not dig
# up the past; turning the e-mails back on passes over what was said while they were off:
# accounts.services.profile_update_email).
MENTION_EMAIL_LOOKBACK = timedelta(days=1)
# A digest lists this many mentions, then says how many more there are.
MENTION_DIGEST_LIST_MAX = 20
# Users handled per job; the next sweep takes the rest.
USERS_PER_SWEEP = 500
EXCERPT_CHARS = 140
SWEEP_KEY = "pubsub:mention_emails:scheduled"
# A direct message counts as a mention (messaging.notifications.preferences).
DIGESTED_KINDS = (Notification.Kind.MENTION, Notification.Kind.DIRECT)


@dataclass(frozen=True)
class MissedMention:
    room_name: str
    author: str
    excerpt: str
    url: str


def absolute_url(path: str) -> str:
    return settings.SITE_URL.rstrip("/") + path


def mention_digest_candidates(*, now: datetime, limit: int = USERS_PER_SWEEP) -> list[int]:
    """Users with unread mentions older than the delay and not yet covered, who want
    e-mail, have a verified address, and had no digest within the interval."""
    may_get_one = Q(
        user__profile__mention_emails=True,
        user__profile__email_verified=True,  # a user without a profile row has no verified address
        id__gt=F("user__profile__mention_emailed_upto"),
    ) & (
        Q(user__profile__last_mention_email_at__isnull=True)
        | Q(user__profile__last_mention_email_at__lte=now - MENTION_EMAIL_INTERVAL)
    )
    due = (
        Notification.objects.filter(
            kind__in=DIGESTED_KINDS,
            read_at__isnull=True,
            created_at__lte=now - MENTION_EMAIL_DELAY,
            created_at__gt=now - MENTION_EMAIL_LOOKBACK,
            user__is_active=True,
        )
        .exclude(user__email="")
        # Mentions reach a device with a push subscription by push (webpush), not by e-mail.
        .filter(user__push_subscriptions__isnull=True)
        .filter(may_get_one)
    )
    return list(due.order_by("user_id").values_list("user_id", flat=True).distinct()[:limit])


def _missed_mentions(*, user_id: int, after_id: int, now: datetime) -> tuple[list[Notification], int]:
    """The user's mentions that are due and still unread, oldest first, and the highest id
    of all the due ones (read or not: the digest covers them all)."""
    due = list(
        Notification.objects.filter(
            user_id=user_id,
            kind__in=DIGESTED_KINDS,
            id__gt=after_id,
            created_at__lte=now - MENTION_EMAIL_DELAY,
            created_at__gt=now - MENTION_EMAIL_LOOKBACK,
        )
        .select_related("room", "from_user")
        .order_by("id")
    )
    if not due:
        return [], after_id
    room_ids = {n.room_id for n in due}
    memberships = {m.room_id: m for m in Membership.objects.filter(user_id=user_id, room_id__in=room_ids)}
    markers = {
        room_id: max(
            changes.read_markers(room_id=room_id, user_ids=[user_id]).get(user_id, 0),
            getattr(memberships.get(room_id), "last_read_seq", 0),
        )
        for room_id in room_ids
    }
    pairs = Q()
    for n in due:
        pairs |= Q(room_id=n.room_id, seq=n.seq)
    messages = {(m.room_id, m.seq): m for m in Message.objects.filter(pairs)}
    missed = []
    for n in due:
        message = messages.get((n.room_id, n.seq))
        if n.read_at is not None or n.seq <= markers[n.room_id]:
            continue  # read in time
        if message is not None and message.is_deleted:
            continue
        if not should_notify(memberships.get(n.room_id), room=n.room, mentioned=True, now=now):
            continue  # the room was set to "nothing" or snoozed since: its mentions are not e-mailed
        if room_can_read(room=n.room, membership=memberships.get(n.room_id)):
            # What the message says now (an edit), else what it said when it was made.
            n.body = message.body if message is not None else n.excerpt
            missed.append(n)
    return missed, due[-1].id


def _claim(*, profile: Profile, upto: int, sent_at: datetime | None) -> bool:
    """Move the profile's digest fields from what was read to (upto, sent_at), if nobody did first."""
    unchanged = Profile.objects.filter(
        pk=profile.pk,
        mention_emailed_upto=profile.mention_emailed_upto,
        last_mention_email_at=profile.last_mention_email_at,  # None: IS NULL
    )
    fields = {"mention_emailed_upto": upto}
    if sent_at is not None:
        fields["last_mention_email_at"] = sent_at
    return unchanged.update(**fields) == 1


def _release(*, profile: Profile, upto: int, sent_at: datetime) -> None:
    """Hand a claimed digest that could not be sent back to the next sweep."""
    Profile.objects.filter(pk=profile.pk, mention_emailed_upto=upto, last_mention_email_at=sent_at).update(
        mention_emailed_upto=profile.mention_emailed_upto, last_mention_email_at=profile.last_mention_email_at
    )


def mention_digest_message(*, user, mentions: list[Notification]) -> EmailMultiAlternatives:
    """The digest e-mail (text and HTML) listing ``mentions``, oldest first."""
    listed = []
    for n in mentions[:MENTION_DIGEST_LIST_MAX]:
        body = " ".join(getattr(n, "body", n.excerpt).split())
        listed.append(
            MissedMention(
                room_name="a direct message" if n.kind == Notification.Kind.DIRECT else n.room.name,
                author=n.from_user.get_username(),
                excerpt=body if len(body) <= EXCERPT_CHARS else body[: EXCERPT_CHARS - 1] + "…",
                url=absolute_url(f"{n.room.get_absolute_url()}#seq-{n.seq}"),
            )
        )
    context = {
        "user": user,
        "mentions": listed,
        "more": len(mentions) - len(listed),
        "count": len(mentions),
        "notifications_url": absolute_url(reverse("notifications")),
        "settings_url": absolute_url(reverse("account-settings")),
    }
    if len(mentions) == 1 and mentions[0].kind == Notification.Kind.DIRECT:
        subject = f"{listed[0].author} sent you a direct message"
    elif len(mentions) == 1:
        subject = f"{listed[0].author} mentioned you in {listed[0].room_name}"
    else:
        subject = f"{len(mentions)} mentions while you were away"
    message = EmailMultiAlternatives(
        subject=" ".join(subject.split()),  # a header: no line breaks, whatever a room is called
        body=render_to_string("messaging/email/mention_digest.txt", context),
        to=[user.email],
        headers={"List-Unsubscribe": f"<{context['settings_url']}>"},
    )
    message.attach_alternative(render_to_string("messaging/email/mention_digest.html", context), "text/html")
    return message


def mention_digest_send(*, user_id: int, now: datetime) -> bool:
    """Send the user's digest if one is due; True when an e-mail went out."""
    profile, _ = Profile.objects.select_related("user").get_or_create(user_id=user_id)
    user = profile.user
    if not (profile.mention_emails and profile.email_verified and user.email and user.is_active):
        return False
    if user.push_subscriptions.exists():
        return False  # pushed to their devices instead (webpush.services)
    if profile.last_mention_email_at is not None and profile.last_mention_email_at > now - MENTION_EMAIL_INTERVAL:
        return False  # the hourly cap: the next sweep after it takes them
    mentions, upto = _missed_mentions(user_id=user_id, after_id=profile.mention_emailed_upto, now=now)
    if upto == profile.mention_emailed_upto:
        return False
    if not mentions:
        _claim(profile=profile, upto=upto, sent_at=None)  # all read in time: nothing to say about them
        return False
    if user_id in users_online(user_ids=[user_id]):
        return False  # the socket shows them live; if they leave without reading, a later sweep sends
    if not _claim(profile=profile, upto=upto, sent_at=now):
        return False  # another worker took it
    try:
        mention_digest_message(user=user, mentions=mentions).send()
    except Exception:
        _release(profile=profile, upto=upto, sent_at=now)
        raise
    return True


def mention_digests_schedule(*, client) -> bool:
    """Queue the digest job if no worker did in the last MENTION_EMAIL_SWEEP_SECONDS (every
    worker calls this from its sweep thread; one of them wins each period)."""
    if not client.set(SWEEP_KEY, 1, nx=True, ex=settings.MENTION_EMAIL_SWEEP_SECONDS):
        return False
    # By its path, as rq stores it: messaging.jobs imports this module.
    django_rq.get_queue("default").enqueue(job_paths.SEND_MENTION_DIGESTS)
    return True


def mention_digests_send(*, now: datetime | None = None) -> int:
    """Send every digest that is due; returns how many e-mails went out."""
    now = now or timezone.now()
    sent = 0
    for user_id in mention_digest_candidates(now=now):
        try:
            sent += mention_digest_send(user_id=user_id, now=now)
        except Exception:
            logger.exception("the mention digest of user %s failed; the next sweep tries again", user_id)
    return sent
