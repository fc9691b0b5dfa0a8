"""``persistence``: the time from a send's ack to its row in PostgreSQL, at 1,500 messages a second
(PostgreSQL polled every 20 ms for each room's highest seq, so the lag is accurate to ~20 ms),
and how many were not persisted within 30 s.
"""

from __future__ import annotations

import bisect
import threading
import time
from array import array

from bench import fixtures
from bench.meters import percentiles_ms, wait_idle
from bench.servers import web_pids
from bench.shape import new_shape, step_line


class RowWatcher(threading.Thread):
    """Polls PostgreSQL for the highest persisted seq of each room: (seq, when) timelines."""

    def __init__(self, dsn: str, rooms: dict[int, str], interval: float = 0.02):
        super().__init__(daemon=True)
        self.dsn = dsn
        self.rooms = rooms
        self.interval = interval
        self.timeline: dict[str, tuple[list[int], list[int]]] = {slug: ([], []) for slug in rooms.values()}
        self.stopped = threading.Event()

    def run(self) -> None:
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            ids = list(self.rooms)
            while not self.stopped.is_set():
                rows = conn.execute(
                    "SELECT room_id, MAX(seq) FROM messaging_message WHERE room_id = ANY(%s) GROUP BY room_id", (ids,)
                ).fetchall()
                now = time.monotonic_ns()
                for room_id, top in rows:
                    seqs, times = self.timeline[self.rooms[room_id]]
                    if not seqs or top > seqs[-1]:
                        seqs.append(top)
                        times.append(now)
                time.sleep(self.interval)

    def persisted_at(self, slug: str, seq: int) -> int | None:
        seqs, times = self.timeline[slug]
        i = bisect.bisect_left(seqs, seq)
        return times[i] if i < len(seqs) else None


def section_persistence(plan, config, cluster, pool, population) -> dict:
    rooms, members = plan.persistence_shape
    shape = new_shape(plan, pool, population, cluster, rooms, members, f"per {config.key}")
    shape.connect()
    ids = fixtures.room_ids([slug for slug, _ in shape.rooms])
    watcher = RowWatcher(plan.database_url, {pk: slug for slug, pk in ids.items()})
    watcher.start()
    try:
        wait_idle(web_pids(cluster))
        step = shape.step(plan.persistence_rate * members, duration=plan.duration, keep_ack_times=True)
        acks = step.pop("_ack_times")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(watcher.persisted_at(s, q) is None for s, q, _ in acks[-50:]):
            time.sleep(0.1)
        time.sleep(0.2)
    finally:
        watcher.stopped.set()
        watcher.join()
        shape.close()
    lags = array("q")
    missing = 0
    for slug, seq, acked_at in acks:
        at = watcher.persisted_at(slug, seq)
        if at is None:
            missing += 1
        else:
            lags.append(max(0, at - acked_at))
    figures = percentiles_ms(lags)
    plan.log(
        f"    ack → row in PostgreSQL at {plan.persistence_rate}/s: p50 {figures['p50_ms']} p99 {figures['p99_ms']}"
        f" max {figures['max_ms']} ms, {missing} not persisted within 30 s; delivery: {step_line(step)}"
    )
    return {
        "sends_per_s": plan.persistence_rate,
        "shape": f"{rooms} rooms x {members} members",
        "acked": len(acks),
        "not_persisted_within_30s": missing,
        "poll_interval_ms": watcher.interval * 1000,
        **{f"lag_{k}": v for k, v in figures.items()},
        "delivery": step,
    }
