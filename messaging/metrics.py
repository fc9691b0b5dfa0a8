"""The site's Prometheus metrics, and the cheap calls the message path makes to count them.

Every metric lives here; the modules that count call one function or one ``inc`` of this
module (a "hook"), never prometheus_client directly. What can be read at scrape time (the
persistence backlog and lag, the job queue) is not counted here but read from Redis when
someone scrapes (``messaging.metrics_collector``); the endpoint is ``pubsub_site.metrics_http``.

Several processes, one set of numbers: with ``PROMETHEUS_MULTIPROC_DIR`` set (``make run``,
``make cluster``), prometheus_client keeps each process's values in a memory-mapped file of
that directory, and a scrape of any web process adds up the files of every process on the
host: the web processes and the worker. The directory is emptied by whoever starts the
processes (scripts/run.sh, pubsub_site.cluster), as prometheus_client's documentation asks;
a process removes the live gauges a dead process of its own pid left behind before it makes
its metrics (``pubsub_site/__init__.py``), and a scrape removes those of processes that died
(``pubsub_site.metrics_http.sweep_dead_processes``).
Without the variable (one process per container, the Docker image) each process keeps its
own values in memory and serves them itself.

The cost on the delivery path: the fan-out counts its copies once per message
(``MESSAGES_DELIVERED.inc(len(feeds))``, about 1 µs with the multi-process files, shared by
every copy) and observes the latency once per batch; nothing is counted per copy. The
outboxes' backlog is sampled every ``METRICS_SAMPLE_SECONDS`` by one task per process
instead of being counted on every queued frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import weakref
from typing import Any, Protocol

from django.conf import settings
from prometheus_client import Counter, Gauge, Histogram

from messaging.frames import FRAME_TYPES

logger = logging.getLogger(__name__)


def multiproc_dir() -> str | None:
    """The directory the processes of this host share their values in, or None. (Importing
    the pubsub_site package, as every process does first, made it ready.)"""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


# --- WebSocket connections (web processes) ----------------------------------------------

CONNECTIONS = Gauge(
    "pubsub_ws_connections", "Open WebSocket connections (accepted, not yet closed).", multiprocess_mode="livesum"
)
SUBSCRIPTIONS = Gauge(
    "pubsub_ws_subscriptions", "Room subscriptions held by open WebSocket connections.", multiprocess_mode="livesum"
)
HANDSHAKES = Counter(
    "pubsub_ws_handshakes",
    "WebSocket handshakes by outcome: accepted, or refused as unauthenticated (403), origin (403), "
    "try_again_later (1013, the process was busy with other handshakes), too_many_sockets (1008, the user's "
    "cap in the process) or error (a backing service failed).",
    ["outcome"],
)
HANDSHAKE_OUTCOMES = ("accepted", "unauthenticated", "origin", "try_again_later", "too_many_sockets", "error")
_handshake = {outcome: HANDSHAKES.labels(outcome) for outcome in HANDSHAKE_OUTCOMES}

FRAMES_RECEIVED = Counter(
    "pubsub_ws_frames_received", "Frames received from clients, by `type` (`unknown` for any other).", ["type"]
)
_frame = {frame_type: FRAMES_RECEIVED.labels(frame_type) for frame_type in (*FRAME_TYPES, "unknown")}
_unknown_frame = _frame["unknown"]

ERRORS_SENT = Counter("pubsub_ws_errors_sent", "Error frames sent to clients, by `code` (docs/protocol.md).", ["code"])
_error: dict[str, Counter] = {}

SERVER_CLOSES = Counter(
    "pubsub_ws_server_closes",
    "Open WebSockets the server closed, by close code (1008 policy, 1009 too big, 1011 resync).",
    ["code"],
)
_close: dict[int, Counter] = {}
CUTOFFS = Counter(
    "pubsub_ws_cutoffs",
    "Sockets cut off (1011) because more than WS_SEND_BACKLOG_MAX_BYTES waited for a client that did not read.",
)

OUTBOX_BACKLOG_BYTES = Gauge(
    "pubsub_ws_outbox_backlog_bytes",
    "Bytes waiting in the sockets' outboxes for clients that do not read fast enough (sampled).",
    multiprocess_mode="livesum",
)
OUTBOX_BACKLOG_MAX_BYTES = Gauge(
    "pubsub_ws_outbox_backlog_max_bytes",
    "The largest backlog of one socket, in bytes (sampled); sockets are cut off past WS_SEND_BACKLOG_MAX_BYTES.",
    multiprocess_mode="livemax",
)
OUTBOX_BACKLOGGED = Gauge(
    "pubsub_ws_outbox_backlogged_connections",
    "Sockets with frames waiting in their outbox (sampled).",
    multiprocess_mode="livesum",
)
GC_FULL_COLLECTIONS = Histogram(
    "pubsub_gc_full_collection_seconds",
    "How long the cyclic garbage collector's full collections (generation 2) stopped a web process: its "
    "event loop and every socket on it waited that long (pubsub_site.gc_policy).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
LOOP_LAG = Gauge(
    "pubsub_event_loop_lag_seconds",
    "How late the web process's event loop ran the metrics sampler (the worst process; sampled).",
    multiprocess_mode="livemax",
)

# --- Messages ---------------------------------------------------------------------------

MESSAGES_SENT = Counter("pubsub_messages_sent", "Messages stored and acked (a retried client_id is not counted).")
MESSAGES_DELIVERED = Counter(
    "pubsub_messages_delivered", "Copies of messages the web processes' fan-outs handed to subscribed sockets."
)
DELIVERY_LATENCY = Histogram(
    "pubsub_delivery_latency_seconds",
    "From the send (the message stored in Redis) to its copies written to every subscribed socket of a web "
    "process, observed once per fan-out batch for the batch's oldest message.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
RETRIES_ANSWERED_BY_DATABASE = Counter(
    "pubsub_retries_answered_by_database",
    "Sends answered with their first seq from PostgreSQL: late retries, whose dedupe key had left Redis.",
)
RETRY_CHECKS = Counter(
    "pubsub_retry_checks",
    "Sends whose UUIDv7 client_id was not fresh, checked against PostgreSQL before the append, by `outcome` "
    "(asked; skipped: PostgreSQL did not answer, or had just failed to).",
    ["outcome"],
)

# --- Channel layer, presence --------------------------------------------------------------

REPLICA_WAIT_TIMEOUTS = Counter(
    "pubsub_replica_wait_timeouts",
    "Sends answered `unavailable` because fewer than REDIS_WAIT_REPLICAS replicas confirmed them within "
    "REDIS_WAIT_TIMEOUT_MS (a replica is down or far behind).",
)
LAYER_RECONNECTS = Counter(
    "pubsub_layer_reconnects",
    "Times a web process's channel-layer subscriber connection to Redis came back after a drop "
    "(each closes that process's sockets with 1011; the clients resync).",
)
PRESENCE_SWEEPS = Counter(
    "pubsub_presence_sweeps", "Rooms swept for presence entries of processes that died (one per room and heartbeat)."
)
PRESENCE_EXPIRED = Counter(
    "pubsub_presence_expired_users", "Users a presence sweep found gone (their process died without a goodbye)."
)
PRESENCE_FAILURES = Counter("pubsub_presence_heartbeat_failures", "Presence heartbeats that failed (Redis).")
PRESENCE_NEWS_DEFERRED = Counter(
    "pubsub_presence_news_deferred",
    "Times a room's news of who came and went could not be told (Redis) and waited to be told again.",
)

# --- Worker ---------------------------------------------------------------------------------

PERSISTED_MESSAGES = Counter(
    "pubsub_persisted_messages", "Message records the persistence job wrote to PostgreSQL (a rewrite counts again)."
)
JOBS = Counter(
    "pubsub_jobs", "Background jobs the workers finished, by job and outcome (ok, failed).", ["job", "outcome"]
)


# --- Hooks ----------------------------------------------------------------------------------


class RoomsConsumer(Protocol):
    """What the hooks read of a socket's consumer (messaging.realtime.consumers.RoomsConsumer): a shape,
    not an import, so that the consumer imports the metrics and not the other way round."""

    scope: dict[str, Any]
    outbox: Any
    cut_off: bool


# The open connections of this process, for the backlog sampler.
_open: set[RoomsConsumer] = set()
_samplers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task] = weakref.WeakKeyDictionary()


def handshake_finished(consumer: RoomsConsumer) -> None:
    """The consumer accepted or refused its handshake (``websocket_connect``, at its end)."""
    refused = getattr(consumer, "refused", None)
    if refused is not None:  # accepted only to say why it is refused
        _handshake[refused].inc()
        return
    if consumer.outbox is not None:
        _handshake["accepted"].inc()
        CONNECTIONS.inc()
        consumer.metrics_open = True
        _open.add(consumer)
        _ensure_sampler()
        return
    # Refused for want of a signed-in user (403), or failed after that check: a backing
    # service failed (the consumer takes the user off its scope once it has checked it).
    user = consumer.scope.get("user")
    unauthenticated = "user" in consumer.scope and (user is None or not user.is_authenticated)
    _handshake["unauthenticated" if unauthenticated else "error"].inc()


def socket_ended(consumer: RoomsConsumer) -> None:
    """The consumer is done (its ``__call__`` returns): whatever it still counted goes."""
    if consumer.__dict__.pop("metrics_open", False):
        CONNECTIONS.dec()
        _open.discard(consumer)
        left = len(getattr(consumer, "subscriptions", ()))
        if left:
            SUBSCRIPTIONS.dec(left)


def handshake_refused(outcome: str) -> None:
    """A handshake refused before the consumer: ``origin`` or ``try_again_later`` (pubsub_site.asgi)."""
    _handshake[outcome].inc()


def frame_received(frame_type: str) -> None:
    _frame.get(frame_type, _unknown_frame).inc()


def error_sent(code: str) -> None:
    counter = _error.get(code)
    if counter is None:
        counter = _error[code] = ERRORS_SENT.labels(code)
    counter.inc()


def server_closed(consumer: RoomsConsumer, code: int | None) -> None:
    """The consumer closes its socket (once). A refusal before the accept is a handshake outcome,
    not a close; a cut-off is counted as one too."""
    if not consumer.__dict__.get("metrics_open"):
        return
    code = code or 1000
    counter = _close.get(code)
    if counter is None:
        counter = _close[code] = SERVER_CLOSES.labels(str(code))
    counter.inc()
    if consumer.cut_off:
        CUTOFFS.inc()


def batch_sent_at(inbox) -> float | None:
    """The send time of the oldest event a fan-out is about to deliver (``ts`` of room.message)."""
    return inbox[0].get("ts") if inbox else None


def batch_written(sent_at: float | None) -> None:
    """The fan-out wrote its batch: observe the oldest message's latency, once for the batch."""
    if sent_at is not None:
        DELIVERY_LATENCY.observe(max(0.0, time.time() - sent_at))


def full_collection(seconds: float) -> None:
    """The cyclic garbage collector finished a full collection (pubsub_site.gc_policy)."""
    GC_FULL_COLLECTIONS.observe(seconds)


# --- The outboxes' backlog, sampled ---------------------------------------------------------


def sample_outboxes() -> tuple[int, int, int]:
    """(bytes waiting in every outbox, the largest backlog, sockets with a backlog) of this process."""
    total = largest = backlogged = 0
    for consumer in list(_open):
        outbox = consumer.outbox
        size = outbox.size if outbox is not None else 0
        if size:
            total += size
            backlogged += 1
            largest = max(largest, size)
    return total, largest, backlogged


def _ensure_sampler() -> None:
    loop = asyncio.get_running_loop()
    if loop not in _samplers:
        _samplers[loop] = loop.create_task(_sample_forever(), name="metrics sampler")


async def _sample_forever() -> None:
    interval = settings.METRICS_SAMPLE_SECONDS
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        await asyncio.sleep(interval)
        with contextlib.suppress(Exception):  # a sampler that fails must not end; the next round tries again
            LOOP_LAG.set(max(0.0, loop.time() - started - interval))
            total, largest, backlogged = sample_outboxes()
            OUTBOX_BACKLOG_BYTES.set(total)
            OUTBOX_BACKLOG_MAX_BYTES.set(largest)
            OUTBOX_BACKLOGGED.set(backlogged)
