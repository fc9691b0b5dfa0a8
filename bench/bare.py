"""The bare-ASGI reference: the ceiling of the server the site runs on, doing the site's Redis work.

A plain ASGI application (no Django set up, no Channels) that speaks the frames the
load generator uses, on the same Redis as the site:

- handshake: the ``sessionid`` cookie must name a session the benchmark made (the
  author's id and name come from a Redis hash the benchmark fills, ``SESSIONS_KEY``;
  no database); otherwise 403
- ``subscribe`` -> ``subscribed`` (with ``since``: the buffered messages after it first)
- ``send`` -> the project's own append script (``messaging.store.buffer.APPEND_SCRIPT``, the
  same keys and arguments as ``messaging.store.buffer.append``), then one PUBLISH, then ``ack``;
  when the script says so, the persistence job is queued for the project's rq worker
  (``messaging.jobs.persist_messages``), so persistence is on as for the site
- ``message`` frames with the fields of ``protocol.wire.message_wire``; ``ping`` -> ``pong``

One Redis SUBSCRIBE per room per process; each published frame is decoded once and the
same ASGI event is written to every local socket of the room. Sends go through one
writer task that pipelines the appends and then the PUBLISHes of a batch, so a room's
frames leave this process in ``seq`` order (one web process: the reference does not
reorder what several processes publish).

    uvicorn bench.bare:app --loop uvloop --http httptools --ws websockets-sansio \
        --ws-per-message-deflate false --lifespan off --no-access-log
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

import orjson
import redis.asyncio as aioredis

# Only the script texts, key names and the wire form: none of them sets Django up.
from messaging.store.buffer import APPEND_SCRIPT, INIT_SCRIPT
from messaging.store.keys import DIRTY_KEY, SCHEDULED_KEY, SCHEDULED_TTL_MS, RoomKeys
from protocol.wire import message_wire, now_iso

logger = logging.getLogger("bench.bare")

SESSIONS_KEY = "pubsub:bench:sessions"  # session key -> {"id", "username"} (bench.fixtures)
ROOMS_KEY = "pubsub:bench:rooms"  # slug -> room id (bench.fixtures)
# PUBLISH channels are not per Redis database: the number in the name keeps runs on other
# databases of the same server (another benchmark, the tests) out of this one's rooms.
CHANNEL_PREFIX = "pubsub:bare:{db}:room:"
DEDUP_TTL = int(os.environ.get("MESSAGE_DEDUP_TTL", 7 * 24 * 3600))
PERSIST_JOB = "messaging.jobs.persist_messages"
# The project's append script checks and counts the author's send limit itself when it
# takes the two keys and three arguments for it (KEYS[9], KEYS[10]): then so does this app,
# with the limit the servers run with (WS_RATE_LIMIT_SEND).
SCRIPT_LIMITS = "KEYS[9]" in APPEND_SCRIPT
_UNITS = {"second": 1000, "minute": 60_000, "hour": 3_600_000, "day": 86_400_000}


def send_limit(text: str) -> tuple[int, int]:
    """``"10/2second"`` -> (10, 2000): messages per window, window in milliseconds."""
    count, _, per = text.strip().partition("/")
    digits = "".join(c for c in per if c.isdigit())
    unit = per[len(digits) :].strip().rstrip("s") or "second"
    return int(count), int(digits or 1) * _UNITS[unit]


LIMIT, WINDOW_MS = send_limit(os.environ.get("WS_RATE_LIMIT_SEND", "10/2second"))


def send_limit_keys(keys: RoomKeys, author: int) -> list[str] | None:
    """The author's send-limit and slow-mode keys, under whichever name RoomKeys gives them."""
    limit = next((getattr(keys, n) for n in ("send_limit_of", "sent_by") if hasattr(keys, n)), None)
    slow = getattr(keys, "slow_mode_of", None)
    return [limit(author), slow(author)] if limit and slow else None


class Refused(Exception):
    def __init__(self, code: str, detail: str):
        super().__init__(detail)
        self.code = code
        self.detail = detail


class Conn:
    __slots__ = ("author", "hold", "rooms", "send")

    def __init__(self, send, author: dict):
        self.send = send
        self.author = author
        self.rooms: dict[str, Room] = {}
        # Frames that arrive while a subscription is being set up, before its seq is known.
        self.hold: dict[str, list[tuple[int, dict]]] = {}

    async def frame(self, frame: dict) -> None:
        await self.send({"type": "websocket.send", "text": orjson.dumps(frame).decode()})


class Room:
    def __init__(self, slug: str):
        self.slug = slug
        self.id = 0
        self.keys: RoomKeys | None = None
        self.channel = ""
        # conn -> the seq its subscription started at (None: being set up, hold its frames)
        self.sockets: dict[Conn, int | None] = {}
        self.ready: asyncio.Future | None = None


class Hub:
    """This process's rooms, its one SUBSCRIBE connection, and the writer of sends."""

    def __init__(self, url: str):
        self.url = url
        # A blocking pool: in a storm thousands of handshakes want Redis at once; they wait
        # their turn for one of these connections rather than fail.
        pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=64, timeout=30)
        self.redis = aioredis.Redis(connection_pool=pool)
        self.pubsub = self.redis.pubsub()
        # One SUBSCRIBE at a time, as channels-redis does: redis-py's PubSub takes its
        # connection from the pool at its first command, and rooms opened together would
        # each take one (the last kept, the others' confirmations never read). It showed with
        # hiredis, whose check of a pooled connection yields to the loop.
        self.subscribing = asyncio.Lock()
        self.rooms: dict[str, Room] = {}
        self.by_channel: dict[bytes, Room] = {}
        self.confirmations: dict[bytes, asyncio.Future] = {}
        self.listener: asyncio.Task | None = None
        self.append_sha: str | None = None
        self.queue: list[tuple] = []
        self.wake = asyncio.Event()
        self.writer = asyncio.get_running_loop().create_task(self._write_forever())
        self.rq_queue = None

    # --- rooms -------------------------------------------------------------------

    async def room(self, slug: str) -> Room:
        room = self.rooms.get(slug)
        if room is None:
            room = self.rooms[slug] = Room(slug)
            room.ready = asyncio.ensure_future(self._open(room))
        try:
            await asyncio.shield(room.ready)
        except Refused:
            self.rooms.pop(slug, None)
            raise
        return room

    async def _open(self, room: Room) -> None:
        room_id = await self.redis.hget(ROOMS_KEY, room.slug)
        if room_id is None:
            raise Refused("not_found", "No such room.")
        room.id = int(room_id)
        room.keys = keys = RoomKeys(room.id)
        # The benchmark's rooms are new: PostgreSQL's high-water marks are 0 (the site reads them).
        await self.redis.eval(INIT_SCRIPT, 4, keys.seq, keys.rev, keys.persisted, keys.changes_persisted, 0, 0)
        db = self.redis.connection_pool.connection_kwargs.get("db", 0)
        room.channel = CHANNEL_PREFIX.format(db=db) + str(room.id)
        channel = room.channel.encode()
        self.by_channel[channel] = room
        confirmed = self.confirmations[channel] = asyncio.get_running_loop().create_future()
        async with self.subscribing:
            await self.pubsub.subscribe(room.channel)
        if self.listener is None:
            self.listener = asyncio.get_running_loop().create_task(self._listen())
        await confirmed

    async def _listen(self) -> None:
        pubsub = self.pubsub
        while True:
            try:
                message = await pubsub.get_message(timeout=None)
            except Exception as error:  # a broken connection: say so, keep going
                logger.warning("SUBSCRIBE connection: %r", error)
                await asyncio.sleep(0.5)
                continue
            if message is None:
                continue
            kind = message["type"]
            if kind == "message":
                room = self.by_channel.get(message["channel"])
                if room is not None:
                    await self._fan_out(room, message["data"])
            elif kind == "subscribe":
                future = self.confirmations.pop(message["channel"], None)
                if future is not None and not future.done():
                    future.set_result(None)

    async def _fan_out(self, room: Room, data: bytes) -> None:
        head, _, frame = data.partition(b"|")
        seq = int(head)
        event = {"type": "websocket.send", "text": frame.decode()}  # one event for every socket
        for conn, base in list(room.sockets.items()):
            if base is None:
                conn.hold.setdefault(room.slug, []).append((seq, event))
            elif seq > base:
                try:
                    await conn.send(event)
                except Exception:  # the socket went away meanwhile
                    room.sockets.pop(conn, None)

    async def subscribe(self, conn: Conn, slug: str, since: int | None, ref) -> None:
        room = await self.room(slug)
        keys = room.keys
        room.sockets[conn] = None  # from here on its frames are held, not missed
        conn.rooms[slug] = room
        conn.hold[slug] = []
        seq, rev = await self.redis.mget(keys.seq, keys.rev)
        seq, rev = int(seq or 0), int(rev or 0)
        recovered = True
        replay: list[bytes] = []
        if since is not None:
            if since > seq or seq - since > 1000:
                recovered = False
            else:
                replay = await self.redis.zrangebyscore(keys.buf, f"({since}", seq)
        reply = {"type": "subscribed", "room": slug, "seq": seq, "rev": rev, "recovered": recovered}
        if ref is not None:
            reply["ref"] = ref
        await conn.frame(reply)
        for record in replay:
            await conn.frame(message_wire(orjson.loads(record), room=slug))
        while conn.hold.get(slug):
            held, conn.hold[slug] = conn.hold[slug], []
            for held_seq, event in held:
                if held_seq > seq:
                    await conn.send(event)
        conn.hold.pop(slug, None)
        if conn.rooms.get(slug) is room:
            room.sockets[conn] = seq

    def leave(self, conn: Conn, slug: str) -> None:
        room = conn.rooms.pop(slug, None)
        conn.hold.pop(slug, None)
        if room is not None:
            room.sockets.pop(conn, None)

    # --- sends -----------------------------------------------------------------------

    def send(self, conn: Conn, room: Room, body: str, client_id: str, ref) -> None:
        record = {"author": conn.author, "body": body, "client_id": client_id, "sent_at": now_iso()}
        self.queue.append((conn, room, record, ref))
        self.wake.set()

    async def _write_forever(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            batch, self.queue = self.queue, []
            if not batch:
                continue
            try:
                await self._write(batch)
            except Exception as error:
                logger.warning("writing %d sends failed: %r", len(batch), error)
                for conn, _room, _record, ref in batch:
                    with contextlib.suppress(Exception):
                        await conn.frame(error_frame("unavailable", "Redis failed; retry.", ref))

    async def _write(self, batch: list[tuple]) -> None:
        if self.append_sha is None:
            self.append_sha = await self.redis.script_load(APPEND_SCRIPT)
        pipe = self.redis.pipeline(transaction=False)
        for conn, room, record, _ in batch:
            keys = room.keys
            author = conn.author["id"]
            # The keys and arguments of messaging.store.buffer.append.
            names = [keys.seq, keys.rev, keys.buf, keys.client_id(record["client_id"], author), DIRTY_KEY,
                     SCHEDULED_KEY, keys.reads, keys.reads_dirty]  # fmt: skip
            args = [orjson.dumps(record), DEDUP_TTL, room.id, SCHEDULED_TTL_MS, author]
            limit_keys = send_limit_keys(keys, author) if SCRIPT_LIMITS else None
            if limit_keys:
                names += limit_keys
                args += [LIMIT, WINDOW_MS, 0]
            pipe.evalsha(self.append_sha, len(names), *names, *args)
        replies = await pipe.execute(raise_on_error=False)
        if any(isinstance(r, Exception) and "NOSCRIPT" in str(r) for r in replies):
            self.append_sha = None  # Redis lost its scripts (restarted): load again, then retry all
            await self._write(batch)
            return
        publish = self.redis.pipeline(transaction=False)
        acks = []
        schedule = False
        for (conn, room, record, ref), reply in zip(batch, replies, strict=True):
            if isinstance(reply, Exception) or int(reply[0]) == -1:
                acks.append((conn, error_frame("unavailable", "The room's state is missing; retry.", ref)))
                continue
            if int(reply[0]) in (2, 3):  # past the send limit, or slow mode: nothing stored
                refused = error_frame("rate_limited", "Slow down.", ref)
                refused["retry_after"] = int(reply[1]) / 1000
                acks.append((conn, refused))
                continue
            seq = int(reply[1])
            ack = {"type": "ack", "room": room.slug, "client_id": record["client_id"], "seq": seq}
            if ref is not None:
                ack["ref"] = ref
            acks.append((conn, ack))
            if int(reply[0]) == 1:
                frame = orjson.dumps(message_wire(orjson.loads(reply[3]), room=room.slug))
                publish.publish(room.channel, b"%d|%s" % (seq, frame))
                schedule = schedule or bool(int(reply[4]))
        if len(publish):
            await publish.execute()
        for conn, frame in acks:
            with contextlib.suppress(Exception):
                await conn.frame(frame)
        if schedule:
            asyncio.get_running_loop().run_in_executor(None, self._enqueue_persist)

    def _enqueue_persist(self) -> None:
        """Queue the project's persistence job for room server 0, as messaging.services does."""
        try:
            if self.rq_queue is None:
                import redis
                from rq import Queue

                self.rq_queue = Queue("default", connection=redis.Redis.from_url(self.url))
            self.rq_queue.enqueue(PERSIST_JOB, 0, job_timeout=300)
        except Exception as error:
            logger.warning("persistence job not queued: %r", error)


def error_frame(code: str, detail: str, ref) -> dict:
    frame = {"type": "error", "code": code, "detail": detail}
    if ref is not None:
        frame["ref"] = ref
    return frame


def session_key(scope: dict) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"cookie":
            for part in value.decode("latin-1").split(";"):
                key, _, val = part.strip().partition("=")
                if key == "sessionid" and val:
                    return val
    return None


_hub: Hub | None = None


def hub() -> Hub:
    global _hub
    if _hub is None:
        if SCRIPT_LIMITS and send_limit_keys(RoomKeys(0), 0) is None:
            logger.warning("the append script takes a send limit, but RoomKeys names no keys for it: sends unlimited")
        _hub = Hub(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    return _hub


async def websocket(scope, receive, send) -> None:
    await receive()  # websocket.connect
    the_hub = hub()
    key = session_key(scope)
    author = await the_hub.redis.hget(SESSIONS_KEY, key) if key else None
    if author is None:
        await send({"type": "websocket.close"})  # before accept: 403
        return
    await send({"type": "websocket.accept"})
    conn = Conn(send, orjson.loads(author))
    try:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                await conn.frame(error_frame("bad_request", "Frames are JSON text.", None))
                continue
            try:
                await handle(the_hub, conn, text)
            except Exception as error:  # Redis failed: say so, as the site does; the socket stays
                logger.warning("frame failed: %r", error)
                await conn.frame(error_frame("unavailable", "A backing service failed; retry.", None))
    finally:
        for slug in list(conn.rooms):
            the_hub.leave(conn, slug)


async def handle(the_hub: Hub, conn: Conn, text: str) -> None:
    try:
        frame = orjson.loads(text)
    except orjson.JSONDecodeError:
        await conn.frame(error_frame("bad_request", "Not JSON.", None))
        return
    if not isinstance(frame, dict):
        await conn.frame(error_frame("bad_request", "Not a JSON object.", None))
        return
    kind, ref = frame.get("type"), frame.get("ref")
    try:
        if kind == "send":
            room = conn.rooms.get(frame.get("room"))
            if room is None:
                raise Refused("not_subscribed", "Subscribe to the room first.")
            body, client_id = frame.get("body"), frame.get("client_id")
            if not isinstance(body, str) or not body.strip() or not isinstance(client_id, str):
                raise Refused("bad_request", "A send needs body and client_id.")
            the_hub.send(conn, room, body, client_id, ref)
        elif kind == "subscribe":
            slug, since = frame.get("room"), frame.get("since")
            if not isinstance(slug, str) or (since is not None and not isinstance(since, int)):
                raise Refused("bad_request", "A subscribe needs room (and since: int or null).")
            try:
                await the_hub.subscribe(conn, slug, since, ref)
            except Exception:
                the_hub.leave(conn, slug)
                raise
        elif kind == "unsubscribe":
            slug = frame.get("room")
            if slug not in conn.rooms:
                raise Refused("not_subscribed", "Not subscribed to that room.")
            the_hub.leave(conn, slug)
            await conn.frame({"type": "unsubscribed", "room": slug, **({"ref": ref} if ref is not None else {})})
        elif kind == "ping":
            await conn.frame({"type": "pong"})
        else:
            raise Refused("unknown_type", f"Unknown frame type {kind!r}.")
    except Refused as refused:
        await conn.frame(error_frame(refused.code, refused.detail, ref))


async def http(scope, receive, send) -> None:
    ok = scope["path"] in ("/healthz", "/readyz")
    await send({"type": "http.response.start", "status": 200 if ok else 404,
                "headers": [(b"content-type", b"text/plain")]})  # fmt: skip
    await send({"type": "http.response.body", "body": b"ok" if ok else b"not found"})


async def app(scope, receive, send) -> None:
    if scope["type"] == "websocket":
        await websocket(scope, receive, send)
    elif scope["type"] == "http":
        await http(scope, receive, send)
