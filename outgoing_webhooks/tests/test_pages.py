"""The room's webhooks page: its owner and moderators manage endpoints; nobody else sees them."""

from __future__ import annotations

import pytest
from django.urls import reverse

from outgoing_webhooks.models import WebhookEndpoint
from rooms.services import room_join

pytestmark = pytest.mark.django_db


def page(room):
    return reverse("webhook-list", kwargs={"slug": room.slug})


def test_the_owner_registers_a_webhook_and_sees_its_secret_once(client, alice, public_room, receiver, loopback_allowed):
    client.force_login(alice)
    response = client.post(page(public_room), {"url": receiver.url, "events": ["message", "clap"]})
    assert response.status_code == 201
    endpoint = WebhookEndpoint.objects.get(room=public_room)
    assert endpoint.events == ["message", "clap"] and endpoint.active
    assert endpoint.secret.startswith("whsec_") and endpoint.secret in response.content.decode()
    again = client.get(page(public_room))
    assert again.status_code == 200
    assert receiver.url in again.content.decode() and endpoint.secret not in again.content.decode()


def test_a_loopback_url_is_refused_on_the_page(client, alice, public_room):
    client.force_login(alice)
    response = client.post(page(public_room), {"url": "http://127.0.0.1:8080/hook", "events": ["message"]})
    assert response.status_code == 200
    assert "not a public address" in response.content.decode()
    assert not WebhookEndpoint.objects.exists()


def test_a_webhook_needs_at_least_one_event(client, alice, public_room, receiver, loopback_allowed):
    client.force_login(alice)
    response = client.post(page(public_room), {"url": receiver.url})
    assert response.status_code == 200 and not WebhookEndpoint.objects.exists()


def test_a_member_who_does_not_moderate_cannot_see_or_manage_webhooks(client, alice, bob, public_room):
    endpoint = WebhookEndpoint.objects.create(
        room=public_room, url="https://example.com/h", secret="s", events=["message"]
    )
    room_join(room=public_room, user=bob)
    client.force_login(bob)
    assert client.get(page(public_room)).status_code == 403
    assert client.post(page(public_room), {"url": "https://example.com/x", "events": ["message"]}).status_code == 403
    for act in ("disable", "delete"):
        url = reverse(f"webhook-{act}", kwargs={"slug": public_room.slug, "endpoint_id": endpoint.pk})
        assert client.post(url).status_code == 403
    endpoint.refresh_from_db()
    assert endpoint.active


def test_an_outsider_cannot_find_a_private_rooms_webhooks(client, charlie, private_room):
    endpoint = WebhookEndpoint.objects.create(
        room=private_room, url="https://example.com/h", secret="s", events=["message"]
    )
    client.force_login(charlie)
    assert client.get(page(private_room)).status_code == 404
    url = reverse("webhook-delete", kwargs={"slug": private_room.slug, "endpoint_id": endpoint.pk})
    assert client.post(url).status_code == 404
    assert WebhookEndpoint.objects.filter(pk=endpoint.pk).exists()


def test_the_owner_disables_enables_and_removes_a_webhook(client, alice, public_room):
    endpoint = WebhookEndpoint.objects.create(
        room=public_room, url="https://example.com/h", secret="s", events=["message"]
    )
    client.force_login(alice)

    def act(name):
        url = reverse(f"webhook-{name}", kwargs={"slug": public_room.slug, "endpoint_id": endpoint.pk})
        assert client.post(url).status_code == 302

    act("disable")
    endpoint.refresh_from_db()
    assert not endpoint.active and endpoint.disabled_reason == "Disabled by alice."
    act("enable")
    endpoint.refresh_from_db()
    assert endpoint.active and endpoint.disabled_reason == ""
    act("delete")
    assert not WebhookEndpoint.objects.exists()


def test_another_rooms_webhook_cannot_be_reached_through_ones_own_room(client, alice, bob, public_room):
    from rooms.services import room_create

    bobs_room = room_create(creator=bob, name="Bob's")
    endpoint = WebhookEndpoint.objects.create(
        room=bobs_room, url="https://example.com/h", secret="s", events=["message"]
    )
    client.force_login(alice)
    url = reverse("webhook-delete", kwargs={"slug": public_room.slug, "endpoint_id": endpoint.pk})
    assert client.post(url).status_code == 404
    assert WebhookEndpoint.objects.filter(pk=endpoint.pk).exists()


def test_staff_register_a_webhook_in_the_admin_and_see_its_secret_once(
    admin_client, public_room, receiver, loopback_allowed
):
    response = admin_client.post(
        reverse("admin:outgoing_webhooks_webhookendpoint_add"),
        {"room": public_room.pk, "url": receiver.url, "events": ["message"], "description": ""},
        follow=True,
    )
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.secret in response.content.decode()
    listing = admin_client.get(reverse("admin:outgoing_webhooks_webhookendpoint_changelist"))
    assert listing.status_code == 200 and endpoint.secret not in listing.content.decode()
    assert admin_client.get(reverse("admin:outgoing_webhooks_webhookdelivery_changelist")).status_code == 200


def test_the_admin_refuses_a_loopback_url(admin_client, public_room):
    response = admin_client.post(
        reverse("admin:outgoing_webhooks_webhookendpoint_add"),
        {"room": public_room.pk, "url": "http://127.0.0.1/x", "events": ["message"], "description": ""},
    )
    assert response.status_code == 200 and not WebhookEndpoint.objects.exists()
