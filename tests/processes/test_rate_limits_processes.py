"""The send limit holds for one user with sockets on two web processes."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tests.netclient import NetClient, session_key_for

pytestmark = pytest.mark.processes


def test_the_send_limit_holds_across_two_web_processes(cluster, bob, public_room):
    cluster.env["WS_RATE_LIMIT_SEND"] = "10/30second"
    ports = [cluster.start_web(), cluster.start_web()]
    key = session_key_for(bob)

    async def scenario():
        sockets = [await NetClient.open(port, key) for port in ports]
        for ws in sockets:
            await ws.subscribe(public_room.slug)
        for i in range(16):  # 8 through each process, interleaved
            ws = sockets[i % 2]
            await ws.send_message(public_room.slug, f"m{i}", str(uuid.uuid4()))
        for ws in sockets:
            await ws.collect(lambda c: len(c.of_type("ack")) + len([f for f in c.of_type("error")]) >= 8)
        return sockets

    sockets = asyncio.run(scenario())
    acked = sum(len(ws.of_type("ack")) for ws in sockets)
    limited = sum(1 for ws in sockets for f in ws.of_type("error") if f["code"] == "rate_limited")
    print(f"16 sends over 2 processes with a limit of 10: {acked} acked, {limited} rate_limited")
    assert (acked, limited) == (10, 6)
