"""What a run of ``python -m bench`` is asked: the servers it can measure (``SERVERS``: the site
on each ASGI server, and the bare reference app), the configurations they run in
(``ServerConfig``: which server, how many web processes, whether acks wait for a Redis
replica), and the plan (``Plan``): every section's shape, ladder and target, and the limits
(p99 under 100 ms, the send limit nobody reaches) the figures are judged by.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
P99_LIMIT_MS = 100.0
# High enough that no benchmark member reaches it: 150 sends a second per user at most in
# `persistence`, and the closed loop of `api --quick`, one user in two rooms, near 2,000 (it
# passed 1,000 a room). The limit's list of a user's send times (LPUSH and LTRIM to the limit,
# gone a second after their last send) holds at most what they sent since they last paused for
# a second: within a step of the ladders, far below 5,000.
BENCH_SEND_LIMIT = "5000/second"
CHANNEL_LAYER = "pubsub"  # the one channel layer the site has (CHANNEL_LAYER=core is gone)

_UVICORN = (
    "uvicorn {app} --host 127.0.0.1 --port $PORT --no-access-log --log-level warning --lifespan off"
    " --loop uvloop --http httptools --ws {ws} --ws-per-message-deflate false --ws-max-size 65536"
    " --ws-ping-interval 20 --ws-ping-timeout 60"
)
SITE_APP = "pubsub_site.asgi:application"
BARE_APP = "bench.bare:app"


@dataclass(frozen=True)
class Server:
    label: str
    command: str
    site: bool = True  # False: the bare reference app (bench/bare.py), not the project


# The servers measured side by side. Each command is run as is (``$PORT`` filled in).
SERVERS: dict[str, Server] = {
    "uvicorn": Server("site on uvicorn (websockets-sansio)", _UVICORN.format(app=SITE_APP, ws="websockets-sansio")),
    "daphne": Server("site on daphne", f"daphne -b 127.0.0.1 -p $PORT {SITE_APP}"),
    "uvicorn-websockets": Server("site on uvicorn (websockets)", _UVICORN.format(app=SITE_APP, ws="websockets")),
    # granian: the ASGI interface without lifespan (Channels' router has no lifespan
    # handler), WebSockets on (its default), one worker process, uvloop.
    "granian": Server(
        "site on granian",
        f"granian --interface asginl --ws --host 127.0.0.1 --port $PORT --workers 1 --runtime-threads 1"
        f" --loop uvloop --no-access-log --log-level warning {SITE_APP}",
    ),
    "bare": Server(
        "bare ASGI reference on uvicorn (websockets-sansio)",
        _UVICORN.format(app=BARE_APP, ws="websockets-sansio"),
        site=False,
    ),
}
REFERENCE = "bare"


@dataclass(frozen=True)
class ServerConfig:
    server: str  # a key of SERVERS
    webs: int = 1
    # A replica of the benchmark's Redis (a redis-server of its own on a free port) and
    # REDIS_WAIT_REPLICAS=1 for the site's processes: an ack waits for the replica (WAIT).
    replica: bool = False

    @property
    def key(self) -> str:
        return f"{self.server}-{self.webs}p" + ("-replica" if self.replica else "")

    @property
    def label(self) -> str:
        return (
            SERVERS[self.server].label
            + (f" ({self.webs} procs)" if self.webs > 1 else "")
            + (", acks wait for a replica (WAIT 1)" if self.replica else "")
        )

    @property
    def web_command(self) -> str:
        return SERVERS[self.server].command

    @property
    def is_reference(self) -> bool:
        return not SERVERS[self.server].site


@dataclass
class Plan:
    database_url: str
    redis_url: str
    configs: list[tuple[ServerConfig, list[str]]]  # each config and the sections it runs
    duration: float = 5.0
    drain_timeout: float = 5.0  # give up draining after this long with nothing arriving (3x at most)
    clients: int = 2
    latency_shape: tuple[int, int] = (10, 20)
    latency_ladder: list[int] = field(
        default_factory=lambda: [1000, 2000, 5000, 10000, 15000, 20000, 30000, 40000, 50000, 60000, 80000]
    )
    fixed_rates: list[int] = field(default_factory=lambda: [5000, 10000, 20000, 30000, 60000])
    fanout_shape: tuple[int, int] = (1, 1000)
    # Distinct users among the 1,000 members (the others are more tabs of the same users):
    # each user's first tab broadcasts a presence join to the whole room, so 1,000 distinct
    # users cost 1,000 x ~500 presence frames before the first message.
    fanout_users: int = 50
    fanout_ladder: list[int] = field(
        default_factory=lambda: [1000, 2000, 5000, 10000, 20000, 30000, 40000, 60000, 80000]
    )
    # The fan-out room again, with this many more connections that only receive.
    spectators: int = 5000
    spectator_users: int = 100
    # delivered copies a second over every connection of the room (members + spectators)
    spectators_ladder: list[int] = field(default_factory=lambda: [6000, 12000, 30000, 60000])
    handshake_clients: int = 1000
    handshake_concurrency: int | None = None  # handshakes at once, over every client process (None: all)
    handshake_room_size: int = 20
    handshake_target_per_s: float = 1000.0  # per web process, cold and warm
    handshake_cold_ratio: float = 2.0  # cold (first subscribes join their rooms) at most this x warm
    profile_handshake: bool = False  # py-spy on the web processes during each handshake phase
    storm_clients: int = 2000
    storm_room_size: int = 20
    storm_target_s: float = 10.0
    storm_check_rate: int = 4000  # delivered/s of the step after the storm
    persistence_rate: int = 1500
    api_connections: int = 16  # the "api" section's publishers (bench.http_api), one room each
    persistence_shape: tuple[int, int] = (10, 1)
    memory_connections: int = 5000
    memory_room_size: int = 20
    memory_warmup: int = 200
    connect_budget: float = 300.0  # seconds to open many connections; those not opened by then are skipped
    profile_rate: int = 10000
    profile_seconds: float = 10.0
    quiet_wait: float = 20.0  # seconds to wait for other work on the machine to calm down before a section
    log: object = print
    redis_pid: int | None = None
