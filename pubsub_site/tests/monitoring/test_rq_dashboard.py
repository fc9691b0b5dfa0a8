"""django-rq's dashboard (staff only) under /admin/rq/ and the admin's /admin/django_rq/: a
queue, scheduler or connection number past its list is a 404, not a 500 (django-rq indexes
its list with the URL's number unchecked; found by tests/hostile/test_http_fuzz.py)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("root", password="x-long-password"))
    return client


@pytest.mark.parametrize("prefix", ["/admin/rq/", "/admin/django_rq/dashboard/"])
@pytest.mark.parametrize(
    "path",
    [
        "queues/{n}/",
        "queues/{n}/failed/",
        "queues/{n}/some-job/",
        "queues/actions/{n}/",
        "workers/{n}/",
        "schedulers/{n}/",
        "cron-schedulers/{n}/some-scheduler/",
    ],
)
def test_a_number_past_the_list_is_a_404(staff_client, prefix, path):
    assert staff_client.get(prefix + path.format(n=7)).status_code == 404
    assert staff_client.get(prefix + path.format(n=9999999999999999999)).status_code == 404


@pytest.mark.parametrize("prefix", ["/admin/rq/", "/admin/django_rq/dashboard/"])
@pytest.mark.parametrize(
    "method,path",
    [
        ("get", "queues/1/no-such-job/"),
        ("post", "queues/1/no-such-job/delete/"),
        ("post", "queues/1/no-such-job/requeue/"),
        ("post", "queues/1/no-such-job/enqueue/"),
        ("get", "workers/1/no-such-worker/"),
        ("get", "schedulers/0/"),
    ],
)
def test_a_job_worker_or_scheduler_that_does_not_exist_is_a_404(staff_client, prefix, method, path):
    """Found by the HTTP fuzzer once there were several queues (default, webhooks, previews)."""
    assert getattr(staff_client, method)(prefix + path).status_code == 404


def test_the_first_queue_still_opens(staff_client):
    assert staff_client.get("/admin/rq/queues/0/").status_code == 200
    assert staff_client.get("/admin/django_rq/dashboard/queues/0/").status_code == 200


def test_an_outsider_is_still_sent_to_log_in(client):
    assert client.get("/admin/rq/queues/0/").status_code == 302
