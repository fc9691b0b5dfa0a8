"""Reading a room's outgoing webhooks, with the rights the room's settings page has."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, Q
from django.http import Http404

from outgoing_webhooks.models import WebhookDelivery, WebhookEndpoint
from rooms.models import Room
from rooms.selectors import room_get_for_moderator

RECENT_DELIVERIES = 10


def endpoints_for_room(*, room: Room) -> list[WebhookEndpoint]:
    """The room's endpoints, each with ``pending`` (its undelivered count) and ``recent`` (its last deliveries)."""
    endpoints = list(
        WebhookEndpoint.objects.filter(room=room).annotate(
            pending=Count("deliveries", filter=Q(deliveries__status=WebhookDelivery.Status.PENDING))
        )
    )
    for endpoint in endpoints:
        endpoint.recent = list(endpoint.deliveries.order_by("-id")[:RECENT_DELIVERIES])
    return endpoints


def endpoint_get_for_admin(*, slug: str, endpoint_id: int, user: AbstractBaseUser) -> WebhookEndpoint:
    """The room's endpoint, for its owner or a moderator (404 for readers who cannot see it, 403
    for members who are not the room's admins, as the moderation page)."""
    room, _ = room_get_for_moderator(slug=slug, user=user)
    endpoint = WebhookEndpoint.objects.select_related("room").filter(room=room, pk=endpoint_id).first()
    if endpoint is None:
        raise Http404("No such webhook.")
    return endpoint
