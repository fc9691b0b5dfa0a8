"""A direct conversation over the WebSocket: the same consumer and path as any room, and an
outsider (charlie, or dave who moderates another room) is told it does not exist."""

from __future__ import annotations

import uuid

import pytest
from channels.db import database_sync_to_async

from messaging.tests.wsclient import connected
from rooms.models import Membership
from rooms.services import direct_open, room_create

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("async_cleanup")]


@pytest.fixture
def dave(make_user, alice):
    user = make_user("dave")
    room = room_create(creator=alice, name="Elsewhere")
    Membership.objects.create(room=room, user=user, role=Membership.Role.MODERATOR)
    return user


async def test_its_people_talk_live_and_an_outsider_gets_not_found(alice, bob, charlie, dave):
    dm = await database_sync_to_async(direct_open)(opener=alice, usernames=["bob"])
    alice_ws, bob_ws = await connected(alice), await connected(bob)
    await alice_ws.subscribe(dm.slug)
    await bob_ws.subscribe(dm.slug)
    await alice_ws.post(dm.slug, "just between us")
    [message] = await bob_ws.messages(1)
    assert (message["room"], message["body"], message["author"]["username"]) == (dm.slug, "just between us", "alice")
    for outsider in (charlie, dave):
        ws = await connected(outsider)
        await ws.send({"type": "subscribe", "room": dm.slug, "ref": "s"})
        assert await ws.recv() == {"type": "error", "code": "not_found", "detail": "No such room.", "ref": "s"}
        await ws.send({"type": "send", "room": dm.slug, "body": "hi", "client_id": str(uuid.uuid4()), "ref": "p"})
        assert (await ws.recv())["code"] == "not_subscribed"
        await ws.close()
    assert await bob_ws.nothing_more()
    for ws in (alice_ws, bob_ws):
        await ws.close()
    members = await database_sync_to_async(lambda: sorted(dm.memberships.values_list("user__username", flat=True)))()
    assert members == ["alice", "bob"]


async def test_nobody_posts_in_a_conversation_with_someone_banned_from_the_site(alice, bob):
    dm = await database_sync_to_async(direct_open)(opener=alice, usernames=["bob"])
    bob.is_active = False
    await database_sync_to_async(bob.save)()
    ws = await connected(alice)
    await ws.subscribe(dm.slug)
    await ws.send({"type": "send", "room": dm.slug, "body": "hello?", "client_id": str(uuid.uuid4()), "ref": "p"})
    assert (await ws.recv_type("error"))["code"] == "room_locked"
    await ws.close()


async def test_an_open_socket_hears_of_a_new_conversation_and_counts_its_unread_messages(alice, bob, charlie):
    bob_ws = await connected(bob, ignore=frozenset({"presence", "presence_diff", "typing", "clap_board"}))
    charlie_ws = await connected(charlie)
    dm = await database_sync_to_async(direct_open)(opener=alice, usernames=["bob"])
    assert await bob_ws.recv_type("direct_joined") == {"type": "direct_joined", "room": dm.slug, "title": "alice"}
    alice_ws = await connected(alice)
    await alice_ws.subscribe(dm.slug)
    await alice_ws.post(dm.slug, "are you there?")
    unread = await bob_ws.recv_type("unread", timeout=5)
    assert (unread["room"], unread["count"]) == (dm.slug, 1)
    assert await charlie_ws.nothing_more()
    for ws in (alice_ws, bob_ws, charlie_ws):
        await ws.close()


async def test_claps_replies_and_recovery_work_in_a_conversation_as_in_any_room(alice, bob):
    dm = await database_sync_to_async(direct_open)(opener=alice, usernames=["bob"])
    alice_ws, bob_ws = await connected(alice), await connected(bob)
    await alice_ws.subscribe(dm.slug)
    await bob_ws.subscribe(dm.slug)
    await alice_ws.post(dm.slug, "lunch?")
    [first] = await bob_ws.messages(1)
    await bob_ws.send({"type": "clap", "room": dm.slug, "seq": first["seq"], "count": 3})
    claps = await alice_ws.recv_type("claps")
    assert (claps["seq"], claps["total"], claps["user"]["username"]) == (first["seq"], 3, "bob")
    since, rev = first["seq"], (await bob_ws.recv_type("claps"))["rev"]
    await bob_ws.close()

    # While bob is away: a reply to the first message, an edit of it, and claps on it.
    client_id = str(uuid.uuid4())
    await alice_ws.send(
        {"type": "send", "room": dm.slug, "body": "at noon", "client_id": client_id, "ref": "r", "reply_to": 1}
    )
    await alice_ws.recv_type("ack")
    await alice_ws.send({"type": "edit", "room": dm.slug, "seq": 1, "body": "lunch today?"})
    await alice_ws.send({"type": "clap", "room": dm.slug, "seq": 1, "count": 2})
    await alice_ws.recv_type("claps")

    back = await connected(bob)
    subscribed = await back.subscribe(dm.slug, since=since, rev=rev)
    assert subscribed["recovered"] is True
    frames = [await back.recv() for _ in range(3)]
    by_type = {frame["type"]: frame for frame in frames}
    assert set(by_type) == {"message", "message_updated", "claps"}, frames
    assert (by_type["message"]["seq"], by_type["message"]["body"]) == (2, "at noon")
    assert by_type["message"]["reply_to"] == 1 and by_type["message"]["reply"]["seq"] == 1
    assert by_type["message_updated"]["body"] == "lunch today?"
    assert by_type["claps"]["total"] == 5
    assert await back.nothing_more()
    for ws in (alice_ws, back):
        await ws.close()
