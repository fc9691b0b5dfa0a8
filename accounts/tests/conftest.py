from __future__ import annotations

import django_rq
import pytest
from rq import SimpleWorker

from accounts.models import Profile


def run_queued_jobs() -> list[str]:
    """Run the jobs waiting in the default queue with a real rq worker, in this process
    (Django's mail outbox is per process); returns their function names. django-rq enqueues
    on commit: the tests that use this need ``django_db(transaction=True)``."""
    queue = django_rq.get_queue("default")
    names = [job.func_name for job in queue.get_jobs()]
    SimpleWorker([queue], connection=queue.connection).work(burst=True)
    assert queue.failed_job_registry.count == 0
    return names


def verify_address(user, email: str) -> None:
    user.email = email
    user.save(update_fields=["email"])
    Profile.objects.update_or_create(user=user, defaults={"email_verified": True})


@pytest.fixture
def bob_with_address(bob):
    """bob, with a confirmed address."""
    verify_address(bob, "bob@example.com")
    return bob
