"""The compose stack for the container tests: built and started once for the module, torn
down (volumes included) and its Docker engine stopped afterwards, also when a test fails.

No test here is skipped: a machine that cannot start dockerd fails them (the suite's rule:
in CI nothing is skipped). scripts/test-deps.sh installs what they need.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from tests.container.stack.clients import REFUSED_HANDSHAKES, Browser, Socket, off_loop
from tests.container.stack.common import ROOT, TIMINGS, required_tool, tail, timed
from tests.container.stack.compose import Stack, new_stack
from tests.container.stack.engine import Engine

LONG_RUNNING = {"proxy": 1, "web": 2, "worker": 1, "redis": 1, "postgres": 1, "seaweedfs": 1}
PASSWORD = "container-test-Passw0rd"
BUILD_NOTES: list[str] = []
ENGINES: list[Engine] = []


@pytest.fixture(scope="package")
def engine(request) -> Iterator[Engine]:
    """The test's own dockerd with the stand-in base images and the project's image built
    from its Dockerfile: shared by every compose stack of this package (tests/container),
    stopped and its state removed after the last one."""
    required_tool("docker-compose", "docker-compose")
    required_tool("debootstrap", "debootstrap")
    engine = Engine()
    ENGINES.append(engine)
    try:
        with timed("start dockerd"):
            engine.start()
        with timed("stand-in images (deploy/test-images/build.sh)"):
            env = engine.env(DOCKER=engine.docker, DOCKER_BUILD_NETWORK="host")
            if "TEST_IMAGES_CACHE" in os.environ:
                env["TEST_IMAGES_CACHE"] = os.environ["TEST_IMAGES_CACHE"]
            result = subprocess.run(
                [str(ROOT / "deploy" / "test-images" / "build.sh")],
                env=env,
                capture_output=True,
                text=True,
                timeout=1200,
            )
            BUILD_NOTES.extend(line for line in result.stderr.splitlines() if line.startswith("[test-images"))
            if result.returncode != 0:
                pytest.fail(f"deploy/test-images/build.sh failed:\n{tail(result.stdout)}\n{tail(result.stderr)}")
        with timed("project image from its Dockerfile (docker-compose build web)"):
            # Tagged PUBSUB_IMAGE (stack.IMAGE): every stack of the package runs it, --no-build.
            new_stack(engine, "build").compose("build", "web", "seaweedfs", timeout=1200)
        yield engine
    finally:
        engine.stop()


@contextmanager
def running(request, stack: Stack, replicas: dict[str, int]) -> Iterator[Stack]:
    """``stack`` up (docker-compose up -d, its profiles) until every service is healthy;
    torn down (volumes included) afterwards, with its logs printed when a test failed."""
    failed_before = request.session.testsfailed
    try:
        with timed(f"{stack.project}: docker-compose up -d until every service is healthy"):
            stack.compose("up", "-d", "--no-build", timeout=600)
            stack.wait_healthy(replicas)
        yield stack
    finally:
        if request.session.testsfailed > failed_before:
            print(f"--- {stack.project}: docker-compose logs (last lines) ---")
            print(stack.logs_of(lines=300))
        # Killed first: nothing here needs a graceful stop (the tests that do make their own), and
        # web's drain, linger and grace (stop_grace_period 25 s) made `down` take half a minute.
        with timed(f"{stack.project}: docker-compose kill, down -v"):
            stack.compose("kill", check=False, timeout=120)
            stack.compose("down", "-v", "--remove-orphans", "--timeout", "5", check=False, timeout=300)


@pytest.fixture(scope="module")
def stack(request, engine: Engine) -> Iterator[Stack]:
    with running(request, new_stack(engine, "stack"), LONG_RUNNING) as up:
        yield up


@dataclass
class Conversation:
    alice: Browser
    bob: Browser
    room: str
    room_id: int
    replicas: tuple[str, str]  # the web containers' addresses that served alice's and bob's sockets
    messages: dict[int, str]  # seq -> body, every message acknowledged so far
    claps: dict[int, int]  # seq -> total, as the clients last saw it


async def _talk(stack: Stack, alice: Browser, bob: Browser, room: str, round_: int) -> dict:
    """Alice and Bob on one WebSocket each: a message each way, and Bob claps Alice's."""
    probes = (f"alice-{round_}-{uuid.uuid4().hex[:8]}", f"bob-{round_}-{uuid.uuid4().hex[:8]}")
    a = await Socket.open(stack, alice, probes[0], room)
    b = await Socket.open(stack, bob, probes[1], room)
    try:
        hello = f"Hello from Alice, round {round_}"
        ack_a = await a.post(room, hello)
        seen_by_b = await b.expect(lambda f: f["type"] == "message" and f["seq"] == ack_a["seq"])
        answer = f"Hello Alice, Bob here, round {round_}"
        ack_b = await b.post(room, answer)
        seen_by_a = await a.expect(lambda f: f["type"] == "message" and f["seq"] == ack_b["seq"])
        await b.clap(room, ack_a["seq"], 3)
        # Claps are coalesced on the wire: Alice may see 1, then 3.
        claps = await a.expect(lambda f: f["type"] == "claps" and f["seq"] == ack_a["seq"] and f["total"] == 3)
    finally:
        await asyncio.gather(a.close(), b.close(), return_exceptions=True)
    return {
        "probes": probes,
        "acks": (ack_a, ack_b),
        "seen": (seen_by_b, seen_by_a),
        "bodies": (hello, answer),
        "claps": claps,
    }


@pytest.fixture(scope="module")
def conversation(stack: Stack) -> Conversation:
    """Alice signs up and opens a room, Bob signs up, and they talk over WebSockets through
    the proxy until their two sockets were served by two different web replicas (nginx
    balances on open connections, so the first round normally does it)."""
    suffix = uuid.uuid4().hex[:6]
    alice, bob = Browser(stack), Browser(stack)
    alice.sign_up(f"alice-{suffix}", PASSWORD)
    bob.sign_up(f"bob-{suffix}", PASSWORD)
    room = alice.create_room(f"Containers {suffix}")
    (room_id,) = stack.psql("SELECT id FROM rooms_room WHERE slug = :'slug'", slug=room)[0]
    messages: dict[int, str] = {}
    claps: dict[int, int] = {}
    for round_ in range(1, 7):
        talk = off_loop(_talk, stack, alice, bob, room, round_)
        ack_a, ack_b = talk["acks"]
        seen_by_b, seen_by_a = talk["seen"]
        assert ack_b["seq"] == ack_a["seq"] + 1
        assert (seen_by_b["body"], seen_by_a["body"]) == talk["bodies"]
        assert seen_by_b["author"]["username"] == f"alice-{suffix}"
        assert seen_by_a["author"]["username"] == f"bob-{suffix}"
        messages[ack_a["seq"]], messages[ack_b["seq"]] = talk["bodies"]
        claps[ack_a["seq"]] = talk["claps"]["total"]
        served = stack.upstreams(list(talk["probes"]))
        assert len(served) == 2, f"the proxy's access log does not name both sockets' replicas: {served}"
        replicas = tuple(served[p] for p in talk["probes"])
        if replicas[0] != replicas[1]:
            return Conversation(alice, bob, room, int(room_id), replicas, messages, claps)
    pytest.fail(f"six rounds, and both sockets always reached the same replica ({replicas[0]})")


def pytest_terminal_summary(terminalreporter):
    if not TIMINGS:
        return
    terminalreporter.section("container stack: what took how long")
    for what, seconds in TIMINGS:
        terminalreporter.write_line(f"{seconds:7.1f} s  {what}")
    for note in BUILD_NOTES + [note for engine in ENGINES for note in engine.notes]:
        terminalreporter.write_line(f"           {note}")
    if REFUSED_HANDSHAKES:
        terminalreporter.write_line("WebSocket handshakes refused, then tried again as the site's client does:")
        for refusal in REFUSED_HANDSHAKES:
            terminalreporter.write_line(f"    {refusal}")
