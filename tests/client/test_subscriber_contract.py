"""The Python client's subscriber against a scripted WebSocket server (a real server on
127.0.0.1, speaking docs/protocol.md) that does what the site should never do but a network
may: skip a seq, repeat one, drop the connection, end the session. The live site's own tests
are test_python_client_processes.py."""

from __future__ import annotations

import asyncio
import json

import pytest
from pubsub_client import Client, Subscription, SubscriptionEnded
from websockets.asyncio.server import serve


def message(seq: int) -> str:
    return json.dumps(
        {
            "type": "message",
            "room": "lobby",
            "seq": seq,
            "rev": seq,
            "author": {"id": 1, "username": "alice"},
            "body": f"m{seq}",
            "client_id": str(seq),
            "sent_at": "2026-01-01T00:00:00.000Z",
            "claps": 0,
            "edited": False,
            "deleted": False,
        }
    )


class Script:
    """A server that answers each subscribe with ``subscribed`` and the script's frames for it."""

    def __init__(self, plan):
        self.plan = plan  # (connection number, subscribe number) -> list of frames or a close code
        self.subscribes: list[dict] = []
        self.connections = 0
        self.headers: list[str | None] = []

    async def handler(self, ws):
        self.connections += 1
        connection = self.connections
        self.headers.append(ws.request.headers.get("Authorization"))
        count = 0
        async for raw in ws:
            frame = json.loads(raw)
            if frame["type"] == "unsubscribe":
                await ws.send(json.dumps({"type": "unsubscribed", "room": frame["room"]}))
                continue
            count += 1
            self.subscribes.append(frame)
            step = self.plan.get((connection, count), [])
            if isinstance(step, int):
                await ws.close(step, "scripted")
                return
            latest = max([json.loads(f)["seq"] for f in step if '"message"' in f] or [frame["since"] or 0])
            await ws.send(
                json.dumps({"type": "subscribed", "room": "lobby", "seq": latest, "rev": latest, "recovered": True})
            )
            for item in step:
                await ws.send(item)


async def run(script: Script, *, since=None, want: int, timeout: float = 10) -> tuple[list[int], Subscription]:
    async with serve(script.handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        subscription = Subscription(Client(f"http://127.0.0.1:{port}", "psk_test"), "lobby", since=since, backoff=0.05)
        seen = []

        async def read():
            async for frame in subscription:
                seen.append(frame["seq"])
                if len(seen) == want:
                    return

        await asyncio.wait_for(read(), timeout)
        await subscription.close()
        return seen, subscription


async def test_it_resubscribes_with_since_when_a_seq_is_skipped():
    script = Script({(1, 1): [message(1), message(3)], (1, 2): [message(2), message(3), message(4)]})
    seen, subscription = await run(script, since=0, want=4)
    assert seen == [1, 2, 3, 4]
    assert subscription.resubscribes == 1
    # Resubscribed after the last seq it yielded, with the rev the first subscription stood at.
    assert [(s["since"], s["rev"]) for s in script.subscribes] == [(0, None), (1, 3)]


async def test_it_drops_a_message_it_already_yielded():
    script = Script({(1, 1): [message(1), message(2), message(1), message(2), message(3)]})
    seen, _ = await run(script, since=0, want=3)
    assert seen == [1, 2, 3]


async def test_it_reconnects_after_a_dropped_connection_and_resumes_after_the_last_seq():
    script = Script({(2, 1): 1011, (3, 1): [message(3), message(4)]})
    original = script.handler

    async def handler(ws):  # the first connection is cut once its two messages are out
        if script.connections == 0:
            script.connections += 1
            script.headers.append(ws.request.headers.get("Authorization"))
            frame = json.loads(await ws.recv())
            script.subscribes.append(frame)
            await ws.send(json.dumps({"type": "subscribed", "room": "lobby", "seq": 2, "rev": 2, "recovered": True}))
            await ws.send(message(1))
            await ws.send(message(2))
            await asyncio.sleep(0.2)
            ws.transport.abort()
            return
        await original(ws)

    script.handler = handler
    seen, subscription = await run(script, since=0, want=4)
    assert seen == [1, 2, 3, 4]
    assert [s["since"] for s in script.subscribes] == [0, 2, 2]
    assert subscription.reconnects == 2  # once after the cut, once after the 1011
    assert script.headers == ["Bearer psk_test"] * 3


async def test_a_forbidden_subscribe_or_a_policy_close_ends_the_iteration():
    refused = Script({})

    async def forbid(ws):
        await ws.recv()
        await ws.send(json.dumps({"type": "error", "code": "forbidden", "detail": "no"}))
        await asyncio.sleep(1)

    refused.handler = forbid
    with pytest.raises(SubscriptionEnded, match="forbidden"):
        await run(refused, want=1)
    closed = Script({(1, 1): 1008})
    with pytest.raises(SubscriptionEnded, match="scripted"):
        await run(closed, want=1)


async def test_a_restarting_server_is_left_after_its_reconnect_hint_and_resumed_after_the_last_seq():
    """A drain (messaging.realtime.drain): a `reconnect` frame, then close 1012. The client waits
    the frame's after_ms (plus at most RESTART_JITTER), with no backoff, and resubscribes with since."""
    hint_ms = 400
    script = Script({(2, 1): [message(3)]})
    original = script.handler
    closed_at: list[float] = []
    reconnected_at: list[float] = []

    async def handler(ws):
        loop = asyncio.get_running_loop()
        if script.connections == 0:
            script.connections += 1
            script.subscribes.append(json.loads(await ws.recv()))
            await ws.send(json.dumps({"type": "subscribed", "room": "lobby", "seq": 2, "rev": 2, "recovered": True}))
            await ws.send(message(1))
            await ws.send(message(2))
            await ws.send(json.dumps({"type": "reconnect", "after_ms": hint_ms}))
            closed_at.append(loop.time())
            await ws.close(1012, "")
            return
        reconnected_at.append(loop.time())
        await original(ws)

    script.handler = handler
    seen, subscription = await run(script, since=0, want=3)
    assert seen == [1, 2, 3]
    assert [s["since"] for s in script.subscribes] == [0, 2]
    assert subscription.reconnects == 1
    waited = reconnected_at[0] - closed_at[0]
    assert hint_ms / 1000 <= waited < hint_ms / 1000 + 0.25 + 0.3, waited
