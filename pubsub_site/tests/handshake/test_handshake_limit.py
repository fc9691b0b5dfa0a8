"""The handshake limit queues handshakes a few at a time and sheds the overflow with 1013."""

from __future__ import annotations

import asyncio

from channels.testing import WebsocketCommunicator

from messaging.realtime.handshakes import TRY_AGAIN_LATER, HandshakeLimit, handshake_done


class SlowHandshake:
    """An app whose handshake takes ``seconds`` (its database work), then accepts."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.at_work = 0
        self.most_at_work = 0

    async def __call__(self, scope, receive, send):
        await receive()  # websocket.connect
        self.at_work += 1
        self.most_at_work = max(self.most_at_work, self.at_work)
        await asyncio.sleep(self.seconds)
        self.at_work -= 1
        handshake_done()  # does nothing without a limit
        await send({"type": "websocket.accept"})
        while (await receive())["type"] != "websocket.disconnect":
            pass


async def connect_all(app, count: int) -> list[tuple[bool, int | None]]:
    communicators = [WebsocketCommunicator(app, "/ws/") for _ in range(count)]
    results = await asyncio.gather(*(c.connect(timeout=5) for c in communicators))
    for communicator in communicators:
        await communicator.disconnect()
    return results


async def test_handshakes_past_the_limit_wait_their_turn():
    inner = SlowHandshake(0.05)
    results = await connect_all(HandshakeLimit(inner, limit=2, wait=2.0), 8)
    assert results == [(True, None)] * 8  # all admitted, none refused
    assert inner.most_at_work == 2


async def test_a_handshake_that_waits_too_long_is_closed_with_try_again_later():
    app = HandshakeLimit(SlowHandshake(0.5), limit=1, wait=0.1)
    first, second = WebsocketCommunicator(app, "/ws/"), WebsocketCommunicator(app, "/ws/")
    admitted = asyncio.create_task(first.connect(timeout=5))
    await asyncio.sleep(0.01)
    await second.send_input({"type": "websocket.connect"})
    assert await second.receive_output(timeout=2) == {"type": "websocket.accept"}
    assert await second.receive_output(timeout=2) == {"type": "websocket.close", "code": TRY_AGAIN_LATER}
    assert await admitted == (True, None)
    await first.disconnect()


async def test_no_limit_passes_straight_through():
    inner = SlowHandshake(0.05)
    assert await connect_all(HandshakeLimit(inner, limit=0, wait=0.1), 5) == [(True, None)] * 5
    assert inner.most_at_work == 5
