"""The load generator of ``make bench-scale``: one client process holding many thousand members.

Built on ``bench.loadgen`` (the same members, step state, browser backoff and tally),
with what a connection-scale run needs besides:

- every connection is made from this process's own source address (127.0.0.x, bound
  before connect): one address gives ~28,000 ephemeral ports, so several processes
  holding 16,000 sockets each never run short;
- each member has a list of web ports (its own first); when its connection is cut after
  it was subscribed (``arm``: a web process was killed), it comes back as the browser
  does: after the browser's backoff with jitter, on the next port of its list, with
  ``since`` = the last seq it saw; a port that refuses sends it on to the next one;
- a member keeps what it received across those reconnects, so the tally of a step that
  spans a storm counts every seq once, whichever connection brought it;
- ``run`` sends only from members that are subscribed at the moment, in an order
  shuffled once (the trickle: a random 1% of the users a minute, not always the same).
"""

from __future__ import annotations

import asyncio
import random
import time
from array import array

from picows import ws_connect

from bench.loadgen import Agent, Closed, JoinStats, Member, Refused, browser_backoff, raise_open_files_limit
from messaging.frames import uuid7

RETRY_FOR = 180.0


class ScaleMember(Member):
    """A member that can be opened again (same object, same received seqs) on another port."""

    def __init__(self, agent: ScaleAgent, spec: dict):
        super().__init__(agent, spec)
        self.port_index = 0
        self.was_subscribed = False

    @property
    def port(self) -> int:
        ports = self.spec["ports"]
        return ports[self.port_index % len(ports)]

    def reset(self) -> None:
        self.subscribed = asyncio.get_running_loop().create_future()
        self.subscribed.add_done_callback(_retrieved)
        self.transport = None
        self.closed = False
        self.close_code = None

    def on_ws_disconnected(self, transport) -> None:
        super().on_ws_disconnected(transport)
        if self.was_subscribed and self.is_subscribed:
            self.agent.lost_connection(self)

    @property
    def is_subscribed(self) -> bool:
        """Subscribed on its current connection (a cancelled wait is not: ``exception()`` would raise)."""
        done = self.subscribed
        return done.done() and not done.cancelled() and done.exception() is None


def _retrieved(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()


class ScaleAgent(Agent):
    def __init__(self) -> None:
        super().__init__()
        self.source = "127.0.0.1"
        self.armed = False
        self.retry_for = RETRY_FOR
        self.comeback: JoinStats | None = None
        self.comeback_tasks: set[asyncio.Task] = set()
        self.dropped_at: list[float] = []
        self.drop_reasons: dict[str, int] = {}  # how connections were cut in the storm: a close code, or none
        self.order: list[ScaleMember] = []

    # --- connecting -------------------------------------------------------------------

    async def connect(self, specs: list[dict], concurrency: int, timeout: float, source: str = "127.0.0.1") -> dict:
        """Open and subscribe every member of ``specs`` ({ports, session, room}), ``concurrency`` at a time."""
        self.source = source
        stats = JoinStats(started=time.monotonic())
        semaphore = asyncio.Semaphore(concurrency)
        members = [ScaleMember(self, spec) for spec in specs]
        await asyncio.gather(*(self._bring_in(m, None, stats, semaphore, timeout) for m in members))
        self.members.extend(m for m in members if m.was_subscribed)
        self.order = list(self.members)
        random.shuffle(self.order)
        return stats.reply(len(specs))

    async def _bring_in(self, member, since, stats, semaphore, timeout, attempts: int = 0, retry_for=RETRY_FOR) -> bool:
        """Open ``member`` until it is subscribed: the browser's backoff between tries."""
        began = None  # the first try, not the wait for a turn among ``concurrency``
        while True:
            member.reset()
            try:
                if semaphore is None:
                    began = began or time.monotonic()
                    await self._open(member, since, timeout)
                else:
                    async with semaphore:
                        began = began or time.monotonic()
                        await self._open(member, since, timeout)
            except Refused as error:
                stats.failures.append(str(error)[:200])
                return False
            except Exception as error:
                opened = member.transport is not None
                if opened and not member.closed:
                    member.transport.disconnect()
                if time.monotonic() - (began or time.monotonic()) > retry_for:
                    stats.failures.append(f"{type(error).__name__}: {error}"[:200])
                    return False
                if isinstance(error, Closed) and error.code == 1013:
                    stats.retries_1013 += 1
                else:
                    stats.retries_other += 1
                    if not opened:  # nobody there: the next server of the list
                        member.port_index += 1
                reason = f"close {error.code}" if isinstance(error, Closed) else type(error).__name__
                stats.retry_reasons[reason] = stats.retry_reasons.get(reason, 0) + 1
                attempts += 1  # a try that never got subscribed: the browser resets on its first frame
                await asyncio.sleep(browser_backoff(attempts))
                continue
            member.was_subscribed = True
            stats.last_in = time.monotonic()
            stats.seconds_each.append(stats.last_in - (began or stats.last_in))
            return True

    async def _open(self, member: ScaleMember, since: int | None, timeout: float) -> None:
        spec = member.spec
        try:
            transport, _ = await ws_connect(
                lambda: member,
                f"ws://127.0.0.1:{member.port}/ws/",
                extra_headers={"Cookie": f"sessionid={spec['session']}"},
                websocket_handshake_timeout=timeout,
                read_buffer_init_size=1024,
                enable_auto_pong=True,
                local_addr=(self.source, 0),
            )
        except Exception as error:
            if " 403" in str(error):
                raise Refused(f"handshake refused: {error}") from error
            raise
        member.transport = transport
        member.subscribe(since)
        await asyncio.wait_for(member.subscribed, timeout)

    # --- the storm --------------------------------------------------------------------

    def arm(self, on: bool = True, retry_for: float = RETRY_FOR) -> dict:
        """From now on a subscribed member whose connection is cut comes back on its own, trying
        for ``retry_for`` seconds (a browser never stops; the storm's wait is the horizon)."""
        self.armed = on
        self.retry_for = retry_for
        self.comeback = JoinStats(started=time.monotonic())
        self.dropped_at = []
        self.drop_reasons = {}
        return {"armed": on, "members": len(self.members)}

    def lost_connection(self, member: ScaleMember) -> None:
        if not self.armed or self.comeback is None:
            return
        self.dropped_at.append(time.monotonic())
        reason = "no close frame" if member.close_code is None else f"close {member.close_code}"
        self.drop_reasons[reason] = self.drop_reasons.get(reason, 0) + 1
        member.port_index += 1  # the browser's load balancer sends it elsewhere
        since = max(member.base_seq, member.top_seq)
        task = asyncio.get_running_loop().create_task(self._come_back(member, since))
        self.comeback_tasks.add(task)
        task.add_done_callback(self.comeback_tasks.discard)

    async def _come_back(self, member: ScaleMember, since: int) -> None:
        await asyncio.sleep(browser_backoff(1))
        await self._bring_in(member, since, self.comeback, None, 60, attempts=1, retry_for=self.retry_for)

    async def back(self, wait: float) -> dict:
        """Wait until no member is coming back any more (``wait`` seconds at most); what it took."""
        deadline = time.monotonic() + wait
        await asyncio.sleep(0.2)
        while self.comeback_tasks and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        stats = self.comeback or JoinStats(started=time.monotonic())
        reply = stats.reply(len(self.dropped_at))
        reply["still_out"] = sum(1 for m in self.members if m.closed or not m.subscribed.done())
        reply["first_drop"] = min(self.dropped_at, default=None)
        reply["last_in_at"] = stats.last_in or None
        reply["drop_reasons"] = self.drop_reasons
        reply.pop("seconds_each")
        reply["each"] = stats.seconds_each
        self.armed = False
        return reply

    # --- sending --------------------------------------------------------------------

    async def _pump(self, senders, total: int, rate: float) -> None:
        """Send ``total`` messages at ``rate`` a second from members subscribed at that moment."""
        step = self.step
        order = self.order or self.members
        position = random.randrange(len(order)) if order else 0
        start = time.monotonic()
        sent = 0
        while sent < total and order:
            due = min(total, int((time.monotonic() - start) * rate) + 1)
            while sent < due:
                for _ in range(len(order)):
                    member = order[position % len(order)]
                    position += 1
                    if not member.closed and member.is_subscribed:
                        break
                else:
                    step.send_errors += due - sent  # nobody to send from
                    sent = due
                    break
                client_id = uuid7()  # a UUID, as the browser makes them
                now = time.monotonic_ns()
                self.pending[client_id] = now
                member.send_json({"type": "send", "room": member.room, "body": f"{now} scale",
                                  "client_id": client_id, "ref": client_id})  # fmt: skip
                sent += 1
            step.sent = sent
            wait = start + sent / rate - time.monotonic()
            await asyncio.sleep(wait if wait > 0 else 0)

    async def settle(self, top: dict[str, int], wait: float) -> dict:
        """Wait until every member has seen its room's ``top`` seq (replays after a comeback)."""
        deadline = time.monotonic() + wait
        behind = 0
        while time.monotonic() < deadline:
            behind = sum(1 for m in self.members if m.top_seq < top.get(m.room, 0))
            if not behind:
                break
            await asyncio.sleep(0.2)
        return {"behind": behind}

    def tally(self, ranges: dict[str, tuple[int, int]]) -> dict:
        """``Agent.tally`` over the members connected now; the others (not back after a storm)
        count as cut off, and what they missed is not counted as lost: they are still away."""
        here = [m for m in self.members if not m.closed and m.is_subscribed]
        everyone, self.members = self.members, here
        try:
            reply = super().tally(ranges)
        finally:
            self.members = everyone
        reply["closed_members"] = len(everyone) - len(here)
        reply["connections"] = len(everyone)
        return reply

    def forget(self) -> dict:
        """Start a fresh count (the seqs received so far are dropped)."""
        for member in self.members:
            member.seqs = array("q")
            member.lat_ns = array("q")
        return {"members": len(self.members)}

    def status(self) -> dict:
        return {
            "members": len(self.members),
            "open": sum(1 for m in self.members if not m.closed and m.subscribed.done()),
        }


async def serve(conn) -> None:
    agent = ScaleAgent()
    loop = asyncio.get_running_loop()
    commands = {"connect", "run", "tally", "arm", "back", "settle", "forget", "status", "close"}
    while True:
        command, kwargs = await loop.run_in_executor(None, conn.recv)
        if command == "exit":
            await agent.close()
            conn.send({"ok": True})
            return
        try:
            if command not in commands:
                raise ValueError(f"unknown command {command}")
            reply = getattr(agent, command)(**kwargs)
            if asyncio.iscoroutine(reply):
                reply = await reply
            if command == "close":
                reply = {"closed": True}
        except Exception as error:
            reply = {"error": f"{type(error).__name__}: {error}"}
        conn.send(reply)


def client_main(conn) -> None:
    """Entry point of a scale client process (multiprocessing, spawn)."""
    import uvloop

    raise_open_files_limit()
    uvloop.run(serve(conn))
