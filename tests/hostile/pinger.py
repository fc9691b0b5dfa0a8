"""Another member, in a process of its own: subscribed to the fuzzed rooms, it pings the web
process in round trips until its stdin closes, then prints the round trips' figures and what
it saw in each room (JSON): how many frames of each type, by whom (a message's author, a
typing user; "" for frames that name nobody).

    python -m tests.hostile.pinger PORT SESSION_KEY ROOM [ROOM...]

A process of its own so that the fuzzer's work (Hypothesis is busy in the test's process)
does not delay the measure: what it times is the web process's answer.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from websockets.asyncio.client import connect

PING_TIMEOUT = 5.0
PAUSE = 0.02


async def main(port: int, session_key: str, rooms: list[str]) -> dict:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not sys.stdin.buffer.read1(1) else None)
    rtts: list[float] = []
    timeouts = 0
    seen: dict[str, int] = {}

    def note(frame: dict) -> None:
        who = (frame.get("author") or frame.get("user") or {}).get("username", "")
        key = f"{frame.get('room')}|{frame.get('type')}|{who}"
        seen[key] = seen.get(key, 0) + 1

    async with connect(
        f"ws://127.0.0.1:{port}/ws/", additional_headers={"Cookie": f"sessionid={session_key}"}, max_size=2**24
    ) as ws:
        for room in rooms:
            await ws.send(json.dumps({"type": "subscribe", "room": room, "ref": room}))
            while (frame := json.loads(await ws.recv())).get("type") != "subscribed":
                pass
        print("ready", flush=True)
        n = 0
        while not stop.is_set():
            n += 1
            started = time.perf_counter()
            await ws.send(json.dumps({"type": "ping", "ref": n}))
            try:
                async with asyncio.timeout(PING_TIMEOUT):
                    while True:
                        frame = json.loads(await ws.recv())
                        if frame.get("type") == "pong" and frame.get("ref") == n:
                            break
                        note(frame)
                rtts.append(time.perf_counter() - started)
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
        "over_100_ms": sum(r > 0.1 for r in rtts),
        "seen": seen,
    }


if __name__ == "__main__":
    port, key, *slugs = sys.argv[1:]
    print(json.dumps(asyncio.run(main(int(port), key, slugs))), flush=True)
