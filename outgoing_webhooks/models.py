"""Outgoing webhooks: a room's endpoints and the log of what was delivered to each.

One ``WebhookDelivery`` row per event and endpoint, created when the event is recorded
(unique on endpoint and event id, so a persistence job redone after a crash records
nothing twice); the delivery job sends an endpoint's pending rows in ``id`` order and stops
at the first failure, so a receiver sees a room's events in order (outgoing_webhooks.services).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class WebhookEndpoint(models.Model):
    class Event(models.TextChoices):
        MESSAGE = "message", "New message"
        EDIT = "edit", "Message edited"
        DELETE = "delete", "Message deleted"
        CLAP = "clap", "Claps"
        MEMBER_JOINED = "member_joined", "Member joined"

    room = models.ForeignKey("rooms.Room", on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.URLField(max_length=2000)
    # The signing key. Kept in clear (an HMAC needs it), shown once at creation, never on a page after.
    secret = models.CharField(max_length=100, editable=False)
    events = models.JSONField(default=list, help_text="The kinds of event delivered (WebhookEndpoint.Event).")
    description = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="webhook_endpoints_created"
    )
    created_at = models.DateTimeField(default=timezone.now)
    active = models.BooleanField(default=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.CharField(max_length=300, blank=True)
    # Failed attempts in a row, and when the current run of failures began (reset by a success).
    consecutive_failures = models.PositiveIntegerField(default=0)
    failing_since = models.DateTimeField(null=True, blank=True)
    # The delivery job's claim on the endpoint: one job at a time delivers its events, in order.
    lease_until = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["room", "id"]

    def __str__(self) -> str:
        return f"{self.room.slug} → {self.url}"


class WebhookDelivery(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    # Sent as X-Pubsub-Event-Id: the same for every attempt, so that the receiver can deduplicate.
    event_id = models.CharField(max_length=100)
    type = models.CharField(max_length=20, choices=WebhookEndpoint.Event.choices)
    # The JSON body, fixed when the event was recorded: every attempt sends the same bytes.
    payload = models.TextField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)
    last_response_code = models.PositiveIntegerField(null=True, blank=True)
    last_response_body = models.TextField(blank=True, help_text="The start of the last response's body.")
    last_error = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["endpoint", "id"]
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "event_id"], name="webhook_delivery_once_per_endpoint"),
        ]
        indexes = [
            models.Index(fields=["endpoint", "status", "id"], name="webhook_delivery_queue"),
            models.Index(fields=["status", "next_attempt_at"], name="webhook_delivery_due"),
        ]
        verbose_name_plural = "webhook deliveries"

    def __str__(self) -> str:
        return f"{self.event_id} → endpoint {self.endpoint_id} ({self.status})"
