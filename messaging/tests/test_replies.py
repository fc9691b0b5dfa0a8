"""Replies: `reply_to` in the send frame, checked; the quote of the original in the message
frame, the Redis record, PostgreSQL, the history, the replay and the page; a deleted or
edited original shows in its quotes."""

from __future__ import annotations

import uuid

import pytest
from channels.db import database_sync_to_async
from django.test import Client as HttpClient

from messaging.models import Message
from messaging.selectors import message_history
from messaging.store import buffer
from messaging.store.persistence import messages_persist_server
from messaging.tests.wsclient import connected
from pubsub_site.redis.client import get_redis
from rooms.models import Room
from rooms.services import room_create, room_join

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("async_cleanup")]


async def reply(client, room: str, body: str, reply_to, ref: str | None = None) -> dict:
    """Send a reply; the ack, or the error."""
    client_id = str(uuid.uuid4())
    await client.send(
        {
            "type": "send",
            "room": room,
            "body": body,
            "client_id": client_id,
            "ref": ref or client_id,
            "reply_to": reply_to,
        }
    )
    while True:
        frame = await client.recv()
        if frame["type"] in ("ack", "error"):
            return frame


@pytest.fixture
def lobby(public_room, bob):
    room_join(room=public_room, user=bob)
    return public_room


async def a_conversation(alice, bob, room: Room):
    """alice says two things (seq 1 and 2), bob replies to the first (seq 3)."""
    alice_ws = await connected(alice)
    bob_ws = await connected(bob)
    for ws in (alice_ws, bob_ws):
        await ws.subscribe(room.slug)
    await alice_ws.post(room.slug, "Who has *the* `deploy` notes?\nAsk   around.")
    await alice_ws.post(room.slug, "Anyone?")
    await bob_ws.messages(2)
    ack = await reply(bob_ws, room.slug, "I do: _here_", 1)
    assert ack["type"] == "ack" and ack["seq"] == 3
    return alice_ws, bob_ws


QUOTE = {
    "seq": 1,
    "author": None,  # alice's, filled in by the tests
    "excerpt": "Who has *the* `deploy` notes? Ask around.",
    "deleted": False,
}


def quote_of(alice, **changes) -> dict:
    return {**QUOTE, "author": {"id": alice.pk, "username": "alice"}, **changes}


async def test_a_reply_carries_its_original_in_the_message_frame_and_the_redis_record(alice, bob, lobby):
    alice_ws, bob_ws = await a_conversation(alice, bob, lobby)
    for ws in (alice_ws, bob_ws):
        frame = (await ws.messages(1 if ws is bob_ws else 3))[-1]
        assert frame["seq"] == 3
        assert frame["reply_to"] == 1
        assert frame["reply"] == quote_of(alice)
    record = (await database_sync_to_async(buffer.records_between)(room_id=lobby.pk, after=2, upto=3))[0]
    assert record["reply_to"] == 1
    assert record["reply"] == quote_of(alice)
    await alice_ws.close()
    await bob_ws.close()


async def test_a_message_that_is_no_reply_has_no_reply_fields(alice, lobby):
    alice_ws = await connected(alice)
    await alice_ws.subscribe(lobby.slug)
    await alice_ws.post(lobby.slug, "plain")
    frame = (await alice_ws.messages(1))[0]
    assert "reply_to" not in frame and "reply" not in frame
    await alice_ws.close()


@pytest.mark.parametrize(
    ("reply_to", "detail"),
    [
        (0, "positive integer"),
        (-1, "positive integer"),
        ("1", "positive integer"),
        (1.5, "positive integer"),
        (True, "positive integer"),
        (2**53, "positive integer"),
        (3, "no message 3"),  # past the room's latest seq
        (99, "no message 99"),
    ],
)
async def test_a_bad_reply_to_is_a_bad_request_and_stores_nothing(alice, lobby, reply_to, detail):
    ws = await connected(alice)
    await ws.subscribe(lobby.slug)
    await ws.post(lobby.slug, "one")
    await ws.post(lobby.slug, "two")
    await ws.messages(2)
    error = await reply(ws, lobby.slug, "answer", reply_to, ref="r1")
    assert error["type"] == "error" and error["code"] == "bad_request" and error["ref"] == "r1"
    assert detail in error["detail"]
    assert await ws.nothing_more()
    assert (await database_sync_to_async(buffer.counters)(room_id=lobby.pk))[0] == 2
    await ws.send({"type": "ping"})  # the socket stays open
    assert (await ws.recv())["type"] == "pong"
    await ws.close()


async def test_a_seq_of_another_room_is_not_a_message_of_this_one(alice, bob, lobby):
    other = await database_sync_to_async(room_create)(creator=alice, name="Other")
    ws = await connected(alice)
    await ws.subscribe(other.slug)
    for body in ("a", "b", "c"):
        await ws.post(other.slug, body)
    await ws.subscribe(lobby.slug)
    await ws.post(lobby.slug, "only one here")
    error = await reply(ws, lobby.slug, "answer", 3)
    assert error["code"] == "bad_request"
    assert (await database_sync_to_async(buffer.counters)(room_id=lobby.pk))[0] == 1
    await ws.close()


async def test_an_outsider_cannot_reply_into_a_private_room(alice, charlie, private_room):
    ws = await connected(charlie)
    error = await reply(ws, private_room.slug, "let me in", 1)
    assert error["code"] == "not_subscribed"
    await ws.close()


async def test_reply_to_reaches_postgresql_and_the_history_reads_the_quote_from_there(alice, bob, lobby):
    alice_ws, bob_ws = await a_conversation(alice, bob, lobby)
    await alice_ws.close()
    await bob_ws.close()
    await database_sync_to_async(messages_persist_server)(server=0)
    rows = Message.objects.filter(room=lobby).order_by("seq").values_list("seq", "reply_to_seq")
    assert await database_sync_to_async(list)(rows) == [(1, None), (2, None), (3, 1)]
    # From the buffer, then from PostgreSQL alone (Redis lost everything).
    for _ in range(2):
        page = await database_sync_to_async(message_history)(room=lobby, after=1)  # the original is not on it
        assert [m["seq"] for m in page.messages] == [2, 3]
        assert "reply_to" not in page.messages[0]
        assert page.messages[1]["reply_to"] == 1
        assert page.messages[1]["reply"] == quote_of(alice)
        get_redis(lobby.pk).flushdb()
    around = await database_sync_to_async(message_history)(room=lobby, around=3)
    assert [m["seq"] for m in around.messages] == [1, 2, 3]
    assert around.messages[2]["reply"] == quote_of(alice)


async def test_the_replay_after_a_reconnect_carries_the_quote_as_it_is_now(alice, bob, lobby):
    alice_ws, bob_ws = await a_conversation(alice, bob, lobby)
    await alice_ws.messages(3)
    await alice_ws.send({"type": "edit", "room": lobby.slug, "seq": 1, "body": "Edited   start"})
    await bob_ws.close()
    again = await connected(bob)
    await again.subscribe(lobby.slug, since=2)
    frame = (await again.messages(1))[0]
    assert frame["seq"] == 3
    assert frame["reply"] == quote_of(alice, excerpt="Edited start")
    await alice_ws.close()
    await again.close()


async def test_a_deleted_original_is_quoted_as_deleted_live_in_history_and_on_the_page(alice, bob, lobby):
    alice_ws, bob_ws = await a_conversation(alice, bob, lobby)
    await bob_ws.messages(1)
    await alice_ws.send({"type": "delete", "room": lobby.slug, "seq": 1})
    # Live: the deletion frame, which the client applies to the quotes of seq 1 too.
    deleted = await bob_ws.recv_type("message_deleted")
    assert deleted["seq"] == 1
    page = await database_sync_to_async(message_history)(room=lobby, after=1)
    assert page.messages[1]["reply"] == quote_of(alice, excerpt="", deleted=True)
    # A reply to a deleted message may still be sent: its quote says so from the start.
    ack = await reply(bob_ws, lobby.slug, "too late?", 1)
    assert ack["type"] == "ack"
    frame = (await bob_ws.messages(1))[0]
    assert frame["reply"]["deleted"] is True and frame["reply"]["excerpt"] == ""

    http = HttpClient()
    await database_sync_to_async(http.force_login)(bob)
    html = (await database_sync_to_async(http.get)(lobby.get_absolute_url())).content.decode()
    assert html.count("Original message deleted") == 2
    assert f'href="{lobby.get_absolute_url()}?around=1#seq-1" data-action="show-original" data-reply-to="1"' in html
    assert "Who has" not in html
    await alice_ws.close()
    await bob_ws.close()


async def test_the_page_renders_the_quote_and_the_formatted_body(alice, bob, lobby):
    alice_ws, bob_ws = await a_conversation(alice, bob, lobby)
    http = HttpClient()
    await database_sync_to_async(http.force_login)(bob)
    html = (await database_sync_to_async(http.get)(f"{lobby.get_absolute_url()}?around=3")).content.decode()
    assert (
        '<span class="message__reply-author">alice</span> '
        '<span class="message__reply-excerpt">Who has *the* `deploy` notes? Ask around.</span>'
    ) in html
    assert "Who has <strong>the</strong> <code>deploy</code> notes?" in html
    assert '<div class="message__body">I do: <em>here</em></div>' in html
    assert 'data-action="reply">Reply</button>' in html
    await alice_ws.close()
    await bob_ws.close()
