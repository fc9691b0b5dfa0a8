"""Threads: `thread` in the send frame, checked and flattened; the root's summary moved with the
reply and told to the room (`thread_summary`, a change by `rev`); the summary in the history, the
replay, a recovery by `rev` and after Redis lost it; the thread's page; who follows a thread and
what they have not read; nothing of it to an outsider."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from channels.db import database_sync_to_async
from django.test import Client as HttpClient

from messaging.models import Message, ThreadFollow
from messaging.selectors import message_history
from messaging.store.persistence import messages_persist_server
from messaging.tests.wsclient import connected
from messaging.threads.selectors import threads_followed
from pubsub_site.redis.client import get_redis
from rooms.services import room_join

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("async_cleanup")]

persist = database_sync_to_async(messages_persist_server)


async def thread_reply(client, room: str, body: str, thread, also_in_room=None) -> dict:
    """Send a reply into a thread; the ack, or the error."""
    client_id = str(uuid.uuid4())
    frame = {"type": "send", "room": room, "body": body, "client_id": client_id, "ref": client_id, "thread": thread}
    if also_in_room is not None:
        frame["also_in_room"] = also_in_room
    await client.send(frame)
    while True:
        answer = await client.recv()
        if answer["type"] in ("ack", "error"):
            return answer
        if answer["type"] == "message":  # one's own reply may come before its ack
            client.early_messages.append(answer)
        if answer["type"] == "thread_summary":
            client.__dict__.setdefault("early_summaries", []).append(answer)


async def next_summary(client) -> dict:
    """The next `thread_summary` frame (one that ``thread_reply`` set aside first)."""
    early = client.__dict__.get("early_summaries")
    if early:
        return early.pop(0)
    return await client.recv_type("thread_summary")


@pytest.fixture
def lobby(public_room, bob, make_user):
    room_join(room=public_room, user=bob)
    room_join(room=public_room, user=make_user("dora"))
    return public_room


async def a_thread(alice, bob, room):
    """alice asks (seq 1), bob answers in its thread (seq 2)."""
    alice_ws, bob_ws = await connected(alice), await connected(bob)
    for ws in (alice_ws, bob_ws):
        await ws.subscribe(room.slug)
    await alice_ws.post(room.slug, "Who has the deploy notes?")
    await bob_ws.messages(1)
    ack = await thread_reply(bob_ws, room.slug, "I do", 1)
    assert ack["type"] == "ack" and ack["seq"] == 2
    return alice_ws, bob_ws


async def test_a_thread_reply_is_a_message_of_the_room_and_its_root_summary_goes_to_every_subscriber(alice, bob, lobby):
    alice_ws, bob_ws = await a_thread(alice, bob, lobby)
    for ws in (alice_ws, bob_ws):
        message = await ws.recv_type("message")
        if message["seq"] == 1:
            message = await ws.recv_type("message")
        assert message["seq"] == 2 and message["thread"] == 1 and message["also_in_room"] is False
        summary = await next_summary(ws)
        assert summary["seq"] == 1 and summary["count"] == 1 and summary["last_seq"] == 2
        assert summary["repliers"] == [{"id": bob.pk, "username": "bob"}]
        assert summary["rev"] > message["rev"]
        assert summary["last_reply_at"] == message["sent_at"]
    await alice_ws.close()
    await bob_ws.close()


async def test_a_reply_in_a_thread_reply_goes_to_the_same_thread_and_is_shown_in_the_room_when_asked(alice, bob, lobby):
    alice_ws, bob_ws = await a_thread(alice, bob, lobby)
    ack = await thread_reply(alice_ws, lobby.slug, "Thanks!", 2, also_in_room=True)
    assert ack["type"] == "ack" and ack["seq"] == 3
    frames = [await bob_ws.recv_type("message") for _ in range(2)]
    assert frames[-1]["seq"] == 3 and frames[-1]["thread"] == 1 and frames[-1]["also_in_room"] is True
    summary = await next_summary(bob_ws)
    while summary["last_seq"] < 3:  # the first reply's, if the messages did not pass it
        summary = await next_summary(bob_ws)
    assert summary["count"] == 2
    assert summary["repliers"] == [{"id": alice.pk, "username": "alice"}, {"id": bob.pk, "username": "bob"}]
    await alice_ws.close()
    await bob_ws.close()


async def test_a_thread_the_room_does_not_have_or_a_bad_flag_is_refused_and_nothing_is_stored(alice, bob, lobby):
    alice_ws, bob_ws = await a_thread(alice, bob, lobby)
    for thread, also in ((9, None), ("1", None), (0, None), (True, None), (1, "yes")):
        error = await thread_reply(alice_ws, lobby.slug, "Nope", thread, also_in_room=also)
        assert error["type"] == "error" and error["code"] == "bad_request", (thread, also)
    ack = await alice_ws.post(lobby.slug, "Still here")
    assert ack["seq"] == 3
    await alice_ws.close()
    await bob_ws.close()


async def test_the_summary_counts_every_reply_and_names_the_last_three_repliers_newest_first(
    alice, bob, lobby, make_user
):
    alice_ws, bob_ws = await a_thread(alice, bob, lobby)
    dora = await database_sync_to_async(lambda: type(alice).objects.get(username="dora"))()
    dora_ws = await connected(dora)
    await dora_ws.subscribe(lobby.slug)
    for ws, body in ((dora_ws, "me too"), (alice_ws, "ok"), (bob_ws, "again"), (bob_ws, "and again")):
        assert (await thread_reply(ws, lobby.slug, body, 1))["type"] == "ack"
    page = await database_sync_to_async(message_history)(room=lobby)
    root = page.messages[0]
    assert root["thread_summary"]["count"] == 5 and root["thread_summary"]["last_seq"] == 6
    assert [u["username"] for u in root["thread_summary"]["repliers"]] == ["bob", "alice", "dora"]
    assert all(m["thread"] == 1 for m in page.messages[1:])
    for ws in (alice_ws, bob_ws, dora_ws):
        await ws.close()


async def test_a_summary_missed_while_away_is_recovered_by_rev_and_the_reply_by_since(alice, bob, lobby):
    alice_ws, bob_ws = await a_thread(alice, bob, lobby)
    await next_summary(alice_ws)
    subscribed = await bob_ws.subscribe(lobby.slug)  # where bob is: seq 2 and its rev
    await bob_ws.close()
    await thread_reply(alice_ws, lobby.slug, "Where are they?", 1)
    bob_ws = await connected(bob)
    await bob_ws.subscribe(lobby.slug, since=subscribed["seq"], rev=subscribed["rev"])
    replayed = await bob_ws.recv_type("message")
    assert replayed["seq"] == 3 and replayed["thread"] == 1
    summary = await next_summary(bob_ws)
    assert summary["seq"] == 1 and summary["count"] == 2 and summary["rev"] > subscribed["rev"]
    # A client that knew the latest rev is sent nothing again.
    latest = await bob_ws.subscribe(lobby.slug, since=3, rev=summary["rev"])
    assert latest["recovered"] and await bob_ws.nothing_more()
    await alice_ws.close()
    await bob_ws.close()


async def test_thread_replies_are_persisted_and_summaries_lost_with_redis_are_read_from_postgresql(alice, bob, lobby):
    alice_ws, bob_ws = await a_thread(alice, bob, lobby)
    assert (await thread_reply(alice_ws, lobby.slug, "Shown here too", 1, also_in_room=True))["type"] == "ack"
    await alice_ws.close()
    await bob_ws.close()
    await persist(server=0)
    rows = await database_sync_to_async(
        lambda: list(
            Message.objects.filter(room=lobby).order_by("seq").values_list("seq", "thread_seq", "also_in_room")
        )
    )()
    assert rows == [(1, None, False), (2, 1, False), (3, 1, True)]
    await database_sync_to_async(get_redis(lobby.pk).flushdb)()
    page = await database_sync_to_async(message_history)(room=lobby)
    assert page.messages[0]["thread_summary"]["count"] == 2
    assert page.messages[2]["thread"] == 1 and page.messages[2]["also_in_room"] is True
    # The next reply counts on from there, not from zero.
    bob_ws = await connected(bob)
    await bob_ws.subscribe(lobby.slug)
    assert (await thread_reply(bob_ws, lobby.slug, "After the loss", 1))["type"] == "ack"
    summary = await next_summary(bob_ws)
    assert summary["count"] == 3 and summary["last_seq"] == 4
    await bob_ws.close()


async def test_the_root_author_and_each_replier_follow_the_thread_and_count_what_others_wrote(alice, bob, lobby):
    alice_ws, bob_ws = await a_thread(alice, bob, lobby)
    assert (await thread_reply(bob_ws, lobby.slug, "second", 1))["type"] == "ack"
    await alice_ws.close()
    await bob_ws.close()
    await persist(server=0)

    def followed(user):
        return [(t["root"], t["unread"], t["summary"]["count"]) for t in threads_followed(room=lobby, user_id=user.pk)]

    assert await database_sync_to_async(followed)(alice) == [(1, 2, 2)]
    assert await database_sync_to_async(followed)(bob) == [(1, 0, 2)]
    alice_http = HttpClient()
    await database_sync_to_async(alice_http.force_login)(alice)
    read = await database_sync_to_async(alice_http.post)(f"/rooms/{lobby.slug}/threads/1/read/", {"seq": "2"})
    assert read.status_code == 200
    assert await database_sync_to_async(followed)(alice) == [(1, 1, 2)]
    unfollow = await database_sync_to_async(alice_http.post)(
        f"/rooms/{lobby.slug}/threads/1/follow/", {"following": "0"}
    )
    assert unfollow.json()["following"] is False
    assert await database_sync_to_async(followed)(alice) == []
    # Replying follows it again, read up to one's own reply.
    alice_ws = await connected(alice)
    await alice_ws.subscribe(lobby.slug)
    assert (await thread_reply(alice_ws, lobby.slug, "back", 1))["type"] == "ack"
    await alice_ws.close()
    await persist(server=0)
    follow = await database_sync_to_async(ThreadFollow.objects.get)(user=alice, room=lobby, root_seq=1)
    assert follow.following and follow.last_read_seq == 4
    assert await database_sync_to_async(followed)(alice) == [(1, 0, 3)]


async def test_a_thread_page_shows_the_root_and_its_replies_and_a_deleted_root_keeps_its_thread(alice, bob, lobby):
    alice_ws, bob_ws = await a_thread(alice, bob, lobby)
    await alice_ws.post(lobby.slug, "Unrelated")
    assert (await thread_reply(alice_ws, lobby.slug, "Found them", 1))["type"] == "ack"
    await alice_ws.send({"type": "delete", "room": lobby.slug, "seq": 1})
    await alice_ws.recv_type("message_deleted")
    http = HttpClient()
    await database_sync_to_async(http.force_login)(bob)
    page = (await database_sync_to_async(http.get)(f"/rooms/{lobby.slug}/messages/?thread=1")).json()
    assert page["root"]["seq"] == 1 and page["root"]["deleted"] is True
    assert page["root"]["thread_summary"]["count"] == 2
    assert [m["seq"] for m in page["messages"]] == [2, 4] and page["has_more"] is False
    older = (await database_sync_to_async(http.get)(f"/rooms/{lobby.slug}/messages/?thread=1&limit=1")).json()
    assert [m["seq"] for m in older["messages"]] == [4] and older["has_more"] is True
    # A thread reply is no root; a message the room does not have neither.
    for seq in (2, 99):
        missing = await database_sync_to_async(http.get)(f"/rooms/{lobby.slug}/messages/?thread={seq}")
        assert missing.status_code == 404
    await alice_ws.close()
    await bob_ws.close()


async def test_an_outsider_cannot_read_follow_or_reply_in_a_private_rooms_thread(alice, bob, charlie, private_room):
    alice_ws, bob_ws = await a_thread(alice, bob, private_room)
    http = HttpClient()
    await database_sync_to_async(http.force_login)(charlie)
    for response in (
        await database_sync_to_async(http.get)(f"/rooms/{private_room.slug}/messages/?thread=1"),
        await database_sync_to_async(http.get)(f"/rooms/{private_room.slug}/threads/"),
        await database_sync_to_async(http.post)(f"/rooms/{private_room.slug}/threads/1/follow/", {"following": "1"}),
        await database_sync_to_async(http.post)(f"/rooms/{private_room.slug}/threads/1/read/", {"seq": "2"}),
    ):
        assert response.status_code == 404
    charlie_ws = await connected(charlie)
    await charlie_ws.send({"type": "subscribe", "room": private_room.slug})
    assert (await charlie_ws.recv_type("error"))["code"] in ("not_found", "forbidden")
    error = await thread_reply(charlie_ws, private_room.slug, "let me in", 1)
    assert error["code"] == "not_subscribed"
    assert not await database_sync_to_async(ThreadFollow.objects.filter(user=charlie).exists)()
    for ws in (alice_ws, bob_ws, charlie_ws):
        await ws.close()


async def test_a_client_that_knows_nothing_of_threads_still_sees_every_seq_in_order(alice, bob, lobby):
    alice_ws, bob_ws = await a_thread(alice, bob, lobby)
    watcher = await connected(bob)
    await watcher.subscribe(lobby.slug, since=0)
    await alice_ws.post(lobby.slug, "in the room")
    assert (await thread_reply(bob_ws, lobby.slug, "in the thread", 1))["type"] == "ack"
    await alice_ws.post(lobby.slug, "in the room again")
    seen = [m["seq"] for m in await watcher.messages(5)]
    assert seen == [1, 2, 3, 4, 5]
    for ws in (alice_ws, bob_ws, watcher):
        await ws.close()


async def test_replies_sent_together_by_many_are_each_counted_once(alice, bob, lobby, make_user):
    alice_ws, bob_ws = await a_thread(alice, bob, lobby)
    users = [await database_sync_to_async(make_user)(f"replier{n}") for n in range(8)]
    for user in users:
        await database_sync_to_async(room_join)(room=lobby, user=user)
    sockets = [await connected(user) for user in users]
    for ws in sockets:
        await ws.subscribe(lobby.slug)
    acks = await asyncio.gather(*(thread_reply(ws, lobby.slug, f"me {n}", 1) for n, ws in enumerate(sockets)))
    assert sorted(a["seq"] for a in acks) == list(range(3, 11))
    page = await database_sync_to_async(message_history)(room=lobby)
    summary = page.messages[0]["thread_summary"]
    assert summary["count"] == 9 and summary["last_seq"] == 10 and len(summary["repliers"]) == 3
    # A retry (the same client_id) stores nothing and counts nothing.
    client_id = str(uuid.uuid4())
    for _ in range(2):
        await alice_ws.send({"type": "send", "room": lobby.slug, "body": "once", "client_id": client_id, "thread": 1})
        assert (await alice_ws.recv_type("ack"))["seq"] == 11
    page = await database_sync_to_async(message_history)(room=lobby)
    assert page.messages[0]["thread_summary"]["count"] == 10
    for ws in (alice_ws, bob_ws, *sockets):
        await ws.close()
