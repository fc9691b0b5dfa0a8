"""The WebSocket contract, frame by frame, on the real Redis channel layer and PostgreSQL."""

import asyncio
import json
import uuid

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from messaging.models import Message
from messaging.realtime import subscriptions
from messaging.store import buffer
from messaging.store.keys import RoomKeys
from messaging.store.persistence import messages_persist_server
from messaging.tests.wsclient import connect, connected
from rooms.models import Membership, Room

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("async_cleanup")]


# Closing before accepting is what the server answers with HTTP 403; the test with a
# real server (tests/processes/test_message_path.py) checks the status code on the wire.
async def test_an_anonymous_handshake_is_refused():
    ok, _, _ = await connect(None)
    assert not ok


async def test_a_foreign_origin_is_refused(bob):
    ok, _, _ = await connect(bob, origin=b"https://evil.example")
    assert not ok


async def test_an_allowed_origin_is_accepted(bob):
    client = await connected(bob)
    await client.close()


async def test_ping_is_answered_with_pong_and_the_ref(bob):
    client = await connected(bob)
    await client.send({"type": "ping", "ref": "p1"})
    assert await client.recv() == {"type": "pong", "ref": "p1"}
    await client.close()


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("not json", "bad_request"),
        ("[1, 2]", "bad_request"),
        ('"a string"', "bad_request"),
        ("{}", "bad_request"),
        ('{"type": 5}', "bad_request"),
        ('{"type": "dance", "ref": "r9"}', "unknown_type"),
        ('{"type": "subscribe"}', "bad_request"),
        ('{"type": "subscribe", "room": "lobby", "since": -1}', "bad_request"),
        ('{"type": "subscribe", "room": "lobby", "since": "3"}', "bad_request"),
        ('{"type": "subscribe", "room": "lobby", "since": 1e400}', "bad_request"),
        ('{"type": "unsubscribe"}', "bad_request"),
        ('{"type": "send", "room": "lobby"}', "bad_request"),
    ],
)
async def test_malformed_frames_get_an_error_and_the_socket_stays_open(bob, public_room, raw, code):
    client = await connected(bob)
    await client.ws.send_to(text_data=raw)
    error = await client.recv()
    assert error["type"] == "error"
    assert error["code"] == code
    assert error["detail"]
    if "r9" in raw:
        assert error["ref"] == "r9"
    await client.send({"type": "ping"})
    assert (await client.recv())["type"] == "pong"
    await client.close()


async def test_a_frame_over_64_kib_closes_the_connection_with_1009(bob):
    client = await connected(bob)
    await client.ws.send_to(text_data=json.dumps({"type": "ping", "pad": "x" * (64 * 1024)}))
    output = await client.ws.receive_output(timeout=3)
    assert output == {"type": "websocket.close", "code": 1009}


async def test_subscribing_to_a_public_room_joins_it(bob, public_room):
    client = await connected(bob)
    subscribed = await client.subscribe(public_room.slug)
    # His joining is the room's first change of details (protocol.details), told before the
    # subscription started: a page rendered before it reads the member list again.
    assert subscribed == {"type": "subscribed", "room": "lobby", "seq": 0, "rev": 0, "recovered": True, "details": 1}
    assert await database_sync_to_async(Membership.objects.filter(room=public_room, user=bob).exists)()
    await client.close()


async def test_an_unknown_room_is_not_found(bob):
    client = await connected(bob)
    await client.send({"type": "subscribe", "room": "nowhere", "ref": "s"})
    assert await client.recv() == {"type": "error", "code": "not_found", "detail": "No such room.", "ref": "s"}
    await client.close()


async def test_an_outsider_cannot_subscribe_to_a_private_room_nor_learn_it_exists(charlie, private_room):
    client = await connected(charlie)
    await client.send({"type": "subscribe", "room": private_room.slug})
    error = await client.recv()
    assert error["code"] == "not_found"
    assert error["detail"] == "No such room."
    await client.send({"type": "send", "room": private_room.slug, "body": "hi", "client_id": str(uuid.uuid4())})
    assert (await client.recv())["code"] == "not_subscribed"
    await client.close()


async def test_a_banned_user_cannot_subscribe(bob, public_room):
    await database_sync_to_async(Membership.objects.create)(room=public_room, user=bob, banned=True)
    client = await connected(bob)
    await client.send({"type": "subscribe", "room": public_room.slug})
    assert (await client.recv())["code"] == "banned"
    await client.close()


async def test_a_member_posts_and_everyone_subscribed_receives_it_once(alice, bob, private_room):
    alice_ws, bob_ws = await connected(alice), await connected(bob)
    await alice_ws.subscribe(private_room.slug)
    await bob_ws.subscribe(private_room.slug)
    client_id = str(uuid.uuid4())
    ack = await bob_ws.post(private_room.slug, "  hello there  ", client_id)
    assert ack == {"type": "ack", "room": "secret-plans", "client_id": client_id, "seq": 1, "ref": client_id}
    for ws in (alice_ws, bob_ws):
        message = await ws.recv_type("message")
        assert message["seq"] == 1
        assert message["rev"] == 1
        assert message["body"] == "hello there"
        assert message["author"] == {"id": bob.pk, "username": "bob"}
        assert message["client_id"] == client_id
        assert message["claps"] == 0 and message["edited"] is False and message["deleted"] is False
        assert message["sent_at"].endswith("Z")
        assert await ws.nothing_more()
    await alice_ws.close()
    await bob_ws.close()


async def test_a_retry_with_the_same_client_id_gets_the_same_seq_and_makes_no_second_row(bob, public_room):
    client = await connected(bob)
    await client.subscribe(public_room.slug)
    client_id = str(uuid.uuid4())
    first = await client.post(public_room.slug, "once", client_id)
    await client.messages(1)
    again = await client.post(public_room.slug, "once", client_id)
    assert first["seq"] == again["seq"] == 1
    assert await client.nothing_more()
    await database_sync_to_async(messages_persist_server)(server=0)
    await database_sync_to_async(messages_persist_server)(server=0)
    rows = await database_sync_to_async(list)(Message.objects.filter(room=public_room).values_list("seq", "body"))
    assert rows == [(1, "once")]
    await client.close()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ({"body": "x" * 4001}, "too_large"),
        ({"body": "   \n "}, "bad_request"),
        ({"body": 42}, "bad_request"),
        ({"body": "nul \x00 byte"}, "bad_request"),
        ({"body": "ok", "client_id": "not-a-uuid"}, "bad_request"),
        ({"body": "ok", "client_id": None}, "bad_request"),
    ],
)
async def test_bad_messages_are_refused_and_nothing_is_stored(bob, public_room, frame, code):
    client = await connected(bob)
    await client.subscribe(public_room.slug)
    payload = {"type": "send", "room": public_room.slug, "client_id": str(uuid.uuid4()), "ref": "x", **frame}
    await client.send(payload)
    error = await client.recv()
    assert (error["type"], error["code"], error["ref"]) == ("error", code, "x")
    assert await buffer.acounters(room_id=public_room.pk) == (0, 0)
    await client.close()


async def test_a_message_of_exactly_4000_characters_is_accepted(bob, public_room):
    client = await connected(bob)
    await client.subscribe(public_room.slug)
    assert (await client.post(public_room.slug, "y" * 4000))["seq"] == 1
    await client.close()


async def test_sending_without_subscribing_is_refused(bob, public_room):
    client = await connected(bob)
    await client.send({"type": "send", "room": public_room.slug, "body": "hi", "client_id": str(uuid.uuid4())})
    assert (await client.recv())["code"] == "not_subscribed"
    await client.close()


async def test_a_locked_room_refuses_sends_but_still_delivers(alice, bob, public_room):
    await database_sync_to_async(Room.objects.filter(pk=public_room.pk).update)(locked=True)
    client = await connected(bob)
    await client.subscribe(public_room.slug)
    await client.send({"type": "send", "room": public_room.slug, "body": "hi", "client_id": str(uuid.uuid4())})
    assert (await client.recv())["code"] == "room_locked"
    await client.close()


async def test_a_muted_member_gets_muted_with_when_it_ends(bob, public_room):
    until = timezone.now() + timezone.timedelta(minutes=10)
    await database_sync_to_async(Membership.objects.create)(room=public_room, user=bob, muted_until=until)
    client = await connected(bob)
    await client.subscribe(public_room.slug)
    await client.send({"type": "send", "room": public_room.slug, "body": "hi", "client_id": str(uuid.uuid4())})
    error = await client.recv()
    assert error["code"] == "muted"
    assert error["until"] == until.isoformat()
    await client.close()


async def test_unsubscribe_stops_delivery(alice, bob, public_room):
    alice_ws, bob_ws = await connected(alice), await connected(bob)
    await alice_ws.subscribe(public_room.slug)
    await bob_ws.subscribe(public_room.slug)
    await bob_ws.send({"type": "unsubscribe", "room": public_room.slug, "ref": "u"})
    assert await bob_ws.recv() == {"type": "unsubscribed", "room": "lobby", "ref": "u"}
    await alice_ws.post(public_room.slug, "anyone?")
    assert await bob_ws.nothing_more()
    await bob_ws.send({"type": "unsubscribe", "room": public_room.slug})
    assert (await bob_ws.recv())["code"] == "not_subscribed"
    await alice_ws.close()
    await bob_ws.close()


async def test_it_replays_exactly_the_missed_messages_on_resubscribe(alice, bob, public_room):
    bob_ws = await connected(bob)
    await bob_ws.subscribe(public_room.slug)
    await bob_ws.post(public_room.slug, "before")
    await bob_ws.messages(1)
    await bob_ws.close()

    alice_ws = await connected(alice)
    await alice_ws.subscribe(public_room.slug)
    for i in range(50):
        await alice_ws.post(public_room.slug, f"missed {i}")
    # Half of them reach PostgreSQL and leave the buffer: replay must read both.
    await database_sync_to_async(messages_persist_server)(server=0)

    bob_ws = await connected(bob)
    subscribed = await bob_ws.subscribe(public_room.slug, since=1)
    assert subscribed["seq"] == 51 and subscribed["recovered"] is True
    replayed = await bob_ws.messages(50)
    assert [m["seq"] for m in replayed] == list(range(2, 52))
    assert [m["body"] for m in replayed] == [f"missed {i}" for i in range(50)]
    assert await bob_ws.nothing_more()
    await alice_ws.post(public_room.slug, "live again")
    assert (await bob_ws.recv_type("message"))["seq"] == 52
    await alice_ws.close()
    await bob_ws.close()


async def test_a_resubscribe_that_missed_nothing_reads_no_history(alice, public_room, monkeypatch):
    # A reconnect storm resubscribes by the thousand, most of them with nothing missed: those
    # make no trip to the database thread for a replay.
    alice_ws = await connected(alice)
    await alice_ws.subscribe(public_room.slug)
    await alice_ws.post(public_room.slug, "seen")
    await alice_ws.close()
    reads = []
    real = subscriptions.messages_replay
    monkeypatch.setattr(subscriptions, "messages_replay", lambda **kw: reads.append(kw) or real(**kw))
    again = await connected(alice)
    subscribed = await again.subscribe(public_room.slug, since=1)
    assert (subscribed["seq"], subscribed["recovered"]) == (1, True)
    assert await again.nothing_more() and reads == []
    await again.close()
    behind = await connected(alice)
    await behind.subscribe(public_room.slug, since=0)
    assert [m["body"] for m in await behind.messages(1)] == ["seen"] and len(reads) == 1
    await behind.close()


async def test_replay_reads_postgresql_for_what_the_buffer_no_longer_holds(alice, public_room, settings):
    settings.MESSAGE_BUFFER_KEEP = 5
    alice_ws = await connected(alice)
    await alice_ws.subscribe(public_room.slug)
    for i in range(30):
        await alice_ws.post(public_room.slug, f"m{i}")
    await database_sync_to_async(messages_persist_server)(server=0)
    assert await buffer.arecords_between(room_id=public_room.pk, after=0, upto=30) != []
    assert len(await buffer.arecords_between(room_id=public_room.pk, after=0, upto=30)) == 5
    again = await connected(alice)
    await again.subscribe(public_room.slug, since=10)
    assert [m["seq"] for m in await again.messages(20)] == list(range(11, 31))
    await alice_ws.close()
    await again.close()


async def test_more_than_1000_missed_messages_answer_recovered_false_and_replay_none(alice, public_room):
    alice_ws = await connected(alice)
    await alice_ws.subscribe(public_room.slug)
    await alice_ws.close()
    for i in range(1001):
        result = await buffer.append(
            room_id=public_room.pk,
            record={
                "author": {"id": alice.pk, "username": "alice"},
                "body": f"b{i}",
                "client_id": str(uuid.uuid4()),
                "sent_at": "2026-01-01T00:00:00.000Z",
            },
        )
        assert result.created
    again = await connected(alice)
    subscribed = await again.subscribe(public_room.slug, since=0)
    assert subscribed["seq"] == 1001
    assert subscribed["recovered"] is False
    assert await again.nothing_more()
    subscribed = await again.subscribe(public_room.slug, since=1)
    assert subscribed["recovered"] is True
    assert len(await again.messages(1000, timeout=10)) == 1000
    await again.close()


async def test_a_message_the_layer_dropped_is_filled_from_the_buffer_in_order(alice, bob, public_room):
    """The channel layer may drop an event; the consumer notices the jump in seq and fills it."""
    bob_ws = await connected(bob)
    await bob_ws.subscribe(public_room.slug)
    # Stored and acknowledged, but its broadcast never happens: as if the layer dropped it.
    dropped = await buffer.append(
        room_id=public_room.pk,
        record={
            "author": {"id": alice.pk, "username": "alice"},
            "body": "dropped",
            "client_id": str(uuid.uuid4()),
            "sent_at": "2026-01-01T00:00:00.000Z",
        },
    )
    assert dropped.seq == 1
    alice_ws = await connected(alice)
    await alice_ws.subscribe(public_room.slug)
    await alice_ws.post(public_room.slug, "after")
    got = await bob_ws.messages(2)
    assert [(m["seq"], m["body"]) for m in got] == [(1, "dropped"), (2, "after")]
    await alice_ws.close()
    await bob_ws.close()


async def test_acknowledged_messages_are_in_history_before_the_job_runs(client, alice, public_room):
    alice_ws = await connected(alice)
    await alice_ws.subscribe(public_room.slug)
    await alice_ws.post(public_room.slug, "fresh <b>news</b>")
    await alice_ws.close()
    assert await database_sync_to_async(Message.objects.count)() == 0
    await database_sync_to_async(client.force_login)(alice)
    response = await database_sync_to_async(client.get)(f"/rooms/{public_room.slug}/messages/?after=0")
    assert [m["body"] for m in response.json()["messages"]] == ["fresh <b>news</b>"]
    assert b"<b>" not in response.content  # escaped as \u003c in the JSON text
    page = await database_sync_to_async(client.get)(public_room.get_absolute_url())
    html = page.content.decode()
    assert "fresh &lt;b&gt;news&lt;/b&gt;" in html
    assert "<b>news</b>" not in html


async def test_a_kicked_user_loses_the_subscription_on_every_connection(bob, public_room):
    from rooms.services import room_leave

    tab1, tab2 = await connected(bob), await connected(bob)
    await tab1.subscribe(public_room.slug)
    await tab2.subscribe(public_room.slug)
    await database_sync_to_async(room_leave)(room=public_room, user=bob)
    for tab in (tab1, tab2):
        kicked = await tab.recv_type("kicked")
        assert kicked["room"] == "lobby"
        await tab.send({"type": "send", "room": public_room.slug, "body": "hi", "client_id": str(uuid.uuid4())})
        assert (await tab.recv())["code"] == "not_subscribed"
        await tab.close()


async def test_a_wiped_redis_takes_its_counters_from_postgresql(alice, public_room):
    from pubsub_site.redis.client import get_async_redis

    ws = await connected(alice)
    await ws.subscribe(public_room.slug)
    for i in range(3):
        await ws.post(public_room.slug, f"m{i}")
    await database_sync_to_async(messages_persist_server)(server=0)
    await get_async_redis(public_room.pk).flushdb()
    assert (await ws.post(public_room.slug, "after the wipe"))["seq"] == 4
    await ws.close()


async def test_concurrent_senders_get_distinct_consecutive_seqs(alice, bob, public_room):
    sockets = [await connected(alice) for _ in range(3)] + [await connected(bob) for _ in range(3)]
    for ws in sockets:
        await ws.subscribe(public_room.slug)

    async def burst(ws, n):
        for i in range(n):
            await ws.send({"type": "send", "room": public_room.slug, "body": f"{i}", "client_id": str(uuid.uuid4())})

    await asyncio.gather(*(burst(ws, 10) for ws in sockets))
    acked = []
    for ws in sockets:
        frames = [await ws.recv(timeout=5) for _ in range(70)]
        acked += [f["seq"] for f in frames if f["type"] == "ack"]
        assert [f["seq"] for f in frames if f["type"] == "message"] == list(range(1, 61))
        assert await ws.nothing_more()
        await ws.close()
    assert sorted(acked) == list(range(1, 61))


async def test_a_redis_failure_during_the_handshake_is_try_again_later_not_a_refusal(alice, monkeypatch):
    """A stale connection to the channel layer's Redis (it restarted) fails the handshake's
    SUBSCRIBE to its user's group: the client is told 1013 and reconnects; 403 is for "not
    signed in"."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    from messaging.realtime.layers import _Shard

    async def broken(self, channel):
        raise RedisConnectionError("Connection lost")

    monkeypatch.setattr(_Shard, "subscribe", broken)
    ok, _, client = await connect(alice)
    assert ok  # accepted, then closed
    assert await client.ws.receive_output(timeout=2) == {"type": "websocket.close", "code": 1013}
    monkeypatch.undo()
    again = await connected(alice)
    await again.close()


async def test_a_strangers_replay_of_a_client_id_is_a_new_message_of_their_own(alice, bob, public_room):
    alice_ws, bob_ws = await connected(alice), await connected(bob)
    await alice_ws.subscribe(public_room.slug)
    await bob_ws.subscribe(public_room.slug)
    client_id = str(uuid.uuid4())
    assert (await alice_ws.post(public_room.slug, "alice's", client_id))["seq"] == 1
    # bob saw the message, client_id and all, and sends one with the same client_id.
    assert (await bob_ws.post(public_room.slug, "bob's", client_id))["seq"] == 2
    # Each one's retry is acknowledged with their own seq, and stores nothing.
    assert (await bob_ws.post(public_room.slug, "bob's", client_id))["seq"] == 2
    assert (await alice_ws.post(public_room.slug, "alice's", client_id))["seq"] == 1
    await database_sync_to_async(messages_persist_server)(server=0)
    rows = await database_sync_to_async(list)(
        Message.objects.filter(room=public_room).order_by("seq").values_list("seq", "author__username", "body")
    )
    assert rows == [(1, "alice", "alice's"), (2, "bob", "bob's")]
    await alice_ws.close()
    await bob_ws.close()


async def test_a_dedupe_key_written_before_it_named_the_author_still_serves_its_author_only(alice, bob, public_room):
    from pubsub_site.redis.client import get_async_redis

    alice_ws, bob_ws = await connected(alice), await connected(bob)
    await alice_ws.subscribe(public_room.slug)
    await bob_ws.subscribe(public_room.slug)
    client_id = str(uuid.uuid4())
    await alice_ws.post(public_room.slug, "from before the upgrade", client_id)
    # As the key was written before: without the author.
    keys, redis = RoomKeys(public_room.pk), get_async_redis(public_room.pk)
    await redis.rename(keys.client_id(client_id, alice.pk), keys.legacy_client_id(client_id))
    assert (await bob_ws.post(public_room.slug, "bob's", client_id))["seq"] == 2
    assert (await alice_ws.post(public_room.slug, "from before the upgrade", client_id))["seq"] == 1
    assert await buffer.acounters(room_id=public_room.pk) == (2, 2)
    await alice_ws.close()
    await bob_ws.close()
