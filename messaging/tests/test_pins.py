"""Pinned messages: moderators pin and unpin, audited; everyone sees it live and in the list;
recovered by ``rev``; persisted; refused to members and outsiders."""

import uuid

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from django.core.exceptions import PermissionDenied, ValidationError

from messaging.models import Pin
from messaging.pins import room_message_pin, room_pins_list
from messaging.selectors import message_history, room_counters
from messaging.services import message_hide
from messaging.store import buffer
from messaging.store.persistence import messages_persist_server
from messaging.tests.wsclient import connected
from pubsub_site.redis.client import close_async_clients_for_running_loop
from rooms.models import AuditLog, Membership

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("async_cleanup")]

persist = database_sync_to_async(messages_persist_server)
IGNORED = frozenset({"presence", "presence_diff", "unread", "typing", "member_updated"})


async def room_with(room, *users):
    sockets = []
    for user in users:
        ws = await connected(user, ignore=IGNORED)
        await ws.subscribe(room.slug)
        sockets.append(ws)
    return sockets


def pin(room, seq, pinned=True, **extra):
    return {"type": "pin", "room": room.slug, "seq": seq, "pinned": pinned, **extra}


async def test_a_moderator_pins_and_everyone_sees_it_live_and_in_the_list(alice, bob, public_room):
    alice_ws, bob_ws = await room_with(public_room, alice, bob)
    await bob_ws.post(public_room.slug, "the rules: be kind")
    await alice_ws.messages(1)
    await alice_ws.send(pin(public_room, 1))
    seen = await bob_ws.recv_type("pinned")
    assert (seen["seq"], seen["pinned"], seen["by"]["username"]) == (1, True, "alice")
    assert seen["message"]["excerpt"] == "the rules: be kind" and seen["message"]["author"]["username"] == "bob"
    listed = await database_sync_to_async(room_pins_list)(room_id=public_room.pk)
    assert [(p["seq"], p["message"]["excerpt"], p["by"]["username"]) for p in listed] == [
        (1, "the rules: be kind", "alice")
    ]
    page = await database_sync_to_async(message_history)(room=public_room)
    assert page.messages[0]["pinned"]["by"]["username"] == "alice"
    await persist(server=0)
    row = await database_sync_to_async(Pin.objects.select_related("message").get)()
    assert (row.message.seq, row.pinned_by_id) == (1, alice.pk)

    await alice_ws.send(pin(public_room, 1, pinned=False))
    seen = await bob_ws.recv_type("pinned")
    assert (seen["seq"], seen["pinned"], seen["message"]) == (1, False, None)
    assert await database_sync_to_async(room_pins_list)(room_id=public_room.pk) == []
    await persist(server=0)
    assert not await database_sync_to_async(Pin.objects.exists)()
    actions = await database_sync_to_async(
        lambda: list(AuditLog.objects.order_by("id").values_list("action", "actor__username", "seq", "target_id"))
    )()
    assert actions == [("pin_message", "alice", 1, bob.pk), ("unpin_message", "alice", 1, bob.pk)]
    for ws in (alice_ws, bob_ws):
        await ws.close()


async def test_a_member_cannot_pin_and_is_told_so(alice, bob, public_room):
    alice_ws, bob_ws = await room_with(public_room, alice, bob)
    await bob_ws.post(public_room.slug, "pin me")
    await alice_ws.messages(1)
    await bob_ws.send(pin(public_room, 1, ref="p"))
    error = await bob_ws.recv_type("error")
    assert (error["code"], error["ref"]) == ("forbidden", "p") and "moderators" in error["detail"]
    assert await alice_ws.nothing_more()
    assert not await database_sync_to_async(AuditLog.objects.exists)()
    for ws in (alice_ws, bob_ws):
        await ws.close()


async def test_an_appointed_moderator_pins(alice, bob, public_room):
    await database_sync_to_async(
        lambda: Membership.objects.update_or_create(
            room=public_room, user=bob, defaults={"role": Membership.Role.MODERATOR}
        )
    )()
    alice_ws, bob_ws = await room_with(public_room, alice, bob)
    await alice_ws.post(public_room.slug, "announcement")
    await bob_ws.send(pin(public_room, 1))
    assert (await alice_ws.recv_type("pinned"))["by"]["username"] == "bob"
    for ws in (alice_ws, bob_ws):
        await ws.close()


async def test_an_outsider_neither_pins_nor_sees_pins_of_a_private_room(alice, bob, charlie, private_room):
    alice_ws, bob_ws = await room_with(private_room, alice, bob)
    outsider = await connected(charlie, ignore=IGNORED)
    await alice_ws.post(private_room.slug, "secret plan")
    await outsider.send(pin(private_room, 1))
    assert (await outsider.recv_type("error"))["code"] == "not_subscribed"
    await alice_ws.send(pin(private_room, 1))
    await bob_ws.recv_type("pinned")
    assert await outsider.nothing_more()
    for ws in (alice_ws, bob_ws, outsider):
        await ws.close()


def post_message(room, author, body: str) -> int:
    """Store a message as the consumer does (Redis first); returns its seq."""

    async def append():
        try:
            return await buffer.append(
                room_id=room.pk,
                record={
                    "author": {"id": author.pk, "username": author.username},
                    "body": body,
                    "client_id": str(uuid.uuid4()),
                    "sent_at": "2026-01-01T00:00:00.000Z",
                },
            )
        finally:
            await close_async_clients_for_running_loop()

    room_counters(room_id=room.pk)
    return async_to_sync(append)().seq


def test_pin_refusals_are_clear(alice, bob, charlie, public_room, settings):
    for body in ("one", "two", "three"):
        post_message(public_room, bob, body)
    with pytest.raises(PermissionDenied):
        room_message_pin(room=public_room, actor=bob, seq=1, pinned=True)
    with pytest.raises(PermissionDenied):
        room_message_pin(room=public_room, actor=charlie, seq=1, pinned=True)
    with pytest.raises(ValidationError, match="No such message"):
        room_message_pin(room=public_room, actor=alice, seq=9, pinned=True)
    with pytest.raises(ValidationError, match="not pinned"):
        room_message_pin(room=public_room, actor=alice, seq=1, pinned=False)
    room_message_pin(room=public_room, actor=alice, seq=1, pinned=True)
    with pytest.raises(ValidationError, match="already pinned"):
        room_message_pin(room=public_room, actor=alice, seq=1, pinned=True)
    settings.PINS_MAX_PER_ROOM = 2
    room_message_pin(room=public_room, actor=alice, seq=2, pinned=True)
    with pytest.raises(ValidationError, match="at most 2 pinned"):
        room_message_pin(room=public_room, actor=alice, seq=3, pinned=True)
    message_hide(room_id=public_room.pk, room_slug=public_room.slug, seq=3, moderator_id=alice.pk)
    with pytest.raises(ValidationError, match="deleted"):
        room_message_pin(room=public_room, actor=alice, seq=3, pinned=True)
    # A hidden pinned message leaves the list.
    message_hide(room_id=public_room.pk, room_slug=public_room.slug, seq=2, moderator_id=alice.pk)
    assert [p["seq"] for p in room_pins_list(room_id=public_room.pk)] == [1]
    assert AuditLog.objects.filter(action=AuditLog.Action.PIN_MESSAGE).count() == 2


async def test_a_client_away_learns_of_pins_by_rev(alice, bob, public_room):
    alice_ws, bob_ws = await room_with(public_room, alice, bob)
    for i in range(3):
        await alice_ws.post(public_room.slug, f"m{i}")
    frames = await bob_ws.messages(3)
    since, rev = frames[-1]["seq"], frames[-1]["rev"]
    await bob_ws.close()
    await alice_ws.send(pin(public_room, 1))
    await alice_ws.recv_type("pinned")
    await alice_ws.send(pin(public_room, 2))
    await alice_ws.recv_type("pinned")
    await persist(server=0)
    await alice_ws.send(pin(public_room, 2, pinned=False))
    await alice_ws.recv_type("pinned")

    back = await connected(bob, ignore=IGNORED)
    subscribed = await back.subscribe(public_room.slug, since=since, rev=rev)
    assert subscribed["rev"] == rev + 3
    changes = [await back.recv() for _ in range(2)]
    assert [(c["type"], c["seq"], c["pinned"]) for c in changes] == [("pinned", 1, True), ("pinned", 2, False)]
    assert changes[0]["message"]["excerpt"] == "m0"
    assert await back.nothing_more()
    for ws in (alice_ws, back):
        await ws.close()
