"""The admin's "Live status" page: the numbers /metrics serves, for people who run no Prometheus.

It reads what a scrape reads (``pubsub_site.metrics_http.scrape_collector``: the processes'
values and Redis's state at this moment) and lays it out in a few tables. Counters count
since the processes started (with a shared PROMETHEUS_MULTIPROC_DIR, since the directory was
last emptied: ``make run`` or ``make cluster`` started); under Docker the page shows the web
replica that served it, plus the Redis figures, which are the whole site's.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.views.decorators.cache import never_cache

from messaging import metrics
from pubsub_site.metrics_http import scrape_collector


@dataclass
class Row:
    label: str
    value: str
    note: str = ""


@dataclass
class Section:
    title: str
    rows: list[Row] = field(default_factory=list)


class Readings:
    """The samples of one collection, by sample name."""

    def __init__(self, families: Iterable) -> None:
        self.samples: dict[str, list[tuple[dict[str, str], float]]] = {}
        for family in families:
            for sample in family.samples:
                self.samples.setdefault(sample.name, []).append((sample.labels, sample.value))

    def total(self, name: str) -> float | None:
        found = self.samples.get(name)
        return None if found is None else sum(value for _, value in found)

    def by(self, name: str, label: str) -> list[tuple[str, float]]:
        values: dict[str, float] = {}
        for labels, value in self.samples.get(name, []):
            key = labels.get(label, "")
            values[key] = values.get(key, 0.0) + value
        return sorted(values.items())

    def quantile(self, name: str, q: float) -> float | None:
        """histogram_quantile(q) over a histogram's buckets, as Prometheus estimates it."""
        buckets: dict[float, float] = {}
        for labels, value in self.samples.get(f"{name}_bucket", []):
            le = float(labels["le"])
            buckets[le] = buckets.get(le, 0.0) + value
        if not buckets:
            return None
        ordered = sorted(buckets.items())
        count = ordered[-1][1]
        if count == 0:
            return None
        rank = q * count
        lower, below = 0.0, 0.0
        for upper, cumulative in ordered:
            if cumulative >= rank:
                if math.isinf(upper):
                    return lower  # past the last finite bucket: at least this
                inside = cumulative - below
                return lower + (upper - lower) * ((rank - below) / inside if inside else 1.0)
            lower, below = upper, cumulative
        return lower


def number(value: float | None) -> str:
    if value is None:
        return "—"
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.3f}"


def seconds(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 1:
        return f"{value * 1000:,.1f} ms"
    return f"{value:,.2f} s"


def status_sections(readings: Readings) -> list[Section]:
    r = readings
    connections = Section(
        "Connections",
        [
            Row("Open WebSocket connections", number(r.total("pubsub_ws_connections"))),
            Row("Room subscriptions", number(r.total("pubsub_ws_subscriptions"))),
            *(
                Row(f"Handshakes: {outcome.replace('_', ' ')}", number(value))
                for outcome, value in r.by("pubsub_ws_handshakes_total", "outcome")
            ),
        ],
    )
    count = r.total("pubsub_delivery_latency_seconds_count")
    total = r.total("pubsub_delivery_latency_seconds_sum")
    traffic = Section(
        "Traffic",
        [
            Row("Messages sent", number(r.total("pubsub_messages_sent_total"))),
            Row("Copies delivered to sockets", number(r.total("pubsub_messages_delivered_total"))),
            Row(
                "Delivery latency, send to write",
                f"p50 {seconds(r.quantile('pubsub_delivery_latency_seconds', 0.5))}, "
                f"p99 {seconds(r.quantile('pubsub_delivery_latency_seconds', 0.99))}, "
                f"mean {seconds(total / count if count else None)}",
                f"over {number(count)} fan-out batches (estimated from the histogram's buckets)",
            ),
            *(
                Row(f"Frames received: {frame_type}", number(value))
                for frame_type, value in r.by("pubsub_ws_frames_received_total", "type")
            ),
            *(
                Row(f"Error frames sent: {code}", number(value))
                for code, value in r.by("pubsub_ws_errors_sent_total", "code")
            ),
        ],
    )
    slow = Section(
        "Slow clients",
        [
            Row("Bytes waiting in outboxes", number(r.total("pubsub_ws_outbox_backlog_bytes")), "sampled"),
            Row("Largest outbox", number(r.total("pubsub_ws_outbox_backlog_max_bytes")), "sampled"),
            Row("Sockets with a backlog", number(r.total("pubsub_ws_outbox_backlogged_connections")), "sampled"),
            Row(
                "Sockets cut off",
                number(r.total("pubsub_ws_cutoffs_total")),
                f"past {number(settings.WS_SEND_BACKLOG_MAX_BYTES)} bytes waiting",
            ),
            *(
                Row(f"Sockets closed by the server: {code}", number(value))
                for code, value in r.by("pubsub_ws_server_closes_total", "code")
            ),
            Row("Event loop lag (worst process)", seconds(r.total("pubsub_event_loop_lag_seconds")), "sampled"),
        ],
    )
    persistence = Section(
        "Persistence",
        [
            Row("Messages not yet in PostgreSQL", number(r.total("pubsub_persist_backlog_messages"))),
            Row(
                "Persistence lag",
                seconds(max((v for _, v in r.by("pubsub_persist_lag_seconds", "server")), default=None)),
                "age of the oldest message PostgreSQL lacks",
            ),
            Row("Rooms waiting for the job", number(r.total("pubsub_persist_dirty_rooms"))),
            Row("Messages written by the workers", number(r.total("pubsub_persisted_messages_total"))),
        ],
    )
    jobs = Section(
        "Jobs (rq)",
        [
            Row("Queued", number(r.total("pubsub_jobs_queued"))),
            Row("Running", number(r.total("pubsub_jobs_running"))),
            Row("Failed (rq's failed registry)", number(r.total("pubsub_jobs_failed"))),
            # Per queue, and a worker listens to every queue ("default", "webhooks", "previews"): the most.
            Row("Workers", number(max((v for _, v in r.by("pubsub_rq_workers", "queue")), default=None))),
            *(
                Row(f"Jobs finished: {outcome}", number(value))
                for outcome, value in r.by("pubsub_jobs_total", "outcome")
            ),
        ],
    )
    layer = Section(
        "Channel layer and presence",
        [
            Row("Channel layer reconnects", number(r.total("pubsub_layer_reconnects_total"))),
            Row("Presence sweeps", number(r.total("pubsub_presence_sweeps_total"))),
            Row("Users found gone by a sweep", number(r.total("pubsub_presence_expired_users_total"))),
            Row("Presence heartbeats failed", number(r.total("pubsub_presence_heartbeat_failures_total"))),
            *(
                Row(f"Source read: {source}", "yes" if value else "NO")
                for source, value in r.by("pubsub_collector_up", "source")
            ),
        ],
    )
    return [connections, traffic, slow, persistence, jobs, layer]


@never_cache
def live_status(request: HttpRequest) -> TemplateResponse:
    """Staff only: wrapped in ``admin.site.admin_view`` in pubsub_site.urls."""
    sections = status_sections(Readings(scrape_collector().collect()))
    context = {
        **admin.site.each_context(request),
        "title": "Live status",
        "sections": sections,
        "shared": metrics.multiproc_dir() is not None,
        "sample_seconds": settings.METRICS_SAMPLE_SECONDS,
    }
    return TemplateResponse(request, "admin/live_status.html", context)
