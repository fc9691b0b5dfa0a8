"""The per-process fan-out of a room (messaging.realtime.fanout) and one socket's outbox (messaging.realtime.sockets).

The fan-out runs on the real channel layer and the room's real Redis buffer; the sockets
are recording ASGI ``send`` callables, one per client, so that each test can see exactly
what each socket was sent and in which order.
"""

from __future__ import annotations

import asyncio
import uuid

import orjson
import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from messaging.realtime import fanout
from messaging.realtime.fanout import RoomFanout
from messaging.realtime.sockets import Outbox, ServerSocket, UnblockingSocket
from messaging.selectors import room_counters
from messaging.services import message_send
from messaging.store import buffer
from protocol.events import room_group
from pubsub_site.redis.client import room_redis_url

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("async_cleanup")]


class Recorder:
    """A socket: what its ASGI ``send`` was given."""

    def __init__(self) -> None:
        self.frames: list[dict] = []

    async def send(self, event: dict) -> None:
        self.frames.append(orjson.loads(event["text"]))

    @property
    def seqs(self) -> list[int]:
        return [f["seq"] for f in self.frames if f.get("type") == "message"]


def outbox_for(recorder: Recorder, socket: ServerSocket | None = None, **kwargs) -> Outbox:
    kwargs.setdefault("limit", 1 << 20)
    kwargs.setdefault("on_overflow", lambda waiting: None)
    return Outbox(recorder.send, socket or UnblockingSocket(), **kwargs)


def event(room_id: int, seq: int) -> dict:
    record = {"seq": seq, "rev": seq, "author": {"id": 1, "username": "a"}, "body": f"m{seq}", "client_id": f"c{seq}",
              "sent_at": "2026-11-30T10:00:00+00:00"}  # fmt: skip
    return {"type": "room.message", "room_id": room_id, "seq": seq, "record": orjson.dumps(record).decode(), "ts": 0.0}


async def settle(seconds: float = 0.05) -> None:
    await asyncio.sleep(seconds)


async def test_it_delivers_in_seq_order_whatever_order_the_events_arrive_in():
    room = RoomFanout(1, "lobby")
    sockets = [Recorder() for _ in range(3)]
    feeds = [room.attach(outbox_for(s), lambda: None) for s in sockets]
    for feed in feeds:
        await room.start(feed, after=0)
    for seq in (2, 1, 4, 3, 5):
        room.offer(event(1, seq))
    await settle()
    assert [s.seqs for s in sockets] == [[1, 2, 3, 4, 5]] * 3
    room.close()


async def test_every_socket_gets_the_same_text_once():
    room = RoomFanout(1, "lobby")
    texts: list[list[str]] = [[], []]

    def recording(i):
        async def send(evt):
            texts[i].append(evt["text"])

        return send

    for i in range(2):
        feed = room.attach(Outbox(recording(i), UnblockingSocket(), limit=1 << 20, on_overflow=print), lambda: None)
        await room.start(feed, after=0)
    room.offer(event(1, 1))
    room.offer(event(1, 1))  # the layer delivered it twice: the second is stale
    await settle()
    assert texts[0] == texts[1] and len(texts[0]) == 1
    assert texts[0][0] is texts[1][0]  # encoded once for the process, not once per socket
    room.close()


async def test_a_gap_is_read_from_the_buffer_once_for_every_socket(alice, public_room, monkeypatch):
    # Three messages stored in the room's buffer; the layer "drops" the second.
    await database_sync_to_async(room_counters)(room_id=public_room.pk)
    records = []
    for body in ("one", "two", "three"):
        appended = await buffer.append(
            room_id=public_room.pk,
            record={"author": {"id": alice.pk, "username": "alice"}, "body": body,
                    "client_id": str(uuid.uuid4()), "sent_at": "2026-11-30T00:00:00.000Z"},
        )  # fmt: skip
        records.append(appended.seq)
    assert records == [1, 2, 3]
    reads = []
    real = fanout.messages_between

    def counting(**kwargs):
        reads.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(fanout, "messages_between", counting)
    room = RoomFanout(public_room.pk, public_room.slug)
    sockets = [Recorder() for _ in range(4)]
    for s in sockets:
        await room.start(room.attach(outbox_for(s), lambda: None), after=0)
    room.offer(event(public_room.pk, 1))
    room.offer(event(public_room.pk, 3))
    await settle()
    assert [s.seqs for s in sockets] == [[1]] * 4  # 3 waits for 2
    await settle(fanout.GAP_WAIT_SECONDS + 0.3)
    assert [s.seqs for s in sockets] == [[1, 2, 3]] * 4
    assert [s.frames[1]["body"] for s in sockets] == ["two"] * 4  # read from the buffer
    assert reads == [{"room_id": public_room.pk, "after": 1, "upto": 2}]  # once, for all four
    room.close()


async def test_a_socket_that_starts_after_its_replay_gets_what_it_held_and_nothing_twice():
    room = RoomFanout(1, "lobby")
    early, late = Recorder(), Recorder()
    await room.start(room.attach(outbox_for(early), lambda: None), after=0)
    late_feed = room.attach(outbox_for(late), lambda: None)  # attached, still replaying up to 2
    for seq in (1, 2, 3, 4):
        room.offer(event(1, seq))
    await settle()
    assert early.seqs == [1, 2, 3, 4]
    assert late.seqs == []  # held while it replays
    await room.start(late_feed, after=2)  # its replay covered 1 and 2
    room.offer(event(1, 5))
    await settle()
    assert late.seqs == [3, 4, 5]
    room.close()


async def test_a_socket_that_leaves_mid_broadcast_gets_nothing_more_and_the_others_everything():
    room = RoomFanout(1, "lobby")
    stayer = Recorder()
    leaver_frames: list[int] = []
    feeds = {}

    async def leaver_send(evt):
        seq = orjson.loads(evt["text"])["seq"]
        leaver_frames.append(seq)
        if seq == 2:
            room.detach(feeds["leaver"])  # unsubscribes, or is kicked, while the room delivers

    feeds["leaver"] = room.attach(Outbox(leaver_send, UnblockingSocket(), limit=1 << 20, on_overflow=print), print)
    await room.start(feeds["leaver"], after=0)
    await room.start(room.attach(outbox_for(stayer), lambda: None), after=0)
    for seq in range(1, 6):
        room.offer(event(1, seq))
    await settle()
    assert leaver_frames == [1, 2]
    assert stayer.seqs == [1, 2, 3, 4, 5]
    room.close()


class Blocked(ServerSocket):
    """A client that reads nothing: the server's buffer for it is full."""

    def __init__(self) -> None:
        self.drained = asyncio.Event()

    def writable(self) -> bool:
        return self.drained.is_set()

    async def wait_writable(self) -> None:
        await self.drained.wait()


async def test_a_socket_that_does_not_read_queues_then_is_cut_off_and_the_room_goes_on():
    room = RoomFanout(1, "lobby")
    fast, slow = Recorder(), Recorder()
    overflowed: list[int] = []
    broken: list[str] = []
    await room.start(room.attach(outbox_for(fast), lambda: None), after=0)
    slow_outbox = outbox_for(slow, Blocked(), limit=2000, on_overflow=overflowed.append)
    await room.start(room.attach(slow_outbox, lambda: broken.append("slow")), after=0)
    for seq in range(1, 101):
        room.offer(event(1, seq))
    await settle()
    assert fast.seqs == list(range(1, 101))
    assert slow.seqs == []
    assert len(overflowed) == 1 and overflowed[0] > 2000
    assert slow_outbox.closed and not slow_outbox.frames  # what waited is dropped
    room.close()


async def test_what_waits_in_an_outbox_is_written_in_order_once_the_client_reads_again():
    socket = Blocked()
    recorder = Recorder()
    outbox = outbox_for(recorder, socket, limit=1 << 20)
    for seq in range(1, 6):
        await outbox.write(orjson.dumps({"type": "message", "seq": seq}).decode())
    assert recorder.seqs == []
    socket.drained.set()
    await settle()
    await outbox.write(orjson.dumps({"type": "message", "seq": 6}).decode())
    await settle()
    assert recorder.seqs == [1, 2, 3, 4, 5, 6]
    assert outbox.writer is None and not outbox.frames


@pytest.mark.parametrize("published_by", ["the append script", "group_send"])
async def test_the_layer_hands_a_room_message_to_the_fan_out_once_for_the_process(
    alice, public_room, monkeypatch, published_by
):
    layer = get_channel_layer()
    group = room_group(public_room.pk)
    # The room's Redis carries its group here, so the script publishes; told it may not,
    # the send path publishes through the layer: the event is the same.
    assert layer.script_broadcast_channel(group, room_redis_url(public_room.pk)) is not None
    if published_by == "group_send":
        monkeypatch.setattr(type(layer), "script_broadcast_channel", lambda self, group, url: None)
    room = layer.room_fanout(group, room_id=public_room.pk, slug=public_room.slug)
    sockets = [Recorder() for _ in range(3)]
    channels = []
    for s in sockets:
        feed = room.attach(outbox_for(s), lambda: None)
        channel = await layer.new_channel()
        channels.append(channel)
        await layer.group_add(group, channel)
        await room.start(feed, after=0)
    for body in ("hello", "again"):
        await message_send(
            room_id=public_room.pk, room_slug=public_room.slug, author_id=alice.pk, author_username="alice",
            body=body, client_id=str(uuid.uuid4()),
        )  # fmt: skip
    for _ in range(50):
        if all(len(s.seqs) == 2 for s in sockets):
            break
        await settle()
    assert [s.seqs for s in sockets] == [[1, 2]] * 3
    assert [f["body"] for f in sockets[0].frames] == ["hello", "again"]
    assert sockets[0].frames[0] == sockets[1].frames[0] == {
        "type": "message", "room": public_room.slug, "seq": 1, "rev": 1,
        "author": {"id": alice.pk, "username": "alice"},
        "body": "hello", "client_id": sockets[0].frames[0]["client_id"], "sent_at": sockets[0].frames[0]["sent_at"],
        "claps": 0, "edited": False, "deleted": False,
    }  # fmt: skip
    # No consumer's own queue got a copy of the messages.
    assert all(layer.channels[c].empty() for c in channels)
    # The last socket to leave the group takes the room's fan-out with it.
    for channel in channels:
        room.detach(room.feeds[0])
        await layer.group_discard(group, channel)
    assert layer.fanouts == {}
    await layer.flush()


async def test_flush_waits_for_what_waits_in_the_outbox():
    socket = Blocked()
    recorder = Recorder()
    outbox = outbox_for(recorder, socket)
    await outbox.write(orjson.dumps({"type": "message", "seq": 1}).decode())
    flushing = asyncio.ensure_future(outbox.flush())
    await settle()
    assert not flushing.done()
    socket.drained.set()
    await asyncio.wait_for(flushing, 1)
    assert recorder.seqs == [1]


class Direct(ServerSocket):
    """A server that takes several frames in one write (as UvicornSocket does)."""

    direct = True

    def __init__(self) -> None:
        self.writes: list[list[str]] = []
        self.framed: list[object] = []

    def writable(self) -> bool:
        return True

    def write_frames(self, texts, framed=None) -> None:
        self.writes.append(list(texts))
        self.framed.append(framed)


async def test_messages_that_arrive_together_reach_a_socket_in_one_write():
    room = RoomFanout(1, "lobby")
    servers = [Direct() for _ in range(2)]
    feeds = [room.attach(Outbox(Recorder().send, server, limit=1 << 20, on_overflow=lambda w: None), lambda: None)
             for server in servers]  # fmt: skip
    for feed in feeds:
        await room.start(feed, after=0)
    for seq in (3, 1, 2):  # one batch, out of order
        room.offer(event(1, seq))
    await settle()
    room.offer(event(1, 4))
    await settle()
    for server in servers:
        assert [[orjson.loads(t)["seq"] for t in write] for write in server.writes] == [[1, 2, 3], [4]]
    # Each batch framed once for both sockets.
    assert [servers[0].framed[i] is servers[1].framed[i] is not None for i in range(2)] == [True, True]
    room.close()


class FakeTransport:
    def __init__(self) -> None:
        self.written = b""

    def write(self, data: bytes) -> None:
        self.written += data


def uvicorn_like_protocol():
    """What UvicornSocket reads of uvicorn's websockets-sansio protocol, with websockets'
    real ServerProtocol, open."""
    from types import SimpleNamespace

    from websockets.protocol import State
    from websockets.server import ServerProtocol

    conn = ServerProtocol()
    conn.state = State.OPEN
    return SimpleNamespace(
        disconnected=False,
        close_sent=False,
        handshake_complete=True,
        initial_response=None,
        conn=conn,
        transport=FakeTransport(),
    )


def test_frames_framed_once_are_the_bytes_websockets_would_write():
    from messaging.realtime.sockets import Framed, UvicornSocket

    texts = ["a", "é" * 100, "x" * 70_000, orjson.dumps({"type": "message", "seq": 1}).decode()]
    framed, plain = uvicorn_like_protocol(), uvicorn_like_protocol()
    UvicornSocket(framed).write_frames(texts, Framed(texts))
    UvicornSocket(plain).write_frames(texts)
    assert framed.transport.written == plain.transport.written
    # What websockets had queued (a pong) goes out first.
    framed.conn.send_pong(b"p")
    plain.conn.send_pong(b"p")
    UvicornSocket(framed).write_frames(["b"], Framed(["b"]))
    UvicornSocket(plain).write_frames(["b"])
    assert framed.transport.written == plain.transport.written


def test_a_closing_socket_takes_no_framed_frames():
    from websockets.protocol import State

    from messaging.realtime.sockets import Framed, SocketClosing, UvicornSocket

    protocol = uvicorn_like_protocol()
    protocol.conn.state = State.CLOSING
    with pytest.raises(SocketClosing):
        UvicornSocket(protocol).write_frames(["a"], Framed(["a"]))
    assert protocol.transport.written == b""
