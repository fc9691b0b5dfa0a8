"""What one socket may cost the process is bounded, and whatever happens it lets go.

A subscribe's recovery of missed changes reads at most CHANGE_REPLAY_LIMIT revisions' worth,
never the room's history; subscribes are rate-limited per socket; sockets per user and process
and subscriptions per socket are capped with a clear error. A frame's `ref` is a short string
or number; any exception in a handler ends in an `error` frame or a close, and the socket's
fan-out feed, groups, presence and metrics are released however it ends.
"""

from __future__ import annotations

import uuid

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import connection
from prometheus_client import REGISTRY

from messaging.realtime import presence
from messaging.realtime.presence import presence_left
from messaging.selectors import aroom_counters
from messaging.store import buffer, changes
from messaging.store.persistence import messages_persist_server
from messaging.tests.wsclient import connect, connected, eventually
from protocol.events import room_group, user_group
from rooms.services import room_create

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("async_cleanup")]


async def fill(room, author, count: int) -> None:
    """``count`` messages in the room, straight into the buffer."""
    await aroom_counters(room_id=room.pk)
    for i in range(count):
        result = await buffer.append(
            room_id=room.pk,
            record={
                "author": {"id": author.pk, "username": author.username},
                "body": f"m{i}",
                "client_id": str(uuid.uuid4()),
                "sent_at": "2026-01-01T00:00:00.000Z",
            },
        )
        assert result.created


class ReadCounter:
    """Rows PostgreSQL returned to the ORM's thread (where a subscribe's replay reads), and
    messages the replay asked Redis for."""

    def __init__(self) -> None:
        self.rows = 0
        self.redis_entries = 0

    def __call__(self, execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        cursor = context["cursor"]
        if cursor.description is not None:
            self.rows += max(cursor.rowcount, 0)
        return result


@pytest.fixture
async def reads(monkeypatch):
    counter = ReadCounter()

    def install():
        connection.execute_wrappers.append(counter)

    def uninstall():
        connection.execute_wrappers.remove(counter)

    def spy(module, name, size):
        original = getattr(module, name, None)
        if original is None:  # (a read this version does not make)
            return

        def counting(**kwargs):
            found = original(**kwargs)
            counter.redis_entries += size(kwargs, found)
            return found

        monkeypatch.setattr(module, name, counting)

    spy(buffer, "records_between", lambda kwargs, found: len(found))
    spy(buffer, "records_at", lambda kwargs, found: len(kwargs["seqs"]))
    spy(changes, "states_of", lambda kwargs, found: len(kwargs["seqs"]))
    spy(changes, "changed_seqs_after", lambda kwargs, found: len(found))
    await database_sync_to_async(install)()
    yield counter
    await database_sync_to_async(uninstall)()


# --- Change recovery --------------------------------------------------------------------


async def test_it_answers_a_subscribe_with_an_ancient_rev_recovered_false_without_reading_the_history(
    alice, public_room, settings, reads
):
    settings.CHANGE_REPLAY_LIMIT = 50
    await fill(public_room, alice, 400)
    await database_sync_to_async(messages_persist_server)(server=0)  # PostgreSQL has every row too
    reads.rows = reads.redis_entries = 0

    ws = await connected(alice)
    # A recent `since`, and `rev` 0: "every change since the room began".
    subscribed = await ws.subscribe(public_room.slug, since=400, rev=0)
    assert reads.rows <= 5, reads.rows  # 400 before: every message of the room
    assert reads.redis_entries == 0, reads.redis_entries  # 800 before: each message and its state
    assert (subscribed["seq"], subscribed["rev"], subscribed["recovered"]) == (400, 400, False)
    assert await ws.nothing_more()
    await ws.close()


async def test_it_still_recovers_the_changes_of_a_client_a_little_behind_reading_only_those(
    alice, public_room, settings, reads
):
    settings.CHANGE_REPLAY_LIMIT = 50
    await fill(public_room, alice, 400)
    await database_sync_to_async(messages_persist_server)(server=0)
    ws = await connected(alice)
    await ws.subscribe(public_room.slug)
    for seq in (3, 200, 399):  # far apart: read one by one, not the range between them
        await ws.send({"type": "edit", "room": public_room.slug, "seq": seq, "body": f"edited {seq}"})
        await ws.recv_type("message_updated")
    await ws.close()
    reads.rows = reads.redis_entries = 0

    back = await connected(alice)
    subscribed = await back.subscribe(public_room.slug, since=400, rev=400)
    assert (subscribed["rev"], subscribed["recovered"]) == (403, True)
    updated = [await back.recv() for _ in range(3)]
    assert [(u["type"], u["seq"], u["body"]) for u in updated] == [
        ("message_updated", 3, "edited 3"),
        ("message_updated", 200, "edited 200"),
        ("message_updated", 399, "edited 399"),
    ]
    assert reads.rows <= 10, reads.rows
    assert reads.redis_entries <= 12, reads.redis_entries
    await back.close()


async def test_subscribe_frames_are_rate_limited_per_socket(alice, public_room, settings):
    settings.WS_SUBSCRIBE_RATE = "3/minute"
    ws = await connected(alice)
    for _ in range(3):
        assert (await ws.subscribe(public_room.slug))["recovered"] is True
    await ws.send({"type": "subscribe", "room": public_room.slug, "ref": "s4"})
    error = await ws.recv()
    assert (error["type"], error["code"], error["ref"]) == ("error", "rate_limited", "s4")
    assert 0 < error["retry_after"] <= 60
    await ws.send({"type": "ping", "ref": "p"})  # other frames go on
    assert await ws.recv() == {"type": "pong", "ref": "p"}
    other = await connected(alice)  # the limit is the socket's
    assert (await other.subscribe(public_room.slug))["recovered"] is True
    await ws.close()
    await other.close()


# --- Caps -------------------------------------------------------------------------------


async def test_a_user_past_the_socket_cap_is_told_and_closed_with_1008(bob, settings):
    settings.WS_MAX_SOCKETS_PER_USER = 2
    first, second = await connected(bob), await connected(bob)
    ok, _, third = await connect(bob)
    assert ok  # accepted, to say why it is refused
    error = await third.recv()
    assert (error["type"], error["code"]) == ("error", "too_many_sockets")
    assert "2" in error["detail"]
    assert await third.ws.receive_output(timeout=3) == {"type": "websocket.close", "code": 1008}
    await first.close()
    fourth = await connected(bob)  # a place is free again
    await fourth.send({"type": "ping"})
    assert (await fourth.recv())["type"] == "pong"
    for ws in (second, fourth):
        await ws.close()


async def test_a_socket_past_the_subscription_cap_is_told_and_keeps_what_it_has(alice, public_room, settings):
    settings.WS_MAX_SUBSCRIPTIONS = 2
    rooms = [public_room.slug]
    for name in ("Second", "Third"):
        room = await database_sync_to_async(room_create)(creator=alice, name=name)
        rooms.append(room.slug)
    ws = await connected(alice)
    await ws.subscribe(rooms[0])
    await ws.subscribe(rooms[1])
    await ws.send({"type": "subscribe", "room": rooms[2], "ref": "s"})
    error = await ws.recv()
    assert (error["type"], error["code"], error["ref"]) == ("error", "too_many_subscriptions", "s")
    assert (await ws.subscribe(rooms[1]))["recovered"] is True  # a resubscribe is no new one
    await ws.send({"type": "unsubscribe", "room": rooms[0]})
    assert (await ws.recv())["type"] == "unsubscribed"
    assert (await ws.subscribe(rooms[2]))["room"] == rooms[2]
    await ws.close()


# --- Refs and clean-up ------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw_ref",
    ["[" * 300 + "]" * 300, '{"a": 1}', '["r"]', '"' + "x" * 65 + '"', "true"],
)
async def test_a_ref_that_is_no_short_string_or_number_is_refused_and_the_socket_goes_on(bob, public_room, raw_ref):
    ws = await connected(bob)
    await ws.subscribe(public_room.slug)
    await ws.ws.send_to(text_data='{"type": "ping", "ref": ' + raw_ref + "}")
    error = await ws.recv()
    assert (error["type"], error["code"]) == ("error", "bad_request")
    assert "ref" not in error
    await ws.send({"type": "ping", "ref": "still here"})
    assert await ws.recv() == {"type": "pong", "ref": "still here"}
    await ws.close()


@pytest.mark.parametrize("ref", ["x" * 64, 12, 1.5, -7])
async def test_a_short_string_or_number_ref_comes_back(bob, ref):
    ws = await connected(bob)
    await ws.send({"type": "ping", "ref": ref})
    assert await ws.recv() == {"type": "pong", "ref": ref}
    await ws.close()


async def closed_with(ws) -> int:
    """The close code the socket ends with (the frames before it are skipped)."""
    while True:
        output = await ws.ws.receive_output(timeout=3)
        if output["type"] == "websocket.close":
            return output["code"]


def subscriptions_gauge() -> float:
    return REGISTRY.get_sample_value("pubsub_ws_subscriptions") or 0.0


def feeds_of(room) -> int:
    fanouts = get_channel_layer()._get_layer().fanouts.values()
    return sum(len(f.feeds) for f in fanouts if f.room_id == room.pk)


def present_members(room) -> set[str]:
    return set(presence.keeper(on_gone=presence_left).entries.get(room.pk, ()))


async def watched_by_alice(room, alice):
    watch = await connected(alice, ignore=frozenset({"unread"}))
    await watch.subscribe(room.slug)
    await watch.recv_type("presence")
    return watch


async def test_a_failing_event_handler_closes_the_socket_and_lets_go_of_everything(alice, bob, public_room):
    watch = await watched_by_alice(public_room, alice)
    gauge = subscriptions_gauge()
    bob_ws = await connected(bob)
    await bob_ws.subscribe(public_room.slug)
    assert (await watch.recv_type("presence_diff"))["joins"][0]["id"] == bob.pk
    assert feeds_of(public_room) == 2 and subscriptions_gauge() == gauge + 1
    # An event no handler takes (a defect): the consumer raises while dispatching it.
    await get_channel_layer().group_send(user_group(bob.pk), {"type": "user.nonsense"})
    assert await closed_with(bob_ws) == 1011
    diff = await watch.recv_type("presence_diff", timeout=5)
    assert [u["id"] for u in diff["leaves"]] == [bob.pk]
    assert feeds_of(public_room) == 1
    assert subscriptions_gauge() == gauge
    assert all(not m.startswith(f"{bob.pk}|") for m in present_members(public_room))
    layer = get_channel_layer()._get_layer()
    assert len(layer.groups[layer._get_group_channel_name(room_group(public_room.pk))]) == 1  # alice's
    assert (await watch.post(public_room.slug, "the room goes on"))["seq"] == 1
    await watch.close()


async def test_a_frame_whose_handler_fails_gets_an_error_and_the_user_still_leaves_cleanly(
    alice, bob, public_room, monkeypatch
):
    async def broken(**kwargs):
        raise RuntimeError("a defect")

    monkeypatch.setattr("messaging.realtime.consumers.message_mark_read", broken)
    watch = await watched_by_alice(public_room, alice)
    gauge = subscriptions_gauge()
    bob_ws = await connected(bob)
    await bob_ws.subscribe(public_room.slug)
    await watch.recv_type("presence_diff")
    await watch.post(public_room.slug, "hi")
    await bob_ws.recv_type("message")
    await bob_ws.send({"type": "read", "room": public_room.slug, "seq": 1, "ref": "r"})
    error = await bob_ws.recv()
    assert (error["type"], error["code"], error["ref"]) == ("error", "internal_error", "r")
    await bob_ws.send({"type": "ping"})
    assert (await bob_ws.recv())["type"] == "pong"
    await bob_ws.close()
    diff = await watch.recv_type("presence_diff", timeout=5)
    assert [u["id"] for u in diff["leaves"]] == [bob.pk]
    await eventually(lambda: feeds_of(public_room) == 1 and subscriptions_gauge() == gauge)
    await watch.close()


async def test_a_client_that_left_before_its_accept_is_let_go_quietly(alice, caplog):
    # In a reconnect storm clients give up on handshakes the server has not answered yet; the
    # server's write of the accept then fails (uvicorn: ClientDisconnected, an OSError). That
    # is no defect: no error and no traceback are logged, and what the socket took is let go.
    import asyncio
    import logging

    from uvicorn.protocols.utils import ClientDisconnected

    from messaging.realtime import online
    from messaging.realtime.sockets import client_gone
    from messaging.tests.wsclient import session_key_for
    from pubsub_site.asgi import application

    assert client_gone(ClientDisconnected()) and not client_gone(OSError("disk full")) and not client_gone(ValueError())
    inbox: asyncio.Queue = asyncio.Queue()
    await inbox.put({"type": "websocket.connect"})
    written = []

    async def send(message):
        written.append(message["type"])
        if message["type"] == "websocket.accept":
            raise ClientDisconnected()

    scope = {
        "type": "websocket",
        "path": "/ws/",
        "raw_path": b"/ws/",
        "query_string": b"",
        "headers": [
            (b"origin", b"http://localhost"),
            (b"cookie", f"sessionid={await session_key_for(alice)}".encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "subprotocols": [],
    }
    with caplog.at_level(logging.DEBUG, logger="messaging"):
        await asyncio.wait_for(application(scope, inbox.get, send), 5)
    assert written == ["websocket.accept"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert online.sockets_of(user_id=alice.pk) == 0
