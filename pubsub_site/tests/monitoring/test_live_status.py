"""The admin's Live status page: staff see the numbers /metrics serves; nobody else sees it."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from messaging import metrics
from pubsub_site.live_status import Readings

pytestmark = pytest.mark.django_db

URL = "/admin/live-status/"


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user("operator", password="x-long-password", is_staff=True)


def value_of(html: str, label: str) -> str:
    match = re.search(
        rf"<th scope=\"row\">{re.escape(label)}</th>\s*<td class=\"live-status-value\">([^<]*)</td>", html
    )
    assert match, f"no row {label!r}"
    return match[1]


def test_the_url_is_the_admins():
    assert reverse("admin-live-status") == URL


def test_staff_see_the_live_numbers(client, staff, alice):
    before = Readings(metrics.MESSAGES_SENT.collect()).total("pubsub_messages_sent_total")
    metrics.MESSAGES_SENT.inc(3)
    client.force_login(staff)
    response = client.get(URL)
    assert response.status_code == 200
    html = response.content.decode()
    assert "<title>Live status" in html
    for caption in ("Connections", "Traffic", "Slow clients", "Persistence", "Jobs (rq)", "Channel layer and presence"):
        assert f"<caption>{caption}</caption>" in html
    assert value_of(html, "Messages sent") == f"{int(before) + 3:,}"
    assert value_of(html, "Open WebSocket connections").replace(",", "").isdigit()
    assert value_of(html, "Messages not yet in PostgreSQL") == "0"  # read from Redis, now
    assert value_of(html, "Source read: rooms/0") == "yes"
    assert response["Cache-Control"].startswith("max-age=0")


def test_the_admin_index_links_to_it(client, staff):
    client.force_login(staff)
    html = client.get("/admin/").content.decode()
    assert f'href="{URL}"' in html
    assert "Live status" in html


def test_a_member_who_is_not_staff_is_sent_to_the_admin_login(client, alice):
    client.force_login(alice)
    response = client.get(URL)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    assert "Messages sent" not in response.content.decode()


def test_an_anonymous_visitor_is_sent_to_the_admin_login(client):
    response = client.get(URL)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/?next=/admin/live-status/")


def test_quantiles_are_estimated_from_the_buckets_as_prometheus_does():
    from prometheus_client import CollectorRegistry, Histogram

    registry = CollectorRegistry()
    histogram = Histogram("t_seconds", "t", buckets=(0.01, 0.1, 1.0), registry=registry)
    for value in [0.005] * 50 + [0.05] * 49 + [5.0]:
        histogram.observe(value)
    readings = Readings(registry.collect())
    assert readings.quantile("t_seconds", 0.5) == pytest.approx(0.01)
    assert readings.quantile("t_seconds", 0.25) == pytest.approx(0.005)
    assert readings.quantile("t_seconds", 0.99) == pytest.approx(0.1)
    assert readings.quantile("t_seconds", 0.999) == 1.0  # in +Inf: at least the last bound
    assert Readings(CollectorRegistry().collect()).quantile("t_seconds", 0.5) is None
