"""The handshake limit queues handshakes a few at a time and sheds the overflow with 1013,
telling each client it sends away when to come back."""

from __future__ import annotations

import asyncio
import json

import pytest
from channels.testing import WebsocketCommunicator

from messaging.realtime.handshakes import (
    COME_BACK_MAX_SECONDS,
    TRY_AGAIN_LATER,
    HandshakeLimit,
    Rate,
    Turns,
    handshake_done,
)


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
    told = await second.receive_output(timeout=2)
    assert told["type"] == "websocket.send"
    hint = json.loads(told["text"])
    assert hint["type"] == "reconnect" and 0 < hint["after_ms"] <= COME_BACK_MAX_SECONDS * 1000 * 1.1
    assert await second.receive_output(timeout=2) == {"type": "websocket.close", "code": TRY_AGAIN_LATER}
    assert await admitted == (True, None)
    await first.disconnect()


async def test_no_limit_passes_straight_through():
    inner = SlowHandshake(0.05)
    assert await connect_all(HandshakeLimit(inner, limit=0, wait=0.1), 5) == [(True, None)] * 5
    assert inner.most_at_work == 5


def test_a_rate_is_unknown_until_a_whole_second_was_counted_then_counts_the_last_one_to_two():
    rate = Rate()
    for i in range(50):
        rate.tick(100.0 + i / 100)  # 50 in the first half second
    assert rate.per_second(100.9) is None
    for i in range(100):
        rate.tick(101.0 + i / 100)  # then 100 a second
    assert rate.per_second(101.99) == pytest.approx(150 / 1.99, rel=0.01)
    assert rate.per_second(102.5) == pytest.approx(100 / 1.0, rel=0.01)  # the last whole second, nothing since
    assert rate.per_second(110.0) == 0  # nothing for seconds: none a second


def waiting_turns(*, finished_per_second: int, waiting: int, since: float, now: float, limit: int = 10) -> Turns:
    """A loop's turns (``limit`` slots, a 10 s wait) with ``waiting`` handshakes queued since
    ``since`` and ``finished_per_second`` finishing a second over the two seconds before ``now``."""
    turns = Turns(limit=limit, wait=10.0)
    for i in range(2 * finished_per_second):
        turns.finished.tick(now - 2.0 + i / finished_per_second)
    for _ in range(waiting):
        turns.queue(since)
    return turns


def test_a_handshake_behind_more_than_the_wait_of_queue_is_sent_away_at_once():
    # 100 a second finish: in 10 s, 1,000 of those waiting get in.
    assert not waiting_turns(finished_per_second=100, waiting=999, since=0.0, now=50.0).queue_too_long(50.0)
    assert waiting_turns(finished_per_second=100, waiting=1000, since=0.0, now=50.0).queue_too_long(50.0)


def test_a_queue_younger_than_the_rates_two_seconds_sends_nobody_away_at_once():
    """A process idle a moment ago has finished nothing lately: its rate says nothing of what
    it can do, and only the wait sends handshakes away."""
    turns = waiting_turns(finished_per_second=100, waiting=5000, since=49.0, now=50.0)
    assert not turns.queue_too_long(50.0)
    assert turns.queue_too_long(51.0)  # the queue stood two seconds
    assert not waiting_turns(finished_per_second=0, waiting=5000, since=0.0, now=50.0).queue_too_long(50.0)


def test_the_clients_sent_away_are_given_turns_after_the_queue_one_per_handshake_the_process_finishes():
    turns = waiting_turns(finished_per_second=100, waiting=500, since=0.0, now=50.0)
    waits = [turns.come_back_in(50.0) for _ in range(3)]
    assert waits == pytest.approx([5.01, 5.02, 5.03])  # behind 500 at 100 a second, then 1/100 s apart
    for i in range(100):  # a second on: 100 more finished, the queue is 100 shorter
        turns.finished.tick(50.0 + i / 100)
        turns.unqueue()
    assert turns.come_back_in(51.0) == pytest.approx(4.04)  # the fourth turn: those promised still stand


def test_no_client_is_asked_to_wait_more_than_the_longest_wait():
    turns = waiting_turns(finished_per_second=10, waiting=5000, since=0.0, now=50.0)
    assert turns.come_back_in(50.0) == COME_BACK_MAX_SECONDS


def test_a_stalled_process_still_spreads_its_turns_at_the_slowest_rate_its_queue_allows():
    """Nothing finished lately (a backing service is slow): turns a wait's worth of slots apart."""
    turns = waiting_turns(finished_per_second=0, waiting=0, since=0.0, now=50.0)
    first, second = turns.come_back_in(50.0), turns.come_back_in(50.0)
    assert second - first == pytest.approx(turns.wait / turns.limit)


async def test_a_handshake_behind_too_long_a_queue_is_told_its_turn_and_closed_without_waiting():
    """2 handshakes a second finish and 20 wait (10 s of them, the wait): a newcomer is sent
    away at once, told to come back behind them (about 10.5 s), not kept the wait in vain."""
    app = HandshakeLimit(SlowHandshake(0.0), limit=1, wait=10.0)
    loop = asyncio.get_running_loop()
    now = loop.time()
    turns = app.turns[loop] = waiting_turns(finished_per_second=2, waiting=20, since=now - 3.0, now=now, limit=1)
    await turns.slots.acquire()  # the one slot is at work
    newcomer = WebsocketCommunicator(app, "/ws/")
    await newcomer.send_input({"type": "websocket.connect"})
    assert await newcomer.receive_output(timeout=1) == {"type": "websocket.accept"}
    told = json.loads((await newcomer.receive_output(timeout=1))["text"])
    assert told["type"] == "reconnect" and 10_000 <= told["after_ms"] <= 12_100, told
    assert await newcomer.receive_output(timeout=1) == {"type": "websocket.close", "code": TRY_AGAIN_LATER}
    assert turns.waiting == 20  # it never queued
