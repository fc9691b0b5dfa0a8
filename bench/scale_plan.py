"""What a ``python -m bench.scale`` run is asked (``ScalePlan``: its defaults, the database and Redis
database of its own, the targets its figures are held to) and the layout that follows: how many
web processes hold the sockets (the storm's survivors hold them all, each under the open-files
limit), the rooms' sizes, each socket's home port and each load generator's source address.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/pubsub_bench_scale"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/10"
FILE_LIMIT = 20_000  # open files a process may have on the benchmark machine (a hard limit)

TARGETS = {
    "connect_s": 120.0,  # all sockets connected and subscribed within
    "kib_per_socket": 30.0,
    "trickle_p99_ms": 200.0,
    "storm_s": 60.0,  # all back on the other processes within
}


@dataclass
class ScalePlan:
    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str = DEFAULT_REDIS_URL
    sections: list[str] = field(default_factory=lambda: ["scale", "storm", "soak"])
    sockets: int = 100_000
    per_web: int = 16_000  # sockets a web process may hold (under FILE_LIMIT, with room for its own files)
    per_client: int = 16_000  # sockets a load-generator process holds at most
    room_size: int = 20
    big_rooms: int = 3
    big_room_size: int = 3_000
    connect_concurrency: int = 400  # handshakes at once, over every load generator
    trickle_share: float = 0.01  # of the users, each sending one message a minute
    trickle_seconds: float = 60.0
    idle_seconds: float = 10.0
    storm_sockets: int = 50_000
    storm_window: float = 90.0  # seconds of trickle that the storm happens in (the kill after 5 s)
    storm_kill_after: float = 5.0
    storm_wait: float = 180.0  # seconds after the kill to wait for every client to be back
    soak_sockets: int = 20_000
    soak_minutes: float = 30.0
    soak_rate: float = 20.0  # sends a second
    soak_sample: float = 10.0
    soak_big_rooms: int = 1
    drain_timeout: float = 10.0
    leak_wait: float = 60.0
    profile: bool = False  # py-spy on the web processes: connect, idle, trickle; the storm's survivors
    # "site", or "bare": the bare ASGI reference (bench.bare) on the same layout, load
    # generators and Redis, the ceiling of the server the site runs on (the scale section only)
    server: str = "site"
    log: object = print


# --- layout --------------------------------------------------------------------------


def web_layout(sockets: int, per_web: int, storm: int) -> tuple[int, int]:
    """(web processes, of which killed in the storm): the survivors hold every socket."""
    survivors = max(1, math.ceil(sockets / per_web))
    if not storm:
        return survivors, 0
    storm = min(storm, sockets)
    for total in range(survivors + 1, 200):
        killed = math.ceil(storm * total / sockets)
        if total - killed >= survivors:
            return total, killed
    raise SystemExit(f"no layout of web processes holds {sockets} sockets with {storm} of them killed")


def rooms_for(sockets: int, room_size: int, big_rooms: int, big_room_size: int) -> list[int]:
    """Room sizes: the big rooms first (if the sockets allow), then rooms of ``room_size``."""
    big = [big_room_size] * big_rooms if big_rooms * big_room_size <= sockets // 2 else []
    rest = sockets - sum(big)
    sizes = big + [room_size] * (rest // room_size)
    if rest % room_size:
        sizes.append(rest % room_size)
    return sizes


def specs_for(rooms, ports: list[int], clients: int) -> list[list[dict]]:
    """Each socket: a home port (round robin, as a load balancer spreads them), then the others."""
    per_client: list[list[dict]] = [[] for _ in range(clients)]
    n = 0
    for slug, sessions in rooms:
        for session in sessions:
            home = n % len(ports)
            per_client[n % clients].append({"ports": ports[home:] + ports[:home], "session": session, "room": slug})
            n += 1
    return per_client


def source_address(i: int) -> str:
    return f"127.0.0.{2 + i}"
