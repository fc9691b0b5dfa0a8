"""The "api" section: publishes per second over the HTTP API, beside the same over the socket.

One web process and the worker (persistence on), one user with an API token (api.tokens),
``api_connections`` rooms. Closed loop: each of ``api_connections`` clients publishes to its
own room, one request (or one `send` frame) at a time, waiting for its answer (201, or the
`ack`), for ``duration`` seconds; first over HTTP (``POST /api/v1/rooms/{slug}/messages``,
keep-alive connections), then over WebSockets opened with the same token (each subscribed to
its room, so each publish also comes back to its author as a `message` frame, as a socket's
always does). Both go through the same service (messaging.posting) with the same checks and
limits; the HTTP path adds the token's lookup and rate limit per request and the JSON
request/response round trip, the socket path authenticates once per connection.

Checked, not only timed: every answer is a 201/ack, the seqs of each room are 1..n with no
gap or duplicate, and every message reaches PostgreSQL within 30 s.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from array import array

import orjson

from messaging.frames import uuid7

BODY = "x" * 100


def _percentiles(latencies: array) -> dict:
    ordered = sorted(latencies)
    if not ordered:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(len(ordered) * q))] / 1e6, 2)

    return {"p50_ms": at(0.5), "p99_ms": at(0.99), "max_ms": round(ordered[-1] / 1e6, 2)}


async def _http_clients(port: int, token: str, slugs: list[str], duration: float) -> dict:
    import aiohttp

    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    latencies = array("q")
    seqs: dict[str, list[int]] = {slug: [] for slug in slugs}
    failures: dict[str, int] = {}
    deadline = time.monotonic() + duration

    async def client(session, slug: str) -> None:
        url = f"http://127.0.0.1:{port}/api/v1/rooms/{slug}/messages"
        while time.monotonic() < deadline:
            payload = orjson.dumps({"body": BODY, "idempotency_key": uuid.uuid4().hex})
            started = time.perf_counter_ns()
            async with session.post(url, data=payload, headers=headers) as response:
                answer = await response.read()
            if response.status != 201:
                failures[str(response.status)] = failures.get(str(response.status), 0) + 1
                if response.status == 429:  # wait what the API says, as a client must
                    await asyncio.sleep(float(response.headers.get("Retry-After", 1)))
                continue
            latencies.append(time.perf_counter_ns() - started)
            seqs[slug].append(orjson.loads(answer)["seq"])

    connector = aiohttp.TCPConnector(limit=len(slugs))
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.monotonic()
        await asyncio.gather(*(client(session, slug) for slug in slugs))
        elapsed = time.monotonic() - started
    return _figures(latencies, seqs, failures, elapsed)


async def _socket_clients(port: int, token: str, slugs: list[str], duration: float, first: dict[str, int]) -> dict:
    import aiohttp

    latencies = array("q")
    seqs: dict[str, list[int]] = {slug: [] for slug in slugs}
    failures: dict[str, int] = {}

    async def client(session, slug: str, deadline_box: list[float]) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        async with session.ws_connect(f"ws://127.0.0.1:{port}/ws/", headers=headers) as ws:
            await ws.send_str(orjson.dumps({"type": "subscribe", "room": slug, "since": first[slug]}).decode())
            while True:
                frame = orjson.loads((await ws.receive()).data)
                if frame["type"] == "subscribed":
                    break
            await ready.wait()
            while time.monotonic() < deadline_box[0]:
                client_id = uuid7()  # as the browser makes them
                started = time.perf_counter_ns()
                frame = {"type": "send", "room": slug, "body": BODY, "client_id": client_id, "ref": client_id}
                await ws.send_str(orjson.dumps(frame).decode())
                while True:
                    answer = orjson.loads((await ws.receive()).data)
                    if answer.get("ref") == client_id:
                        break
                if answer["type"] != "ack":
                    why = answer.get("code", answer["type"])
                    failures[why] = failures.get(why, 0) + 1
                    if why == "rate_limited":  # as a client must: wait what it is told (a closed
                        # loop of one user in few rooms can pass the benchmark's send limit)
                        await asyncio.sleep(float(answer.get("retry_after", 0.1)))
                    continue
                latencies.append(time.perf_counter_ns() - started)
                seqs[slug].append(answer["seq"])

    ready = asyncio.Event()
    deadline_box = [0.0]
    async with aiohttp.ClientSession() as session:
        tasks = [asyncio.ensure_future(client(session, slug, deadline_box)) for slug in slugs]
        await asyncio.sleep(1.0)  # every socket opened and subscribed
        started = time.monotonic()
        deadline_box[0] = started + duration
        ready.set()
        await asyncio.gather(*tasks)
        elapsed = time.monotonic() - started
    return _figures(latencies, seqs, failures, elapsed)


def _figures(latencies: array, seqs: dict[str, list[int]], failures: dict, elapsed: float) -> dict:
    acked = sum(len(s) for s in seqs.values())
    duplicated = sum(len(s) - len(set(s)) for s in seqs.values())
    return {
        "connections": len(seqs),
        "acked": acked,
        "publishes_per_s": round(acked / elapsed, 1) if elapsed else 0.0,
        **_percentiles(latencies),
        "failures": failures,
        "duplicated": duplicated,
        "seqs": seqs,
    }


def _gaps(seqs: dict[str, list[int]], start: dict[str, int]) -> int:
    """Seqs missing from each room's run (1..n after ``start``): a publish answered but lost."""
    missing = 0
    for slug, got in seqs.items():
        if got:
            missing += (max(got) - start[slug]) - len(set(got))
    return missing


def section_api(plan, config, cluster, pool, population) -> dict:
    from api.services import token_create
    from messaging.models import Message
    from rooms.services import room_create

    population.grow(1)
    user = population.users[0]
    tag = uuid.uuid4().hex[:6]
    rooms = [
        room_create(creator=user, name=f"bench api {tag} {i}", visibility="public") for i in range(plan.api_connections)
    ]
    slugs = [room.slug for room in rooms]
    token = token_create(user=user, name=f"bench {tag}").secret
    port = cluster.ports[0]
    start = dict.fromkeys(slugs, 0)
    http = asyncio.run(_http_clients(port, token, slugs, plan.duration))
    after_http = {slug: max(http["seqs"][slug], default=0) for slug in slugs}
    socket = asyncio.run(_socket_clients(port, token, slugs, plan.duration, after_http))
    http["missing_seqs"] = _gaps(http["seqs"], start)
    socket["missing_seqs"] = _gaps(socket["seqs"], after_http)
    expected = http["acked"] + socket["acked"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        stored = Message.objects.filter(room__in=rooms).count()
        if stored >= expected:
            break
        time.sleep(0.2)
    for figures in (http, socket):
        figures.pop("seqs")
    plan.log(
        f"    HTTP API: {http['publishes_per_s']:,.0f} publishes/s, p50 {http['p50_ms']} p99 {http['p99_ms']} ms;"
        f" socket: {socket['publishes_per_s']:,.0f}/s, p50 {socket['p50_ms']} p99 {socket['p99_ms']} ms"
        f" ({plan.api_connections} publishers, one room each); {expected - stored} not persisted within 30 s"
    )
    return {
        "shape": f"{plan.api_connections} publishers x 1 room each, closed loop",
        "http": http,
        "socket": socket,
        "not_persisted_within_30s": expected - stored,
    }
