"""The production image and compose stack, built and run (issue 13).

A Docker engine of the test's own builds the project's image from its Dockerfile and runs
docker-compose.yml on stand-in base images (deploy/test-images: Debian's Python, Redis,
PostgreSQL and nginx under the names the files use): nginx with TLS in front of two web
replicas, the worker, migrate, Redis with its append-only file and PostgreSQL. Then, through
the proxy over HTTPS, as users would: sign up, open a room, talk over WebSockets on two
different replicas; restart and kill Redis and find everything still there; scale web to
three and see the new replica serve. `-m container` runs these alone.
"""

from __future__ import annotations

import http.client
import time
import uuid

import pytest

from tests.container.conftest import LONG_RUNNING, Conversation
from tests.container.stack import IMAGE, Browser, Socket, Stack, off_loop, timed, wait_for

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
