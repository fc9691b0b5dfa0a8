"""Clients that stop reading in a busy room: the web process's memory stays bounded, each
of them is disconnected once what waits for it passes a bound, and the other clients'
latency is unaffected.

What holds the frames of a client that does not read: first the kernel's socket send
buffer (up to net.ipv4.tcp_wmem's maximum, 4 MiB here), then the server's write buffer
(uvicorn's transport stops taking frames past its high-water mark), then the socket's
outbox (messaging.realtime.sockets.Outbox), which closes the connection once more than
WS_SEND_BACKLOG_MAX_BYTES wait in it. The room's fan-out never waits for such a socket: it
writes only to sockets the server takes a frame from at once, and queues for the others.
The messages here are 16 KB, so the non-readers fall 6 MiB behind in seconds.
"""

from __future__ import annotations

import asyncio
import json
import socket
import statistics
import time

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from rooms.services import room_create
from tests.faults.kit import (
    Ledger,
    base_env,
    chaos_row,
    log_text,
    make_users,
    open_clients,
    report,
    rss_mib,
    start_webs,
    web_pid,
)
from tests.netclient import session_key_for

pytestmark = pytest.mark.processes

BACKLOG_BOUND = 256 * 1024
SLOW_CLIENTS = 8
# 3,990 characters of 4 bytes in UTF-8: each message is a 16 KB frame.
BODY = "\N{GRINNING FACE}" * 3990
MESSAGES = 400
KERNEL_SEND_BUFFER = 4 * 2**20


async def open_non_reader(port: int, key: str, room: str):
    """A socket with a 4 KiB receive buffer that subscribes, then never reads again."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    ws = await connect(
        f"ws://127.0.0.1:{port}/ws/",
        sock=sock,
        additional_headers={"Cookie": f"sessionid={key}"},
        ping_interval=None,
        max_size=2**22,
        max_queue=1,
    )
    await ws.send(json.dumps({"type": "subscribe", "room": room, "since": None}))
    while json.loads(await ws.recv())["type"] != "subscribed":
        pass
    ws.transport.pause_reading()
    return ws


async def drain(ws) -> tuple[int, int | None]:
    """Read what the server managed to send before it closed: (messages, close code)."""
    ws.transport.resume_reading()
    count = 0
    try:
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
            count += frame["type"] == "message"
    except ConnectionClosed as closed:
        return count, closed.rcvd.code if closed.rcvd else None
    except TimeoutError:
        return count, -1  # still open


def test_clients_that_stop_reading_are_cut_off_and_the_others_do_not_notice(make_cluster, alice):
    cluster = make_cluster(base_env(WS_SEND_BACKLOG_MAX_BYTES=str(BACKLOG_BOUND)))
    port = start_webs(cluster, 1)[0]
    cluster.start_worker()
    room = room_create(creator=alice, name="Firehose")
    users = make_users(4 + SLOW_CLIENTS)
    keys = [session_key_for(u) for u in users]
    pid = web_pid(cluster, port)

    async def scenario():
        sender, *fast = await open_clients(
            [(u.username, k, port) for u, k in zip(users[:4], keys[:4], strict=True)], lambda: [port], [room.slug]
        )
        arrivals: dict[str, float] = {}

        def latencies(clients, sends) -> list[float]:
            # A message's latency: from its send to its arrival at a fast client (ms).
            return [
                (arrivals[f"{c.name}/{s.client_id}"] - sent_at[s.client_id]) * 1000
                for c in clients
                for s in sends
                if f"{c.name}/{s.client_id}" in arrivals
            ]

        for client in fast:
            original = client._on_frame

            def timed(frame, client=client, original=original):
                if frame.get("type") == "message":
                    arrivals[f"{client.name}/{frame['client_id']}"] = time.monotonic()
                original(frame)

            client._on_frame = timed
        sent_at: dict[str, float] = {}
        ledger = Ledger()

        async def burst(count: int, window: int = 8) -> list:
            gate = asyncio.Semaphore(window)
            sends = [ledger.new(room.slug, f"{i} {BODY}") for i in range(count)]

            async def one(send) -> None:
                async with gate:
                    sent_at[send.client_id] = time.monotonic()
                    await sender.attempt(send)

            await asyncio.gather(*(one(s) for s in sends))
            await asyncio.sleep(1.0)
            return sends

        peak = [0.0]

        async def sample_rss() -> None:
            while True:
                peak[0] = max(peak[0], rss_mib(pid))
                await asyncio.sleep(0.05)

        baseline = latencies(fast, await burst(MESSAGES // 4))
        rss_before = rss_mib(pid)
        sampler = asyncio.create_task(sample_rss())
        slow = [await open_non_reader(port, k, room.slug) for k in keys[4:]]
        during = latencies(fast, await burst(MESSAGES))
        sampler.cancel()
        drained = [await drain(ws) for ws in slow]
        for client in [sender, *fast]:
            await client.close()
        received = [len(c.received[room.slug]) for c in fast]
        return baseline, during, rss_before, peak[0], drained, received, ledger

    baseline, during, rss_before, rss_after, drained, received, ledger = asyncio.run(scenario())
    sent_bytes = MESSAGES * (len(BODY.encode()) + 200)
    unbounded = SLOW_CLIENTS * (sent_bytes - KERNEL_SEND_BUFFER) / 2**20  # what an unbounded server would hold
    closed_by_server = sum(code != -1 for _, code in drained)
    cut_offs = log_text(cluster).count("does not read")

    def p(values, q):
        return statistics.quantiles(values, n=100)[q - 1]

    report(
        "clients that stop reading",
        f"{SLOW_CLIENTS} non-reading sockets in a room that then gets {MESSAGES} messages of 16 KB "
        f"(~{sent_bytes / 2**20:.1f} MiB each), bound {BACKLOG_BOUND // 1024} KiB",
        f"web process RSS {rss_before:.0f} MiB before, at most {rss_after:.0f} MiB during "
        f"(without a bound it would hold ~{unbounded:.0f} MiB for them beyond the kernel's buffers)",
        f"non-readers: {closed_by_server} of {SLOW_CLIENTS} closed by the server, close codes "
        f"{sorted({c for _, c in drained}, key=str)}, messages they got before the cut {sorted(n for n, _ in drained)}",
        f"fast clients' latency: p50 {p(baseline, 50):.0f} ms, p99 {p(baseline, 99):.0f} ms before; "
        f"p50 {p(during, 50):.0f} ms, p99 {p(during, 99):.0f} ms with the non-readers; received {received}",
        f"{ledger.summary()}; web log: {cut_offs} cut-offs logged",
    )
    chaos_row(
        f"{SLOW_CLIENTS} clients that stop reading",
        acked=len(ledger.of("acked")),
        stored=None,
        delivered=sum(received),
        lost=sum(max(0, MESSAGES // 4 + MESSAGES - n) for n in received),
        duplicated=sum(max(0, n - (MESSAGES // 4 + MESSAGES)) for n in received),
    )
    assert cut_offs == closed_by_server == SLOW_CLIENTS
    assert all(n < MESSAGES for n, _ in drained)
    assert rss_after - rss_before < unbounded
    assert received == [MESSAGES // 4 + MESSAGES] * 3
    # Loose bounds: the machine is shared, and the non-readers cost only their copies. A
    # room held up by them would add seconds (the frames are 16 KB, the bound 256 KiB).
    assert p(during, 50) < 3 * p(baseline, 50) + 100
    assert p(during, 99) < 3 * p(baseline, 99) + 100
