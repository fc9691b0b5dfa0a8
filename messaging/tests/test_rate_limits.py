"""Rate limits and slow mode on the WebSocket."""

import uuid

import pytest
from channels.db import database_sync_to_async

from messaging.tests.wsclient import connected
from rooms.models import Membership, Room

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("async_cleanup")]


def send_frame(room, body):
    client_id = str(uuid.uuid4())
    return {"type": "send", "room": room, "body": body, "client_id": client_id, "ref": client_id}


async def test_sends_past_the_limit_answer_rate_limited_with_retry_after(settings, bob, public_room):
    settings.WS_RATE_LIMITS = {**settings.WS_RATE_LIMITS, "send": "3/10second"}
    ws = await connected(bob)
    await ws.subscribe(public_room.slug)
    for i in range(3):
        assert (await ws.post(public_room.slug, f"m{i}"))["seq"] == i + 1
    await ws.send(send_frame(public_room.slug, "one too many"))
    error = await ws.recv_type("error")
    assert error["code"] == "rate_limited"
    assert 0 < error["retry_after"] <= 10
    await ws.close()


async def test_the_limit_is_per_user_and_room(settings, alice, bob, public_room):
    settings.WS_RATE_LIMITS = {**settings.WS_RATE_LIMITS, "send": "2/10second"}
    alice_ws, bob_ws = await connected(alice), await connected(bob)
    for ws in (alice_ws, bob_ws):
        await ws.subscribe(public_room.slug)
        await ws.post(public_room.slug, "a")
        await ws.post(public_room.slug, "b")
    await alice_ws.send(send_frame(public_room.slug, "c"))
    assert (await alice_ws.recv_type("error"))["code"] == "rate_limited"
    await alice_ws.close()
    await bob_ws.close()


async def test_a_connection_that_keeps_flooding_is_closed_with_1008(settings, bob, public_room):
    settings.WS_RATE_LIMITS = {**settings.WS_RATE_LIMITS, "clap": "1/minute"}
    settings.WS_FLOOD_REFUSALS = 5
    ws = await connected(bob)
    await ws.subscribe(public_room.slug)
    await ws.post(public_room.slug, "clap me")
    for _ in range(6):
        await ws.send({"type": "clap", "room": public_room.slug, "seq": 1})
    refused = 0
    while True:
        output = await ws.ws.receive_output(timeout=3)
        if output["type"] == "websocket.close":
            assert output["code"] == 1008
            break
        refused += '"rate_limited"' in output.get("text", "")
    assert refused == 5


async def test_slow_mode_spaces_one_members_messages_and_spares_moderators(alice, bob, public_room):
    await database_sync_to_async(Room.objects.filter(pk=public_room.pk).update)(slow_mode_seconds=10)
    await database_sync_to_async(Membership.objects.create)(room=public_room, user=bob)
    alice_ws, bob_ws = await connected(alice), await connected(bob)
    await alice_ws.subscribe(public_room.slug)
    await bob_ws.subscribe(public_room.slug)
    assert (await bob_ws.post(public_room.slug, "first"))["seq"] == 1
    await bob_ws.send(send_frame(public_room.slug, "second"))
    error = await bob_ws.recv_type("error")
    assert error["code"] == "rate_limited"
    assert 9 <= error["retry_after"] <= 10
    assert "Slow mode" in error["detail"]
    # The owner is not slowed down.
    assert (await alice_ws.post(public_room.slug, "owner 1"))["seq"] == 2
    assert (await alice_ws.post(public_room.slug, "owner 2"))["seq"] == 3
    await alice_ws.close()
    await bob_ws.close()


async def test_turning_slow_mode_on_reaches_open_subscriptions(alice, bob, public_room):
    from rooms.moderation import room_set_slow_mode

    await database_sync_to_async(Membership.objects.create)(room=public_room, user=bob)
    bob_ws = await connected(bob)
    await bob_ws.subscribe(public_room.slug)
    await bob_ws.post(public_room.slug, "before")
    await bob_ws.messages(1)
    await database_sync_to_async(room_set_slow_mode)(room=public_room, actor=alice, seconds=30)
    await bob_ws.nothing_more(0.3)
    await bob_ws.post(public_room.slug, "first in slow mode")
    await bob_ws.send(send_frame(public_room.slug, "too soon"))
    assert (await bob_ws.recv_type("error"))["code"] == "rate_limited"
    await bob_ws.close()
