"""Run a django-rq worker, first queueing a sweep of the message buffers.

A worker killed mid-batch leaves its rooms marked dirty in Redis; the sweep makes
the new worker persist them even when no one sends another message. While it runs,
a thread repeats the sweep every PERSIST_SWEEP_SECONDS for servers with dirty rooms
and no job scheduled: a job that failed (PostgreSQL down) or was lost (Redis
restarted) is replaced even when no one sends.
"""

import logging
import threading
import time

import redis
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from messaging import buffer
from messaging.services import persist_enqueue
from pubsub_site.redis_client import all_room_redis_urls

logger = logging.getLogger(__name__)


def sweep(clients: list[redis.Redis]) -> None:
    for server, client in enumerate(clients):
        try:
            if buffer.claim_sweep(client=client):
                persist_enqueue(server=server)
        except redis.RedisError as error:
            logger.warning("persistence sweep of room server %d failed: %r", server, error)


def sweep_forever(interval: float) -> None:
    # Clients of this thread's own: rq forks a work horse per job, and the horse must not
    # inherit a pool another thread was using.
    clients = [redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2) for url in all_room_redis_urls()]
    while True:
        time.sleep(interval)
        sweep(clients)


class Command(BaseCommand):
    help = "Run the background worker (django-rq), persisting any messages left in Redis first."

    def add_arguments(self, parser):
        parser.add_argument("queues", nargs="*", default=["default"])

    def handle(self, *args, queues, **options):
        for server in range(len(all_room_redis_urls())):
            try:
                persist_enqueue(server=server)
            except redis.RedisError as error:
                logger.warning("could not queue the start-up sweep of room server %d: %r", server, error)
        threading.Thread(target=sweep_forever, args=(settings.PERSIST_SWEEP_SECONDS,), daemon=True).start()
        call_command("rqworker", *queues)
