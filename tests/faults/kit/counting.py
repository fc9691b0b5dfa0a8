"""Counting: what the room's Redis and PostgreSQL hold, and the final count (Verdict) of
the ledger's sends against the rows and against what every client received."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from dataclasses import dataclass

import redis

from tests.faults.kit.client import ChatClient
from tests.faults.kit.ledger import ACKED, REFUSED, UNKNOWN, Ledger


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
