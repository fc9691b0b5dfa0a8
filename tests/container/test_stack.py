"""The production image and compose stack, built and run (issue 13).

A Docker engine of the test's own builds the project's image from its Dockerfile and runs
docker-compose.yml on stand-in base images (deploy/test-images: Debian's Python, Redis,
PostgreSQL and nginx under the names the files use): nginx with TLS in front of two web
replicas, the worker, migrate, Redis with its append-only file and PostgreSQL. Then, through
the proxy over HTTPS, as users would: sign up, open a room, talk over WebSockets on two
different replicas; restart and kill Redis and find everything still there; deploy web
again, replica by replica, as docs/deploy.md says, under steady load, and lose and duplicate
nothing (issue 26); scale web to three and see the new replica serve. `-m container` runs
these alone.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import random
import re
import time
import urllib.parse
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from websockets.asyncio.client import connect

from tests.container.conftest import LONG_RUNNING, PASSWORD, Conversation
from tests.container.stack.clients import Browser, Socket, off_loop
from tests.container.stack.common import ROOT, TIMINGS, tail, timed, wait_for
from tests.container.stack.compose import IMAGE, Stack
from tests.faults.kit import (
    UNKNOWN,
    ChatClient,
    Ledger,
    client_stats,
    longest_outage,
    percentile,
    report,
    verdict_row,
    verify,
    wait_for_delivery,
)

pytestmark = [pytest.mark.container, pytest.mark.timeout(1800)]


def stored_messages(stack: Stack, room_id: int) -> dict[int, str]:
    rows = stack.psql("SELECT seq, body FROM messaging_message WHERE room_id = :'room' ORDER BY seq", room=room_id)
    return {int(seq): body for seq, body in rows}


def stored_claps(stack: Stack, room_id: int) -> dict[int, int]:
    rows = stack.psql(
        "SELECT m.seq, SUM(c.count) FROM messaging_clap c JOIN messaging_message m ON m.id = c.message_id "
        "WHERE m.room_id = :'room' GROUP BY m.seq",
        room=room_id,
    )
    return {int(seq): int(total) for seq, total in rows}


def test_the_image_builds_and_every_service_becomes_healthy(stack: Stack):
    containers = stack.containers()
    for service, count in LONG_RUNNING.items():
        healthy = [c for c in containers if c.service == service and c.health == "healthy"]
        assert len(healthy) == count, service
    (migrate,) = [c for c in containers if c.service == "migrate"]
    assert (migrate.status, migrate.exit_code) == ("exited", 0)
    # The web containers run the image built from the Dockerfile, as its non-root user.
    web = stack.of("web")[0]
    image_and_user = stack.engine.run("inspect", "--format", "{{.Config.Image}} {{.Config.User}}", web.id).stdout
    assert image_and_user.split() == [IMAGE, "10001:10001"]
    browser = Browser(stack)
    status, _, body = browser.get("/readyz")
    assert (status, body) == (200, '{"status": "ok"}')
    # Port 80 sends everything to HTTPS.
    plain = http.client.HTTPConnection("127.0.0.1", stack.http_port, timeout=10)
    plain.request("GET", "/rooms/", headers={"Host": "localhost"})
    response = plain.getresponse()
    assert (response.status, response.getheader("Location")) == (301, "https://localhost/rooms/")
    plain.close()


def test_two_replicas_carry_one_conversation_through_the_proxy(stack: Stack, conversation: Conversation):
    webs = {c.ip: c.name for c in stack.of("web")}
    assert set(conversation.replicas) <= set(webs), (conversation.replicas, webs)
    assert conversation.replicas[0] != conversation.replicas[1]
    # What was acknowledged reaches PostgreSQL (the worker's job), claps included.
    wait_for(
        lambda: stored_messages(stack, conversation.room_id) == conversation.messages,
        60,
        "the messages in PostgreSQL",
    )
    wait_for(lambda: stored_claps(stack, conversation.room_id) == conversation.claps, 60, "the claps in PostgreSQL")
    history = conversation.alice.history(conversation.room)
    assert [(m["seq"], m["body"]) for m in history] == sorted(conversation.messages.items())


def test_an_attachment_goes_up_and_comes_back_through_the_proxy_from_seaweedfs(
    stack: Stack, conversation: Conversation
):
    data = b"attached in the stack " + uuid.uuid4().hex.encode()
    status, wire = conversation.alice.upload(conversation.room, "notes.txt", data)
    assert status == 201, wire
    # Redirected to a presigned URL, fetched through the proxy's /_s3/ from SeaweedFS.
    status, url, body = conversation.alice.download(wire["url"])
    assert (status, body) == (200, data)
    assert "/_s3/attachments/" in url and "X-Amz-Signature=" in url
    # Not sent yet: its uploader's alone.
    assert conversation.bob.download(wire["url"])[0] == 404


def redis_state(stack: Stack, conversation: Conversation) -> dict:
    """What must survive Redis going away: the history as the site serves it (seq, body,
    claps), the room's counters and clap totals in Redis, and a sentinel written there."""
    prefix = f"pubsub:room:{{{conversation.room_id}}}"
    return {
        "history": [(m["seq"], m["body"], m["claps"]) for m in conversation.bob.history(conversation.room)],
        "seq": stack.redis_cli("GET", f"{prefix}:seq"),
        "rev": stack.redis_cli("GET", f"{prefix}:rev"),
        "clap totals": stack.redis_cli("HGETALL", f"{prefix}:clapt"),
        "sentinel": stack.redis_cli("GET", "pubsub-container-test:sentinel"),
    }


def test_redis_restarted_and_killed_keeps_history_sequence_and_claps(stack: Stack, conversation: Conversation):
    assert stack.redis_cli("CONFIG", "GET", "appendonly").split() == ["appendonly", "yes"]
    stack.redis_cli("SET", "pubsub-container-test:sentinel", "still here")
    before = redis_state(stack, conversation)
    latest = max(conversation.messages)
    assert before["seq"] == str(latest)
    assert [seq for seq, _, _ in before["history"]] == list(range(1, latest + 1))
    assert {seq: claps for seq, _, claps in before["history"] if claps} == conversation.claps

    with timed("docker-compose restart redis, until healthy"):
        stack.compose("restart", "redis")
        stack.wait_healthy(LONG_RUNNING)
    assert redis_state(stack, conversation) == before

    time.sleep(2)  # appendfsync everysec: let the last writes reach the file (a kill keeps the OS's copy anyway)
    with timed("docker-compose kill redis, start, until healthy"):
        stack.compose("kill", "redis")
        (redis,) = stack.of("redis")
        assert redis.status == "exited", redis
        stack.compose("start", "redis")
        stack.wait_healthy(LONG_RUNNING)
    after = redis_state(stack, conversation)
    assert after == before
    assert "DB loaded from append only file" in stack.logs_of("redis", lines=400)

    # The room goes on where it was: the next message takes the next seq, a clap adds to
    # the total that was there, and both reach PostgreSQL through the worker.
    first = min(conversation.claps)

    async def carry_on() -> tuple[dict, dict]:
        alice = await Socket.open(stack, conversation.alice, f"after-redis-{uuid.uuid4().hex[:8]}", conversation.room)
        bob = await Socket.open(stack, conversation.bob, f"after-redis-{uuid.uuid4().hex[:8]}", conversation.room)
        try:
            ack = await alice.post(conversation.room, "Still here after Redis was killed")
            await bob.clap(conversation.room, first, 1)
            claps = await alice.expect(
                lambda f: f["type"] == "claps" and f["seq"] == first and f["total"] == conversation.claps[first] + 1
            )
            return ack, claps
        finally:
            await alice.close()
            await bob.close()

    ack, claps = off_loop(carry_on)
    assert ack["seq"] == latest + 1
    conversation.messages[ack["seq"]] = "Still here after Redis was killed"
    conversation.claps[first] = claps["total"]
    wait_for(
        lambda: stored_messages(stack, conversation.room_id) == conversation.messages,
        60,
        "the messages in PostgreSQL after the Redis restarts",
    )
    wait_for(lambda: stored_claps(stack, conversation.room_id) == conversation.claps, 60, "the claps in PostgreSQL")


# --- a rolling deploy of web under steady load ----------------------------------------------

ROLLERS = 8  # clients, each a user of its own (the send limit is per user: 10 in 2 s)
SEND_EVERY = 0.25  # each client: its next message about this long after the last was acked
ROLLING_MARK = "or rolling, new replicas before old ones go away:"
# What the site's client sends again with the same client_id (the rest would be a defect).
RETRIED = ("refused:unavailable", "refused:rate_limited", UNKNOWN, "unsent")


def rolling_deploy_procedure() -> str:
    """docs/deploy.md's rolling restart of web ("Upgrades"), word for word: the sh block
    after ROLLING_MARK."""
    text = (ROOT / "docs" / "deploy.md").read_text()
    _, found, after = text.partition(ROLLING_MARK)
    block = re.match(r"\s*```sh\n(.*?)```", after, re.S)
    assert found and block, f"docs/deploy.md has no sh block after {ROLLING_MARK!r}"
    return block.group(1)


class ProxiedClient(ChatClient):
    """The fault tests' client (tests/faults/kit/client.py: it heeds `reconnect`, resubscribes with
    `since`, sends again what had no ack with its client_id, counts duplicates and gaps),
    through the stack's proxy as a browser: wss://localhost, its session cookie, its
    origin. It notes when each message reached it."""

    def __init__(self, stack: Stack, browser: Browser, name: str, rooms: list[str]):
        super().__init__(
            name, browser.cookie("sessionid"), lambda: [stack.https_port], rooms, first_port=stack.https_port
        )
        self.stack = stack
        self.browser = browser
        self.context = stack.ssl_context()
        self.arrived: dict[str, float] = {}  # client_id -> time.monotonic() of its arrival
        self.handshakes: list[tuple[float, float, str]] = []  # (started, seconds, probe or error)

    async def _connect(self, port: int):
        probe = f"rolling-{self.name}-{len(self.handshakes)}"
        started = time.monotonic()
        try:
            ws = await connect(
                f"wss://localhost:{port}/ws/?probe={probe}",
                ssl=self.context,
                additional_headers={"Cookie": f"sessionid={self.session_key}"},
                origin=self.stack.origin,
                open_timeout=15,
                close_timeout=2,
                max_size=2**22,
                ping_interval=None,
            )
        except Exception as error:
            status = getattr(getattr(error, "response", None), "status_code", None)
            what = f"HTTP {status}" if status else repr(error)[:200]
            self.handshakes.append((started, time.monotonic() - started, f"{probe} failed: {what}"))
            raise
        self.handshakes.append((started, time.monotonic() - started, probe))
        return ws

    def _on_frame(self, frame: dict) -> None:
        room = frame.get("room")
        before = len(self.client_ids[room]) if room in self.client_ids else 0
        super()._on_frame(frame)
        if room in self.client_ids and len(self.client_ids[room]) > before:
            self.arrived[self.client_ids[room][-1]] = time.monotonic()

    def _history_after(self, room: str, after: int) -> dict:
        status, _, body = self.browser.get(f"/rooms/{room}/messages/?after={after}&limit=200")
        assert status == 200, (status, body[:500])
        return json.loads(body)


def stored_rows(stack: Stack, room_id: int) -> list[tuple[int, int, str]]:
    """(room_id, seq, client_id) of the room's messages in PostgreSQL, by seq."""
    rows = stack.psql(
        "SELECT room_id, seq, client_id FROM messaging_message WHERE room_id = :'room' ORDER BY seq", room=room_id
    )
    return [(int(room), int(seq), client_id) for room, seq, client_id in rows]


def upstream_errors(stack: Stack) -> list[str]:
    """What nginx's error log says of its connections to the web replicas, in short."""
    pattern = re.compile(r'\*\d+ (.+?) while connecting to upstream, .*?request: "\S+ (\S+)[^"]*", upstream: "([^"]+)"')
    found = []
    for line in stack.logs_of("proxy", lines=5000).splitlines():
        if match := pattern.search(line):
            message, path, upstream = match.groups()
            found.append(f"{message} ({urllib.parse.urlsplit(upstream).netloc}, {path})")
    return found


def ms(values: list[float]) -> str:
    if not values:
        return "none"
    return (
        f"{len(values)}: p50 {percentile(values, 0.5) * 1000:.0f} ms, p99 {percentile(values, 0.99) * 1000:.0f} ms, "
        f"max {max(values) * 1000:.0f} ms"
    )


def test_a_rolling_deploy_of_web_under_steady_load_loses_and_duplicates_nothing(stack: Stack):
    """docs/deploy.md's rolling deploy of web, run as written (docker-compose 1.29 for
    `docker compose`): as many new replicas as run, healthy, then each old one stopped in
    turn (`docker stop`: SIGTERM, the drain, the exit well within web's stop_grace_period).
    Meanwhile 8 clients through the proxy, each a user of its own, send into one room every
    ~0.25 s and follow it, as the site's client does (reconnect after the `reconnect` frame's
    wait, resubscribe with `since`, send again what had no ack with its client_id). Every
    send ends acked, is stored once in PostgreSQL and reaches every client once, in order; the
    p99 of delivery during the deploy is reported (and in the faults table)."""
    old = {c.id: c for c in stack.of("web")}
    assert len(old) == LONG_RUNNING["web"]
    # Compose hands web's stop_grace_period to the container: a plain `docker stop` waits it
    # too, with SIGTERM (no other stop signal), before it kills.
    for container in old.values():
        stop = stack.engine.run("inspect", "--format", "{{.Config.StopTimeout}}|{{.Config.StopSignal}}", container.id)
        timeout, signal = stop.stdout.strip().split("|")
        assert (timeout, signal in {"", "SIGTERM"}) == ("25", True), (container.name, stop.stdout)
    procedure = rolling_deploy_procedure()

    suffix = uuid.uuid4().hex[:6]
    browsers = [Browser(stack) for _ in range(ROLLERS)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda b: b[1].sign_up(f"roller{b[0]}-{suffix}", PASSWORD), enumerate(browsers)))
    room = browsers[0].create_room(f"Rolling {suffix}")
    ((room_id,),) = stack.psql("SELECT id FROM rooms_room WHERE slug = :'slug'", slug=room)
    room_id = int(room_id)
    ledger = Ledger()
    first_sent: dict[str, float] = {}  # client_id -> time.monotonic() of its first attempt
    moments: dict[str, float] = {}

    async def scenario():
        clients = list(
            await asyncio.gather(
                *(ProxiedClient(stack, b, f"roller{i}", [room]).start() for i, b in enumerate(browsers))
            )
        )
        stop = asyncio.Event()

        async def steady(client: ProxiedClient) -> None:
            number = 0
            while not stop.is_set():
                send = ledger.new(room, f"{client.name} #{number}")
                first_sent[send.client_id] = time.monotonic()
                await client.send_until_settled(send, retry=RETRIED)
                number += 1
                await asyncio.sleep(SEND_EVERY * random.uniform(0.8, 1.2))

        traffic = [asyncio.create_task(steady(c)) for c in clients]
        try:
            await asyncio.sleep(3)  # steady before
            moments["deploy"] = time.monotonic()
            done = await asyncio.to_thread(stack.run_as_operator, procedure, 300)
            moments["deployed"] = time.monotonic()
            await asyncio.sleep(2)  # steady after
        finally:
            stop.set()
            await asyncio.gather(*traffic)
        key = f"pubsub:room:{{{room_id}}}:seq"
        latest = int(await asyncio.to_thread(stack.redis_cli, "GET", key) or 0)
        delivered = await wait_for_delivery(clients, {room: latest})
        for client in clients:
            await client.close()
        return clients, done, latest, delivered

    with (
        timed("stack: docs/deploy.md's rolling deploy of web under steady load"),
        stack.events_of("web", "kill", "die") as events,
    ):
        clients, done, latest, delivered = off_loop(scenario)
    print(f"--- the rolling deploy's output ---\n{done.stdout}\n{done.stderr}")
    assert done.returncode == 0, f"the procedure failed ({done.returncode}):\n{tail(done.stdout)}\n{tail(done.stderr)}"

    deadline = time.monotonic() + 60  # the worker writes what Redis acknowledged
    while len(rows := stored_rows(stack, room_id)) < latest and time.monotonic() < deadline:
        time.sleep(0.5)
    verdict = verify(ledger, rows, clients, {room: room_id})

    # Each old replica: the signals it was sent, how it exited, and how long its drain took.
    wall_to_monotonic = time.monotonic() - time.time()
    stops = {}
    for container_id in old:
        mine = [e for e in events if e["id"] == container_id]
        signals = [e["Actor"]["Attributes"].get("signal") for e in mine if e["status"] == "kill"]
        exits = [e["Actor"]["Attributes"].get("exitCode") for e in mine if e["status"] == "die"]
        kill_at = min((e["timeNano"] / 1e9 for e in mine if e["status"] == "kill"), default=None)
        die_at = max((e["timeNano"] / 1e9 for e in mine if e["status"] == "die"), default=None)
        stops[old[container_id].name] = (signals, exits, kill_at, die_at)
    drained = [(die - kill) for _, _, kill, die in stops.values() if kill is not None and die is not None]
    first_kill = min((kill for _, _, kill, _ in stops.values() if kill is not None), default=0) + wall_to_monotonic
    last_exit = max((die for _, _, _, die in stops.values() if die is not None), default=0) + wall_to_monotonic

    def deliveries(start: float, end: float) -> list[float]:
        return [
            at - first_sent[cid]
            for client in clients
            for cid, at in client.arrived.items()
            if cid in first_sent and start <= first_sent[cid] <= end
        ]

    def acks(start: float, end: float) -> list[float]:
        return [
            s.acked_at - first_sent[s.client_id]
            for s in ledger.sends.values()
            if s.acked_at is not None and start <= first_sent[s.client_id] <= end
        ]

    during = deliveries(moments["deploy"], moments["deployed"])
    draining = deliveries(first_kill, last_exit + 2)
    before = deliveries(0, moments["deploy"])
    summary = (
        f"deploy {moments['deployed'] - moments['deploy']:.1f} s; each old replica drained and exited in "
        + ", ".join(f"{d:.1f} s" for d in drained)
    )
    report(
        f"a rolling deploy of the compose stack's web ({len(old)} replicas, {ROLLERS} clients through the proxy)",
        summary,
        f"delivery (first send to each client's copy) during the deploy {ms(during)}",
        f"  while the old replicas drained {ms(draining)}; before the deploy {ms(before)}",
        f"send-to-ack during the deploy {ms(acks(moments['deploy'], moments['deployed']))}",
        ledger.summary(),
        verdict.line(),
        f"lost {verdict.lost}, duplicated {verdict.duplicated}; {client_stats(clients)}",
        "old replicas stopped (address: signals, exit codes, seconds into the deploy): "
        + "; ".join(
            f"{c.name} ({c.ip}): {stops[c.name][:2]}, {stops[c.name][2] + wall_to_monotonic - moments['deploy']:.1f}"
            f"-{stops[c.name][3] + wall_to_monotonic - moments['deploy']:.1f} s"
            for c in old.values()
            if None not in stops[c.name][2:]
        ),
        "slowest handshakes: "
        + "; ".join(
            f"{seconds:.2f} s {what} ({started - moments['deploy']:.1f} s into the deploy)"
            for started, seconds, what in sorted((h for c in clients for h in c.handshakes), key=lambda h: -h[1])[:4]
        ),
        "nginx on its upstreams: " + ("; ".join(upstream_errors(stack)) or "no error"),
    )
    verdict_row("a rolling deploy of the compose stack's web (docker stop, drain)", verdict, longest_outage(clients))
    TIMINGS.append(
        (
            f"stack: rolling deploy: {summary}; delivery p99 during it "
            f"{percentile(during, 0.99) * 1000 if during else float('nan'):.0f} ms; "
            f"{verdict.acked} acked, lost {verdict.lost}, duplicated {verdict.duplicated}",
            0.0,
        )
    )

    assert delivered and not verdict.problems, verdict.problems[:20]
    assert verdict.lost == 0 and verdict.duplicated == 0
    assert verdict.acked == len(ledger.sends) == verdict.rows == latest  # every send ended acked, once
    assert verdict.received == {c.name: latest for c in clients}
    # Every old replica drained, lingered and exited on the SIGTERM alone, within the
    # stop_grace_period (25 s), never killed (SIGKILL, 137). 143: uvicorn, its graceful
    # shutdown done, raises the SIGTERM it caught again (uvicorn.Server.capture_signals), and
    # init passes on how it ended.
    for name, (signals, exits, kill_at, die_at) in stops.items():
        assert (signals, exits) == (["15"], ["143"]), (name, stops)
        assert die_at - kill_at < 25, (name, die_at - kill_at)
    # Every client's socket was on an old replica: each was moved by a drain (1012), none cut.
    codes = sum((c.close_codes for c in clients), Counter())
    assert set(codes) == {1012}, codes
    assert all(c.close_codes[1012] >= 1 for c in clients), [c.close_codes for c in clients]
    assert during, "no message was sent during the deploy"
    # The same number of replicas runs, all of them new and healthy (the clients' last sockets were theirs).
    stack.wait_healthy(LONG_RUNNING)
    new = {c.id for c in stack.of("web")}
    assert len(new) == len(old) and not new & set(old), (new, set(old))


def test_scaling_web_to_three_adds_a_replica_that_serves(stack: Stack):
    before = {c.id for c in stack.of("web")}
    with timed("docker-compose up -d --scale web=3, until healthy"):
        stack.compose("up", "-d", "--no-build", "--scale", "web=3", timeout=600)
        stack.wait_healthy({**LONG_RUNNING, "web": 3})
    webs = stack.of("web")
    assert len(webs) == 3
    assert before < {c.id for c in webs}, "the two replicas that ran were replaced instead of kept"
    (new,) = [c for c in webs if c.id not in before]

    # nginx finds the new replica through Docker's DNS (re-read every 5 s): requests
    # through the proxy reach it without a reload.
    browser = Browser(stack)
    probes: list[str] = []

    def reached() -> bool:
        for _ in range(6):
            probe = f"scale-{uuid.uuid4().hex[:8]}"
            status, _, _ = browser.get(f"/healthz?probe={probe}")
            assert status == 200
            probes.append(probe)
        return new.ip in stack.upstreams(probes, timeout=5).values()

    wait_for(reached, 60, f"a request through the proxy served by the new replica {new.name} ({new.ip})", 1)
