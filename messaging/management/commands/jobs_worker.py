"""Run a django-rq worker, first queueing a sweep of the message buffers.

A worker killed mid-batch leaves its rooms marked dirty in Redis; the sweep makes
the new worker persist them even when no one sends another message.
"""

from django.core.management import call_command
from django.core.management.base import BaseCommand

from messaging.services import persist_enqueue
from pubsub_site.redis_client import all_room_redis_urls


class Command(BaseCommand):
    help = "Run the background worker (django-rq), persisting any messages left in Redis first."

    def add_arguments(self, parser):
        parser.add_argument("queues", nargs="*", default=["default"])

    def handle(self, *args, queues, **options):
        for server in range(len(all_room_redis_urls())):
            persist_enqueue(server=server)
        call_command("rqworker", *queues)
