"""Rate limits and slow mode on the WebSocket."""

import asyncio
import contextlib
import uuid
from unittest import mock

import pytest
import redis.asyncio as aioredis
from channels.db import database_sync_to_async

from messaging.store import buffer
from messaging.store.keys import RoomKeys
from messaging.tests.wsclient import connected
from pubsub_site.redis.client import get_async_redis
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


async def refusals_until_closed_with_1008(ws) -> int:
    """How many `rate_limited` errors came before the server closed the socket with 1008."""
    refused = 0
    while True:
        output = await ws.ws.receive_output(timeout=3)
        if output["type"] == "websocket.close":
            assert output["code"] == 1008
            return refused
        refused += '"rate_limited"' in output.get("text", "")


@pytest.mark.parametrize(
    ("action", "flood"),
    [
        ("clap", lambda room, i: {"type": "clap", "room": room, "seq": 1}),
        ("send", lambda room, i: send_frame(room, f"flood {i}")),
    ],
)
async def test_a_connection_that_keeps_going_past_a_limit_is_closed_with_1008(
    settings, bob, public_room, action, flood
):
    settings.WS_RATE_LIMITS = {**settings.WS_RATE_LIMITS, action: "1/minute"}
    settings.WS_FLOOD_REFUSALS = 5
    ws = await connected(bob)
    await ws.subscribe(public_room.slug)
    await ws.post(public_room.slug, "the one allowed")  # with "clap" limited, the one to clap
    for i in range(6):
        await ws.send(flood(public_room.slug, i))
    assert await refusals_until_closed_with_1008(ws) == 5


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


@contextlib.contextmanager
def room_redis_commands(room_id):
    """The commands every client sends on this loop's pool to the room's Redis server
    (the consumer's, and a library's that borrows the pool), by name; a pipeline's
    (messaging.store.script_batch) each by its own name."""
    pool = get_async_redis(room_id).connection_pool
    sent = []
    execute_command = aioredis.Redis.execute_command
    execute_pipeline = aioredis.client.Pipeline.execute

    async def counting(self, *args, **options):
        if self.connection_pool is pool:
            sent.append(str(args[0]).upper())
        return await execute_command(self, *args, **options)

    async def counting_pipeline(self, *args, **options):
        if self.connection_pool is pool:
            sent.extend(str(command_args[0]).upper() for command_args, _ in self.command_stack)
        return await execute_pipeline(self, *args, **options)

    with (
        mock.patch.object(aioredis.Redis, "execute_command", counting),
        mock.patch.object(aioredis.client.Pipeline, "execute", counting_pipeline),
    ):
        yield sent


async def set_slow_mode(room, seconds):
    await database_sync_to_async(Room.objects.filter(pk=room.pk).update)(slow_mode_seconds=seconds)


async def test_a_send_refused_by_the_limit_stores_nothing_and_takes_no_seq(settings, alice, bob, public_room):
    settings.WS_RATE_LIMITS = {**settings.WS_RATE_LIMITS, "send": "2/10second"}
    alice_ws, bob_ws = await connected(alice), await connected(bob)
    await alice_ws.subscribe(public_room.slug)
    await bob_ws.subscribe(public_room.slug)
    await bob_ws.post(public_room.slug, "a")
    await bob_ws.post(public_room.slug, "b")
    refused = send_frame(public_room.slug, "refused")
    await bob_ws.send(refused)
    assert (await bob_ws.recv_type("error"))["code"] == "rate_limited"
    assert await buffer.acounters(room_id=public_room.pk) == (2, 2)
    keys = RoomKeys(public_room.pk)
    assert await get_async_redis(public_room.pk).exists(keys.client_id(refused["client_id"], bob.pk)) == 0
    assert (await alice_ws.post(public_room.slug, "next"))["seq"] == 3
    bodies = [r["body"] for r in await buffer.arecords_between(room_id=public_room.pk, after=0, upto=10)]
    assert bodies == ["a", "b", "next"]
    await alice_ws.close()
    await bob_ws.close()


async def test_a_retry_of_a_stored_message_is_acked_with_its_first_seq_and_not_counted(settings, bob, public_room):
    settings.WS_RATE_LIMITS = {**settings.WS_RATE_LIMITS, "send": "3/10second"}
    ws = await connected(bob)
    await ws.subscribe(public_room.slug)
    first = str(uuid.uuid4())
    assert (await ws.post(public_room.slug, "first", first))["seq"] == 1
    for _ in range(3):
        assert (await ws.post(public_room.slug, "first", first))["seq"] == 1
    assert (await ws.post(public_room.slug, "second"))["seq"] == 2
    assert (await ws.post(public_room.slug, "third"))["seq"] == 3
    # Past the limit, a retry is still acked; a new message is refused.
    assert (await ws.post(public_room.slug, "first", first))["seq"] == 1
    await ws.send(send_frame(public_room.slug, "fourth"))
    assert (await ws.recv_type("error"))["code"] == "rate_limited"
    assert await buffer.acounters(room_id=public_room.pk) == (3, 3)
    await ws.close()


async def test_the_window_moves_a_refused_sender_may_send_after_retry_after(settings, bob, public_room):
    settings.WS_RATE_LIMITS = {**settings.WS_RATE_LIMITS, "send": "2/1second"}
    ws = await connected(bob)
    await ws.subscribe(public_room.slug)
    await ws.post(public_room.slug, "a")
    await asyncio.sleep(0.5)
    await ws.post(public_room.slug, "b")
    await ws.send(send_frame(public_room.slug, "c"))
    error = await ws.recv_type("error")
    assert error["code"] == "rate_limited"
    # "a" leaves the window first: the wait is what remains of its second.
    assert 0.1 <= error["retry_after"] <= 0.55
    await asyncio.sleep(error["retry_after"] + 0.05)
    assert (await ws.post(public_room.slug, "c"))["seq"] == 3
    # "b" is still in the window, and "c" is in it now.
    await ws.send(send_frame(public_room.slug, "d"))
    assert (await ws.recv_type("error"))["code"] == "rate_limited"
    await ws.close()


async def test_slow_mode_refuses_without_storing_and_acks_a_retry_with_its_first_seq(settings, bob, public_room):
    await set_slow_mode(public_room, 10)
    ws = await connected(bob)
    await ws.subscribe(public_room.slug)
    first = str(uuid.uuid4())
    assert (await ws.post(public_room.slug, "first", first))["seq"] == 1
    assert (await ws.post(public_room.slug, "first", first))["seq"] == 1
    await ws.send(send_frame(public_room.slug, "second"))
    error = await ws.recv_type("error")
    assert (error["code"], error["detail"]) == ("rate_limited", "Slow mode: one message every 10 s.")
    assert 9 <= error["retry_after"] <= 10
    assert await buffer.acounters(room_id=public_room.pk) == (1, 1)
    await ws.close()


async def test_a_slow_mode_refusal_leaves_the_send_limit_untouched(settings, alice, bob, public_room):
    settings.WS_RATE_LIMITS = {**settings.WS_RATE_LIMITS, "send": "2/10second"}
    await set_slow_mode(public_room, 1)
    ws = await connected(bob)
    await ws.subscribe(public_room.slug)
    await ws.post(public_room.slug, "a")
    for _ in range(3):
        await ws.send(send_frame(public_room.slug, "too soon"))
        assert "Slow mode" in (await ws.recv_type("error"))["detail"]
    await asyncio.sleep(1.05)
    assert (await ws.post(public_room.slug, "b"))["seq"] == 2
    await ws.close()


@pytest.mark.parametrize("slow_mode_seconds", [0, 30])
async def test_a_send_is_one_redis_call_stored_retried_or_refused(settings, bob, public_room, slow_mode_seconds):
    settings.WS_RATE_LIMITS = {**settings.WS_RATE_LIMITS, "send": "2/10second"}
    await set_slow_mode(public_room, slow_mode_seconds)
    ws = await connected(bob)
    await ws.subscribe(public_room.slug)
    first = send_frame(public_room.slug, "first")
    await ws.send(first)  # takes the counters from PostgreSQL and loads the script
    await ws.recv_type("ack")
    sends = [(first, "ack")]  # a retry
    if not slow_mode_seconds:
        sends.append((send_frame(public_room.slug, "second"), "ack"))
    sends.append((send_frame(public_room.slug, "refused"), "error"))  # by the limit, or by slow mode
    for frame, answer in sends:
        with room_redis_commands(public_room.pk) as sent:
            await ws.send(frame)
            await ws.recv_type(answer)
        assert sent == ["EVALSHA"], (frame["body"], sent)
    await ws.close()


async def test_a_redis_that_lost_its_scripts_loads_the_append_script_again(bob, public_room):
    ws = await connected(bob)
    await ws.subscribe(public_room.slug)
    await ws.post(public_room.slug, "before")
    await get_async_redis(public_room.pk).script_flush()  # as after a restart
    with room_redis_commands(public_room.pk) as sent:
        assert (await ws.post(public_room.slug, "after"))["seq"] == 2
    assert sent == ["EVALSHA", "SCRIPT LOAD", "EVALSHA"]
    await ws.close()
