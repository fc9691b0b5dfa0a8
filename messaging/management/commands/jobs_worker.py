"""Run a django-rq worker, first queueing a sweep of the message buffers.

A worker killed mid-batch leaves its rooms marked dirty in Redis; the sweep makes
the new worker persist them even when no one sends another message. While it runs,
a thread repeats the sweep every PERSIST_SWEEP_SECONDS for servers with dirty rooms
and no job scheduled: a job that failed (PostgreSQL down) or was lost (Redis
restarted) is replaced even when no one sends. The same thread queues the e-mails for
missed mentions once every MENTION_EMAIL_SWEEP_SECONDS (one worker of all per period), and
the delivery jobs of the outgoing webhooks with a delivery due (a retry after its backoff).

rq's worker quits when Redis vanishes while it runs a job (or cannot reach Redis at
start); this command then starts it again, until a SIGTERM or SIGINT asks it to stop.

With ``--metrics-port`` (or METRICS_WORKER_PORT) the worker serves its own ``/metrics`` on
that port, under the web endpoint's rules: for a container of its own (Docker), where no
PROMETHEUS_MULTIPROC_DIR is shared with the web processes that would serve its values.
"""

import logging
import threading
import time
from collections.abc import Callable

import redis
from django.conf import settings
from django.core.management.base import BaseCommand
from django_rq.utils import reset_db_connections
from django_rq.workers import get_worker
from rq.logutils import setup_loghandlers

from messaging.notifications.digests import mention_digests_schedule
from messaging.services import persist_enqueue
from messaging.store import watermarks
from pubsub_site.metrics_http import start_worker_listener
from pubsub_site.redis.client import all_room_redis_urls, new_redis

logger = logging.getLogger(__name__)

RESTART_DELAY_SECONDS = 2

# What else the sweep thread does each time, with its client for the first room server: the
# pushes whose coalescing window ended (webpush.services.push_flush_due, registered by
# webpush.apps) and the outgoing webhooks' due deliveries (outgoing_webhooks.services.webhooks_sweep,
# registered by its app). Hooks, not imports: messaging does not import the apps above it.
EVERY_SWEEP: list[Callable[..., object]] = []


def persistence_sweep(clients: list[redis.Redis]) -> None:
    for server, client in enumerate(clients):
        try:
            if watermarks.claim_sweep(client=client):
                persist_enqueue(server=server)
        except redis.RedisError as error:
            logger.warning("persistence sweep of room server %d failed: %r", server, error)


def sweep_forever(interval: float) -> None:
    # Clients of this thread's own: with a forking worker class (RQ_WORKER_CLASS), a work
    # horse must not inherit a pool another thread was using.
    clients = [new_redis(url, socket_timeout=5, socket_connect_timeout=2) for url in all_room_redis_urls()]
    while True:
        time.sleep(interval)
        persistence_sweep(clients)
        try:
            mention_digests_schedule(client=clients[0])
        except redis.RedisError as error:
            logger.warning("could not queue the mention e-mails: %r", error)
        for hook in EVERY_SWEEP:
            try:
                hook(client=clients[0])
            except Exception:
                logger.exception("the sweep's %s failed; the next sweep tries again", hook.__qualname__)


def make_worker(queues: list[str]):
    """django-rq's worker for ``queues``, keeping no result of a finished job (RQ_RESULT_TTL)."""
    return get_worker(*queues, default_result_ttl=settings.RQ_RESULT_TTL)


class Command(BaseCommand):
    help = "Run the background worker (django-rq), persisting any messages left in Redis first."

    def add_arguments(self, parser):
        # In order of priority: rq takes a job of the first queue that has one.
        parser.add_argument("queues", nargs="*", default=["default", "webhooks", "previews"])
        parser.add_argument(
            "--metrics-port", type=int, default=None, help="serve this process's /metrics on this port (0: do not)"
        )

    def handle(self, *args, queues, metrics_port=None, **options):
        port = settings.METRICS_WORKER_PORT if metrics_port is None else metrics_port
        if port:
            try:
                start_worker_listener(port)
            except OSError as error:  # the port is taken (two workers on one host): work without it
                logger.warning("not serving /metrics on port %d: %r", port, error)
        for server in range(len(all_room_redis_urls())):
            try:
                persist_enqueue(server=server)
            except redis.RedisError as error:
                logger.warning("could not queue the start-up sweep of room server %d: %r", server, error)
        threading.Thread(target=sweep_forever, args=(settings.PERSIST_SWEEP_SECONDS,), daemon=True).start()
        setup_loghandlers("INFO")
        while True:
            worker = None
            try:
                worker = make_worker(queues)
                reset_db_connections()  # no connection crosses a fork, if the worker class forks
                worker.work()
            except redis.RedisError as error:
                logger.warning("the worker lost Redis: %r", error)
            if worker is not None and worker._shutdown_requested_date is not None:
                return  # a warm shutdown (SIGTERM, SIGINT) asked for
            logger.warning("starting the worker again in %d s", RESTART_DELAY_SECONDS)
            time.sleep(RESTART_DELAY_SECONDS)
