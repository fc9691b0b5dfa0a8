"""Claps, edits, deletions, recovery by rev, presence, typing, read markers, mentions, spectators."""

import asyncio
import uuid

import pytest
from channels.db import database_sync_to_async

from messaging.models import Clap, Message, Notification
from messaging.store.persistence import messages_persist_server
from messaging.tests.wsclient import connected
from rooms.models import Membership

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("async_cleanup")]

persist = database_sync_to_async(messages_persist_server)


async def room_with(room, *users):
    sockets = []
    for user in users:
        ws = await connected(user)
        await ws.subscribe(room.slug)
        sockets.append(ws)
    return sockets


async def test_claps_are_capped_per_user_and_counted_for_everyone(alice, bob, public_room):
    alice_ws, bob_ws = await room_with(public_room, alice, bob)
    await alice_ws.post(public_room.slug, "clap for me")
    await alice_ws.messages(1)
    await bob_ws.send({"type": "clap", "room": public_room.slug, "seq": 1, "count": 30, "ref": "c1"})
    reply = await bob_ws.recv_type("claps")
    assert reply["ref"] == "c1"
    assert (reply["total"], reply["user_total"], reply["user"]) == (30, 30, {"id": bob.pk, "username": "bob"})
    await bob_ws.send({"type": "clap", "room": public_room.slug, "seq": 1, "count": 40})
    reply = await bob_ws.recv_type("claps")
    assert (reply["total"], reply["user_total"]) == (50, 50)  # capped: 20 of the 40 counted
    await bob_ws.send({"type": "clap", "room": public_room.slug, "seq": 1})
    assert (await bob_ws.recv_type("claps"))["total"] == 50
    # Alice sees the coalesced total, not one frame per clap.
    seen = await alice_ws.recv_type("claps")
    assert seen["total"] == 50 and seen["user"]["username"] == "bob"
    assert await alice_ws.nothing_more()
    await persist(server=0)
    clap = await database_sync_to_async(Clap.objects.get)(message__seq=1, user=bob)
    assert clap.count == 50
    await alice_ws.close()
    await bob_ws.close()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ({"seq": 99}, "not_found"),
        ({"seq": 0}, "bad_request"),
        ({"seq": "1"}, "bad_request"),
        ({"seq": 1, "count": 0}, "bad_request"),
        ({"seq": 1, "count": -5}, "bad_request"),
        ({"seq": 1, "count": True}, "bad_request"),
    ],
)
async def test_bad_claps_are_refused(alice, public_room, frame, code):
    (ws,) = await room_with(public_room, alice)
    await ws.post(public_room.slug, "hello")
    await ws.send({"type": "clap", "room": public_room.slug, **frame})
    assert (await ws.recv_type("error"))["code"] == code
    await ws.close()


async def test_the_clap_board_counts_given_and_received(alice, bob, public_room):
    alice_ws, bob_ws = await room_with(public_room, alice, bob)
    bob_ws.ignore = frozenset({"presence", "presence_diff", "unread", "typing"})
    await alice_ws.post(public_room.slug, "one")
    await bob_ws.send({"type": "clap", "room": public_room.slug, "seq": 1, "count": 3})
    board = await bob_ws.recv_type("clap_board")
    assert {u["id"]: (u["given"], u["received"]) for u in board["users"]} == {alice.pk: (0, 3), bob.pk: (3, 0)}
    await alice_ws.close()
    await bob_ws.close()


async def test_the_author_edits_and_deletes_and_everyone_sees_it(alice, bob, public_room):
    alice_ws, bob_ws = await room_with(public_room, alice, bob)
    await alice_ws.post(public_room.slug, "tpyo")
    await bob_ws.messages(1)
    await alice_ws.send({"type": "edit", "room": public_room.slug, "seq": 1, "body": "typo fixed"})
    updated = await bob_ws.recv_type("message_updated")
    assert (updated["seq"], updated["body"], updated["rev"]) == (1, "typo fixed", 2)
    await alice_ws.send({"type": "delete", "room": public_room.slug, "seq": 1})
    deleted = await bob_ws.recv_type("message_deleted")
    assert (deleted["seq"], deleted["rev"]) == (1, 3)
    # History, replay and PostgreSQL agree.
    late = await connected(bob)
    await late.subscribe(public_room.slug, since=0)
    replayed = await late.recv_type("message")
    assert (replayed["seq"], replayed["deleted"], replayed["body"], replayed["edited"]) == (1, True, "", True)
    await persist(server=0)
    row = await database_sync_to_async(Message.objects.get)(seq=1)
    assert row.body == "typo fixed" and row.edited_at and row.deleted_at and row.hidden_by_id is None
    for ws in (alice_ws, bob_ws, late):
        await ws.close()


async def test_a_moderator_deletes_any_message_and_it_counts_as_hidden(alice, bob, public_room):
    alice_ws, bob_ws = await room_with(public_room, alice, bob)
    await bob_ws.post(public_room.slug, "spam spam")
    await alice_ws.send({"type": "delete", "room": public_room.slug, "seq": 1})
    assert (await bob_ws.recv_type("message_deleted"))["seq"] == 1
    await persist(server=0)
    row = await database_sync_to_async(Message.objects.get)(seq=1)
    assert row.hidden_by_id == alice.pk
    await alice_ws.close()
    await bob_ws.close()


async def test_nobody_else_edits_or_deletes(alice, bob, charlie, public_room):
    alice_ws, bob_ws = await room_with(public_room, alice, bob)
    await alice_ws.post(public_room.slug, "mine")
    await alice_ws.messages(1)
    await bob_ws.send({"type": "edit", "room": public_room.slug, "seq": 1, "body": "yours now", "ref": "e"})
    assert (await bob_ws.recv_type("error"))["code"] == "forbidden"
    await bob_ws.send({"type": "delete", "room": public_room.slug, "seq": 1})
    assert (await bob_ws.recv_type("error"))["code"] == "forbidden"
    outsider = await connected(charlie)
    await outsider.send({"type": "delete", "room": public_room.slug, "seq": 1})
    assert (await outsider.recv_type("error"))["code"] == "not_subscribed"
    await outsider.send({"type": "edit", "room": public_room.slug, "seq": 1, "body": "x"})
    assert (await outsider.recv_type("error"))["code"] == "not_subscribed"
    assert await alice_ws.nothing_more()
    for ws in (alice_ws, bob_ws, outsider):
        await ws.close()


async def test_an_offline_client_recovers_exactly_the_changes_it_missed(alice, bob, public_room):
    alice_ws, bob_ws = await room_with(public_room, alice, bob)
    for i in range(5):
        await alice_ws.post(public_room.slug, f"m{i}")
    frames = await bob_ws.messages(5)
    since, rev = frames[-1]["seq"], frames[-1]["rev"]
    await bob_ws.close()

    await alice_ws.send({"type": "edit", "room": public_room.slug, "seq": 1, "body": "m0 edited"})
    await alice_ws.send({"type": "delete", "room": public_room.slug, "seq": 2})
    await alice_ws.send({"type": "clap", "room": public_room.slug, "seq": 3, "count": 4})
    await alice_ws.recv_type("claps")
    await persist(server=0)  # some of it from PostgreSQL, some from Redis: both agree

    back = await connected(bob)
    subscribed = await back.subscribe(public_room.slug, since=since, rev=rev)
    assert subscribed["rev"] == rev + 3
    changes = [await back.recv() for _ in range(3)]
    assert [(c["type"], c["seq"]) for c in changes] == [("message_updated", 1), ("message_deleted", 2), ("claps", 3)]
    assert changes[0]["body"] == "m0 edited"
    assert changes[2]["total"] == 4
    assert await back.nothing_more()
    await alice_ws.close()
    await back.close()


async def test_presence_counts_people_not_tabs(alice, bob, public_room):
    watch = await connected(alice, ignore=frozenset({"unread"}))
    await watch.subscribe(public_room.slug)
    assert [u["username"] for u in (await watch.recv_type("presence"))["online"]] == ["alice"]
    tab1 = await connected(bob)
    await tab1.subscribe(public_room.slug)
    diff = await watch.recv_type("presence_diff")
    assert diff["joins"] == [{"id": bob.pk, "username": "bob", "spectator": False}] and diff["leaves"] == []
    tab2 = await connected(bob)
    await tab2.subscribe(public_room.slug)
    await tab1.close()
    assert await watch.nothing_more(0.5)  # bob is still here in his other tab
    await tab2.close()
    diff = await watch.recv_type("presence_diff")
    assert diff["leaves"] == [{"id": bob.pk, "username": "bob", "spectator": False}]
    await watch.close()


async def test_typing_reaches_the_others_and_extra_frames_are_dropped(alice, bob, public_room):
    alice_ws = await connected(alice, ignore=frozenset({"presence", "presence_diff", "unread"}))
    await alice_ws.subscribe(public_room.slug)
    (bob_ws,) = await room_with(public_room, bob)
    for _ in range(5):
        await bob_ws.send({"type": "typing", "room": public_room.slug})
    typing = await alice_ws.recv_type("typing")
    assert typing == {"type": "typing", "room": "lobby", "user": {"id": bob.pk, "username": "bob"}}
    assert await alice_ws.nothing_more(0.5)
    await alice_ws.close()
    await bob_ws.close()


async def test_unread_counts_follow_new_messages_and_read_markers(alice, bob, public_room, private_room):
    # Bob is a member of both rooms but looks at neither: unread frames still reach him.
    await database_sync_to_async(Membership.objects.create)(room=public_room, user=bob)
    bob_ws = await connected(bob, ignore=frozenset({"presence", "presence_diff"}))
    (alice_ws,) = await room_with(private_room, alice)
    for i in range(3):
        await alice_ws.post(private_room.slug, f"hi {i}")
    unread = await bob_ws.recv_type("unread", timeout=5)
    while unread["count"] < 3:
        unread = await bob_ws.recv_type("unread", timeout=5)
    assert (unread["room"], unread["count"]) == ("secret-plans", 3)
    await bob_ws.subscribe(private_room.slug)
    await bob_ws.send({"type": "read", "room": private_room.slug, "seq": 2})
    assert (await bob_ws.recv_type("unread"))["count"] == 1
    await persist(server=0)
    membership = await database_sync_to_async(Membership.objects.get)(room=private_room, user=bob)
    assert membership.last_read_seq == 2
    await alice_ws.close()
    await bob_ws.close()


async def test_a_mention_notifies_a_reader_once_and_an_outsider_never(alice, bob, charlie, private_room):
    bob_ws = await connected(bob)
    charlie_ws = await connected(charlie, ignore=frozenset())
    (alice_ws,) = await room_with(private_room, alice)
    await alice_ws.post(private_room.slug, "@bob and @charlie, look at this")
    await persist(server=0)
    await persist(server=0)  # a second run changes nothing
    notification = await bob_ws.recv_type("notification")
    assert notification == {
        "type": "notification",
        "kind": "mention",
        "room": "secret-plans",
        "seq": 1,
        "from": {"id": alice.pk, "username": "alice"},
        "excerpt": "@bob and @charlie, look at this",
    }
    assert await bob_ws.nothing_more(0.5)
    assert await charlie_ws.nothing_more(0.5)
    stored = await database_sync_to_async(list)(Notification.objects.values_list("user__username", "seq"))
    assert stored == [("bob", 1)]
    for ws in (alice_ws, bob_ws, charlie_ws):
        await ws.close()


async def test_a_spectator_reads_and_claps_but_cannot_post(alice, bob, public_room):
    from rooms.services import room_participate, room_watch

    await database_sync_to_async(room_watch)(room=public_room, user=bob)
    alice_ws, bob_ws = await room_with(public_room, alice, bob)
    await alice_ws.post(public_room.slug, "watch this")
    assert (await bob_ws.recv_type("message"))["body"] == "watch this"
    await bob_ws.send({"type": "send", "room": public_room.slug, "body": "me too", "client_id": str(uuid.uuid4())})
    assert (await bob_ws.recv_type("error"))["code"] == "forbidden"
    await bob_ws.send({"type": "clap", "room": public_room.slug, "seq": 1, "count": 2})
    assert (await bob_ws.recv_type("claps"))["total"] == 2
    # One click makes him a participant, live.
    await database_sync_to_async(room_participate)(room=public_room, user=bob)
    await asyncio.sleep(0.3)
    assert (await bob_ws.post(public_room.slug, "now I can"))["seq"] == 2
    await alice_ws.close()
    await bob_ws.close()


async def test_spectators_show_apart_in_presence(alice, bob, public_room):
    from rooms.services import room_watch

    await database_sync_to_async(room_watch)(room=public_room, user=bob)
    (bob_ws,) = await room_with(public_room, bob)
    alice_ws = await connected(alice, ignore=frozenset({"unread"}))
    await alice_ws.subscribe(public_room.slug)
    online = (await alice_ws.recv_type("presence"))["online"]
    assert {u["username"]: u["spectator"] for u in online} == {"alice": False, "bob": True}
    await alice_ws.close()
    await bob_ws.close()


async def test_a_socket_following_a_room_gets_no_unread_counts_for_it_until_it_unsubscribes(alice, bob, private_room):
    bob_ws = await connected(bob, ignore=frozenset({"presence", "presence_diff"}))
    await bob_ws.subscribe(private_room.slug)
    (alice_ws,) = await room_with(private_room, alice)
    await alice_ws.post(private_room.slug, "seen live")
    assert (await bob_ws.recv_type("message"))["body"] == "seen live"
    assert await bob_ws.nothing_more(1.5)  # no `unread`: bob's page counts what it has not seen
    await bob_ws.send({"type": "unsubscribe", "room": private_room.slug})
    await bob_ws.recv_type("unsubscribed")
    await alice_ws.post(private_room.slug, "while away")
    unread = await bob_ws.recv_type("unread", timeout=5)
    assert (unread["room"], unread["seq"]) == (private_room.slug, 2)
    await alice_ws.close()
    await bob_ws.close()
