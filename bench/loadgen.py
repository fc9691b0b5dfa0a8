"""The load generator: one client process (uvloop + picows) holding many WebSocket members.

A *member* is one connection, signed in with its user's session cookie and
subscribed to one room. The orchestrator (``bench.runner``, through
``bench.clients.ClientPool``) drives each client process over a pipe with a few commands:

- ``connect``    open and subscribe a list of members, a bounded number of handshakes at a
                 time; a member whose connection is closed or refused before it is subscribed
                 (1013 Try Again Later from a web process with too many handshakes waiting)
                 tries again after the browser client's backoff (static/js/socket.js)
- ``reconnect``  a reconnect storm: drop every connection at once (no close handshake, as
                 a network blip does) and bring every member back, all at once after the
                 browser's backoff, resubscribing with ``since`` = the last seq it saw
- ``run``        send ``rate`` messages a second for ``duration`` seconds (open loop:
                 the schedule does not wait for acks), then wait for the stream to drain
- ``tally``      count what each member received against the rooms' acked ``seq`` ranges
- ``close``

Every message body starts with the send time (``time.monotonic_ns()``, the same
clock in every process of the machine), so a member computes the latency of each
message it receives, whoever sent it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import resource
import time
from array import array
from dataclasses import dataclass, field
from itertools import cycle

import orjson
from picows import WSListener, WSMsgType, WSTransport, ws_connect

from messaging.frames import uuid7

BODY_PAD = "x" * 200
# A member that is still not in this long after its batch started (plus the batch's time
# budget) gives up trying again, and counts as failed.
RETRY_FOR = 120.0
# A subscribe carries this ref, as the browser's does (static/js/room-stream.js): an error about
# it that says "not now" (a backing service failed, or too many subscribes) is tried again after
# the wait it asks for (1 s without one) and a bit of jitter; any other error refuses it.
SUBSCRIBE_REF = "subscribe"
SUBSCRIBE_RETRYABLE = frozenset({"unavailable", "rate_limited"})


@dataclass
class StepState:
    sent: int = 0
    send_errors: int = 0
    unacked: int = 0
    # room -> list of acked seqs; and (room, seq, ack time) when asked to keep them
    acked: dict[str, list[int]] = field(default_factory=dict)
    ack_times: list[tuple[str, int, int]] = field(default_factory=list)
    ack_latency_ns: array = field(default_factory=lambda: array("q"))
    error_codes: dict[str, int] = field(default_factory=dict)
    last_message_ns: int = 0
    last_ack_ns: int = 0
    foreign: int = 0  # message frames for another room, or with a body this run did not send


class Closed(ConnectionError):
    """The connection ended before the subscription stood (``code``: its close code, if any)."""

    def __init__(self, code: int | None):
        super().__init__(f"closed before subscribed (close code {code})")
        self.code = code


class Refused(RuntimeError):
    """The server answered, and said no: a browser would not try again."""


def _retrieved(future: asyncio.Future) -> None:
    """Mark a future's exception as seen: a member given up on must not log 'never retrieved'."""
    if not future.cancelled():
        future.exception()


def browser_backoff(attempts: int) -> float:
    """static/js/socket.js: ceiling = min(30 s, 0.5 s x 2^min(attempts, 6)); wait ceiling/2 + random x ceiling/2.

    ``attempts`` counts failed tries since the connection last served (its first frame resets
    it), so 1013s in a row back off further each time.
    """
    ceiling = min(30.0, 0.5 * 2 ** min(attempts, 6))
    return ceiling / 2 + random.random() * ceiling / 2


@dataclass
class JoinStats:
    """What bringing a batch of members in took."""

    started: float
    failures: list[str] = field(default_factory=list)
    skipped: int = 0
    retries_1013: int = 0  # closed with 1013 (Try Again Later) before subscribed, then tried again
    retries_other: int = 0  # refused, reset, timed out or closed otherwise, then tried again
    seconds_each: list[float] = field(default_factory=list)  # first try -> subscribed, per member
    retry_reasons: dict[str, int] = field(default_factory=dict)  # why tries failed (those tried again)
    last_in: float = 0.0

    def reply(self, members: int) -> dict:
        return {
            "connected": len(self.seconds_each),
            "failed": len(self.failures),
            "skipped": self.skipped,
            "asked": members,
            "failures": self.failures[:5],
            "retries_1013": self.retries_1013,
            "retries_other": self.retries_other,
            "retry_reasons": self.retry_reasons,
            "seconds_each": self.seconds_each,
            "seconds": (self.last_in or time.monotonic()) - self.started,
        }


class Member(WSListener):
    """One connection subscribed to one room; records what it receives."""

    def __init__(self, agent: Agent, spec: dict):
        self.agent = agent
        self.spec = spec
        self.room = spec["room"]
        self.sends = spec.get("sends", True)  # False: a spectator, who only receives
        self.transport: WSTransport | None = None
        self.subscribed: asyncio.Future = asyncio.get_running_loop().create_future()
        self.subscribed.add_done_callback(_retrieved)
        self.base_seq = 0  # the room's seq when the subscription stood
        self.seqs = array("q")  # seqs received in this step, in arrival order
        self.lat_ns = array("q")  # their latencies
        self.top_seq = 0
        self.closed = False
        self.close_code: int | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.closed = True
        if not self.subscribed.done():
            self.subscribed.set_exception(Closed(self.close_code))

    def on_ws_frame(self, transport: WSTransport, frame) -> None:
        if frame.msg_type is not WSMsgType.TEXT:
            if frame.msg_type is WSMsgType.CLOSE:
                self.close_code = int(frame.get_close_code())
                transport.send_close(frame.get_close_code())
                transport.disconnect()
            return
        now = time.monotonic_ns()
        data = orjson.loads(frame.get_payload_as_memoryview())
        kind = data["type"]
        if kind == "message":
            body = data["body"]
            seq = data["seq"]
            try:
                if data["room"] != self.room:
                    raise ValueError(data["room"])
                latency = now - int(body[: body.index(" ")])
            except (ValueError, TypeError):
                # Not one of this run's messages in this member's room: count it, keep it
                # out of the figures (it would mean another run's events reached the server).
                self.agent.step.foreign += 1
                return
            self.seqs.append(seq)
            self.lat_ns.append(latency)
            if seq > self.top_seq:
                self.top_seq = seq
            self.agent.step.last_message_ns = now
        elif kind == "ack":
            self.agent.on_ack(self.room, data, now)
        elif kind == "subscribed":
            self.base_seq = data["seq"]
            if not self.subscribed.done():
                self.subscribed.set_result(data)
        elif kind == "error":
            step = self.agent.step
            step.error_codes[data.get("code", "?")] = step.error_codes.get(data.get("code", "?"), 0) + 1
            ref = data.get("ref")
            if ref is not None and self.agent.pending.pop(ref, None) is not None:
                step.send_errors += 1
            if not self.subscribed.done():
                if ref == SUBSCRIBE_REF and data.get("code") in SUBSCRIBE_RETRYABLE:
                    wait = float(data.get("retry_after") or 1) + random.random() * 0.5
                    asyncio.get_running_loop().call_later(wait, self._subscribe_again, self.subscribed)
                else:
                    self.subscribed.set_exception(Refused(f"subscribe refused: {data}"))

    def send_json(self, frame: dict) -> None:
        self.transport.send(WSMsgType.TEXT, orjson.dumps(frame))

    def subscribe(self, since: int | None) -> None:
        self.subscribe_frame = {"type": "subscribe", "room": self.room, "since": since, "ref": SUBSCRIBE_REF}
        self.send_json(self.subscribe_frame)

    def _subscribe_again(self, waiting: asyncio.Future) -> None:
        """The same subscribe again, unless its connection is gone meanwhile (a new one subscribes itself)."""
        if waiting is self.subscribed and not waiting.done() and not self.closed and self.transport is not None:
            self.send_json(self.subscribe_frame)


class Agent:
    def __init__(self) -> None:
        self.members: list[Member] = []
        self.step = StepState()
        self.pending: dict[str, int] = {}  # client_id -> send time (ns)
        self.keep_ack_times = False

    def on_ack(self, room: str, data: dict, now: int) -> None:
        sent_ns = self.pending.pop(data["client_id"], None)
        if sent_ns is None:
            return
        step = self.step
        seq = data["seq"]
        step.acked.setdefault(room, []).append(seq)
        step.ack_latency_ns.append(now - sent_ns)
        step.last_ack_ns = now
        if self.keep_ack_times:
            step.ack_times.append((room, seq, now))

    # --- commands ----------------------------------------------------------

    async def connect(
        self,
        specs: list[dict],
        concurrency: int,
        timeout: float,
        budget: float | None = None,
        max_tries: int = 30,
    ) -> dict:
        """Open and subscribe every member of ``specs`` ({port, session, room[, sends]}).

        At most ``concurrency`` handshakes (and subscribes) at once; a member closed or
        refused before it is subscribed tries again after the browser's backoff, up to
        ``max_tries`` times. With ``budget`` (seconds), members not started by then are skipped.
        """
        stats = JoinStats(started=time.monotonic())
        semaphore = asyncio.Semaphore(concurrency)
        await asyncio.gather(
            *(self._join(spec, None, stats, semaphore, timeout, budget, max_tries, first_wait=0.0) for spec in specs)
        )
        return stats.reply(len(specs))

    async def reconnect(self, *, start_at: float, handshake_timeout: float, max_tries: int = 30) -> dict:
        """A reconnect storm: at ``start_at`` drop every connection, then bring every member back.

        Each member waits the browser's first backoff (0.5-1 s), then reconnects and
        resubscribes with ``since`` = the last seq it saw; no bound on handshakes at once.
        """
        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        old, self.members = self.members, []
        stats = JoinStats(started=time.monotonic())
        for member in old:
            if member.transport is not None and not member.closed:
                member.transport.disconnect()  # no close frame: the network went away
        await asyncio.sleep(0)
        await asyncio.gather(
            *(
                self._join(m.spec, max(m.base_seq, m.top_seq), stats, None, handshake_timeout, None, max_tries,
                           first_wait=browser_backoff(1), top_seq=max(m.base_seq, m.top_seq))
                for m in old
            )
        )  # fmt: skip
        return stats.reply(len(old))

    async def _join(
        self,
        spec: dict,
        since: int | None,
        stats: JoinStats,
        semaphore: asyncio.Semaphore | None,
        timeout: float,
        budget: float | None,
        max_tries: int,
        *,
        first_wait: float,
        top_seq: int = 0,
    ) -> None:
        if first_wait:
            await asyncio.sleep(first_wait)
        began = time.monotonic()
        attempts = 0  # failed tries since the last served connection, as the browser counts them
        for tries in range(1, max_tries + 1):
            if budget is not None and time.monotonic() - stats.started > budget:
                stats.skipped += 1
                return
            member = Member(self, spec)
            member.top_seq = top_seq
            try:
                if semaphore is None:
                    await self._open(member, since, timeout)
                else:
                    async with semaphore:
                        await self._open(member, since, timeout)
            except Refused as error:
                stats.failures.append(str(error)[:200])
                return
            except Exception as error:
                if member.transport is not None and not member.closed:
                    member.transport.disconnect()
                if tries == max_tries or time.monotonic() - stats.started > RETRY_FOR + (budget or 0):
                    stats.failures.append(f"{type(error).__name__}: {error}"[:200])
                    return
                if isinstance(error, Closed) and error.code == 1013:
                    stats.retries_1013 += 1
                else:
                    stats.retries_other += 1
                reason = f"close {error.code}" if isinstance(error, Closed) else f"{type(error).__name__}: {error}"[:80]
                stats.retry_reasons[reason] = stats.retry_reasons.get(reason, 0) + 1
                attempts += 1  # a try that never got subscribed: the browser resets on its first frame
                await asyncio.sleep(browser_backoff(attempts))
                continue
            self.members.append(member)
            stats.last_in = time.monotonic()
            stats.seconds_each.append(stats.last_in - began)
            return

    async def _open(self, member: Member, since: int | None, timeout: float) -> None:
        spec = member.spec
        try:
            transport, _ = await ws_connect(
                lambda: member,
                f"ws://127.0.0.1:{spec['port']}/ws/",
                extra_headers={"Cookie": f"sessionid={spec['session']}"},
                websocket_handshake_timeout=timeout,
                read_buffer_init_size=4096,
                enable_auto_pong=True,
            )
        except Exception as error:
            if " 403" in str(error):  # not signed in: a browser would not try again
                raise Refused(f"handshake refused: {error}") from error
            raise
        member.transport = transport  # on_ws_connected may not have run yet
        member.subscribe(since)
        await asyncio.wait_for(member.subscribed, timeout)

    async def run(
        self,
        *,
        rate: float,
        duration: float,
        start_at: float,
        senders: int | None,
        drain_timeout: float,
        keep_ack_times: bool = False,
        total: int | None = None,
    ) -> dict:
        """Send ``rate`` messages a second (``total`` in all) spread over the senders, then drain."""
        self.step = step = StepState()
        self.keep_ack_times = keep_ack_times
        self.pending.clear()
        for member in self.members:
            member.seqs = array("q")
            member.lat_ns = array("q")
        live = [m for m in self.members if not m.closed and m.sends]
        chosen = live if senders is None else live[:senders]
        total = int(rate * duration) if total is None else total
        if chosen and total:
            await asyncio.sleep(max(0.0, start_at - time.monotonic()))
            await self._pump(cycle(chosen), total, rate)
        # Drain: wait for the acks, and for members to catch up with the rooms' last seq.
        # A backlog is waited for while it still moves (something arrived within
        # ``drain_timeout``), up to three times that in all; what has not come by
        # then counts as lost.
        sent_at = time.monotonic()
        step.last_message_ns = max(step.last_message_ns, time.monotonic_ns())
        while time.monotonic() - sent_at < 3 * drain_timeout:
            await asyncio.sleep(0.05)
            quiet_ns = time.monotonic_ns() - max(step.last_message_ns, step.last_ack_ns)
            if quiet_ns > drain_timeout * 1e9:
                break
            if self.pending:
                continue
            if self._caught_up() and quiet_ns > 300_000_000:
                break
        step.unacked = len(self.pending)
        return {
            "sent": step.sent,
            "send_errors": step.send_errors,
            "unacked": step.unacked,
            "acked": step.acked,
            "error_codes": step.error_codes,
            "ack_latency_ns": step.ack_latency_ns.tobytes(),
            "ack_times": step.ack_times,
            "foreign": step.foreign,
            "send_seconds": duration,
        }

    async def _pump(self, senders, total: int, rate: float) -> None:
        step = self.step
        pending = self.pending
        start = time.monotonic()
        sent = 0
        while sent < total:
            due = min(total, int((time.monotonic() - start) * rate) + 1)
            while sent < due:
                member = next(senders)
                client_id = uuid7()  # as the browser makes them
                now = time.monotonic_ns()
                body = f"{now} {BODY_PAD}"
                pending[client_id] = now
                member.transport.send(
                    WSMsgType.TEXT,
                    orjson.dumps(
                        {"type": "send", "room": member.room, "body": body, "client_id": client_id, "ref": client_id}
                    ),
                )
                sent += 1
            step.sent = sent
            wait = start + sent / rate - time.monotonic()
            await asyncio.sleep(wait if wait > 0 else 0)

    def _caught_up(self) -> bool:
        top: dict[str, int] = {room: max(seqs) for room, seqs in self.step.acked.items() if seqs}
        for member in self.members:
            want = top.get(member.room)
            if want is not None and not member.closed and member.top_seq < want:
                return False
        return True

    def tally(self, ranges: dict[str, tuple[int, int]]) -> dict:
        """Per member: lost, duplicated and out-of-order against the room's acked range (lo, hi]."""
        lost = duplicated = out_of_order = delivered = late_or_foreign = closed = 0
        latencies = array("q")
        for member in self.members:
            if member.closed:
                closed += 1
            lo, hi = ranges.get(member.room, (0, 0))
            previous = 0
            seen: set[int] = set()
            for seq, lat in zip(member.seqs, member.lat_ns, strict=True):
                if not lo < seq <= hi:
                    late_or_foreign += 1
                    continue
                if seq in seen:
                    duplicated += 1
                    continue
                if seq < previous:
                    out_of_order += 1
                seen.add(seq)
                previous = seq
                delivered += 1
                latencies.append(lat)
            lost += (hi - lo) - len(seen)
        return {
            "delivered": delivered,
            "lost": lost,
            "duplicated": duplicated,
            "out_of_order": out_of_order,
            "outside_range": late_or_foreign,
            "closed_members": closed,
            "connections": len(self.members),
            "latency_ns": latencies.tobytes(),
        }

    async def close(self) -> None:
        for member in self.members:
            if member.transport is not None and not member.closed:
                member.transport.send_close()
                member.transport.disconnect()
        self.members.clear()
        await asyncio.sleep(0.1)


async def serve(conn) -> None:
    agent = Agent()
    loop = asyncio.get_running_loop()
    while True:
        command, kwargs = await loop.run_in_executor(None, conn.recv)
        try:
            if command == "connect":
                reply = await agent.connect(**kwargs)
            elif command == "reconnect":
                reply = await agent.reconnect(**kwargs)
            elif command == "run":
                reply = await agent.run(**kwargs)
            elif command == "tally":
                reply = agent.tally(**kwargs)
            elif command == "close":
                await agent.close()
                reply = {"closed": True}
            elif command == "exit":
                await agent.close()
                conn.send({"ok": True})
                return
            else:
                reply = {"error": f"unknown command {command}"}
        except Exception as error:
            reply = {"error": f"{type(error).__name__}: {error}"}
        conn.send(reply)


def raise_open_files_limit() -> int:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def client_main(conn) -> None:
    """Entry point of a client process (multiprocessing, spawn)."""
    import uvloop

    raise_open_files_limit()
    uvloop.run(serve(conn))
