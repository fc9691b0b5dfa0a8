"""Another member, in a process of its own: subscribed to the fuzzed rooms, it pings the web
process in round trips until its stdin closes, then prints the round trips' figures and what
it saw in each room (JSON): how many frames of each type, by whom (a message's author, a
typing user, the author of an edited or deleted message; "" for frames that name nobody).

    python -m tests.hostile.pinger PORT WEB_PID SESSION_KEY ROOM [ROOM...]

A process of its own so that the fuzzer's work (Hypothesis is busy in the test's process)
does not delay the measure: what it times is the web process's answer. With each round
trip it reads from /proc how long the web process's threads and its own were ready to run
but waited for a CPU (``schedstat``): that part of a round trip is the machine's (six test
runs share two cores here), the rest is the web process's: a loop held up by work, or by a
call that blocks it. A ping is *stalled* when the rest is 100 ms or more.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from pathlib import Path

from websockets.asyncio.client import connect

PING_TIMEOUT = 5.0
PAUSE = 0.02
SLOW_MS = 100.0
TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")


def cpu_ms(pid: int) -> float:
    """CPU time the process used so far (all its threads, user and system), in ms."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * TICK_MS  # utime, stime


def waited_ms(*pids: int) -> float:
    """How long the processes' threads were ready to run but waited for a CPU, so far, in ms."""
    total = 0
    for pid in pids:
        for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
            with contextlib.suppress(OSError, IndexError, ValueError):  # a thread that ended meanwhile
                total += int(stat.read_text().split()[1])
    return total / 1e6


async def main(port: int, web_pid: int, session_key: str, rooms: list[str]) -> dict:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not sys.stdin.buffer.read1(1) else None)
    rtts: list[float] = []
    # For round trips of SLOW_MS or more: (round trip, the web process's CPU meanwhile, the
    # wait for a CPU of the web process and of this one meanwhile), in ms.
    slow: list[tuple[float, float, float]] = []
    me = os.getpid()
    timeouts = 0
    seen: dict[str, int] = {}

    authors: dict[tuple[str, int], str] = {}  # (room, seq) -> who wrote it

    latest: dict[str, int] = {}  # room -> its latest seq when subscribed: what is replayed

    def note(frame: dict) -> None:
        who = (frame.get("author") or frame.get("user") or {}).get("username", "")
        where = (frame.get("room"), frame.get("seq"))
        if frame.get("type") == "message":
            authors[where] = who
            if frame["seq"] <= latest.get(frame["room"], 0):
                return  # written before: replayed, not seen happening
        elif frame.get("type") in ("message_updated", "message_deleted"):
            who = authors.get(where, "?")
        key = f"{frame.get('room')}|{frame.get('type')}|{who}"
        seen[key] = seen.get(key, 0) + 1

    async with connect(
        f"ws://127.0.0.1:{port}/ws/", additional_headers={"Cookie": f"sessionid={session_key}"}, max_size=2**24
    ) as ws:
        for room in rooms:
            # With `since` 0: the rooms' messages so far are replayed, and their authors known.
            await ws.send(json.dumps({"type": "subscribe", "room": room, "since": 0}))
            while (frame := json.loads(await ws.recv())).get("type") != "subscribed":
                note(frame)
            latest[room] = frame["seq"]
        print("ready", flush=True)
        n = 0
        while not stop.is_set():
            n += 1
            started, cpu_before, waited_before = time.perf_counter(), cpu_ms(web_pid), waited_ms(web_pid, me)
            await ws.send(json.dumps({"type": "ping", "ref": n}))
            try:
                async with asyncio.timeout(PING_TIMEOUT):
                    while True:
                        frame = json.loads(await ws.recv())
                        if frame.get("type") == "pong" and frame.get("ref") == n:
                            break
                        note(frame)
                rtts.append(time.perf_counter() - started)
                if rtts[-1] * 1000 >= SLOW_MS:
                    waited = waited_ms(web_pid, me) - waited_before
                    slow.append((round(rtts[-1] * 1000, 1), cpu_ms(web_pid) - cpu_before, round(waited, 1)))
            except TimeoutError:
                timeouts += 1
            await asyncio.sleep(PAUSE)
    rtts.sort()
    return {
        "pings": len(rtts),
        "timeouts": timeouts,
        "max_ms": round(rtts[-1] * 1000, 1) if rtts else None,
        "p50_ms": round(rtts[len(rtts) // 2] * 1000, 1) if rtts else None,
        "p99_ms": round(rtts[int(len(rtts) * 0.99)] * 1000, 1) if rtts else None,
        "over_100_ms": len(slow),
        # The slow round trips that the wait for a CPU does not explain.
        "stalled": [s for s in slow if s[0] - s[2] >= SLOW_MS],
        "slow": sorted(slow, reverse=True)[:10],
        "seen": seen,
    }


if __name__ == "__main__":
    port, pid, key, *slugs = sys.argv[1:]
    print(json.dumps(asyncio.run(main(int(port), int(pid), key, slugs))), flush=True)
