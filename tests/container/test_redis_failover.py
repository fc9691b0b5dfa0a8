"""docker-compose.yml's `ha` profile, run for real (issue 14): the Redis primary's container
killed, a replica promoted by the Sentinels, and nothing acknowledged lost.

The same engine and images as test_stack.py (the package's `engine` fixture); a compose
project of its own, started with `--profile ha`: `redis`, its two replicas (`redis-replica`,
`redis-replica-2`) and three Sentinels beside the usual services, and every Redis setting of
web and worker the Sentinel service (REDIS_URL=redis+sentinel://sentinel-1:26379,...), with
REDIS_WAIT_REPLICAS=1, as docs/deploy.md ("When a Redis machine dies") tells production to
run it. Alice and Bob, signed up through the proxy, send steadily over WebSockets, retrying
each send (same client_id) until it is acked, as the site's client does; `docker kill` ends
the primary's container. `-m container` runs these with the others.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from websockets.exceptions import ConnectionClosed

from tests.container.conftest import LONG_RUNNING, PASSWORD, running
from tests.container.stack.clients import Browser, Socket, off_loop
from tests.container.stack.common import TIMINGS, timed, wait_for
from tests.container.stack.compose import REDIS_PASSWORD, Container, Stack, new_stack
from tests.container.stack.engine import Engine

pytestmark = [pytest.mark.container, pytest.mark.timeout(1200)]

PROJECT = "pubsubha"
MASTER = "pubsub"
SENTINELS = ("sentinel-1", "sentinel-2", "sentinel-3")
REPLICAS = ("redis-replica", "redis-replica-2")
SENTINEL_URL = (
    f"redis+sentinel://pubsub:{REDIS_PASSWORD}@{','.join(f'{s}:26379' for s in SENTINELS)}/{MASTER}/0"
    f"?sentinel_password={REDIS_PASSWORD}"
)
HA_SETTINGS = {"REDIS_URL": SENTINEL_URL, "REDIS_WAIT_REPLICAS": "1", "REDIS_WAIT_TIMEOUT_MS": "500"}
HA_RUNNING = {**LONG_RUNNING, **dict.fromkeys(REPLICAS, 1), **dict.fromkeys(SENTINELS, 1)}
SEND_INTERVAL = 0.3  # each sender: the next message this long after the last was acked (under 10 per 2 s)
# What the test demands of a failover (docs/deploy.md has what it measured).
RESUMED_WITHIN = 10.0


@pytest.fixture(scope="module")
def ha_stack(request, engine: Engine) -> Iterator[Stack]:
    stack = new_stack(engine, "ha", project=PROJECT, profiles=("ha",), settings=HA_SETTINGS)
    with running(request, stack, HA_RUNNING) as up:
        yield up


def cli(stack: Stack, container: Container, *args: str, port: int = 6379) -> list[str]:
    """redis-cli in a container (docker exec: quicker than docker-compose exec), its lines."""
    result = stack.engine.run("exec", container.id, "redis-cli", "-p", str(port), "--raw", *args, timeout=30)
    return result.stdout.splitlines()


def info(stack: Stack, container: Container, section: str) -> dict[str, str]:
    lines = cli(stack, container, "INFO", section)
    return dict(line.split(":", 1) for line in lines if ":" in line and not line.startswith("#"))


def sentinel_master(stack: Stack, sentinel: Container) -> dict[str, str]:
    """SENTINEL MASTER's fields as one Sentinel sees the service."""
    lines = cli(stack, sentinel, "SENTINEL", "MASTER", MASTER, port=26379)
    return dict(zip(lines[::2], lines[1::2], strict=False))


def primary_says(stack: Stack, sentinels: list[Container]) -> list[str]:
    """Where each Sentinel says the primary is (ip:port)."""
    return [":".join(cli(stack, s, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER, port=26379)) for s in sentinels]


def test_the_ha_profile_replicates_and_the_three_sentinels_agree(ha_stack: Stack):
    (primary,) = ha_stack.of("redis")
    replicas = [c for name in REPLICAS for c in ha_stack.of(name)]
    sentinels = [c for name in SENTINELS for c in ha_stack.of(name)]
    assert len(replicas) == 2 and len(sentinels) == 3
    # The primary streams to both replicas, and they have what it has.
    replication = wait_for(
        lambda: (r := info(ha_stack, primary, "replication"))["connected_slaves"] == "2" and r,
        60,
        "two replicas connected to the primary",
    )
    assert replication["role"] == "master"
    assert {replication[f"slave{i}"].split(",")[0] for i in (0, 1)} == {f"ip={r.ip}" for r in replicas}
    marker = uuid.uuid4().hex
    cli(ha_stack, primary, "SET", "pubsub-container-test:replicated", marker)
    for replica in replicas:
        link = info(ha_stack, replica, "replication")
        assert (link["role"], link["master_host"], link["master_link_status"]) == ("slave", primary.ip, "up")
        wait_for(
            lambda r=replica: cli(ha_stack, r, "GET", "pubsub-container-test:replicated") == [marker],
            10,
            f"the key on {replica.name}",
        )
    # The three Sentinels agree on the primary, and each knows the two others and both replicas.
    assert primary_says(ha_stack, sentinels) == [f"{primary.ip}:6379"] * 3
    wait_for(
        lambda: all(
            (m := sentinel_master(ha_stack, s))["num-other-sentinels"] == "2" and m["num-slaves"] == "2"
            for s in sentinels
        ),
        60,
        "every Sentinel knowing two others and two replicas",
    )
    # Web and worker are given the Sentinel service, and use it: each is connected to the
    # primary (the worker's rq connection; web's cache and rooms after a page).
    status, _, body = Browser(ha_stack).get("/readyz")
    assert (status, body) == (200, '{"status": "ok"}')
    for container in ha_stack.of("web") + ha_stack.of("worker"):
        env = ha_stack.env_of(container)
        assert (env["REDIS_URL"], env["REDIS_WAIT_REPLICAS"]) == (SENTINEL_URL, "1"), container.name
    workers = {c.ip for c in ha_stack.of("worker")}
    wait_for(
        lambda: workers <= clients_of(ha_stack, primary),
        30,
        "the worker connected to the primary",
    )


def clients_of(stack: Stack, redis: Container) -> set[str]:
    """The addresses of the containers connected to a Redis (CLIENT LIST)."""
    lines = cli(stack, redis, "CLIENT", "LIST")
    return {field[5:].rsplit(":", 1)[0] for line in lines for field in line.split() if field.startswith("addr=")}


# --- the failover -----------------------------------------------------------------------


@dataclass
class Sent:
    sender: str
    body: str
    client_id: str
    first_sent_at: float
    seq: int | None = None
    acked_at: float | None = None
    attempts: int = 0


@dataclass
class Senders:
    sends: list[Sent] = field(default_factory=list)
    refusals: dict[str, int] = field(default_factory=dict)  # error code or close -> count
    reconnects: int = 0  # sockets opened, the first ones included

    def acked(self) -> list[Sent]:
        return [s for s in self.sends if s.acked_at is not None]

    def count(self, what: str) -> None:
        self.refusals[what] = self.refusals.get(what, 0) + 1


async def send_steadily(
    stack: Stack, browser: Browser, name: str, room: str, senders: Senders, stop: asyncio.Event
) -> None:
    """Send, one message at a time, until ``stop``: each send is tried again with its
    client_id until acked (after `unavailable`, a closed socket, or no answer in 5 s), on a
    new socket when the old one was closed, as static/js/socket.js does."""
    socket: Socket | None = None
    number = 0
    try:
        while not stop.is_set():
            number += 1
            sent = Sent(name, f"{name} #{number}", str(uuid.uuid4()), time.monotonic())
            senders.sends.append(sent)
            while sent.acked_at is None:
                if socket is None:
                    try:
                        socket = await Socket.open(stack, browser, f"ha-{name}-{uuid.uuid4().hex[:8]}", room)
                    except AssertionError as error:  # an error frame, or no answer, to the subscribe
                        senders.count(f"subscribe refused: {str(error)[:80]}")
                        await asyncio.sleep(0.5)
                        continue
                    senders.reconnects += 1
                sent.attempts += 1
                frame = {"type": "send", "room": room, "body": sent.body, "client_id": sent.client_id}
                try:
                    await socket.send({**frame, "ref": sent.client_id})
                    answer = await answer_to(socket, sent.client_id, timeout=5)
                except (ConnectionClosed, OSError) as error:
                    senders.count(f"socket closed ({getattr(getattr(error, 'rcvd', None), 'code', None)})")
                    await socket.ws.close()
                    socket = None
                    await asyncio.sleep(0.5)
                    continue
                if answer is None:
                    senders.count("no answer within 5 s")
                elif answer["type"] == "ack":
                    sent.seq, sent.acked_at = answer["seq"], time.monotonic()
                elif answer["code"] == "unavailable":
                    senders.count("unavailable")
                    await asyncio.sleep(0.25)
                elif answer["code"] == "rate_limited":
                    senders.count("rate_limited")
                    await asyncio.sleep(float(answer.get("retry_after", 1)))
                else:
                    raise AssertionError(f"{name}: unexpected answer to a send: {answer}")
            await asyncio.sleep(SEND_INTERVAL)
    finally:
        if socket is not None:
            await socket.ws.close()


async def answer_to(socket: Socket, client_id: str, timeout: float) -> dict | None:
    """The ack or the error frame for ``client_id``; None when neither came in time."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (remaining := deadline - loop.time()) > 0:
        try:
            frame = json.loads(await asyncio.wait_for(socket.ws.recv(), remaining))
        except TimeoutError:
            return None
        if frame.get("type") == "ack" and frame.get("client_id") == client_id:
            return frame
        if frame.get("type") == "error" and frame.get("ref") == client_id:
            return frame
    return None


def stored_messages(stack: Stack, room_id: int) -> list[tuple[int, str]]:
    rows = stack.psql("SELECT seq, body FROM messaging_message WHERE room_id = :'room' ORDER BY seq", room=room_id)
    return [(int(seq), body) for seq, body in rows]


def test_the_primary_killed_a_replica_is_promoted_and_nothing_acked_is_lost(ha_stack: Stack):
    suffix = uuid.uuid4().hex[:6]
    alice, bob = Browser(ha_stack), Browser(ha_stack)
    alice.sign_up(f"alice-{suffix}", PASSWORD)
    bob.sign_up(f"bob-{suffix}", PASSWORD)
    room = alice.create_room(f"Failover {suffix}")
    (room_id,) = ha_stack.psql("SELECT id FROM rooms_room WHERE slug = :'slug'", slug=room)[0]
    (primary,) = ha_stack.of("redis")
    replicas = {c.ip: c for name in REPLICAS for c in ha_stack.of(name)}
    sentinels = [c for name in SENTINELS for c in ha_stack.of(name)]
    webs = {c.ip for c in ha_stack.of("web")}
    senders = Senders()
    moments: dict[str, float] = {}

    async def scenario() -> None:
        stop = asyncio.Event()
        traffic = asyncio.gather(
            send_steadily(ha_stack, alice, "alice", room, senders, stop),
            send_steadily(ha_stack, bob, "bob", room, senders, stop),
        )
        try:
            while len(senders.acked()) < 20:
                await asyncio.sleep(0.1)
            # Both web replicas talk to the primary through the Sentinels (rooms, channel layer).
            assert webs <= await asyncio.to_thread(clients_of, ha_stack, primary)
            moments["acked before the kill"] = len(senders.acked())
            moments["kill"] = time.monotonic()
            await asyncio.to_thread(ha_stack.engine.run, "kill", primary.id)  # SIGKILL, as docker kill does
            moments["killed"] = time.monotonic()

            def promoted() -> bool:
                said = primary_says(ha_stack, sentinels)
                return len(set(said)) == 1 and said[0] != f"{primary.ip}:6379" and said

            said = await asyncio.to_thread(wait_for, promoted, 60, "the Sentinels agreeing on a new primary", 0.2)
            moments["promoted"] = time.monotonic()
            moments["new primary"] = said[0]
            while not any(s.acked_at and s.acked_at > moments["promoted"] for s in senders.sends):
                assert time.monotonic() - moments["killed"] < 60, f"no ack within 60 s of the kill: {senders}"
                await asyncio.sleep(0.05)
            moments["resumed"] = min(s.acked_at for s in senders.acked() if s.acked_at > moments["promoted"])
            await asyncio.sleep(5)  # sending goes on on the new primary
        finally:
            stop.set()
            await traffic

    with timed(f"{PROJECT}: talking across a docker kill of the Redis primary"):
        off_loop(scenario)
    acked = senders.acked()
    times = sorted(s.acked_at for s in acked)
    gap = max(b - a for a, b in itertools.pairwise(times))
    promoted_after = moments["promoted"] - moments["killed"]
    resumed_after = moments["resumed"] - moments["killed"]
    TIMINGS.append(
        (
            f"{PROJECT}: failover: promoted {promoted_after:.1f} s after the kill, first ack after "
            f"{resumed_after:.1f} s, longest time without an ack {gap:.1f} s; {len(acked)} acked "
            f"({moments['acked before the kill']} before the kill), refused: {senders.refusals}",
            0.0,
        )
    )
    print(f"failover: {moments}, gap {gap:.1f} s, {len(acked)} acked, refusals {senders.refusals}")

    # The old primary stays dead; a replica is the primary, the other one its replica.
    assert [c.status for c in ha_stack.of("redis")] == ["exited"]
    new_ip = moments["new primary"].rsplit(":", 1)[0]
    assert new_ip in replicas, (moments["new primary"], list(replicas))
    promoted, other = replicas[new_ip], next(c for ip, c in replicas.items() if ip != new_ip)
    assert info(ha_stack, promoted, "replication")["role"] == "master"
    wait_for(
        lambda: (
            (r := info(ha_stack, other, "replication"))["master_host"] == new_ip and r["master_link_status"] == "up"
        ),
        30,
        f"{other.name} replicating from {promoted.name}",
    )
    assert webs <= clients_of(ha_stack, promoted)
    assert resumed_after < RESUMED_WITHIN, f"sends acked again only {resumed_after:.1f} s after the kill"

    # Every send was acked (retried until it was), with seqs 1..N, each once, rising for each
    # sender; the room's counter on the new primary says N; PostgreSQL has all of them.
    assert len(acked) == len(senders.sends)
    seqs = sorted(s.seq for s in acked)
    assert seqs == list(range(1, len(acked) + 1)), seqs
    for name in ("alice", "bob"):
        mine = [s.seq for s in acked if s.sender == name]
        assert mine == sorted(mine), name
    counter = cli(ha_stack, promoted, "GET", f"pubsub:room:{{{room_id}}}:seq")
    assert counter == [str(len(acked))]
    expected = sorted((s.seq, s.body) for s in acked)
    wait_for(lambda: stored_messages(ha_stack, int(room_id)) == expected, 60, "every acked message in PostgreSQL")
    assert len(expected) < 200  # what one page of history holds
    assert [(m["seq"], m["body"]) for m in bob.history(room)] == expected

    # The dead primary's container started again (as `restart` would after a crash, or an
    # operator): a plain redis-server, it comes back a primary of its own, and the Sentinels
    # turn it into the new primary's replica; clients were never sent to it.
    with timed(f"{PROJECT}: docker-compose start redis, until the new primary's replica"):
        started = time.monotonic()
        ha_stack.compose("start", "redis")
        (old,) = ha_stack.of("redis")
        wait_for(
            lambda: (
                (r := info(ha_stack, old, "replication"))["role"] == "slave"
                and r["master_host"] == new_ip
                and r["master_link_status"] == "up"
            ),
            60,
            f"{old.name} the replica of {promoted.name}",
        )
        rejoined_after = time.monotonic() - started
    assert primary_says(ha_stack, sentinels) == [moments["new primary"]] * 3
    assert cli(ha_stack, old, "GET", f"pubsub:room:{{{room_id}}}:seq") == [str(len(acked))]
    TIMINGS.append((f"{PROJECT}: the old primary, started again, a replica after {rejoined_after:.1f} s", 0.0))
