"""500 open sockets: PostgreSQL connections stay within a bound that does not grow with
sockets or requests.

The bound: every process (web or worker) draws its connections from psycopg's pool, which
keeps DB_POOL_MIN_SIZE open and opens at most DB_POOL_MAX_SIZE. A web process reaches
PostgreSQL for its WebSockets from one thread (asgiref runs every `database_sync_to_async`
call in its one thread-sensitive executor), so its sockets need one connection at a time
however many there are, plus, for the reads of handshakes and subscribes, at most
WS_DB_CONNECTIONS asyncio connections of its event loop (pubsub_site.async_db); an HTTP
request runs in a thread of its own and returns its connection to the pool when it ends,
and requests beyond the pool's size wait their turn.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.request import Request, urlopen

import psycopg
import pytest
from django.db import connection

from rooms.services import room_create
from tests.faults.kit import (
    ChatClient,
    Ledger,
    base_env,
    chaos_row,
    make_users,
    report,
    start_webs,
    tracebacks,
    wait_for_rows,
)
from tests.netclient import session_key_for

pytestmark = pytest.mark.processes

SOCKETS = 500
HTTP_CONCURRENCY = 20
WEBS = 2
POOL_MIN, POOL_MAX = 1, 4
LOOP_CONNECTIONS = 2  # WS_DB_CONNECTIONS


class ConnectionSampler:
    """Counts the test database's connections every 20 ms, from a connection to another database."""

    def __init__(self, dbname: str):
        self.dbname = dbname
        self.samples: list[int] = []
        self.running = True
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
            while self.running:
                row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [self.dbname]).fetchone()
                self.samples.append(row[0])
                time.sleep(0.02)

    def phase(self) -> int:
        """The most seen since the last call."""
        peak, self.samples = max(self.samples, default=0), []
        return peak

    def __enter__(self) -> ConnectionSampler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.running = False
        self.thread.join()


def history(port: int, key: str, slug: str) -> int:
    request = Request(
        f"http://127.0.0.1:{port}/rooms/{slug}/messages/?before=1000&limit=50", headers={"Cookie": f"sessionid={key}"}
    )
    with urlopen(request, timeout=30) as response:  # noqa: S310 (127.0.0.1)
        return len(json.loads(response.read())["messages"])


def test_500_sockets_hold_postgresql_connections_within_the_pool(make_cluster, alice):
    dbname = connection.settings_dict["NAME"]
    cluster = make_cluster(
        base_env(
            DB_POOL_MIN_SIZE=str(POOL_MIN), DB_POOL_MAX_SIZE=str(POOL_MAX), WS_DB_CONNECTIONS=str(LOOP_CONNECTIONS)
        )
    )
    ports = start_webs(cluster, WEBS)
    cluster.start_worker()
    rooms = [room_create(creator=alice, name=f"Crowd {i}") for i in range(5)]
    users = make_users(50)
    keys = [session_key_for(u) for u in users]
    connection.close_pool()  # the test process's own (pooled) connections are not counted below
    ledger = Ledger()
    opening_took: list[float] = []

    with ConnectionSampler(dbname) as sampler:
        time.sleep(0.5)
        idle = sampler.phase()

        async def scenario():
            started = time.monotonic()
            clients = []
            for batch in range(0, SOCKETS, 50):
                opened = [
                    ChatClient(f"tab{i}", keys[i % 50], lambda: ports, [rooms[i % 5].slug], first_port=ports[i % WEBS])
                    for i in range(batch, batch + 50)
                ]
                await asyncio.gather(*(c.start() for c in opened))
                clients += opened
            while_opening = sampler.phase()
            opening_took.append(time.monotonic() - started)
            sends = [ledger.new(c.rooms[0], f"from {c.name}") for c in clients[:100]]
            await asyncio.gather(*(c.attempt(s) for c, s in zip(clients[:100], sends, strict=True)))
            sockets_under_traffic = sampler.phase()
            loop = asyncio.get_running_loop()
            with ThreadPoolExecutor(HTTP_CONCURRENCY) as pool:
                pages = await asyncio.gather(
                    *(
                        loop.run_in_executor(pool, history, ports[i % WEBS], keys[i % 50], rooms[i % 5].slug)
                        for i in range(100)
                    )
                )
            under_http = sampler.phase()
            for client in clients:
                await client.close()
            return while_opening, sockets_under_traffic, under_http, pages

        while_opening, sockets_under_traffic, under_http, pages = asyncio.run(scenario())
        closed_at = time.monotonic()
        time.sleep(1.0)
        back_after = time.monotonic() - closed_at
        after = sampler.samples[-1]

    bound = (WEBS + len(cluster.workers)) * POOL_MAX + WEBS * LOOP_CONNECTIONS
    report(
        f"{SOCKETS} open sockets on {WEBS} web processes",
        f"PostgreSQL connections to the test database: idle {idle}; at most {while_opening} while opening "
        f"{SOCKETS} sockets ({opening_took[0]:.1f} s, 50 at a time) and {sockets_under_traffic} during 100 sends; "
        f"at most {under_http} during 100 history requests {HTTP_CONCURRENCY} at a time; {after} "
        f"{back_after:.1f} s after the sockets closed (bound: each process's pool, {POOL_MAX} at most, and each"
        f" web process's {LOOP_CONNECTIONS} for the sockets' reads: {bound})",
        f"{ledger.summary()}; history pages returned {sum(pages)} messages; tracebacks: {tracebacks(cluster)}",
    )
    rows = wait_for_rows([r.pk for r in rooms], len(ledger.of("acked")))
    stored = {cid for _, _, cid in rows}
    acked_ids = {s.client_id for s in ledger.of("acked")}
    chaos_row(
        f"{SOCKETS} open sockets (PostgreSQL connections bounded)",
        acked=len(acked_ids),
        stored=len(rows),
        delivered=None,
        lost=len(acked_ids - stored),
        duplicated=len(rows) - len(stored),
    )
    assert len(ledger.of("acked")) == 100
    assert sum(pages) == 100 * min(50, len(ledger.of("acked")) // 5)  # every request was served
    # Sockets and requests add no connections beyond the processes' pools and the web
    # processes' few loop connections: 500 sockets, and 20 requests at a time wait for a
    # pooled connection rather than opening one each.
    assert max(while_opening, sockets_under_traffic, under_http, after) <= bound
