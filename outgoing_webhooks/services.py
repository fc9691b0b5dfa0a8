"""Outgoing webhooks: registering a room's endpoints, and delivering their events in order.

What a receiver gets: each event of its room at least once (exactly once unless a worker dies
between the receiver's answer and the row marked delivered; the ``X-Pubsub-Event-Id`` header
lets it deduplicate), signed (outgoing_webhooks.signing), in the order the events were
recorded (outgoing_webhooks.events: messages in seq order, changes in rev order):

- one job at a time delivers an endpoint's events: it claims the endpoint with a conditional
  update of its lease (as healthchecks' sendalerts claims a check), so two workers never send
  the same endpoint's events side by side;
- the job sends the endpoint's pending deliveries in id order and stops at the first failure
  (a network error, a refusal by the SSRF rules, a timeout, any answer but 2xx, a redirect
  included). That delivery is tried again after an exponential backoff with jitter
  (``WEBHOOK_RETRY_BASE_SECONDS`` doubling per attempt up to ``WEBHOOK_RETRY_MAX_SECONDS``,
  the second half of the wait random), and nothing after it goes before it does;
- the worker's sweep (messaging jobs_worker, every PERSIST_SWEEP_SECONDS) queues the job of
  every endpoint with a delivery due, so a retry, a lost job or a crashed worker's lease
  (it expires) is picked up again;
- an endpoint that failed ``WEBHOOK_DISABLE_AFTER_FAILURES`` attempts in a row, or has failed
  for ``WEBHOOK_DISABLE_AFTER_HOURS`` without a success, is disabled and the room's owner and
  moderators are e-mailed. Its pending deliveries wait; enabling it again sends them, in
  order. A disabled endpoint records no new events;
- the jobs wait in a queue of their own ("webhooks"), which the worker takes after "default",
  and a job delivers for at most ``WEBHOOK_JOB_BUDGET_SECONDS``, then queues itself again, so
  that a slow receiver does not keep the worker from persisting messages.

Every request goes through ``pubsub_site.outbound.fetch`` (private, loopback and link-local
addresses refused unless OUTBOUND_ALLOWED_NETWORKS lists them; a timeout; a cap on the
answer's size); a URL is checked against the same rules when it is registered.
"""

from __future__ import annotations

import logging
import random
import time
from datetime import timedelta
from urllib.parse import urlsplit

import django_rq
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import send_mail
from django.db import DatabaseError, close_old_connections, transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone
from redis.exceptions import RedisError

from outgoing_webhooks.models import WebhookDelivery, WebhookEndpoint
from outgoing_webhooks.signing import (
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    SIGNATURE_HEADER,
    secret_new,
    signature_header,
)
from pubsub_site import outbound
from pubsub_site.redis.client import get_redis
from rooms.models import Membership, Room

logger = logging.getLogger(__name__)

# The job's path, as rq stores it (see messaging/job_paths.py for why a path).
DELIVER_JOB = "outgoing_webhooks.jobs.deliver"
# How much of a receiver's answer the delivery log keeps.
RESPONSE_LOG_CHARS = 1000
ENDPOINTS_PER_ROOM = 10
USER_AGENT = "pubsub-webhooks/1"


# --- Endpoints -----------------------------------------------------------------


def _require_room_admin(*, room: Room, actor: AbstractBaseUser, acting_as_staff: bool = False) -> None:
    if acting_as_staff and actor.is_staff:
        return
    membership = Membership.objects.filter(room=room, user=actor).first()
    if membership is None or not membership.can_moderate:
        raise PermissionDenied("Only the room's owner and moderators manage its webhooks.")


def endpoint_url_check(url: str) -> str:
    """The URL, if webhooks may be sent there: http(s), and an address the SSRF rules allow."""
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValidationError({"url": "Give an http:// or https:// URL."})
    if parts.username or parts.password:
        raise ValidationError({"url": "A webhook URL carries no user name or password."})
    try:
        outbound.url_check(url)
    except outbound.OutboundRefused as refusal:
        raise ValidationError({"url": f"This address may not receive webhooks: {refusal}"}) from refusal
    except outbound.OutboundError as error:
        raise ValidationError({"url": f"This address cannot be reached: {error}"}) from error
    return url


def _events_check(events: list[str]) -> list[str]:
    known = [kind.value for kind in WebhookEndpoint.Event]
    chosen = [kind for kind in known if kind in set(events)]
    if not chosen or len(chosen) != len(set(events)):
        raise ValidationError({"events": f"Choose one or more of: {', '.join(known)}."})
    return chosen


def endpoint_create(
    *,
    room: Room,
    actor: AbstractBaseUser,
    url: str,
    events: list[str],
    description: str = "",
    acting_as_staff: bool = False,
) -> tuple[WebhookEndpoint, str]:
    """Register an endpoint for the room's events; returns it and its secret (shown once)."""
    _require_room_admin(room=room, actor=actor, acting_as_staff=acting_as_staff)
    if room.is_direct:
        raise PermissionDenied("A direct conversation has no webhooks.")
    if WebhookEndpoint.objects.filter(room=room).count() >= ENDPOINTS_PER_ROOM:
        raise ValidationError(f"A room has at most {ENDPOINTS_PER_ROOM} webhooks.")
    url = endpoint_url_check(url)
    secret = secret_new()
    endpoint = WebhookEndpoint.objects.create(
        room=room,
        url=url,
        secret=secret,
        events=_events_check(events),
        description=description.strip()[:200],
        created_by=actor,
    )
    return endpoint, secret


def endpoint_set_active(
    *, endpoint: WebhookEndpoint, actor: AbstractBaseUser, active: bool, acting_as_staff: bool = False
) -> WebhookEndpoint:
    """Disable an endpoint, or enable it again: its pending deliveries then go out, in order."""
    _require_room_admin(room=endpoint.room, actor=actor, acting_as_staff=acting_as_staff)
    now = timezone.now()
    fields = {"active": active}
    if active:
        fields.update(disabled_at=None, disabled_reason="", consecutive_failures=0, failing_since=None)
        # Due now: the retries waiting for their backoff go at once.
        endpoint.deliveries.filter(status=WebhookDelivery.Status.PENDING).update(next_attempt_at=now)
    else:
        fields.update(disabled_at=now, disabled_reason=f"Disabled by {actor.get_username()}.")
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(**fields)
    endpoint.refresh_from_db()
    if active:
        transaction.on_commit(lambda: delivery_enqueue(endpoint_id=endpoint.pk))
    return endpoint


def endpoint_delete(*, endpoint: WebhookEndpoint, actor: AbstractBaseUser, acting_as_staff: bool = False) -> None:
    _require_room_admin(room=endpoint.room, actor=actor, acting_as_staff=acting_as_staff)
    endpoint.delete()


# --- Delivery --------------------------------------------------------------------


def delivery_enqueue(*, endpoint_id: int) -> None:
    """Queue the endpoint's delivery job on the "webhooks" queue, which the worker takes after
    "default" (no persistence job waits behind a delivery). If Redis cannot take it, the
    worker's sweep will."""
    try:
        queue = django_rq.get_queue("webhooks", connection=get_redis(url=settings.REDIS_URL))
        queue.enqueue(DELIVER_JOB, endpoint_id)
    except RedisError as error:
        logger.warning("could not queue the deliveries of webhook %s (the sweep will): %r", endpoint_id, error)


def deliveries_due_enqueue() -> int:
    """Queue the delivery job of each active endpoint with a delivery due and no job at work
    (the worker's sweep); returns how many were queued."""
    now = timezone.now()
    endpoint_ids = set(
        WebhookDelivery.objects.filter(
            status=WebhookDelivery.Status.PENDING,
            next_attempt_at__lte=now,
            endpoint__active=True,
        )
        .filter(Q(endpoint__lease_until__isnull=True) | Q(endpoint__lease_until__lt=now))
        .values_list("endpoint_id", flat=True)
        .distinct()
    )
    for endpoint_id in sorted(endpoint_ids):
        delivery_enqueue(endpoint_id=endpoint_id)
    return len(endpoint_ids)


def retry_delay(attempts: int) -> float:
    """Seconds before attempt ``attempts + 1``: exponential, capped, its second half random."""
    ceiling = min(settings.WEBHOOK_RETRY_MAX_SECONDS, settings.WEBHOOK_RETRY_BASE_SECONDS * 2 ** (attempts - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def _lease_seconds() -> float:
    # Longer than a job can run: its budget, plus one attempt begun at the end of it.
    return settings.WEBHOOK_JOB_BUDGET_SECONDS + 2 * settings.WEBHOOK_TIMEOUT_SECONDS + 30


def _claim(endpoint_id: int) -> bool:
    now = timezone.now()
    return bool(
        WebhookEndpoint.objects.filter(pk=endpoint_id, active=True)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .update(lease_until=now + timedelta(seconds=_lease_seconds()))
    )


def endpoint_deliver(*, endpoint_id: int) -> int:
    """Send the endpoint's due deliveries in order, stopping at the first failure; returns
    how many were delivered. Does nothing if another job holds the endpoint."""
    if not _claim(endpoint_id):
        return 0
    delivered, more = 0, False
    deadline = time.monotonic() + settings.WEBHOOK_JOB_BUDGET_SECONDS
    try:
        while True:
            endpoint = WebhookEndpoint.objects.select_related("room").filter(pk=endpoint_id).first()
            if endpoint is None or not endpoint.active:  # removed, or disabled, meanwhile
                break
            delivery = endpoint.deliveries.filter(status=WebhookDelivery.Status.PENDING).order_by("id").first()
            if delivery is None or delivery.next_attempt_at > timezone.now():
                break
            if time.monotonic() > deadline:
                more = True
                break
            WebhookEndpoint.objects.filter(pk=endpoint_id).update(
                lease_until=timezone.now() + timedelta(seconds=_lease_seconds())
            )
            if not delivery_attempt(endpoint=endpoint, delivery=delivery):
                break
            delivered += 1
    finally:
        WebhookEndpoint.objects.filter(pk=endpoint_id).update(lease_until=None)
    if more:
        delivery_enqueue(endpoint_id=endpoint_id)
    return delivered


def delivery_attempt(*, endpoint: WebhookEndpoint, delivery: WebhookDelivery) -> bool:
    """POST one delivery, signed, and log the outcome; True when the receiver took it (2xx)."""
    body = delivery.payload.encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        EVENT_ID_HEADER: delivery.event_id,
        EVENT_TYPE_HEADER: delivery.type,
        SIGNATURE_HEADER: signature_header(secret=endpoint.secret, body=body),
    }
    code, answer, error = None, "", ""
    try:
        response = outbound.fetch(
            endpoint.url,
            method="POST",
            headers=headers,
            body=body,
            timeout=settings.WEBHOOK_TIMEOUT_SECONDS,
            max_bytes=settings.WEBHOOK_RESPONSE_MAX_BYTES,
            max_redirects=0,
        )
    except outbound.OutboundRefused as refusal:
        error = f"Refused by the outbound rules: {refusal}"
    except outbound.OutboundError as failure:
        error = f"Could not deliver: {failure}"
    else:
        code = response.status
        answer = bytes(response.body[: RESPONSE_LOG_CHARS * 4]).decode("utf-8", "replace")[:RESPONSE_LOG_CHARS]
        if not 200 <= code < 300:
            error = f"The receiver answered {code}."
    now = timezone.now()
    delivery.attempts += 1
    delivery.last_response_code = code
    delivery.last_response_body = answer
    delivery.last_error = error[:300]
    with transaction.atomic():
        if not error:
            delivery.status = WebhookDelivery.Status.DELIVERED
            delivery.delivered_at = now
            delivery.save()
            WebhookEndpoint.objects.filter(pk=endpoint.pk).update(consecutive_failures=0, failing_since=None)
            return True
        delivery.next_attempt_at = now + timedelta(seconds=retry_delay(delivery.attempts))
        delivery.save()
        endpoint.consecutive_failures += 1
        endpoint.failing_since = endpoint.failing_since or now
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
            consecutive_failures=endpoint.consecutive_failures, failing_since=endpoint.failing_since
        )
        logger.info("webhook %s: delivery %s failed (%s)", endpoint.pk, delivery.event_id, error)
        reason = _disable_reason(endpoint, now=now, error=error)
        if reason:
            _endpoint_disable(endpoint=endpoint, reason=reason, now=now)
    return False


def _disable_reason(endpoint: WebhookEndpoint, *, now, error: str) -> str:
    if endpoint.consecutive_failures >= settings.WEBHOOK_DISABLE_AFTER_FAILURES:
        return f"{endpoint.consecutive_failures} deliveries in a row failed; the last: {error}"
    if now - endpoint.failing_since >= timedelta(hours=settings.WEBHOOK_DISABLE_AFTER_HOURS):
        return f"Every delivery failed for {settings.WEBHOOK_DISABLE_AFTER_HOURS:g} hours; the last: {error}"
    return ""


def _endpoint_disable(*, endpoint: WebhookEndpoint, reason: str, now) -> None:
    updated = WebhookEndpoint.objects.filter(pk=endpoint.pk, active=True).update(
        active=False, disabled_at=now, disabled_reason=reason[:300]
    )
    if updated:
        logger.warning("webhook %s of room %s disabled: %s", endpoint.pk, endpoint.room.slug, reason)
        transaction.on_commit(lambda: endpoint_disabled_tell(endpoint_id=endpoint.pk))


def endpoint_disabled_tell(*, endpoint_id: int) -> int:
    """E-mail the room's owner and moderators that its webhook was disabled; returns how many."""
    endpoint = WebhookEndpoint.objects.select_related("room").get(pk=endpoint_id)
    room = endpoint.room
    admins = [
        m.user.email
        for m in Membership.objects.filter(
            room=room, role__in=[Membership.Role.OWNER, Membership.Role.MODERATOR], banned=False
        ).select_related("user")
        if m.user.email and m.user.is_active
    ]
    if not admins:
        return 0
    page = settings.SITE_URL.rstrip("/") + reverse("webhook-list", kwargs={"slug": room.slug})
    try:
        send_mail(
            subject=f"[{room.name}] A webhook was disabled",
            message=(
                f"The webhook of {room.name} that delivers to\n  {endpoint.url}\nwas disabled: "
                f"{endpoint.disabled_reason}\n\nIts undelivered events are kept. Once the receiver works again, "
                f"enable it on {page} and they go out, in order."
            ),
            from_email=None,
            recipient_list=admins,
        )
    except Exception:
        # The endpoint stays disabled either way; the page and the admin show why.
        logger.exception("could not e-mail the admins of room %s about webhook %s", room.slug, endpoint.pk)
        return 0
    return len(admins)


def deliveries_prune(*, older_than_days: int | None = None) -> int:
    """Forget the delivered rows older than WEBHOOK_LOG_DAYS (the pending ones are kept)."""
    days = settings.WEBHOOK_LOG_DAYS if older_than_days is None else older_than_days
    deleted, _ = WebhookDelivery.objects.filter(
        status=WebhookDelivery.Status.DELIVERED, delivered_at__lt=timezone.now() - timedelta(days=days)
    ).delete()
    return deleted


WEBHOOK_PRUNE_SECONDS = 3600
_last_prune = [0.0]


def webhooks_sweep(*, client=None) -> None:
    """The worker's sweep (a hook of messaging's jobs_worker): queue the due deliveries; once an
    hour, forget the old delivered ones. ``client``: the sweep's Redis client, unused here."""
    close_old_connections()
    try:
        deliveries_due_enqueue()
        if time.monotonic() - _last_prune[0] > WEBHOOK_PRUNE_SECONDS:
            _last_prune[0] = time.monotonic()
            deliveries_prune()
    except (DatabaseError, RedisError) as error:
        logger.warning("the webhook sweep failed: %r", error)
    finally:
        close_old_connections()
