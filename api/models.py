"""Tokens, bot accounts and incoming webhooks.

A secret is never stored: a token's or a webhook's is shown once at creation and kept as its
SHA-256 (a random 256-bit secret needs no slow hash: nothing to guess); the first characters
(``prefix``) are kept in clear so that a list can tell tokens apart.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class BotAccount(models.Model):
    """A user that is a program: it has no password, posts only with its tokens, and its
    messages carry ``author.bot: true``. A room admin makes it for their room (api.services.bot_create);
    it is a member of that room."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="bot_account"
    )
    room = models.ForeignKey("rooms.Room", on_delete=models.CASCADE, related_name="bots")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="bots_created"
    )
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"bot {self.user_id} of room {self.room_id}"


class ApiToken(models.Model):
    """A bearer token of a user (or a bot): what it may do (read, publish) and where (every
    room the user may, or only ``rooms``)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=80)
    prefix = models.CharField(max_length=12, help_text="The token's first characters, to tell it apart.")
    hash = models.CharField(max_length=64, unique=True, editable=False)  # hex SHA-256 of the whole token
    can_read = models.BooleanField("Read", default=True)
    can_publish = models.BooleanField("Publish", default=True)
    all_rooms = models.BooleanField(default=True, help_text="Every room the user may use; else only `rooms`.")
    rooms = models.ManyToManyField("rooms.Room", blank=True, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    # Updated at most once a minute (api.tokens.token_touch): not a write per request.
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(can_read=True) | models.Q(can_publish=True), name="token_has_a_scope"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def scopes(self) -> list[str]:
        return [scope for scope, on in (("read", self.can_read), ("publish", self.can_publish)) if on]

    def is_active(self, now=None) -> bool:
        now = now or timezone.now()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


class IncomingWebhook(models.Model):
    """A URL with a secret in it that posts to one room as its bot (api.webhooks)."""

    room = models.ForeignKey("rooms.Room", on_delete=models.CASCADE, related_name="incoming_webhooks")
    bot = models.ForeignKey(BotAccount, on_delete=models.CASCADE, related_name="incoming_webhooks")
    name = models.CharField(max_length=80)
    prefix = models.CharField(max_length=12)
    hash = models.CharField(max_length=64, unique=True, editable=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"
