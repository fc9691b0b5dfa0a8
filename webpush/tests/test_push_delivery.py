"""Web Push end to end, but for the browser: a message is stored in Redis, the real rq worker
persists it and runs the push job, which sends to a push service of the test's own (a real HTTP
server on 127.0.0.1). The test decrypts what arrives with the device's private key and auth
secret (RFC 8291, aes128gcm, with http_ece) and verifies the VAPID signature (RFC 8292)."""

from __future__ import annotations

import time
import uuid

import django_rq
import pytest
from asgiref.sync import async_to_sync
from django.core import mail
from rq import SimpleWorker

from accounts.models import Profile
from messaging import services as messaging_services
from messaging.notifications.digests import mention_digests_send
from messaging.store.online import online_key
from pubsub_site.redis.client import get_redis
from rooms.models import Membership
from rooms.services import direct_open
from webpush import services
from webpush.models import PushSubscription
from webpush.tests.pushservice import Device, start_push_service, verify_vapid

pytestmark = pytest.mark.django_db(transaction=True)  # the jobs end their connections, as in a worker


@pytest.fixture
def push_service():
    service = start_push_service()
    yield service
    service.server.shutdown()
    service.server.server_close()


@pytest.fixture
def device(push_service, bob) -> Device:
    """Bob's browser, subscribed."""
    device = Device(endpoint=push_service.endpoint("bob-laptop"))
    services.subscription_save(user=bob, endpoint=device.endpoint, p256dh=device.p256dh, auth=device.auth)
    return device


@pytest.fixture(autouse=True)
def short_window(settings):
    settings.WEBPUSH_COALESCE_SECONDS = 1.0


def send(room, author, body: str) -> int:
    result = async_to_sync(messaging_services.message_send)(
        room_id=room.pk,
        room_slug=room.slug,
        author_id=author.pk,
        author_username=author.username,
        body=body,
        client_id=str(uuid.uuid4()),
    )
    return result.seq


def run_worker() -> None:
    """The worker as it runs: persistence, the hooks after each batch, the push jobs they queue."""
    queue = django_rq.get_queue("default")
    SimpleWorker([queue], connection=queue.connection).work(burst=True)
    assert queue.failed_job_registry.count == 0


def test_a_mention_reaches_the_device_of_a_user_away_encrypted_and_signed(
    settings, alice, bob, private_room, push_service, device
):
    seq = send(private_room, alice, "@bob the deploy is done, can you check the logs?")
    run_worker()

    (request,) = push_service.received
    assert request.path == "/push/bob-laptop"
    assert request.headers["content-encoding"] == "aes128gcm"
    assert int(request.headers["ttl"]) > 0
    assert device.decrypt(request.body) == {
        "title": "#Secret Plans · alice",
        "body": "@bob the deploy is done, can you check the logs?",
        "room": "secret-plans",
        "seq": seq,
        "url": f"/rooms/secret-plans/#seq-{seq}",
        "tag": "room-secret-plans",
        "count": 1,
    }
    key, claims = verify_vapid(request.headers["authorization"])
    assert key == settings.WEBPUSH_VAPID.public_key
    assert claims["aud"] == push_service.origin
    assert claims["sub"] == settings.WEBPUSH_VAPID.subject
    assert time.time() < claims["exp"] <= time.time() + 24 * 3600
    assert PushSubscription.objects.get().last_success_at is not None


def test_a_message_that_mentions_nobody_pushes_nothing(alice, bob, private_room, push_service, device):
    send(private_room, alice, "nothing for bob here")
    run_worker()
    assert push_service.received == []


def test_a_user_with_an_open_socket_is_not_pushed(alice, bob, private_room, push_service, device):
    get_redis(None).zadd(online_key(bob.pk), {"a-web-process": time.time() + 60})  # a tab open somewhere
    send(private_room, alice, "@bob you see this live")
    run_worker()
    assert push_service.received == []


def test_a_room_set_to_nothing_pushes_nothing_and_all_pushes_every_message(
    alice, bob, private_room, push_service, device
):
    Membership.objects.filter(room=private_room, user=bob).update(notify_level="nothing")
    send(private_room, alice, "@bob muted room")
    run_worker()
    assert push_service.received == []

    Membership.objects.filter(room=private_room, user=bob).update(notify_level="all")
    seq = send(private_room, alice, "no mention, but bob hears everything")
    run_worker()
    (request,) = push_service.received
    assert device.decrypt(request.body)["seq"] == seq


def test_a_direct_message_pushes_the_other_member(alice, bob, push_service, device):
    room = direct_open(opener=alice, usernames=["bob"])
    seq = send(room, alice, "lunch?")
    run_worker()
    (request,) = push_service.received
    payload = device.decrypt(request.body)
    assert payload["title"] == "alice (direct message)"
    assert payload["body"] == "lunch?" and payload["seq"] == seq
    assert payload["url"] == f"{room.get_absolute_url()}#seq-{seq}"


def test_an_outsider_mentioned_in_a_private_room_is_not_pushed(alice, charlie, private_room, push_service):
    outsider = Device(endpoint=push_service.endpoint("charlie"))
    services.subscription_save(user=charlie, endpoint=outsider.endpoint, p256dh=outsider.p256dh, auth=outsider.auth)
    send(private_room, alice, "@charlie should not know of this room")
    run_worker()
    assert push_service.received == []


@pytest.mark.parametrize("status", [404, 410])
def test_a_subscription_the_push_service_no_longer_knows_is_deleted(
    status, alice, bob, private_room, push_service, device
):
    push_service.statuses["/push/bob-laptop"] = [status]
    send(private_room, alice, "@bob are you there?")
    run_worker()
    assert len(push_service.received) == 1
    assert not PushSubscription.objects.exists()


def test_a_failing_push_service_is_tried_again_later(alice, bob, private_room, push_service, device):
    push_service.statuses["/push/bob-laptop"] = [503, 201]
    send(private_room, alice, "@bob retry me")
    run_worker()
    assert len(push_service.received) == 1
    subscription = PushSubscription.objects.get()
    assert subscription.failures == 1 and subscription.last_error.startswith("503")
    client = get_redis(None)
    (member,) = client.zrange(services.RETRY_KEY, 0, -1)
    assert services.push_flush_due(client=client) == 0  # not before its delay
    client.zadd(services.RETRY_KEY, {member: time.time() - 1})  # the delay passed
    assert services.push_flush_due(client=client) == 1  # what the workers' sweep does
    run_worker()
    assert len(push_service.received) == 2
    assert device.decrypt(push_service.received[1].body)["body"] == "@bob retry me"
    subscription.refresh_from_db()
    assert subscription.failures == 0 and subscription.last_success_at is not None


def test_a_burst_of_mentions_is_one_push_then_what_comes_in_the_window_is_one_more(
    settings, alice, bob, private_room, push_service, device
):
    settings.WEBPUSH_COALESCE_SECONDS = 60  # longer than this machine takes to send the burst
    first = send(private_room, alice, "@bob one")
    run_worker()
    assert len(push_service.received) == 1  # the first goes at once

    for n in ("two", "three", "four"):
        send(private_room, alice, f"@bob {n}")
        run_worker()  # each in a batch of its own, inside the window
    assert len(push_service.received) == 1  # waiting for the window to end
    client = get_redis(None)
    assert services.push_flush_due(client=client) == 0
    (due,) = client.zrange(services.DUE_KEY, 0, -1, withscores=True)
    assert due[0] == str(bob.pk).encode() and time.time() + 50 < due[1] <= time.time() + 60  # when the window ends
    client.zadd(services.DUE_KEY, {bob.pk: time.time() - 1})  # the window ended
    assert services.push_flush_due(client=client) == 1  # the sweep's call
    run_worker()

    assert len(push_service.received) == 2
    assert device.decrypt(push_service.received[0].body)["seq"] == first
    coalesced = device.decrypt(push_service.received[1].body)
    assert coalesced["title"] == "3 new mentions in #Secret Plans"
    assert coalesced["body"] == "alice: @bob four"
    assert coalesced["seq"] == first + 1 and coalesced["url"] == f"/rooms/secret-plans/#seq-{first + 1}"
    assert coalesced["count"] == 3


def test_what_waits_for_the_window_goes_out_once_it_ends(alice, bob, private_room, push_service, device):
    send(private_room, alice, "@bob one")
    run_worker()
    send(private_room, alice, "@bob two")
    run_worker()
    time.sleep(1.1)  # WEBPUSH_COALESCE_SECONDS: the window ends in real time
    services.push_flush_due(client=get_redis(None))  # the sweep's call
    run_worker()
    assert [device.decrypt(r.body)["body"] for r in push_service.received] == ["@bob one", "@bob two"]
    assert get_redis(None).zcard(services.DUE_KEY) == 0


def test_mentions_persisted_in_one_batch_are_one_push(alice, bob, private_room, push_service, device):
    for n in range(5):
        send(private_room, alice, f"@bob number {n}")
    run_worker()
    (request,) = push_service.received
    payload = device.decrypt(request.body)
    assert payload["title"] == "5 new mentions in #Secret Plans" and payload["count"] == 5


def test_every_device_of_the_user_gets_the_push(alice, bob, private_room, push_service, device):
    phone = Device(endpoint=push_service.endpoint("bob-phone"))
    services.subscription_save(user=bob, endpoint=phone.endpoint, p256dh=phone.p256dh, auth=phone.auth)
    send(private_room, alice, "@bob on both")
    run_worker()
    by_path = {r.path: r for r in push_service.received}
    assert device.decrypt(by_path["/push/bob-laptop"].body)["body"] == "@bob on both"
    assert phone.decrypt(by_path["/push/bob-phone"].body)["body"] == "@bob on both"


def test_a_redone_persistence_job_pushes_nobody_twice(alice, bob, private_room, push_service, device):
    seq = send(private_room, alice, "@bob only once")
    run_worker()
    records = [{"seq": seq, "author": {"id": alice.pk, "username": "alice"}, "body": "@bob only once"}]
    time.sleep(1.1)
    services.push_after_batch(room_id=private_room.pk, records=records)  # as a job redone after a crash
    run_worker()
    assert len(push_service.received) == 1


def test_without_vapid_keys_nothing_is_pushed(settings, alice, bob, private_room, push_service, device):
    settings.WEBPUSH_VAPID = None
    send(private_room, alice, "@bob push is off")
    run_worker()
    assert push_service.received == []


def test_a_user_with_a_push_subscription_gets_no_digest_email(alice, bob, private_room, push_service, device):
    from datetime import timedelta

    from django.utils import timezone

    bob.email = "bob@example.com"
    bob.save()
    Profile.objects.create(user=bob, email_verified=True)
    send(private_room, alice, "@bob pushed, not e-mailed")
    run_worker()
    assert len(push_service.received) == 1
    assert mention_digests_send(now=timezone.now() + timedelta(minutes=11)) == 0
    assert mail.outbox == []

    PushSubscription.objects.all().delete()  # the device is gone: e-mail again
    send(private_room, alice, "@bob now by e-mail")
    run_worker()
    assert mention_digests_send(now=timezone.now() + timedelta(minutes=11)) == 1


def test_a_batch_costs_a_few_queries_whatever_its_size_when_nobody_away_is_subscribed(
    alice, bob, private_room, django_assert_num_queries
):
    records = [
        {"seq": seq, "author": {"id": alice.pk, "username": "alice"}, "body": f"@bob message {seq}"}
        for seq in range(1, 301)
    ]
    # Its mentions and the subscriptions; the room is read only when someone away could be pushed.
    with django_assert_num_queries(2):
        services.push_after_batch(room_id=private_room.pk, records=records)
