"""Emoji reactions: toggled per user, capped, one emoji each, live to the room, recovered by
``rev``, persisted, and refused to outsiders."""

import pytest
from channels.db import database_sync_to_async

from messaging.models import Reaction
from messaging.reactions import emoji_or_refuse
from messaging.selectors import message_history
from messaging.services import ActionRefused
from messaging.store.persistence import messages_persist_server
from messaging.tests.wsclient import connected
from rooms.models import Room

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("async_cleanup")]

persist = database_sync_to_async(messages_persist_server)


async def room_with(room, *users):
    sockets = []
    for user in users:
        ws = await connected(user, ignore=frozenset({"presence", "presence_diff", "unread", "typing"}))
        await ws.subscribe(room.slug)
        sockets.append(ws)
    return sockets


def react(room, seq, emoji, on=True, **extra):
    return {"type": "react", "room": room.slug, "seq": seq, "emoji": emoji, "on": on, **extra}


_refs = iter(range(1, 10**6))


async def answer(ws, frame):
    """Send ``frame`` and return the answer to it (others' reactions may come first)."""
    ref = f"ref-{next(_refs)}"
    await ws.send({**frame, "ref": ref})
    while True:
        got = await ws.recv()
        if got.get("ref") == ref:
            return got


def summary(frame):
    return [(r["emoji"], r["count"], [u["username"] for u in r["users"]]) for r in frame["reactions"]]


async def test_a_reaction_is_toggled_per_user_and_everyone_sees_the_summary(alice, bob, public_room):
    alice_ws, bob_ws = await room_with(public_room, alice, bob)
    await alice_ws.post(public_room.slug, "react to me")
    await bob_ws.messages(1)
    await bob_ws.send(react(public_room, 1, "👍", ref="r1"))
    reply = await bob_ws.recv_type("reactions")
    assert reply["ref"] == "r1" and summary(reply) == [("👍", 1, ["bob"])]
    assert summary(await alice_ws.recv_type("reactions")) == [("👍", 1, ["bob"])]
    await answer(alice_ws, react(public_room, 1, "👍"))
    last = await answer(alice_ws, react(public_room, 1, "🎉"))
    assert summary(last) == [("👍", 2, ["bob", "alice"]), ("🎉", 1, ["alice"])]
    seen = await bob_ws.recv_type("reactions")
    while seen["rev"] < last["rev"]:
        seen = await bob_ws.recv_type("reactions")
    assert "ref" not in seen and summary(seen) == summary(last)
    mine = await alice_ws.recv_type("reactions")  # the room's copies of alice's own two
    while mine["rev"] < last["rev"]:
        mine = await alice_ws.recv_type("reactions")
    # Putting it on twice changes nothing and tells nobody; taking it off does.
    again = await answer(bob_ws, react(public_room, 1, "👍"))
    assert again["rev"] == last["rev"] and summary(again) == summary(last)
    assert await alice_ws.nothing_more()
    off = await answer(bob_ws, react(public_room, 1, "👍", on=False))
    assert summary(off) == [("👍", 1, ["alice"]), ("🎉", 1, ["alice"])]
    seen = await alice_ws.recv_type("reactions")
    assert (seen["rev"], summary(seen)) == (off["rev"], summary(off))
    # History carries them; PostgreSQL gets the rows.
    page = await database_sync_to_async(message_history)(room=public_room)
    assert [(r["emoji"], r["count"]) for r in page.messages[0]["reactions"]] == [("👍", 1), ("🎉", 1)]
    await persist(server=0)
    rows = await database_sync_to_async(lambda: sorted(Reaction.objects.values_list("user__username", "emoji")))()
    assert rows == [("alice", "🎉"), ("alice", "👍")]
    for ws in (alice_ws, bob_ws):
        await ws.close()


async def test_a_message_without_reactions_carries_none(alice, public_room):
    (ws,) = await room_with(public_room, alice)
    await ws.post(public_room.slug, "plain")
    (frame,) = await ws.messages(1)
    assert "reactions" not in frame
    await ws.close()


@pytest.mark.parametrize("bad", ["", "a", "👍👍", "👍 ", ":thumbs_up:", "x" * 100, 5, None])
async def test_anything_but_one_emoji_is_refused_clearly(alice, public_room, bad):
    (ws,) = await room_with(public_room, alice)
    await ws.post(public_room.slug, "hello")
    await ws.send(react(public_room, 1, bad))
    error = await ws.recv_type("error")
    assert error["code"] == "bad_request" and "one emoji" in error["detail"]
    await ws.close()


def test_emoji_sequences_are_one_emoji_and_text_presentation_is_qualified():
    for ok in ("👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇫🇷", "1️⃣"):
        assert emoji_or_refuse(ok) == ok
    assert emoji_or_refuse("❤") == "❤️"
    for bad in ("🇫", "‍", "1", "👍🏽👍"):
        with pytest.raises(ActionRefused):
            emoji_or_refuse(bad)


async def test_reactions_are_capped_per_message_and_per_user(alice, bob, public_room, settings):
    settings.REACTIONS_MAX_EMOJI_PER_MESSAGE = 3
    settings.REACTIONS_MAX_PER_USER_PER_MESSAGE = 2
    alice_ws, bob_ws = await room_with(public_room, alice, bob)
    await alice_ws.post(public_room.slug, "caps")
    for emoji in ("😀", "😃"):
        await answer(alice_ws, react(public_room, 1, emoji))
    error = await answer(alice_ws, react(public_room, 1, "😄"))
    assert error["code"] == "too_many_reactions" and "at most 2" in error["detail"]
    assert summary(await answer(bob_ws, react(public_room, 1, "😄")))[-1] == ("😄", 1, ["bob"])
    error = await answer(bob_ws, react(public_room, 1, "😁"))
    assert error["code"] == "too_many_reactions" and "3 different" in error["detail"]
    # An emoji already there is still open to everyone.
    assert summary(await answer(bob_ws, react(public_room, 1, "😀")))[0] == ("😀", 2, ["alice", "bob"])
    for ws in (alice_ws, bob_ws):
        await ws.close()


async def test_a_deleted_or_missing_message_takes_no_reaction(alice, public_room):
    (ws,) = await room_with(public_room, alice)
    await ws.post(public_room.slug, "soon gone")
    await ws.send(react(public_room, 7, "👍"))
    assert (await ws.recv_type("error"))["code"] == "not_found"
    await ws.send({"type": "delete", "room": public_room.slug, "seq": 1})
    await ws.recv_type("message_deleted")
    await ws.send(react(public_room, 1, "👍"))
    assert (await ws.recv_type("error"))["code"] == "not_found"
    await ws.close()


async def test_an_outsider_can_neither_react_nor_see_reactions_of_a_private_room(alice, bob, charlie, private_room):
    alice_ws, bob_ws = await room_with(private_room, alice, bob)
    outsider = await connected(charlie, ignore=frozenset({"presence", "presence_diff", "unread", "typing"}))
    await outsider.send({"type": "subscribe", "room": private_room.slug})
    assert (await outsider.recv_type("error"))["code"] == "not_found"
    await alice_ws.post(private_room.slug, "members only")
    await outsider.send(react(private_room, 1, "👍"))
    assert (await outsider.recv_type("error"))["code"] == "not_subscribed"
    await bob_ws.send(react(private_room, 1, "👍"))
    await alice_ws.recv_type("reactions")
    assert await outsider.nothing_more()
    for ws in (alice_ws, bob_ws, outsider):
        await ws.close()


async def test_a_client_away_gets_the_reactions_back_by_rev(alice, bob, public_room):
    alice_ws, bob_ws = await room_with(public_room, alice, bob)
    for i in range(3):
        await alice_ws.post(public_room.slug, f"m{i}")
    frames = await bob_ws.messages(3)
    since, rev = frames[-1]["seq"], frames[-1]["rev"]
    await bob_ws.close()
    await answer(alice_ws, react(public_room, 2, "🚀"))
    await persist(server=0)
    await answer(alice_ws, react(public_room, 3, "🚀"))
    await answer(alice_ws, react(public_room, 3, "🚀", on=False))  # on and off again: an empty summary

    back = await connected(bob, ignore=frozenset({"presence", "presence_diff", "unread", "typing"}))
    subscribed = await back.subscribe(public_room.slug, since=since, rev=rev)
    assert subscribed["rev"] == rev + 3
    changes = [await back.recv() for _ in range(2)]
    assert [(c["type"], c["seq"], summary(c)) for c in changes] == [
        ("reactions", 2, [("🚀", 1, ["alice"])]),
        ("reactions", 3, []),
    ]
    assert await back.nothing_more()
    for ws in (alice_ws, back):
        await ws.close()


async def test_reactions_survive_redis_losing_them(alice, bob, public_room):
    from pubsub_site.redis.client import get_redis

    alice_ws, bob_ws = await room_with(public_room, alice, bob)
    await alice_ws.post(public_room.slug, "durable")
    await answer(bob_ws, react(public_room, 1, "👍"))
    await persist(server=0)
    for ws in (alice_ws, bob_ws):
        await ws.close()
    await database_sync_to_async(lambda: get_redis(public_room.pk).flushdb())()

    page = await database_sync_to_async(message_history)(room=public_room)
    assert summary(page.messages[0]) == [("👍", 1, ["bob"])]
    # The next toggle starts from PostgreSQL's rows, not from nothing.
    (alice_ws,) = await room_with(public_room, alice)
    assert summary(await answer(alice_ws, react(public_room, 1, "👍"))) == [("👍", 2, ["bob", "alice"])]
    await alice_ws.close()


async def test_a_spectator_reacts_as_they_clap(alice, charlie, public_room):
    # A public room's reader who did not join: read and clap, and react.
    assert await database_sync_to_async(lambda: public_room.visibility)() == Room.Visibility.PUBLIC
    alice_ws, charlie_ws = await room_with(public_room, alice, charlie)
    await alice_ws.post(public_room.slug, "watch this")
    await charlie_ws.send(react(public_room, 1, "👀"))
    assert summary(await alice_ws.recv_type("reactions")) == [("👀", 1, ["charlie"])]
    for ws in (alice_ws, charlie_ws):
        await ws.close()


async def test_a_reaction_taken_off_after_it_was_persisted_leaves_postgresql_too(alice, bob, public_room):
    alice_ws, bob_ws = await room_with(public_room, alice, bob)
    await alice_ws.post(public_room.slug, "keep or drop")
    await answer(bob_ws, react(public_room, 1, "👍"))
    await answer(bob_ws, react(public_room, 1, "🔥"))
    await persist(server=0)
    await persist(server=0)  # again: the same rows
    count = database_sync_to_async(lambda: sorted(Reaction.objects.values_list("emoji", flat=True)))
    assert await count() == ["👍", "🔥"]
    await answer(bob_ws, react(public_room, 1, "👍", on=False))
    await persist(server=0)
    assert await count() == ["🔥"]
    for ws in (alice_ws, bob_ws):
        await ws.close()
