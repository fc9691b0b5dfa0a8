from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

CLAP_CAP = 50


class Message(models.Model):
    """A message as PostgreSQL keeps it, written by the persistence job from the Redis buffer."""

    room = models.ForeignKey("rooms.Room", on_delete=models.CASCADE, related_name="messages")
    seq = models.PositiveBigIntegerField()
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="messages")
    body = models.TextField()
    client_id = models.UUIDField()
    sent_at = models.DateTimeField(default=timezone.now)
    edited_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)
    hidden_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The moderator who hid the message.",
    )
    # The room revision of the last change to this message (creation, edit, deletion, claps).
    rev = models.PositiveBigIntegerField(default=0)
    # The seq of the message (of the same room) this one replies to.
    reply_to_seq = models.PositiveBigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["room", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["room", "seq"], name="message_one_seq_per_room"),
            # A client_id is its author's: another user's message may carry the same one.
            models.UniqueConstraint(
                fields=["room", "author", "client_id"], name="message_one_client_id_per_author_and_room"
            ),
        ]
        indexes = [
            models.Index(fields=["room", "rev"]),
            # Search lists results newest first (messaging/search.py).
            models.Index(fields=["sent_at", "id"], name="message_newest_first"),
        ]
        # On PostgreSQL the table also has `search_vector`, a generated tsvector of `body` with
        # its GIN index (migration 0003): unknown to the ORM, so that SQLite still runs the site.

    def __str__(self) -> str:
        return f"#{self.seq} in {self.room_id}"

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None or self.hidden_by_id is not None


class Clap(models.Model):
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="claps")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="claps")
    count = models.PositiveSmallIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["message", "user"], name="clap_one_row_per_user_and_message"),
            models.CheckConstraint(condition=models.Q(count__gte=1, count__lte=CLAP_CAP), name="clap_count_within_cap"),
        ]

    def __str__(self) -> str:
        return f"{self.user} x{self.count} on {self.message}"


class Notification(models.Model):
    """A mention of the user in a room they can read, a message to them in a direct
    conversation (which counts as a mention), or an invitation to a room (``seq`` 0)."""

    class Kind(models.TextChoices):
        MENTION = "mention", "Mention"
        DIRECT = "direct", "Direct message"
        INVITE = "invite", "Invitation"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.MENTION)
    room = models.ForeignKey("rooms.Room", on_delete=models.CASCADE, related_name="+")
    seq = models.PositiveBigIntegerField()
    from_user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    excerpt = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=timezone.now)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["user", "room", "seq", "kind"], name="notification_once_per_message"),
        ]
        indexes = [models.Index(fields=["user", "read_at"])]

    def __str__(self) -> str:
        return f"{self.kind} of {self.user_id} in {self.room_id} #{self.seq}"
