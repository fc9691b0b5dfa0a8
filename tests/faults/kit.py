"""What the fault and scale-out tests share: their own Redis servers, a TCP proxy to cut a
link, clients that follow the wire contract through failures, a ledger of every send, and
the final count against PostgreSQL.

Every send is recorded per attempt as acked, refused (an `error` frame: nothing stored) or
unknown (no answer: the socket died or the answer timed out). A retry reuses the
``client_id``, so whatever the outcomes, a message is stored once or not at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit
from urllib.request import Request, urlopen

import redis
from django.conf import settings
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from conftest import GENEROUS_WS_LIMITS
from pubsub_site.cluster import Cluster, free_port, wait_for_http
from tests.conftest import database_url

# --- Processes and servers ------------------------------------------------------------


def base_env(**overrides: str) -> dict[str, str]:
    """The environment of the cluster fixture, for clusters a test builds itself."""
    env = {
        "DJANGO_ENV": "development",
        "DEBUG": "0",
        "DATABASE_URL": database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "ROOM_REDIS_URLS": ",".join(settings.ROOM_REDIS_URLS),
        "CHANNEL_REDIS_URLS": ",".join(settings.CHANNEL_REDIS_URLS),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "LOG_LEVEL": "WARNING",
        **{f"WS_RATE_LIMIT_{action.upper()}": rate for action, rate in GENEROUS_WS_LIMITS.items()},
    }
    env.update(overrides)
    return env


def redis_env(url: str, **overrides: str) -> dict[str, str]:
    """Everything Redis (rq queue, cache, rooms, channel layer) on one URL."""
    return base_env(REDIS_URL=url, ROOM_REDIS_URLS=url, CHANNEL_REDIS_URLS=url, **overrides)


def suite_redis_url() -> str:
    """The suite's Redis database (``REDIS_URL``): what the tests' clusters use unless told otherwise."""
    return settings.REDIS_URL


def suite_redis_port() -> int:
    return urlsplit(suite_redis_url()).port or 6379


def through_proxy(proxy_port: int) -> str:
    """The suite's Redis database, reached through a proxy listening on ``proxy_port``."""
    parts = urlsplit(suite_redis_url())
    return urlunsplit(parts._replace(netloc=f"{parts.hostname}:{proxy_port}"))


def make_users(count: int, prefix: str = "user") -> list:
    from django.contrib.auth import get_user_model

    model = get_user_model()
    return [model.objects.create_user(f"{prefix}{i}", password="x-long-password") for i in range(count)]


def start_webs(cluster: Cluster, count: int) -> list[int]:
    """Start ``count`` web processes at once and wait for all of them."""
    ports = [cluster.start_web(wait=False) for _ in range(count)]
    for port in ports:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=60)
    return ports


def wait_for_workers(redis_url: str, count: int, timeout: float = 30) -> None:
    """Wait until ``count`` rq workers have registered (a worker starts in a second or two)."""
    client = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + timeout
    while client.scard("rq:workers") < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{count} workers did not register within {timeout} s")
        time.sleep(0.05)


def web_pid(cluster: Cluster, port: int) -> int:
    return cluster.webs[port].pid


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def log_text(cluster: Cluster, prefix: str = "web") -> str:
    return "\n".join(p.read_text(errors="replace") for p in sorted(cluster.log_dir.glob(f"{prefix}*.log")))


def tracebacks(cluster: Cluster, prefix: str = "web") -> str:
    """How many tracebacks the processes logged, by the exception that ended each."""
    lines = log_text(cluster, prefix).splitlines()
    ends: Counter = Counter()
    for i, line in enumerate(lines):
        if line.startswith("Traceback"):
            j = i + 1
            while j < len(lines) and (lines[j].startswith((" ", "\t")) or not lines[j].strip()):
                j += 1
            ends[lines[j][:100] if j < len(lines) else "?"] += 1
    return f"{sum(ends.values())}" + (f" {dict(ends)}" if ends else "")


class RedisServer:
    """A redis-server of the test's own on 127.0.0.1, in a directory that outlives restarts;
    with ``replicaof`` (a port on 127.0.0.1), a replica of that server (set it before a
    restart to make a server come back as another's replica)."""

    def __init__(
        self,
        *,
        appendonly: bool = True,
        appendfsync: str = "everysec",
        port: int | None = None,
        replicaof: int | None = None,
    ):
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="pubsub-redis-"))
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.replicaof = replicaof
        self.process: subprocess.Popen | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, db=db, socket_timeout=5)

    def start(self, *, via: list[str] | None = None, env: dict[str, str] | None = None) -> RedisServer:
        """Start redis-server, or ``via`` a launcher that takes redis-server's arguments
        (deploy/redis-ha/redis-start.sh), with ``env`` added to the environment."""
        command = [
            *(via or ["redis-server"]),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.dir),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", self.appendfsync,
            "--logfile", str(self.dir / "redis.log"),
            "--maxclients", "20000",
            # A replica (re)joining gets its copy at once: by default a primary waits 5 s for
            # more replicas to share the transfer, and sends that wait for a replica with it.
            "--repl-diskless-sync-delay", "0",
        ]  # fmt: skip
        if self.replicaof is not None:
            command += ["--replicaof", "127.0.0.1", str(self.replicaof)]
        self.process = subprocess.Popen(
            command, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                if self.client().ping():
                    # Loading the AOF answers LOADING; wait until it is done.
                    self.client().dbsize()
                    return self
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"redis-server on {self.port} did not start: {self.log()[-2000:]}")
            time.sleep(0.05)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        assert self.process is not None
        self.process.send_signal(sig)
        self.process.wait(timeout=30)

    def shutdown(self) -> None:
        """SHUTDOWN: Redis writes and syncs the AOF, then exits."""
        with contextlib.suppress(redis.ConnectionError):
            self.client().shutdown()
        assert self.process is not None
        self.process.wait(timeout=30)

    def restart(self, how: str) -> None:
        {"shutdown": self.shutdown, "sigterm": lambda: self.kill(signal.SIGTERM), "sigkill": self.kill}[how]()
        self.start()

    def log(self) -> str:
        path = self.dir / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Sentinels:
    """Redis Sentinels of the test's own on 127.0.0.1 (``redis-server --sentinel``), watching
    the primary on ``master_port`` under ``name``: they agree it is down after
    ``down_after_ms`` without an answer (``quorum`` of them), then promote a replica."""

    def __init__(
        self,
        master_port: int,
        *,
        count: int = 3,
        name: str = "pubsub",
        quorum: int = 2,
        down_after_ms: int = 2000,
        failover_timeout_ms: int = 4000,
    ):
        self.master_port = master_port
        self.name = name
        self.quorum = quorum
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.ports = [free_port() for _ in range(count)]
        self.dirs = [Path(tempfile.mkdtemp(prefix="pubsub-sentinel-")) for _ in range(count)]
        self.processes: list[subprocess.Popen] = []

    def url(self, db: int = 0) -> str:
        """The Sentinel service as the site's settings take it (pubsub_site.redis.urls)."""
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.ports)
        return f"redis+sentinel://{hosts}/{self.name}/{db}"

    def client(self, index: int = 0) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.ports[index], socket_timeout=2, decode_responses=True)

    def start(self, *, ready_timeout: float = 30, wait: bool = True) -> Sentinels:
        for port, directory in zip(self.ports, self.dirs, strict=True):
            config = directory / "sentinel.conf"  # Sentinel rewrites it: a file of its own
            config.write_text(
                f"bind 127.0.0.1\nport {port}\ndir {directory}\nlogfile {directory / 'sentinel.log'}\n"
                f"sentinel monitor {self.name} 127.0.0.1 {self.master_port} {self.quorum}\n"
                f"sentinel down-after-milliseconds {self.name} {self.down_after_ms}\n"
                f"sentinel failover-timeout {self.name} {self.failover_timeout_ms}\n"
                f"sentinel parallel-syncs {self.name} 1\n"
            )
            self.processes.append(
                subprocess.Popen(
                    ["redis-server", str(config), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
            )
        if wait:
            self.wait_ready(ready_timeout)
        return self

    def wait_ready(self, timeout: float = 30) -> None:
        """Until every Sentinel knows the others and sees a replica it could promote (a
        failover needs both: the quorum's votes, and a replica in touch with the primary)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if all(self._ready(i) for i in range(len(self.ports))):
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the Sentinels were not ready within {timeout} s: {self.log()[-2000:]}")
            time.sleep(0.1)

    def _ready(self, index: int) -> bool:
        client = self.client(index)
        master = client.sentinel_master(self.name)
        replicas = client.sentinel_slaves(self.name)
        return master["num-other-sentinels"] >= len(self.ports) - 1 and any(
            r.get("master-link-status") == "ok" and not r.get("is_sdown") for r in replicas
        )

    def master_port_now(self) -> int | None:
        """The primary's port as the first Sentinel that answers names it."""
        for index in range(len(self.ports)):
            try:
                address = self.client(index).sentinel_get_master_addr_by_name(self.name)
            except redis.RedisError:
                continue
            if address:
                return int(address[1])
        return None

    def wait_for_promotion(self, old_port: int, timeout: float = 30) -> int:
        """The port of the replica the Sentinels promoted instead of ``old_port``."""
        deadline = time.monotonic() + timeout
        while True:
            port = self.master_port_now()
            if port is not None and port != old_port:
                return port
            if time.monotonic() > deadline:
                raise TimeoutError(f"no failover from {old_port} within {timeout} s: {self.log()[-3000:]}")
            time.sleep(0.05)

    def log(self) -> str:
        return "\n".join(
            f"--- sentinel {port}\n" + (d / "sentinel.log").read_text(errors="replace")[-1500:]
            for port, d in zip(self.ports, self.dirs, strict=True)
            if (d / "sentinel.log").exists()
        )

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
        for directory in self.dirs:
            shutil.rmtree(directory, ignore_errors=True)

    def __enter__(self) -> Sentinels:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to 127.0.0.1:``target``, in a thread of its own.

    ``cut()`` closes the listening socket and resets every open connection: the link is
    down and new connections are refused. ``restore()`` listens again on the same port.
    """

    def __init__(self, target: int, port: int | None = None):
        self.target = target
        self.port = port or free_port()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: asyncio.base_events.Server | None = None
        self.transports: set[asyncio.BaseTransport] = set()
        self.thread.start()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.transport.abort()
            return
        pair = {writer.transport, up_writer.transport}
        self.transports |= pair
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            self.transports -= pair

    async def _listen(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True, backlog=512)

    async def _cut(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        for transport in list(self.transports):
            transport.abort()
        self.transports.clear()

    def _run(self, coro) -> None:
        asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)

    def start(self) -> TcpProxy:
        self._run(self._listen())
        return self

    restore = start

    def cut(self) -> None:
        self._run(self._cut())

    async def _shutdown(self) -> None:
        await self._cut()  # the connections' tasks end on their own once their transports are gone
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if tasks:
            await asyncio.wait(tasks, timeout=2)

    def close(self) -> None:
        self._run(self._shutdown())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- The ledger of sends ------------------------------------------------------------------

ACKED, REFUSED, UNKNOWN = "acked", "refused", "unknown"


@dataclass
class Send:
    client_id: str
    room: str
    body: str
    attempts: list[str] = field(default_factory=list)  # "acked", "refused:<code>", "unknown"
    seq: int | None = None
    acked_at: float | None = None  # time.monotonic() of the ack

    @property
    def final(self) -> str:
        last = self.attempts[-1] if self.attempts else UNKNOWN
        return last.split(":", 1)[0]


class Ledger:
    def __init__(self) -> None:
        self.sends: dict[str, Send] = {}

    def new(self, room: str, body: str) -> Send:
        send = Send(client_id=str(uuid.uuid4()), room=room, body=body)
        self.sends[send.client_id] = send
        return send

    def of(self, final: str) -> list[Send]:
        return [s for s in self.sends.values() if s.final == final]

    def attempt_counts(self) -> Counter:
        return Counter(a for s in self.sends.values() for a in s.attempts)

    def first_outcomes(self) -> Counter:
        return Counter(s.attempts[0] for s in self.sends.values() if s.attempts)

    def summary(self) -> str:
        finals = Counter(s.final for s in self.sends.values())
        attempts = self.attempt_counts()
        return (
            f"{len(self.sends)} messages: {finals[ACKED]} acked, {finals[REFUSED]} refused, "
            f"{finals[UNKNOWN]} unknown in the end; attempts: "
            + ", ".join(f"{k} {v}" for k, v in sorted(attempts.items()))
        )


# --- A client that follows the contract through failures ------------------------------------


class ChatClient:
    """One tab: one socket at a time, any number of rooms, reconnecting to any live web
    process and resubscribing with ``since`` = the last ``seq`` it saw."""

    def __init__(
        self,
        name: str,
        session_key: str,
        ports: Callable[[], list[int]],
        rooms: Iterable[str],
        *,
        first_port: int | None = None,
        reply_timeout: float = 10.0,
        reconnect_for: float = 90.0,
        backoff: tuple[float, float] = (0.1, 2.0),
    ):
        self.name = name
        self.session_key = session_key
        self.ports = ports
        self.rooms = list(rooms)
        self.port = first_port
        self.reply_timeout = reply_timeout
        self.reconnect_for = reconnect_for
        self.backoff = backoff
        self.ws = None
        self.last_seq: dict[str, int] = dict.fromkeys(self.rooms, 0)
        self.received: dict[str, list[int]] = {room: [] for room in self.rooms}
        self.client_ids: dict[str, list[str]] = {room: [] for room in self.rooms}
        self.resyncing: set[str] = set()
        self.waiters: dict[str, asyncio.Future] = {}
        self.connected = asyncio.Event()
        self.closing = False
        self.reader: asyncio.Task | None = None
        self.reconnects = 0
        self.failed_handshakes = 0
        self.duplicates = 0
        self.gaps = 0
        self.unrecovered = 0
        self.http_recovered = 0
        self.close_codes: Counter = Counter()
        self.errors: Counter = Counter()
        self.ports_used: list[int] = []
        # The longest time this client was without a live subscription after losing one.
        self.down_since: float | None = None
        self.longest_outage = 0.0
        # A `reconnect` frame's wait (seconds), for the close (1012) that follows it.
        self.reconnect_after: float | None = None

    # The connection -------------------------------------------------------------------

    def _next_port(self) -> int:
        live = sorted(self.ports())
        if self.port in live and (not self.ports_used or len(live) == 1):
            return self.port
        # After a failure, another process: spread by name, move on with each attempt.
        others = [p for p in live if p != self.port] or live
        return others[(self.reconnects + self.failed_handshakes + sum(map(ord, self.name))) % len(others)]

    async def _connect(self, port: int):
        """A new socket to the web process on ``port`` (a subclass may reach the site
        another way: through a proxy, tests/container)."""
        return await connect(
            f"ws://127.0.0.1:{port}/ws/",
            additional_headers={"Cookie": f"sessionid={self.session_key}"},
            origin="http://127.0.0.1",
            open_timeout=15,
            close_timeout=2,
            max_size=2**22,
            ping_interval=None,
        )

    async def _open(self) -> None:
        port = self._next_port()
        ws = await self._connect(port)
        self.ws, self.port = ws, port
        self.ports_used.append(port)
        for room in self.rooms:
            self.resyncing.add(room)
            await ws.send(json.dumps({"type": "subscribe", "room": room, "since": self.last_seq[room]}))

    async def start(self) -> ChatClient:
        """Connect (retrying as a browser does: a handshake may be refused or time out in a
        crowd) and subscribe."""
        try:
            await self._open()
        except (OSError, InvalidHandshake, TimeoutError, ConnectionClosed):
            self.failed_handshakes += 1
            if not await self._reconnect():
                raise
            self.reconnects -= 1  # a first connection, not a reconnection
        self.reader = asyncio.create_task(self._read())
        await self.wait_subscribed()
        return self

    async def wait_subscribed(self, timeout: float = 30) -> None:
        await asyncio.wait_for(self.connected.wait(), timeout)

    async def _reconnect(self) -> bool:
        self.connected.clear()
        deadline = time.monotonic() + self.reconnect_for
        delay, ceiling = self.backoff
        while not self.closing and time.monotonic() < deadline:
            try:
                await self._open()
                self.reconnects += 1
                return True
            except (OSError, InvalidHandshake, TimeoutError, ConnectionClosed):
                self.failed_handshakes += 1
                await asyncio.sleep(delay * random.uniform(0.5, 1.5))  # jitter, as the browser client
                delay = min(delay * 2, ceiling)
        return False

    async def _read(self) -> None:
        while not self.closing:
            try:
                raw = await self.ws.recv()
            except ConnectionClosed as closed:
                self._fail_waiters()
                if self.closing:
                    return
                self.down_since = time.monotonic()
                code = closed.rcvd.code if closed.rcvd else 1006
                self.close_codes[code] += 1
                if code == 1012 and self.reconnect_after is not None:
                    # The process is restarting: come back after its hint, with jitter (as the browser).
                    await asyncio.sleep(self.reconnect_after + random.uniform(0, 0.1))
                self.reconnect_after = None
                if not await self._reconnect():
                    return
                continue
            self._on_frame(json.loads(raw))

    def _fail_waiters(self) -> None:
        for future in self.waiters.values():
            if not future.done():
                future.set_result(UNKNOWN)
        self.waiters.clear()

    def _on_frame(self, frame: dict) -> None:
        kind = frame.get("type")
        room = frame.get("room")
        if kind == "message" and room in self.last_seq:
            if room in self.resyncing:
                return  # the old subscription's tail: the replay after `subscribed` covers it
            seq = frame["seq"]
            if seq <= self.last_seq[room]:
                self.duplicates += 1
                return
            if seq > self.last_seq[room] + 1:
                # The contract's gap rule: resubscribe with the last seq seen.
                self.gaps += 1
                self._resubscribe(room)
                return
            self.last_seq[room] = seq
            self.received[room].append(seq)
            self.client_ids[room].append(frame["client_id"])
        elif kind == "subscribed" and room in self.last_seq:
            self.resyncing.discard(room)
            if not frame["recovered"]:
                self.unrecovered += 1
                asyncio.get_running_loop().create_task(self._recover_over_http(room, frame["seq"]))
            if not self.resyncing:
                self.connected.set()
                if self.down_since is not None:
                    self.longest_outage = max(self.longest_outage, time.monotonic() - self.down_since)
                    self.down_since = None
        elif kind == "ack":
            self._settle(frame.get("ref"), f"{ACKED}:{frame['seq']}")
        elif kind == "reconnect":
            self.reconnect_after = frame["after_ms"] / 1000
        elif kind == "error":
            self.errors[frame["code"]] += 1
            self._settle(frame.get("ref"), f"{REFUSED}:{frame['code']}")

    def _settle(self, ref: object, outcome: str) -> None:
        future = self.waiters.pop(ref, None) if isinstance(ref, str) else None
        if future is not None and not future.done():
            future.set_result(outcome)

    def _resubscribe(self, room: str) -> None:
        self.resyncing.add(room)
        frame = {"type": "subscribe", "room": room, "since": self.last_seq[room]}
        asyncio.get_running_loop().create_task(self._send_quietly(frame))

    async def _send_quietly(self, frame: dict) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self.ws.send(json.dumps(frame))

    async def _recover_over_http(self, room: str, upto: int) -> None:
        """Too many missed for a replay: the contract says reload history over HTTP."""
        self.resyncing.add(room)
        while self.last_seq[room] < upto:
            page = await asyncio.to_thread(self._history_after, room, self.last_seq[room])
            if not page["messages"]:
                break
            for message in page["messages"]:
                if message["seq"] == self.last_seq[room] + 1:
                    self.last_seq[room] = message["seq"]
                    self.received[room].append(message["seq"])
                    self.client_ids[room].append(message["client_id"])
            self.http_recovered += len(page["messages"])
        self._resubscribe(room)

    def _history_after(self, room: str, after: int) -> dict:
        request = Request(
            f"http://127.0.0.1:{self.port}/rooms/{room}/messages/?after={after}&limit=200",
            headers={"Cookie": f"sessionid={self.session_key}"},
        )
        with urlopen(request, timeout=10) as response:  # noqa: S310 (our own 127.0.0.1)
            return json.loads(response.read())

    # Sending --------------------------------------------------------------------------

    async def attempt(self, send: Send) -> str:
        """One attempt at a send; records and returns its outcome."""
        try:
            await asyncio.wait_for(self.connected.wait(), self.reply_timeout)
        except TimeoutError:
            return "unsent"  # never left the client: not an attempt
        future = asyncio.get_running_loop().create_future()
        self.waiters[send.client_id] = future
        frame = {"type": "send", "room": send.room, "body": send.body, "client_id": send.client_id}
        try:
            await self.ws.send(json.dumps({**frame, "ref": send.client_id}))
        except ConnectionClosed:
            self.waiters.pop(send.client_id, None)
            return "unsent"
        try:
            outcome = await asyncio.wait_for(future, self.reply_timeout)
        except TimeoutError:
            self.waiters.pop(send.client_id, None)
            outcome = UNKNOWN
        if outcome.startswith(ACKED):
            send.seq = int(outcome.split(":")[1])
            send.acked_at = time.monotonic()
            outcome = ACKED
        send.attempts.append(outcome)
        return outcome

    async def send_until_settled(
        self,
        send: Send,
        *,
        retry: Iterable[str] = ("refused:unavailable", UNKNOWN, "unsent"),
        give_up_after: float = 60.0,
    ) -> str:
        """Send, and retry with the same ``client_id`` while the outcome is one of ``retry``."""
        retry = set(retry)
        deadline = time.monotonic() + give_up_after
        delay = 0.1
        while True:
            outcome = await self.attempt(send)
            if outcome not in retry or time.monotonic() > deadline:
                return outcome
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def close(self) -> None:
        self.closing = True
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.close()
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.reader


async def open_clients(
    specs: list[tuple[str, str, int]], ports: Callable[[], list[int]], rooms: list[str], **options
) -> list[ChatClient]:
    """Open clients (name, session key, first port) concurrently, each subscribed to ``rooms``."""
    clients = [ChatClient(name, key, ports, rooms, first_port=port, **options) for name, key, port in specs]
    await asyncio.gather(*(c.start() for c in clients))
    return clients


async def talk(
    clients: list[ChatClient],
    ledger: Ledger,
    rooms: list[str],
    per_client: int,
    *,
    interval: float = 0.0,
    retry: Iterable[str] = ("refused:unavailable", UNKNOWN, "unsent"),
    give_up_after: float = 60.0,
) -> None:
    """Each client sends ``per_client`` messages, one at a time, over the rooms in turn."""

    async def one(index: int, client: ChatClient) -> None:
        for i in range(per_client):
            room = rooms[(index + i) % len(rooms)]
            send = ledger.new(room, f"{client.name} #{i}")
            await client.send_until_settled(send, retry=retry, give_up_after=give_up_after)
            if interval:
                await asyncio.sleep(interval)

    await asyncio.gather(*(one(i, c) for i, c in enumerate(clients)))


async def blast(clients: list[ChatClient], ledger: Ledger, room: str, per_client: int, window: int = 50) -> None:
    """Each client keeps up to ``window`` sends in flight: the fastest the real path goes."""

    async def one(client: ChatClient) -> None:
        gate = asyncio.Semaphore(window)

        async def single(i: int) -> None:
            async with gate:
                await client.send_until_settled(ledger.new(room, f"{client.name} bulk {i}"))

        await asyncio.gather(*(single(i) for i in range(per_client)))

    await asyncio.gather(*(one(c) for c in clients))


async def wait_for_delivery(clients: list[ChatClient], latest: dict[str, int], timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(c.last_seq[r] >= latest[r] for c in clients for r in c.rooms if r in latest):
            return True
        await asyncio.sleep(0.1)
    return False


# --- Counting ---------------------------------------------------------------------------


def stored_anywhere(client_ids: list[str], room_id: int, url: str) -> list[str]:
    """The client_ids the room's Redis (its dedupe keys) or PostgreSQL holds."""
    client = redis.Redis.from_url(url)
    # Dedupe keys are per author: ``…:cid:<author>:<client_id>`` (messaging.store.keys.RoomKeys).
    dedupe = {key.decode().rsplit(":", 1)[-1] for key in client.scan_iter(match=f"pubsub:room:{{{room_id}}}:cid:*")}
    in_redis = set(client_ids) & dedupe
    in_pg = {cid for _, _, cid in pg_rows([room_id])}
    return sorted(in_redis | (set(client_ids) & in_pg))


def room_latest(room_id: int, url: str) -> int:
    """The room's last seq according to its Redis."""
    value = redis.Redis.from_url(url).get(f"pubsub:room:{{{room_id}}}:seq")
    return int(value or 0)


def pg_rows(room_ids: list[int]) -> list[tuple[int, int, str]]:
    """(room_id, seq, client_id) of the rooms' rows, from a thread of its own."""
    from django.db import connection

    from messaging.models import Message

    def read():
        try:
            rows = Message.objects.filter(room_id__in=room_ids).values_list("room_id", "seq", "client_id")
            return [(r, s, str(c)) for r, s, c in rows.order_by("room_id", "seq")]
        finally:
            connection.close()

    if _in_event_loop():
        result: list = []
        thread = threading.Thread(target=lambda: result.append(read()))
        thread.start()
        thread.join()
        return result[0]
    return read()


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def wait_for_rows(room_ids: list[int], expected: int, timeout: float = 60) -> list[tuple[int, int, str]]:
    deadline = time.monotonic() + timeout
    while True:
        rows = pg_rows(room_ids)
        if len(rows) >= expected or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


def pg_connection_count(dbname: str) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [dbname])
        return cursor.fetchone()[0]


@dataclass
class Verdict:
    """The final count: acked against rows against deliveries."""

    acked: int
    refused: int
    unknown: int
    unknown_stored: int
    rows: int
    received: dict[str, int]
    problems: list[str]
    lost: int = 0
    duplicated: int = 0

    def line(self) -> str:
        per_client = sorted(set(self.received.values()))
        shown = per_client if len(per_client) <= 4 else [per_client[0], "…", per_client[-1]]
        return (
            f"acked {self.acked}, refused {self.refused}, unknown {self.unknown} "
            f"({self.unknown_stored} of them stored, {self.unknown - self.unknown_stored} not), "
            f"rows in PostgreSQL {self.rows}, received per client {shown} over {len(self.received)} clients"
        )


def verify(
    ledger: Ledger,
    rows: list[tuple[int, int, str]],
    clients: list[ChatClient],
    room_ids: dict[str, int],
) -> Verdict:
    """Every acked message stored once with its seq, every unknown one at most once, every
    refused one never; seq dense per room; every client received every row once, in order."""
    problems: list[str] = []
    lost: set[str] = set()
    duplicated = 0
    by_cid = Counter(cid for _, _, cid in rows)
    seq_of = {cid: (room_id, seq) for room_id, seq, cid in rows}
    for cid, count in by_cid.items():
        if count > 1:
            problems.append(f"client_id {cid} stored {count} times")
            duplicated += count - 1
        if cid not in ledger.sends:
            problems.append(f"row {seq_of[cid]} has a client_id nobody sent: {cid}")
    unknown_stored = 0
    for send in ledger.sends.values():
        stored = by_cid.get(send.client_id, 0)
        if send.final == ACKED:
            if stored != 1:
                problems.append(f"acked {send.client_id} (seq {send.seq}) stored {stored} times")
                if not stored:
                    lost.add(send.client_id)
            elif seq_of[send.client_id] != (room_ids[send.room], send.seq):
                problems.append(f"acked {send.client_id} with seq {send.seq}, stored as {seq_of[send.client_id]}")
        elif send.final == REFUSED and stored:
            problems.append(f"refused {send.client_id} {send.attempts} was stored")
        elif send.final == UNKNOWN:
            unknown_stored += stored
    per_room: dict[int, list[int]] = {}
    for room_id, seq, _ in rows:
        per_room.setdefault(room_id, []).append(seq)
    for room_id, seqs in per_room.items():
        if seqs != list(range(1, len(seqs) + 1)):
            problems.append(f"room {room_id}: seqs are not 1..{len(seqs)}")
    received = {}
    for client in clients:
        total = 0
        for room in client.rooms:
            expected = [cid for room_id, _, cid in rows if room_id == room_ids[room]]
            got = client.client_ids[room]
            total += len(got)
            if got != expected:
                lost |= set(expected) - set(got)
                missing = len(set(expected) - set(got))
                problems.append(
                    f"{client.name} in {room}: received {len(got)} (missing {missing}), PostgreSQL has {len(expected)}"
                )
        received[client.name] = total
        if client.duplicates:
            problems.append(f"{client.name} received {client.duplicates} duplicates")
            duplicated += client.duplicates
    finals = Counter(s.final for s in ledger.sends.values())
    return Verdict(
        acked=finals[ACKED],
        refused=finals[REFUSED],
        unknown=finals[UNKNOWN],
        unknown_stored=unknown_stored,
        rows=len(rows),
        received=received,
        problems=problems,
        lost=len(lost),
        duplicated=duplicated,
    )


def percentile(values: list[float], q: float) -> float:
    """The value at quantile ``q`` (0..1) of ``values``, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def client_stats(clients: list[ChatClient]) -> str:
    codes = sum((c.close_codes for c in clients), Counter())
    errors = sum((c.errors for c in clients), Counter())
    return (
        f"reconnects {sum(c.reconnects for c in clients)}, failed handshakes "
        f"{sum(c.failed_handshakes for c in clients)}, gaps seen {sum(c.gaps for c in clients)}, "
        f"unrecovered subscribes {sum(c.unrecovered for c in clients)}, close codes {dict(codes)}, "
        f"errors {dict(errors)}"
    )


# --- The chaos table ----------------------------------------------------------------------

CHAOS_ROWS: list[dict] = []


def chaos_row(
    fault: str,
    *,
    acked: int,
    stored: int | None,
    delivered: int | None,
    lost: int,
    duplicated: int,
    recovery: float | None = None,
) -> None:
    """One row of the table `make chaos` prints (tests/conftest.py prints it at the end).

    ``delivered`` counts copies received by the test's clients; ``lost`` counts acked
    messages missing from PostgreSQL or from a client that should have had them;
    ``recovery`` is the seconds from the repair (or the fault) to everything delivered
    and stored, where the test measures it. None: the test does not count that column."""
    CHAOS_ROWS.append(
        {
            "fault": fault,
            "acked": acked,
            "stored": stored,
            "delivered": delivered,
            "lost": lost,
            "duplicated": duplicated,
            "recovery": recovery,
        }
    )


def longest_outage(clients: list[ChatClient]) -> float | None:
    """Seconds from a client losing its socket to its resubscription, at worst; None when
    no client lost one."""
    outages = [c.longest_outage for c in clients if c.longest_outage]
    return max(outages) if outages else None


def verdict_row(fault: str, verdict: Verdict, recovery: float | None = None) -> None:
    chaos_row(
        fault,
        acked=verdict.acked,
        stored=verdict.rows,
        delivered=sum(verdict.received.values()) if verdict.received else None,
        lost=verdict.lost,
        duplicated=verdict.duplicated,
        recovery=recovery,
    )


def chaos_table(rows: list[dict]) -> str:
    """The rows as a Markdown table."""

    def cell(value) -> str:
        if value is None:
            return "—"
        return f"{value:.1f} s" if isinstance(value, float) else str(value)

    columns = ["fault", "acked", "stored", "delivered", "lost", "duplicated", "recovery"]
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(cell(row[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


TABLE_START = "<!-- chaos table: written by make chaos -->"
TABLE_END = "<!-- end of chaos table -->"


def write_reliability_table(path: Path, rows: list[dict], *, passed: int, failed: int) -> None:
    """Put the table between the markers in ``path`` (docs/reliability.md), with when and
    on what it was run."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, check=False).stdout
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    block = (
        f"{TABLE_START}\n"
        f"Run {stamp} on commit {commit or 'unknown'}{' plus uncommitted changes' if dirty.strip() else ''}, "
        f"{os.cpu_count()} cores: {passed} tests passed, {failed} failed.\n\n"
        f"{chaos_table(rows)}\n{TABLE_END}"
    )
    text = path.read_text() if path.exists() else f"{TABLE_START}\n{TABLE_END}\n"
    head, _, rest = text.partition(TABLE_START)
    _, _, tail = rest.partition(TABLE_END)
    path.write_text(head + block + tail)


def report(name: str, *lines: str) -> None:
    print(f"\n[{name}]")
    for line in lines:
        print(f"  {line}")
    with open(os.environ.get("FAULTS_REPORT", "/tmp/pubsub-faults-report.txt"), "a") as out:
        out.write(f"[{name}]\n" + "".join(f"  {line}\n" for line in lines))
