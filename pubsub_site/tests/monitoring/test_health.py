import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_healthz_answers_while_the_process_is_up(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_is_200_when_postgresql_and_redis_answer(client):
    response = client.get("/readyz")
    assert response.status_code == 200


def test_readyz_names_redis_when_it_does_not_answer(client, settings):
    from pubsub_site.redis import client as redis_client

    settings.ROOM_REDIS_URLS = ["redis://127.0.0.1:1/0"]  # nothing listens on port 1
    redis_client._sync_clients.pop("redis://127.0.0.1:1/0", None)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "failed": ["redis"]}


def test_pages_carry_a_content_security_policy_without_inline_script(client, alice):
    client.force_login(alice)
    response = client.get(reverse("room-list"))
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert response.headers["X-Frame-Options"] == "DENY"


def test_the_admin_lists_every_model(admin_client):
    for url in (
        "/admin/rooms/room/",
        "/admin/rooms/membership/",
        "/admin/messaging/message/",
        "/admin/messaging/clap/",
        "/admin/rooms/room/?q=lobby&visibility__exact=public",
    ):
        assert admin_client.get(url).status_code == 200, url
