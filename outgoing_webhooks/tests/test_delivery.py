"""Outgoing webhooks end to end in one process: events recorded by the persistence job, then
delivered by the delivery job's service to a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import time

import pytest
from channels.db import database_sync_to_async
from django.core import mail
from django.core.exceptions import ValidationError
from django.utils import timezone

from messaging.store.persistence import messages_persist_server
from messaging.tests.wsclient import connected
from outgoing_webhooks import services
from outgoing_webhooks.models import WebhookDelivery, WebhookEndpoint
from outgoing_webhooks.tests.receiver import signature_is_valid
from rooms.services import room_join

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("async_cleanup")]

ALL_EVENTS = [kind.value for kind in WebhookEndpoint.Event]


def register(room, user, url, events=ALL_EVENTS):
    return services.endpoint_create(room=room, actor=user, url=url, events=events)


async def talk(room, author, clapper):
    """Five messages, an edit, a deletion and claps, over the socket."""
    author_ws, clapper_ws = await connected(author), await connected(clapper)
    for ws in (author_ws, clapper_ws):
        await ws.subscribe(room.slug)
    for n in range(1, 6):
        await author_ws.post(room.slug, f"message {n}")
    await author_ws.send({"type": "edit", "room": room.slug, "seq": 2, "body": "message 2, edited"})
    await author_ws.recv_type("message_updated")
    await author_ws.send({"type": "delete", "room": room.slug, "seq": 3})
    await author_ws.recv_type("message_deleted")
    await clapper_ws.send({"type": "clap", "room": room.slug, "seq": 1, "count": 4})
    await clapper_ws.recv_type("claps")
    await author_ws.close()
    await clapper_ws.close()


async def test_a_receiver_gets_every_event_of_the_room_once_signed_and_in_order(
    alice, bob, charlie, public_room, receiver, loopback_allowed
):
    endpoint, secret = await database_sync_to_async(register)(public_room, alice, receiver.url)
    await database_sync_to_async(room_join)(room=public_room, user=charlie)
    await talk(public_room, alice, bob)
    await database_sync_to_async(messages_persist_server)(server=0)
    delivered = await database_sync_to_async(services.endpoint_deliver)(endpoint_id=endpoint.pk)

    got = receiver.accepted()
    assert delivered == len(got)
    assert all(signature_is_valid(secret=secret, request=r) for r in got)
    events = [r.event for r in got]
    assert [r.headers["X-Pubsub-Event-Id"] for r in got] == [e["id"] for e in events]
    assert len({e["id"] for e in events}) == len(events)  # once each
    # bob's first visit joined him too (a public room): both joins, first, as they happened.
    summary = [(e["type"], e["data"].get("seq"), e["data"].get("body"), e["data"].get("total")) for e in events]
    joins = [e["data"]["user"]["username"] for e in events if e["type"] == "member_joined"]
    assert joins == ["charlie", "bob"]
    assert [s for s in summary if s[0] != "member_joined"] == [
        ("message", 1, "message 1", None),
        ("message", 2, "message 2", None),
        ("message", 3, "message 3", None),
        ("message", 4, "message 4", None),
        ("message", 5, "message 5", None),
        ("edit", 2, "message 2, edited", None),
        ("delete", 3, None, None),
        ("clap", 1, None, 4),
    ]
    assert all(e["room"] == public_room.slug for e in events)
    message = events[[e["type"] for e in events].index("message")]["data"]
    assert message["author"] == {"id": alice.pk, "username": "alice"} and message["type"] == "message"

    # Persisting and delivering again sends nothing twice.
    await database_sync_to_async(messages_persist_server)(server=0)
    assert await database_sync_to_async(services.endpoint_deliver)(endpoint_id=endpoint.pk) == 0
    assert len(receiver.accepted()) == len(got)
    assert await database_sync_to_async(
        WebhookDelivery.objects.filter(endpoint=endpoint, status="delivered").count
    )() == len(got)


async def test_an_endpoint_gets_only_the_events_it_asked_for(alice, bob, public_room, receiver, loopback_allowed):
    endpoint, _ = await database_sync_to_async(register)(public_room, alice, receiver.url, ["delete"])
    await talk(public_room, alice, bob)
    await database_sync_to_async(messages_persist_server)(server=0)
    await database_sync_to_async(services.endpoint_deliver)(endpoint_id=endpoint.pk)
    assert [(r.event["type"], r.event["data"]["seq"]) for r in receiver.accepted()] == [("delete", 3)]


def _make_due(endpoint):
    endpoint.deliveries.filter(status="pending").update(next_attempt_at=timezone.now())


async def test_a_failing_receiver_is_retried_in_order_then_disabled_and_the_admins_emailed(
    alice, bob, public_room, receiver, loopback_allowed, settings
):
    settings.WEBHOOK_DISABLE_AFTER_FAILURES = 3
    settings.WEBHOOK_RETRY_BASE_SECONDS = 60
    alice.email = "alice@example.com"
    await database_sync_to_async(alice.save)()
    receiver.statuses = [503, 503, 503]
    endpoint, _ = await database_sync_to_async(register)(public_room, alice, receiver.url, ["message"])
    await talk(public_room, alice, bob)
    await database_sync_to_async(messages_persist_server)(server=0)
    deliver = database_sync_to_async(services.endpoint_deliver)

    assert await deliver(endpoint_id=endpoint.pk) == 0
    head = await database_sync_to_async(WebhookDelivery.objects.filter(endpoint=endpoint).order_by("id").first)()
    assert (head.attempts, head.last_response_code, head.status) == (1, 503, "pending")
    assert head.last_response_body == "try again later"
    # Backed off: between half and all of WEBHOOK_RETRY_BASE_SECONDS; nothing later went first.
    wait = (head.next_attempt_at - timezone.now()).total_seconds()
    assert 25 < wait <= 60
    assert await deliver(endpoint_id=endpoint.pk) == 0  # not due yet: no attempt
    assert len(receiver.requests) == 1

    for _ in range(2):
        await database_sync_to_async(_make_due)(endpoint)
        assert await deliver(endpoint_id=endpoint.pk) == 0
    assert [r.event["data"]["seq"] for r in receiver.requests] == [1, 1, 1]
    await database_sync_to_async(endpoint.refresh_from_db)()
    assert not endpoint.active and endpoint.consecutive_failures == 3
    assert "3 deliveries in a row failed" in endpoint.disabled_reason
    assert [m.to for m in mail.outbox] == [[alice.email]]
    assert receiver.url in mail.outbox[0].body and "disabled" in mail.outbox[0].subject

    # Disabled: nothing is sent, and nothing new is recorded.
    await database_sync_to_async(_make_due)(endpoint)
    assert await deliver(endpoint_id=endpoint.pk) == 0
    assert len(receiver.requests) == 3

    # Enabled again, it sends what waited, in order, the failed one first.
    await database_sync_to_async(services.endpoint_set_active)(endpoint=endpoint, actor=alice, active=True)
    assert await deliver(endpoint_id=endpoint.pk) == 5
    assert [r.event["data"]["seq"] for r in receiver.accepted()] == [1, 2, 3, 4, 5]


def test_the_backoff_doubles_with_jitter_up_to_its_cap(settings):
    settings.WEBHOOK_RETRY_BASE_SECONDS = 10
    settings.WEBHOOK_RETRY_MAX_SECONDS = 100
    for attempts, ceiling in [(1, 10), (2, 20), (3, 40), (4, 80), (5, 100), (12, 100)]:
        delays = [services.retry_delay(attempts) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1


def test_an_endpoint_failing_for_too_long_is_disabled_even_before_the_count(
    alice, public_room, receiver, loopback_allowed, settings
):
    settings.WEBHOOK_DISABLE_AFTER_HOURS = 1
    alice.email = "alice@example.com"
    alice.save()
    receiver.statuses = [500]
    endpoint, _ = register(public_room, alice, receiver.url, ["message"])
    WebhookDelivery.objects.create(endpoint=endpoint, event_id="e1", type="message", payload="{}")
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        consecutive_failures=1, failing_since=timezone.now() - timezone.timedelta(hours=2)
    )
    assert services.endpoint_deliver(endpoint_id=endpoint.pk) == 0
    endpoint.refresh_from_db()
    assert not endpoint.active and "failed for 1 hours" in endpoint.disabled_reason
    assert len(mail.outbox) == 1


def test_the_ssrf_rules_refuse_a_loopback_url_by_default(alice, public_room, receiver):
    with pytest.raises(ValidationError, match="not a public address"):
        register(public_room, alice, receiver.url)
    with pytest.raises(ValidationError, match="not a public address"):
        register(public_room, alice, "http://169.254.169.254/latest/meta-data/")
    # An endpoint stored before the rules changed is refused at delivery too: nothing is sent.
    endpoint = WebhookEndpoint.objects.create(
        room=public_room, url=receiver.url, secret="whsec_x", events=["message"], created_by=alice
    )
    WebhookDelivery.objects.create(endpoint=endpoint, event_id="e1", type="message", payload="{}")
    assert services.endpoint_deliver(endpoint_id=endpoint.pk) == 0
    delivery = endpoint.deliveries.get()
    assert delivery.status == "pending" and delivery.last_response_code is None
    assert "Refused by the outbound rules" in delivery.last_error
    assert receiver.requests == []


def test_one_job_at_a_time_delivers_an_endpoints_events(alice, public_room, receiver, loopback_allowed):
    endpoint, _ = register(public_room, alice, receiver.url, ["message"])
    WebhookDelivery.objects.create(endpoint=endpoint, event_id="e1", type="message", payload="{}")
    assert services._claim(endpoint.pk)  # another job holds the endpoint
    assert services.endpoint_deliver(endpoint_id=endpoint.pk) == 0
    assert receiver.requests == []
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(lease_until=timezone.now() - timezone.timedelta(seconds=1))
    assert services.endpoint_deliver(endpoint_id=endpoint.pk) == 1  # its lease ran out: taken over


def test_the_sweep_queues_the_endpoints_with_a_delivery_due(alice, public_room, receiver, loopback_allowed):
    due, _ = register(public_room, alice, receiver.url, ["message"])
    later, _ = register(public_room, alice, receiver.url, ["message"])
    WebhookDelivery.objects.create(endpoint=due, event_id="e1", type="message", payload="{}")
    WebhookDelivery.objects.create(
        endpoint=later,
        event_id="e1",
        type="message",
        payload="{}",
        next_attempt_at=timezone.now() + timezone.timedelta(minutes=5),
    )
    assert services.deliveries_due_enqueue() == 1


def test_old_delivered_rows_are_pruned_and_pending_ones_kept(alice, public_room, receiver, loopback_allowed):
    endpoint, _ = register(public_room, alice, receiver.url, ["message"])
    old = timezone.now() - timezone.timedelta(days=30)
    WebhookDelivery.objects.create(
        endpoint=endpoint, event_id="a", type="message", payload="{}", status="delivered", delivered_at=old
    )
    WebhookDelivery.objects.create(endpoint=endpoint, event_id="b", type="message", payload="{}", created_at=old)
    assert services.deliveries_prune() == 1
    assert list(endpoint.deliveries.values_list("event_id", flat=True)) == ["b"]


def test_a_delivery_waits_no_longer_than_the_timeout(alice, public_room, loopback_allowed, settings):
    """A receiver that accepts the connection and never answers costs one timeout, then a retry."""
    import socket

    settings.WEBHOOK_TIMEOUT_SECONDS = 0.5
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    try:
        endpoint, _ = register(public_room, alice, f"http://127.0.0.1:{silent.getsockname()[1]}/hook", ["message"])
        WebhookDelivery.objects.create(endpoint=endpoint, event_id="e1", type="message", payload="{}")
        started = time.monotonic()
        assert services.endpoint_deliver(endpoint_id=endpoint.pk) == 0
        assert time.monotonic() - started < 2
        assert endpoint.deliveries.get().attempts == 1
    finally:
        silent.close()
