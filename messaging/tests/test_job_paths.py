"""Jobs queued before a deploy run after it: rq stores a job as its dotted path, and every
path a release has queued still imports and runs (messaging.job_paths)."""

from __future__ import annotations

import uuid

import django_rq
import pytest
from asgiref.sync import async_to_sync
from rq import SimpleWorker
from rq.job import JobStatus
from rq.utils import import_attribute

from messaging import job_paths, services
from messaging.models import Message

pytestmark = pytest.mark.django_db(transaction=True)

# The paths releases have queued, as literal strings: a move of a job must keep them working.
QUEUED_BY_EARLIER_RELEASES = ("messaging.jobs.persist_messages", "messaging.jobs.send_mention_digests")


class Layer:
    def script_broadcast_channel(self, group, url):
        return None

    async def group_send(self, group, event):
        pass


def test_every_path_the_services_enqueue_names_a_job_and_the_earlier_paths_are_among_them():
    assert set(QUEUED_BY_EARLIER_RELEASES) <= set(job_paths.ALL)
    for path in job_paths.ALL:
        assert callable(import_attribute(path)), path


def test_a_persist_job_queued_by_its_old_path_is_run_by_a_worker(alice, public_room, monkeypatch):
    monkeypatch.setattr(services, "get_channel_layer", Layer)
    monkeypatch.setattr(services, "persist_enqueue", lambda *, server: None)  # this test queues it itself
    async_to_sync(services.message_send)(
        room_id=public_room.pk, room_slug=public_room.slug, author_id=alice.pk, author_username=alice.username,
        body="queued before the deploy", client_id=str(uuid.uuid4()),
    )  # fmt: skip
    assert not Message.objects.filter(room=public_room).exists()
    queue = django_rq.get_queue("default")
    job = queue.enqueue("messaging.jobs.persist_messages", 0)

    SimpleWorker([queue], connection=queue.connection).work(burst=True)

    assert job.get_status(refresh=True) == JobStatus.FINISHED
    assert job.return_value() == 1
    assert list(Message.objects.filter(room=public_room).values_list("body", flat=True)) == ["queued before the deploy"]


def test_a_digest_job_queued_by_its_old_path_is_run_by_a_worker():
    queue = django_rq.get_queue("default")
    job = queue.enqueue("messaging.jobs.send_mention_digests")

    SimpleWorker([queue], connection=queue.connection).work(burst=True)

    assert job.get_status(refresh=True) == JobStatus.FINISHED
    assert job.return_value() == 0  # nothing due; it ran
