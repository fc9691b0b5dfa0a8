"""What a scrape reads from Redis: the persistence backlog and lag, the job queue, the workers.

These are states, not events: rather than being counted on the message path, they are read
when Prometheus (or the admin's Live status page) asks, by a custom collector, in a few
pipelined round trips per Redis server:

- for each room server, the dirty rooms (``pubsub:dirty``), then each one's persisted
  watermark, then how many buffered messages lie past it and the oldest of them, whose
  ``sent_at`` gives the lag (how long the oldest message PostgreSQL lacks has waited);
- for each rq queue, the jobs waiting, running and failed (rq's registries, read without
  their clean-up), and the workers registered.

A Redis that does not answer makes its ``pubsub_collector_up`` 0 and its other figures
absent, rather than failing the scrape.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import datetime

import django_rq
import orjson
from django.conf import settings
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from redis.exceptions import RedisError
from rq import Worker

from messaging.store.keys import DIRTY_KEY, RoomKeys
from pubsub_site.redis.client import all_room_redis_urls, get_redis

logger = logging.getLogger(__name__)


def _timestamp(sent_at: str) -> float | None:
    try:
        return datetime.fromisoformat(sent_at).timestamp()
    except (TypeError, ValueError):
        return None


def persistence_backlog(url: str) -> tuple[int, int, float]:
    """(dirty rooms, buffered messages PostgreSQL lacks, age in seconds of the oldest of them) on one server."""
    client = get_redis(url=url)
    room_ids = sorted(int(x) for x in client.smembers(DIRTY_KEY))
    if not room_ids:
        return 0, 0, 0.0
    with client.pipeline(transaction=False) as pipe:
        for room_id in room_ids:
            pipe.get(RoomKeys(room_id).persisted)
        watermarks = pipe.execute()
    with client.pipeline(transaction=False) as pipe:
        for room_id, upto in zip(room_ids, watermarks, strict=True):
            after = f"({int(upto or 0)}"
            pipe.zcount(RoomKeys(room_id).buf, after, "+inf")
            pipe.zrangebyscore(RoomKeys(room_id).buf, after, "+inf", start=0, num=1)
        replies = pipe.execute()
    backlog = sum(int(count) for count in replies[0::2])
    oldest: float | None = None
    for first in replies[1::2]:
        if first:
            sent = _timestamp(orjson.loads(first[0]).get("sent_at"))
            if sent is not None and (oldest is None or sent < oldest):
                oldest = sent
    lag = max(0.0, time.time() - oldest) if oldest is not None else 0.0
    return len(room_ids), backlog, lag


def job_queue(name: str) -> tuple[int, int, int, int]:
    """(jobs waiting, running, failed, workers listening) for one rq queue."""
    queue = django_rq.get_queue(name)
    return (
        queue.count,
        queue.started_job_registry.get_job_count(cleanup=False),
        queue.failed_job_registry.get_job_count(cleanup=False),
        Worker.count(queue=queue),
    )


class RedisStateCollector(Collector):
    """The scrape-time figures (see the module's docstring)."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("pubsub_collector_up", "1 when the collector could read this source.", labels=["source"])
        dirty = GaugeMetricFamily(
            "pubsub_persist_dirty_rooms", "Rooms with state PostgreSQL does not have yet.", labels=["server"]
        )
        backlog = GaugeMetricFamily(
            "pubsub_persist_backlog_messages",
            "Acked messages in Redis that are not in PostgreSQL yet, per room server.",
            labels=["server"],
        )
        lag = GaugeMetricFamily(
            "pubsub_persist_lag_seconds",
            "Age of the oldest acked message not in PostgreSQL yet (0 when there is none), per room server.",
            labels=["server"],
        )
        for index, url in enumerate(all_room_redis_urls()):
            server = str(index)
            try:
                rooms, messages, seconds = persistence_backlog(url)
            except RedisError as error:
                logger.warning("metrics: room server %d did not answer: %r", index, error)
                up.add_metric([f"rooms/{server}"], 0)
                continue
            up.add_metric([f"rooms/{server}"], 1)
            dirty.add_metric([server], rooms)
            backlog.add_metric([server], messages)
            lag.add_metric([server], seconds)
        yield from (dirty, backlog, lag)

        queued = GaugeMetricFamily("pubsub_jobs_queued", "Jobs waiting in the rq queue.", labels=["queue"])
        running = GaugeMetricFamily("pubsub_jobs_running", "Jobs a worker is running.", labels=["queue"])
        failed = GaugeMetricFamily(
            "pubsub_jobs_failed", "Jobs in rq's failed registry (kept for a year unless removed).", labels=["queue"]
        )
        workers = GaugeMetricFamily("pubsub_rq_workers", "rq workers listening on the queue.", labels=["queue"])
        for name in settings.RQ_QUEUES:
            try:
                waiting, started, failures, listening = job_queue(name)
            except RedisError as error:
                logger.warning("metrics: the rq queue %s did not answer: %r", name, error)
                up.add_metric([f"jobs/{name}"], 0)
                continue
            up.add_metric([f"jobs/{name}"], 1)
            queued.add_metric([name], waiting)
            running.add_metric([name], started)
            failed.add_metric([name], failures)
            workers.add_metric([name], listening)
        yield from (queued, running, failed, workers, up)
