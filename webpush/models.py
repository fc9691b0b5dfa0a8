from __future__ import annotations

from django.conf import settings
from django.db import models


class PushSubscription(models.Model):
    """One browser's push subscription (``PushManager.subscribe``) for one user.

    The endpoint is the push service's address for that browser: unique, so that a browser
    that subscribes again, even for another user signed in on it, owns one row. A push service
    answering 404 or 410 deletes the row (webpush.services).
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="push_subscriptions")
    endpoint = models.URLField(max_length=2000, unique=True)
    # The browser's P-256 ECDH public key (65 bytes) and auth secret (16 bytes), base64url.
    p256dh = models.CharField(max_length=100)
    auth = models.CharField(max_length=40)
    user_agent = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_failure_at = models.DateTimeField(null=True, blank=True)
    # Failures in a row (reset by a success), and the last one's reason, for the admin.
    failures = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=300, blank=True)

    def __str__(self) -> str:
        return f"push subscription {self.pk} of user {self.user_id}"

    def info(self) -> dict:
        """The ``subscription_info`` pywebpush takes (the browser's PushSubscription.toJSON())."""
        return {"endpoint": self.endpoint, "keys": {"p256dh": self.p256dh, "auth": self.auth}}
