"""Outgoing webhooks over real processes: messages sent through two web processes reach a
receiver (a real HTTP server in this test) from the worker, once each, signed, in seq order per
room, a receiver's failures retried after their backoff."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import pytest

from outgoing_webhooks import services
from outgoing_webhooks.models import WebhookDelivery
from outgoing_webhooks.tests.receiver import Receiver, signature_is_valid
from rooms.services import room_create
from tests.conftest import wait_until
from tests.netclient import NetClient, session_key_for

pytestmark = pytest.mark.processes

PER_ROOM = 25


@pytest.fixture
def receiver():
    running = Receiver().start()
    yield running
    running.stop()


def test_a_receiver_gets_each_rooms_messages_once_signed_and_in_order_despite_failures(
    cluster, alice, public_room, receiver, settings
):
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.1/32"]  # for the registration, in this process
    cluster.env.update(
        {
            "OUTBOUND_ALLOWED_NETWORKS": "127.0.0.1/32",  # for the deliveries, in the worker
            "WEBHOOK_RETRY_BASE_SECONDS": "0.5",
            "PERSIST_SWEEP_SECONDS": "1",
        }
    )
    other_room = room_create(creator=alice, name="Other")
    rooms = [public_room, other_room]
    secrets = {}
    for room in rooms:
        _endpoint, secret = services.endpoint_create(
            room=room, actor=alice, url=f"{receiver.url}?room={room.slug}", events=["message", "edit"]
        )
        secrets[f"/hook?room={room.slug}"] = secret
    receiver.statuses = [503, 503, 500]  # the first three requests fail
    ports = [cluster.start_web(), cluster.start_web()]
    cluster.start_worker()
    key = session_key_for(alice)

    async def scenario():
        clients = [await NetClient.open(port, key) for port in ports]
        for client in clients:
            for room in rooms:
                await client.subscribe(room.slug)
        for n in range(PER_ROOM):
            for i, room in enumerate(rooms):
                client = clients[(n + i) % 2]
                await client.send_message(room.slug, f"{room.slug} {n + 1}")
                await client.recv_type("ack")
        await clients[0].send({"type": "edit", "room": public_room.slug, "seq": 3, "body": "edited"})
        await clients[0].recv_type("message_updated")
        for client in clients:
            await client.close()

    asyncio.run(scenario())
    expected = 2 * PER_ROOM + 1
    wait_until(lambda: len(receiver.accepted()) >= expected, timeout=60)
    accepted = receiver.accepted()
    assert len(accepted) == expected
    by_room = defaultdict(list)
    for request in accepted:
        assert signature_is_valid(secret=secrets[request.path], request=request)
        event = request.event
        assert request.headers["X-Pubsub-Event-Id"] == event["id"]
        assert f"room={event['room']}" in request.path
        by_room[event["room"]].append((event["type"], event["data"]["seq"]))
    assert by_room[other_room.slug] == [("message", seq) for seq in range(1, PER_ROOM + 1)]
    assert by_room[public_room.slug] == [("message", seq) for seq in range(1, PER_ROOM + 1)] + [("edit", 3)]
    assert len({r.event["id"] for r in accepted}) == expected
    # The failed requests were retried: three more requests than events, none delivered twice.
    assert len(receiver.requests) == expected + 3
    retried = WebhookDelivery.objects.filter(attempts__gt=1)
    assert sum(d.attempts - 1 for d in retried) == 3 and all(d.status == "delivered" for d in retried)
    print(f"{expected} events to 2 endpoints over 2 web processes and a worker; 3 failures retried")
