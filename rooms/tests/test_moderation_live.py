"""Moderation reaches connected clients: kicked on ban and removal, muted, room locked, hidden messages.

alice owns the room, dave moderates it, bob is a member (all over real WebSockets).
"""

import asyncio
import uuid
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async

from messaging.tests.wsclient import connected
from rooms import moderation
from rooms.models import Membership

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("async_cleanup")]


@pytest.fixture
def moderated_room(public_room, bob, dave):
    Membership.objects.create(room=public_room, user=bob)
    Membership.objects.create(room=public_room, user=dave, role=Membership.Role.MODERATOR)
    return public_room


async def send(client, room: str, body: str) -> dict:
    """Post and return the answer to it: the ack or the error."""
    client_id = str(uuid.uuid4())
    await client.send({"type": "send", "room": room, "body": body, "client_id": client_id, "ref": client_id})
    while True:
        frame = await client.recv()
        if frame.get("ref") == client_id:
            return frame


async def eventually(client, room: str, expected: str, timeout: float = 10) -> dict:
    """Post until the answer is of ``expected`` type/code: the change reaches the socket asynchronously."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        answer = await send(client, room, "hello?")
        if answer["type"] == expected or answer.get("code") == expected:
            return answer
        assert loop.time() < deadline, answer
        await asyncio.sleep(0.2)


async def test_a_banned_member_is_kicked_and_cannot_come_back(moderated_room, dave, bob):
    bob_ws = await connected(bob)
    await bob_ws.subscribe(moderated_room.slug)
    await database_sync_to_async(moderation.membership_ban)(room=moderated_room, actor=dave, user=bob, reason="spam")
    kicked = await bob_ws.recv_type("kicked")
    assert kicked == {"type": "kicked", "room": moderated_room.slug, "reason": "You were banned from this room: spam."}
    await bob_ws.send({"type": "subscribe", "room": moderated_room.slug})
    error = await bob_ws.recv_type("error")
    assert error["code"] == "banned"
    await bob_ws.close()


async def test_a_removed_member_is_kicked(moderated_room, dave, bob):
    bob_ws = await connected(bob)
    await bob_ws.subscribe(moderated_room.slug)
    await database_sync_to_async(moderation.membership_remove)(room=moderated_room, actor=dave, user=bob)
    kicked = await bob_ws.recv_type("kicked")
    assert kicked["reason"] == "You were removed from this room."
    await bob_ws.send({"type": "send", "room": moderated_room.slug, "body": "hi", "client_id": str(uuid.uuid4())})
    assert (await bob_ws.recv_type("error"))["code"] == "not_subscribed"
    await bob_ws.close()


async def test_a_muted_member_cannot_post_until_unmuted(moderated_room, dave, bob):
    bob_ws = await connected(bob)
    await bob_ws.subscribe(moderated_room.slug)
    assert (await send(bob_ws, moderated_room.slug, "before"))["type"] == "ack"
    await database_sync_to_async(moderation.membership_mute)(
        room=moderated_room, actor=dave, user=bob, duration=timedelta(minutes=10)
    )
    refused = await eventually(bob_ws, moderated_room.slug, "muted")
    assert refused["until"]
    await database_sync_to_async(moderation.membership_unmute)(room=moderated_room, actor=dave, user=bob)
    await eventually(bob_ws, moderated_room.slug, "ack")
    await bob_ws.close()


async def test_nobody_posts_in_a_locked_room_until_it_is_unlocked(moderated_room, dave, bob):
    bob_ws = await connected(bob)
    await bob_ws.subscribe(moderated_room.slug)
    await database_sync_to_async(moderation.room_lock)(room=moderated_room, actor=dave)
    await eventually(bob_ws, moderated_room.slug, "room_locked")
    await database_sync_to_async(moderation.room_unlock)(room=moderated_room, actor=dave)
    await eventually(bob_ws, moderated_room.slug, "ack")
    await bob_ws.close()


async def test_a_hidden_message_is_deleted_for_every_subscriber(moderated_room, alice, dave, bob):
    bob_ws = await connected(bob)
    await bob_ws.subscribe(moderated_room.slug)
    ack = await send(bob_ws, moderated_room.slug, "buy watches")
    await database_sync_to_async(moderation.room_message_hide)(room=moderated_room, actor=dave, seq=ack["seq"])
    deleted = await bob_ws.recv_type("message_deleted")
    assert (deleted["room"], deleted["seq"]) == (moderated_room.slug, ack["seq"])
    await bob_ws.close()


async def test_a_promoted_member_moderates_at_once(moderated_room, alice, bob):
    alice_ws = await connected(alice)
    await alice_ws.subscribe(moderated_room.slug)
    bob_ws = await connected(bob)
    await bob_ws.subscribe(moderated_room.slug)
    ack = await send(alice_ws, moderated_room.slug, "alice speaks")
    await database_sync_to_async(moderation.membership_promote)(room=moderated_room, actor=alice, user=bob)
    await database_sync_to_async(moderation.membership_demote)(room=moderated_room, actor=alice, user=bob)
    await database_sync_to_async(moderation.membership_promote)(room=moderated_room, actor=alice, user=bob)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while True:
        # Refused (forbidden) until bob's socket has reloaded his rights.
        await bob_ws.send({"type": "delete", "room": moderated_room.slug, "seq": ack["seq"], "ref": "d"})
        frame = await bob_ws.recv()
        while frame["type"] == "message":  # alice's message, live
            frame = await bob_ws.recv()
        if frame["type"] == "message_deleted":
            assert frame["seq"] == ack["seq"]
            break
        assert frame["type"] == "error" and frame["code"] in {"forbidden", "rate_limited"}, frame
        assert loop.time() < deadline
        await asyncio.sleep(0.2)
    await alice_ws.close()
    await bob_ws.close()
