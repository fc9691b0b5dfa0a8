"""Moderation reaches connected clients: kicked on ban and removal, muted, room locked, hidden messages.

alice owns the room, dave moderates it, bob is a member (all over real WebSockets).
"""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from channels.db import database_sync_to_async

from messaging import moderation as message_moderation
from messaging.tests.wsclient import connected
from rooms import moderation
from rooms.models import AuditLog, Membership, Room

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
    await database_sync_to_async(message_moderation.room_message_hide)(room=moderated_room, actor=dave, seq=ack["seq"])
    deleted = await bob_ws.recv_type("message_deleted")
    assert (deleted["room"], deleted["seq"]) == (moderated_room.slug, ack["seq"])
    await bob_ws.close()


async def test_a_promoted_member_moderates_at_once(moderated_room, alice, bob, charlie):
    # charlie is a plain member here: a moderator hides a member's message (not the owner's).
    await database_sync_to_async(Membership.objects.create)(room=moderated_room, user=charlie)
    charlie_ws = await connected(charlie)
    await charlie_ws.subscribe(moderated_room.slug)
    bob_ws = await connected(bob)
    await bob_ws.subscribe(moderated_room.slug)
    ack = await send(charlie_ws, moderated_room.slug, "charlie speaks")
    await database_sync_to_async(moderation.membership_promote)(room=moderated_room, actor=alice, user=bob)
    await database_sync_to_async(moderation.membership_demote)(room=moderated_room, actor=alice, user=bob)
    await database_sync_to_async(moderation.membership_promote)(room=moderated_room, actor=alice, user=bob)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while True:
        # Refused (forbidden) until bob's socket has reloaded his rights.
        await bob_ws.send({"type": "delete", "room": moderated_room.slug, "seq": ack["seq"], "ref": "d"})
        frame = await bob_ws.recv()
        while frame["type"] == "message":  # charlie's message, live
            frame = await bob_ws.recv()
        if frame["type"] == "message_deleted":
            assert frame["seq"] == ack["seq"]
            break
        assert frame["type"] == "error" and frame["code"] in {"forbidden", "rate_limited"}, frame
        assert loop.time() < deadline
        await asyncio.sleep(0.2)
    await charlie_ws.close()
    await bob_ws.close()


# --- Edits and typing obey what sends obey ------------------------------------------


async def edit(client, room: str, seq: int, body: str) -> dict:
    """Edit and return the answer to it: the error, or (none comes to the author) the
    `message_updated` every subscriber gets."""
    await client.send({"type": "edit", "room": room, "seq": seq, "body": body, "ref": "e"})
    while True:
        frame = await client.recv()
        if frame.get("ref") == "e" or frame["type"] == "message_updated":
            return frame


async def test_a_muted_member_cannot_edit_an_old_message_into_new_content(moderated_room, alice, dave, bob):
    alice_ws, bob_ws = await connected(alice), await connected(bob)
    await alice_ws.subscribe(moderated_room.slug)
    await bob_ws.subscribe(moderated_room.slug)
    seq = (await send(bob_ws, moderated_room.slug, "harmless"))["seq"]
    await alice_ws.recv_type("message")
    await database_sync_to_async(moderation.membership_mute)(
        room=moderated_room, actor=dave, user=bob, duration=timedelta(minutes=10)
    )
    await eventually(bob_ws, moderated_room.slug, "muted")
    refused = await edit(bob_ws, moderated_room.slug, seq, "something nasty")
    assert (refused["type"], refused["code"]) == ("error", "muted")
    assert refused["until"]
    assert await alice_ws.nothing_more()
    await database_sync_to_async(moderation.membership_unmute)(room=moderated_room, actor=dave, user=bob)
    await eventually(bob_ws, moderated_room.slug, "ack")
    assert (await edit(bob_ws, moderated_room.slug, seq, "fixed"))["type"] == "message_updated"
    await alice_ws.close()
    await bob_ws.close()


async def test_nobody_edits_in_a_locked_room(moderated_room, alice, dave, bob):
    alice_ws, bob_ws = await connected(alice), await connected(bob)
    await alice_ws.subscribe(moderated_room.slug)
    await bob_ws.subscribe(moderated_room.slug)
    seq = (await send(bob_ws, moderated_room.slug, "harmless"))["seq"]
    await alice_ws.recv_type("message")
    await database_sync_to_async(moderation.room_lock)(room=moderated_room, actor=dave)
    await eventually(bob_ws, moderated_room.slug, "room_locked")
    refused = await edit(bob_ws, moderated_room.slug, seq, "something nasty")
    assert (refused["type"], refused["code"]) == ("error", "room_locked")
    assert await alice_ws.nothing_more()
    await alice_ws.close()
    await bob_ws.close()


async def test_a_member_turned_spectator_cannot_edit(moderated_room, alice, bob):
    bob_ws = await connected(bob)
    await bob_ws.subscribe(moderated_room.slug)
    seq = (await send(bob_ws, moderated_room.slug, "harmless"))["seq"]
    await bob_ws.close()
    await database_sync_to_async(Membership.objects.filter(room=moderated_room, user=bob).update)(
        role=Membership.Role.SPECTATOR
    )
    alice_ws, bob_ws = await connected(alice), await connected(bob)
    await alice_ws.subscribe(moderated_room.slug)
    await bob_ws.subscribe(moderated_room.slug)
    refused = await edit(bob_ws, moderated_room.slug, seq, "something nasty")
    assert (refused["type"], refused["code"]) == ("error", "forbidden")
    assert await alice_ws.nothing_more()
    await alice_ws.close()
    await bob_ws.close()


async def test_a_banned_member_cannot_edit(moderated_room, alice, dave, bob):
    alice_ws, bob_ws = await connected(alice), await connected(bob)
    await alice_ws.subscribe(moderated_room.slug)
    await bob_ws.subscribe(moderated_room.slug)
    seq = (await send(bob_ws, moderated_room.slug, "harmless"))["seq"]
    await alice_ws.recv_type("message")
    await database_sync_to_async(moderation.membership_ban)(room=moderated_room, actor=dave, user=bob)
    await bob_ws.recv_type("kicked")
    refused = await edit(bob_ws, moderated_room.slug, seq, "something nasty")
    assert (refused["type"], refused["code"]) == ("error", "not_subscribed")
    assert await alice_ws.nothing_more()
    await alice_ws.close()
    await bob_ws.close()


@pytest.mark.parametrize("state", ["muted", "locked"])
async def test_who_may_not_post_is_not_shown_typing(moderated_room, alice, bob, state):
    if state == "muted":
        until = datetime.now(UTC) + timedelta(minutes=10)
        await database_sync_to_async(Membership.objects.filter(room=moderated_room, user=bob).update)(muted_until=until)
    else:
        await database_sync_to_async(Room.objects.filter(pk=moderated_room.pk).update)(locked=True)
    alice_ws = await connected(alice, ignore=frozenset({"presence", "presence_diff", "unread"}))
    await alice_ws.subscribe(moderated_room.slug)
    bob_ws = await connected(bob)
    await bob_ws.subscribe(moderated_room.slug)
    await bob_ws.send({"type": "typing", "room": moderated_room.slug})
    assert await alice_ws.nothing_more(0.5)
    await alice_ws.close()
    await bob_ws.close()


# --- A moderator's delete over the socket is the moderation act -----------------------


async def test_a_moderators_delete_over_the_socket_is_a_hide_in_the_audit_log(moderated_room, dave, bob):
    bob_ws, dave_ws = await connected(bob), await connected(dave)
    await bob_ws.subscribe(moderated_room.slug)
    await dave_ws.subscribe(moderated_room.slug)
    seq = (await send(bob_ws, moderated_room.slug, "buy watches"))["seq"]
    await dave_ws.send({"type": "delete", "room": moderated_room.slug, "seq": seq})
    assert (await bob_ws.recv_type("message_deleted"))["seq"] == seq
    entries = await database_sync_to_async(list)(
        AuditLog.objects.filter(room=moderated_room).values_list("action", "actor_id", "target_id", "seq")
    )
    assert entries == [(AuditLog.Action.HIDE_MESSAGE, dave.pk, bob.pk, seq)]
    await bob_ws.close()
    await dave_ws.close()


async def test_a_moderator_cannot_delete_the_owners_message_over_the_socket(moderated_room, alice, dave):
    alice_ws, dave_ws = await connected(alice), await connected(dave)
    await alice_ws.subscribe(moderated_room.slug)
    await dave_ws.subscribe(moderated_room.slug)
    seq = (await send(alice_ws, moderated_room.slug, "the owner speaks"))["seq"]
    await alice_ws.recv_type("message")
    await dave_ws.send({"type": "delete", "room": moderated_room.slug, "seq": seq, "ref": "d"})
    refused = await dave_ws.recv_type("error")
    assert (refused["code"], refused["ref"]) == ("forbidden", "d")
    assert await alice_ws.nothing_more()
    assert not await database_sync_to_async(AuditLog.objects.filter(room=moderated_room).exists)()
    # The owner hides the moderator's message, and that is recorded too.
    seq = (await send(dave_ws, moderated_room.slug, "the moderator speaks"))["seq"]
    await alice_ws.send({"type": "delete", "room": moderated_room.slug, "seq": seq})
    assert (await dave_ws.recv_type("message_deleted"))["seq"] == seq
    actions = await database_sync_to_async(list)(AuditLog.objects.values_list("action", "actor_id", "seq"))
    assert actions == [(AuditLog.Action.HIDE_MESSAGE, alice.pk, seq)]
    await alice_ws.close()
    await dave_ws.close()
