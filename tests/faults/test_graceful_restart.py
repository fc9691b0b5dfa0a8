"""A web process told to stop (SIGTERM) drains: it stops listening, tells each socket to
reconnect (a `reconnect` frame, then close 1012) at moments spread over WS_DRAIN_SECONDS, acks
what it was handling first, lingers WS_DRAIN_LINGER_SECONDS (alive, connects to it refused at
once), and exits. A rolling restart of every web process under steady
load (Cluster.rolling_restart, what `make cluster-restart` does) loses and duplicates nothing.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from pubsub_site.cluster import ROOT, Cluster, free_port
from rooms.services import room_create
from tests.faults.kit import (
    Ledger,
    base_env,
    client_stats,
    longest_outage,
    make_users,
    open_clients,
    percentile,
    report,
    room_latest,
    start_webs,
    verdict_row,
    verify,
    wait_for_delivery,
    wait_for_rows,
)
from tests.netclient import session_key_for

pytestmark = pytest.mark.processes

DRAIN_SECONDS = 2.0
JITTER_MS = 300


async def open_socket(port: int, session_key: str):
    return await connect(
        f"ws://127.0.0.1:{port}/ws/",
        additional_headers={"Cookie": f"sessionid={session_key}"},
        origin="http://127.0.0.1",
        open_timeout=15,
        max_size=2**22,
        ping_interval=None,
    )


async def frames_until_closed(ws) -> tuple[list[dict], int | None, float]:
    """Every frame the socket receives until the server closes it: (frames, close code, when)."""
    frames = []
    try:
        async for raw in ws:
            frames.append(json.loads(raw))
    except ConnectionClosed:
        pass
    return frames, ws.close_code, time.monotonic()


def test_sigterm_closes_every_socket_with_1012_after_a_reconnect_hint_spread_over_the_drain(make_cluster):
    cluster = make_cluster(base_env(WS_DRAIN_SECONDS=str(DRAIN_SECONDS), WS_RECONNECT_JITTER_MS=str(JITTER_MS)))
    port = cluster.start_web()
    keys = [session_key_for(user) for user in make_users(24)]
    process = cluster.webs[port]

    async def scenario():
        sockets = [await open_socket(port, key) for key in keys]
        readers = [asyncio.create_task(frames_until_closed(ws)) for ws in sockets]
        await asyncio.sleep(0.2)
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.3)
        refused = False
        try:
            late = await open_socket(port, keys[0])
            await late.close()
        except OSError:
            refused = True  # the listening socket is closed: new connections go elsewhere
        results = await asyncio.gather(*readers)
        return signalled, refused, results

    signalled, refused, results = asyncio.run(scenario())
    exit_code = process.wait(timeout=20)
    cluster.webs.pop(port)
    codes = [code for _, code, _ in results]
    assert codes == [1012] * len(keys), codes
    for frames, _, _ in results:
        assert frames[-1]["type"] == "reconnect", frames
        assert 0 <= frames[-1]["after_ms"] <= JITTER_MS
    hints = {frames[-1]["after_ms"] for frames, _, _ in results}
    assert len(hints) > 1, hints  # jittered, not one value for all
    closed_at = sorted(when - signalled for _, _, when in results)
    spread = closed_at[-1] - closed_at[0]
    gaps = [b - a for a, b in itertools.pairwise(closed_at)]
    report(
        "SIGTERM drains one web process (24 sockets, WS_DRAIN_SECONDS=2)",
        f"closes from {closed_at[0]:.2f} s to {closed_at[-1]:.2f} s after SIGTERM (spread {spread:.2f} s), "
        f"largest gap {max(gaps) * 1000:.0f} ms; new connection refused: {refused}; exit {exit_code}",
    )
    assert refused
    # Spread over the drain (even moments: the last at 23/24 of it), not all at once.
    assert spread >= DRAIN_SECONDS * 0.7, closed_at
    assert closed_at[-1] <= DRAIN_SECONDS + 1.5, closed_at
    assert sum(1 for t in closed_at if t < closed_at[0] + 0.05) <= 3, closed_at


LINGER_SECONDS = 3.0


@dataclass
class Probe:
    """A TCP connect to a draining process's port."""

    at: float  # seconds after the socket's close
    outcome: str  # "refused", "accepted" or "timed out"
    seconds: float  # how long the connect took to give its answer
    alive: bool  # the process, right after the answer


def drain_one_socket(cluster: Cluster) -> tuple[list[dict], int | None, list[Probe], float]:
    """One web process with one open socket, sent SIGTERM. Returns the socket's frames and
    close code, a connect to the process's port every 0.1 s from the close until the process
    exits, and the seconds from the close to the exit."""
    port = cluster.start_web()
    process = cluster.webs[port]
    (user,) = make_users(1)
    key = session_key_for(user)

    async def scenario():
        ws = await open_socket(port, key)
        reader = asyncio.create_task(frames_until_closed(ws))
        await asyncio.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        return await reader

    frames, code, closed_at = asyncio.run(scenario())
    probes = []
    deadline = closed_at + 30
    while process.poll() is None and time.monotonic() < deadline:
        started = time.monotonic()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
            outcome = "accepted"
        except ConnectionRefusedError:
            outcome = "refused"
        except TimeoutError:
            outcome = "timed out"
        answered = time.monotonic()
        probes.append(Probe(started - closed_at, outcome, answered - started, process.poll() is None))
        time.sleep(0.1)
    process.wait(timeout=10)
    exited_after = time.monotonic() - closed_at
    cluster.webs.pop(port)
    return frames, code, probes, exited_after


def test_a_drained_process_stays_alive_refusing_connects_at_once_for_the_linger_then_exits(make_cluster):
    """Behind a proxy that keeps a replica's address a few seconds (nginx's resolver), a
    connect to a process that has exited (its container's address gone) may go unanswered
    until the proxy's connect timeout; one to a live process that does not listen is refused
    at once, and the proxy tries the next replica. So a drained process stays alive
    WS_DRAIN_LINGER_SECONDS, not listening, and only then exits."""
    cluster = make_cluster(base_env(WS_DRAIN_SECONDS="0.5", WS_DRAIN_LINGER_SECONDS=str(LINGER_SECONDS)))
    frames, code, probes, exited_after = drain_one_socket(cluster)
    alive = [probe for probe in probes if probe.alive]
    report(
        f"a drained process lingers (WS_DRAIN_LINGER_SECONDS={LINGER_SECONDS:g})",
        f"socket closed {code} after a {frames[-1]['type'] if frames else None!r} frame; {len(alive)} connects "
        f"while the process lived after that: {dict(Counter(p.outcome for p in alive))}, the first "
        f"{alive[0].at if alive else float('nan'):.2f} s and the last {alive[-1].at if alive else float('nan'):.2f} s "
        f"after the close, the slowest answered in {max((p.seconds for p in alive), default=0) * 1000:.1f} ms; "
        f"exited {exited_after:.2f} s after the close",
    )
    assert code == 1012 and frames[-1]["type"] == "reconnect", (code, frames)
    # Right after the close, and all along: refused at once (not accepted, not left to time
    # out) while the process lives.
    assert alive and alive[0].at < 0.5, probes
    assert all(p.outcome == "refused" and p.seconds < 0.2 for p in alive), probes
    # Alive through the linger (give or take a busy machine), gone soon after it.
    assert alive[-1].at >= LINGER_SECONDS - 1.0, probes
    assert exited_after <= LINGER_SECONDS + 4.0, (exited_after, probes)


def test_without_a_linger_a_drained_process_exits_as_soon_as_its_sockets_are_closed(make_cluster):
    cluster = make_cluster(base_env(WS_DRAIN_SECONDS="0.5"))  # WS_DRAIN_LINGER_SECONDS: its default, 0
    frames, code, probes, exited_after = drain_one_socket(cluster)
    report(
        "a drained process without a linger (WS_DRAIN_LINGER_SECONDS=0, the default)",
        f"socket closed {code}; exited {exited_after:.2f} s after the close",
    )
    assert code == 1012 and frames[-1]["type"] == "reconnect", (code, frames)
    assert exited_after < 2.5, (exited_after, probes)
    assert all(p.outcome == "refused" for p in probes), probes


def test_every_send_the_server_has_read_at_sigterm_is_acked_before_its_socket_closes(make_cluster, alice):
    cluster = make_cluster(base_env(WS_DRAIN_SECONDS="0.5"))
    port = cluster.start_web()
    room = room_create(creator=alice, name="Last words")
    key = session_key_for(alice)
    process = cluster.webs[port]
    count = 150

    async def burst():
        ws = await open_socket(port, key)
        await ws.send(json.dumps({"type": "subscribe", "room": room.slug, "since": None}))
        while json.loads(await ws.recv())["type"] != "subscribed":
            pass
        client_ids = [str(uuid.uuid4()) for _ in range(count)]
        for client_id in client_ids:
            await ws.send(json.dumps({"type": "send", "room": room.slug, "body": "x", "client_id": client_id}))
        frames = []
        # The first ack: the server is at work on the burst. Then SIGTERM, mid-burst.
        while True:
            frame = json.loads(await ws.recv())
            frames.append(frame)
            if frame["type"] == "ack":
                break
        process.send_signal(signal.SIGTERM)
        rest, code, _ = await frames_until_closed(ws)
        return client_ids, frames + rest, code

    client_ids, frames, code = asyncio.run(burst())
    process.wait(timeout=20)
    cluster.webs.pop(port)
    kinds = [f["type"] for f in frames]
    acked = [f["client_id"] for f in frames if f["type"] == "ack"]
    report(
        "a burst of sends at SIGTERM",
        f"{len(acked)} of {count} acked before the close {code}; frames {len(kinds)}",
    )
    assert code == 1012
    # The room's broadcasts may still come after the `reconnect` frame (until the close), acks not.
    assert kinds.count("reconnect") == 1
    assert max(i for i, kind in enumerate(kinds) if kind == "ack") < kinds.index("reconnect")
    # uvicorn reads a socket's next frames only once the consumer has taken those before
    # (it pauses reading): the server had read a first part of the burst when the drain came.
    # Each of those was stored and acked, in order, before the close; nothing else was stored
    # (the rest, never read, is the client's to send again with its client_id).
    assert len(acked) > 1  # the send being handled at SIGTERM, at least
    assert acked == client_ids[: len(acked)]
    assert latest_seq(room.pk) == len(acked)


def latest_seq(room_id: int) -> int:
    return room_latest(room_id, base_env()["REDIS_URL"])


def test_a_rolling_restart_under_steady_load_loses_and_duplicates_nothing(make_cluster, alice):
    """36 clients over 3 web processes, each sending a message every ~0.5 s into one of 3
    rooms they all follow; the web processes are restarted one at a time (SIGTERM, drain,
    exit, start again, healthy, next). Every send ends acked (retried with its client_id
    when its socket closed before the answer), stored once, delivered to every client once,
    in order; the p99 of send-to-ack during the deploy is reported."""
    cluster = make_cluster(base_env(WS_DRAIN_SECONDS=str(DRAIN_SECONDS), WS_RECONNECT_JITTER_MS=str(JITTER_MS)))
    ports = start_webs(cluster, 3)
    cluster.start_worker()
    rooms = [room_create(creator=alice, name=f"Rolling {i}") for i in range(3)]
    slugs = [r.slug for r in rooms]
    users = make_users(36)
    specs = [(u.username, session_key_for(u), ports[i % 3]) for i, u in enumerate(users)]
    ledger = Ledger()
    latencies: list[tuple[float, float]] = []  # (sent at, seconds to the ack)

    async def scenario():
        clients = await open_clients(specs, lambda: cluster.ports, slugs)
        stop = asyncio.Event()

        async def steady(index: int, client) -> None:
            i = 0
            while not stop.is_set():
                send = ledger.new(slugs[(index + i) % 3], f"{client.name} #{i}")
                started = time.monotonic()
                outcome = await client.send_until_settled(send)
                if outcome == "acked":
                    latencies.append((started, send.acked_at - started))
                i += 1
                await asyncio.sleep(0.4 + 0.2 * ((index * 7 + i) % 5) / 5)

        traffic = [asyncio.create_task(steady(i, c)) for i, c in enumerate(clients)]
        try:
            await asyncio.sleep(2)
            deploy_start = time.monotonic()
            gone = await asyncio.to_thread(cluster.rolling_restart)
            deploy_end = time.monotonic()
            await asyncio.sleep(1)
        finally:
            stop.set()
            await asyncio.gather(*traffic)
        latest = {r.slug: room_latest(r.pk, base_env()["REDIS_URL"]) for r in rooms}
        delivered = await wait_for_delivery(clients, latest)
        for client in clients:
            await client.close()
        return clients, gone, deploy_start, deploy_end, delivered, latest

    clients, gone, deploy_start, deploy_end, delivered, latest = asyncio.run(scenario())
    rows = wait_for_rows([r.pk for r in rooms], sum(latest.values()))
    verdict = verify(ledger, rows, clients, {r.slug: r.pk for r in rooms})
    during = [lat for at, lat in latencies if deploy_start <= at <= deploy_end]
    before = [lat for at, lat in latencies if at < deploy_start]
    p99 = percentile(during, 0.99) * 1000
    report(
        "rolling restart of 3 web processes under steady load (36 clients, 3 rooms)",
        f"deploy {deploy_end - deploy_start:.1f} s; each process: "
        + ", ".join(f"stopped in {stopped:.1f} s, back after {back:.1f} s" for stopped, back in gone),
        f"send-to-ack during the deploy: {len(during)} sends, p50 {statistics.median(during) * 1000:.0f} ms, "
        f"p99 {p99:.0f} ms, max {max(during) * 1000:.0f} ms (before it: p99 {percentile(before, 0.99) * 1000:.0f} ms)",
        f"{ledger.summary()}",
        verdict.line(),
        client_stats(clients),
    )
    verdict_row("a rolling restart of every web process (SIGTERM, drain)", verdict, longest_outage(clients))
    assert delivered and not verdict.problems, verdict.problems
    assert verdict.lost == 0 and verdict.duplicated == 0
    assert len(ledger.of("acked")) == len(ledger.sends)  # every send ended acked
    codes = sum((c.close_codes for c in clients), Counter())
    assert set(codes) == {1012}, codes  # every socket was drained, none cut
    assert sum(codes.values()) >= len(clients)  # each client moved at least once


def test_the_cluster_runner_restarts_its_web_processes_one_at_a_time_on_sighup(tmp_path):
    """`make cluster-restart` (SIGHUP to `python -m pubsub_site.cluster`): each web process in
    turn drains, stops and comes back on its port; then SIGTERM stops the runner and every
    process it started (a restarted one hears its own SIGTERM too)."""
    first = free_port()
    while True:  # two consecutive free ports
        second = first + 1
        try:
            with socket.create_server(("127.0.0.1", second)):
                break
        except OSError:
            first = free_port()
    env = {**os.environ, **base_env(), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus")}
    runner = subprocess.Popen(
        [sys.executable, "-m", "pubsub_site.cluster", "--web", "2", "--workers", "0", "--port", str(first),
         "--log-dir", str(tmp_path)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines: list[str] = []

    def read_until(text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in lines):
            assert time.monotonic() < deadline, lines
            line = runner.stdout.readline()
            assert line, lines
            lines.append(line)

    try:
        read_until("make cluster-restart", 120)
        assert (tmp_path / "runner.pid").read_text().strip() == str(runner.pid)
        runner.send_signal(signal.SIGHUP)
        read_until("Rolling restart done.", 180)
        restarted = [line for line in lines if "drained and stopped" in line]
        assert [line.split(":")[0].strip() for line in restarted] == [str(first), str(second)], lines
        stopped_at = time.monotonic()
        runner.send_signal(signal.SIGTERM)
        runner.wait(timeout=30)
        # Well under the 25 s the runner waits before it SIGKILLs a process that ignores SIGTERM.
        assert time.monotonic() - stopped_at < 15, lines
        for port in (first, second):
            with pytest.raises(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
