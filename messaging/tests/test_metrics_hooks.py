"""The hooks count what happens on a socket, through the real ASGI application and channel layer
(in this process, whose metrics live in memory: no PROMETHEUS_MULTIPROC_DIR here)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
from prometheus_client import REGISTRY

from messaging import metrics
from messaging.realtime.sockets import Outbox, ServerSocket
from messaging.tests.wsclient import connect, connected
from pubsub_site.metrics_http import sweep_dead_processes

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("async_cleanup")]


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Delta:
    """What changed in a few samples since it was made."""

    SAMPLES = {
        "connections": ("pubsub_ws_connections", {}),
        "subscriptions": ("pubsub_ws_subscriptions", {}),
        "accepted": ("pubsub_ws_handshakes_total", {"outcome": "accepted"}),
        "unauthenticated": ("pubsub_ws_handshakes_total", {"outcome": "unauthenticated"}),
        "origin": ("pubsub_ws_handshakes_total", {"outcome": "origin"}),
        "subscribe": ("pubsub_ws_frames_received_total", {"type": "subscribe"}),
        "send": ("pubsub_ws_frames_received_total", {"type": "send"}),
        "unknown": ("pubsub_ws_frames_received_total", {"type": "unknown"}),
        "unknown_type": ("pubsub_ws_errors_sent_total", {"code": "unknown_type"}),
        "bad_request": ("pubsub_ws_errors_sent_total", {"code": "bad_request"}),
        "sent": ("pubsub_messages_sent_total", {}),
        "delivered": ("pubsub_messages_delivered_total", {}),
        "batches": ("pubsub_delivery_latency_seconds_count", {}),
        "closed_1009": ("pubsub_ws_server_closes_total", {"code": "1009"}),
    }

    def __init__(self) -> None:
        self.before = self.read()

    def read(self) -> dict[str, float]:
        return {key: value(name, **labels) for key, (name, labels) in self.SAMPLES.items()}

    def __call__(self) -> dict[str, float]:
        now = self.read()
        return {key: now[key] - self.before[key] for key in now if now[key] != self.before[key]}


async def test_a_socket_counts_its_handshake_frames_errors_and_messages_while_open(alice, public_room):
    delta = Delta()
    first = await connected(alice)
    second = await connected(alice)
    assert delta() == {"connections": 2, "accepted": 2}

    for client in (first, second):
        await client.subscribe(public_room.slug)
    for body in ("one", "two"):
        await first.post(public_room.slug, body)
        for client in (first, second):
            assert [m["body"] for m in await client.messages(1)] == [body]
    await first.send({"type": "dance"})
    assert (await first.recv())["code"] == "unknown_type"
    await first.ws.send_to(text_data="not json")
    assert (await first.recv())["code"] == "bad_request"

    counted = delta()
    batches = counted.pop("batches")
    assert counted == {
        "connections": 2,
        "accepted": 2,
        "subscriptions": 2,
        "subscribe": 2,
        "send": 2,
        "sent": 2,
        "delivered": 4,  # two messages, two sockets: counted once per message
        "unknown": 1,
        "unknown_type": 1,
        "bad_request": 1,
    }
    assert 1 <= batches <= 2  # one observation per fan-out batch, not per copy

    await first.close()
    await second.close()
    left = delta()
    assert "connections" not in left and "subscriptions" not in left


async def test_refused_handshakes_are_counted_by_reason(alice):
    delta = Delta()
    assert not (await connect(None))[0]
    assert not (await connect(alice, origin=b"https://evil.example"))[0]
    assert delta() == {"unauthenticated": 1, "origin": 1}


async def test_a_close_by_the_server_is_counted_by_code_and_takes_the_socket_away(alice, public_room):
    client = await connected(alice)
    await client.subscribe(public_room.slug)
    delta = Delta()
    await client.ws.send_to(text_data=json.dumps({"type": "ping", "pad": "x" * (64 * 1024)}))
    while (output := await client.ws.receive_output(timeout=3))["type"] == "websocket.send":
        pass  # the presence frame of the subscription
    assert output == {"type": "websocket.close", "code": 1009}
    await client.close()
    assert delta() == {"closed_1009": 1, "connections": -1, "subscriptions": -1}


def test_a_cut_off_is_counted_when_its_socket_is_closed():
    consumer = SimpleNamespace(metrics_open=True, cut_off=True)
    before = value("pubsub_ws_cutoffs_total"), value("pubsub_ws_server_closes_total", code="1011")
    metrics.server_closed(consumer, 1011)
    after = value("pubsub_ws_cutoffs_total"), value("pubsub_ws_server_closes_total", code="1011")
    assert (after[0] - before[0], after[1] - before[1]) == (1, 1)
    metrics.server_closed(SimpleNamespace(cut_off=True), 1011)  # never accepted: a refusal, not a close
    assert value("pubsub_ws_cutoffs_total") == after[0]


class Socket:
    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox


async def test_the_sampler_adds_up_what_waits_in_the_outboxes():
    def outbox() -> Outbox:
        return Outbox(lambda event: None, ServerSocket(), limit=10_000, on_overflow=lambda waiting: None)

    slow, slower, idle = outbox(), outbox(), outbox()
    await slow.write("x" * 100)
    await slower.write("y" * 300)
    await slower.write("é" * 50)  # 100 bytes
    consumers = [Socket(box) for box in (slow, slower, idle)]
    metrics._open.update(consumers)
    try:
        assert metrics.sample_outboxes() == (500, 400, 2)
    finally:
        metrics._open.difference_update(consumers)
        for box in (slow, slower, idle):
            box.close()
        await asyncio.sleep(0)


def test_live_gauges_of_dead_processes_are_swept_and_their_counters_kept(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    mine = os.getpid()
    for name in (f"gauge_livesum_{dead.pid}.db", f"gauge_livemax_{dead.pid}.db", f"counter_{dead.pid}.db"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / f"gauge_livesum_{mine}.db").write_bytes(b"")

    assert sweep_dead_processes(str(tmp_path)) == [dead.pid]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"counter_{dead.pid}.db", f"gauge_livesum_{mine}.db"])


def test_a_handshake_that_fails_after_the_sign_in_check_is_an_error_not_a_refusal():
    from django.contrib.auth.models import AnonymousUser

    signed_in = SimpleNamespace(is_authenticated=True)
    cases = [({"user": AnonymousUser()}, "unauthenticated"), ({"user": signed_in}, "error"), ({}, "error")]
    for scope, outcome in cases:
        before = value("pubsub_ws_handshakes_total", outcome=outcome)
        metrics.handshake_finished(SimpleNamespace(outbox=None, scope=scope))
        assert value("pubsub_ws_handshakes_total", outcome=outcome) == before + 1, scope
