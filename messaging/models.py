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
    # A thread reply: the seq of its thread's root (a message of the same room that is no thread
    # reply itself; messaging.threads). ``also_in_room``: shown in the room's timeline as well.
    thread_seq = models.PositiveBigIntegerField(null=True, blank=True)
    # db_default: the previous release's workers insert messages during a rolling deploy.
    also_in_room = models.BooleanField(default=False, db_default=False)

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
            # Search lists results newest first (messaging/search/).
            models.Index(fields=["sent_at", "id"], name="message_newest_first"),
            # A thread's replies, in order (messaging.threads.selectors).
            models.Index(fields=["room", "thread_seq", "seq"], name="message_thread_replies"),
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


class LinkPreview(models.Model):
    """What a URL's page says of itself (Open Graph, Twitter cards, ``<title>``), fetched once
    for every message that links to it and fetched again after ``LINK_PREVIEW_TTL``
    (messaging.previews). A failed fetch is kept too, so that a dead link is not retried at
    every message."""

    class Status(models.TextChoices):
        OK = "ok", "Fetched"
        FAILED = "failed", "Failed"  # network error, timeout, too large, not HTML, no title
        REFUSED = "refused", "Refused"  # not a public address (pubsub_site.outbound)

    url = models.URLField(max_length=2000, unique=True)
    title = models.CharField(max_length=300, blank=True)
    description = models.CharField(max_length=500, blank=True)
    site_name = models.CharField(max_length=100, blank=True)
    # The site's copy of the page's image (a thumbnail in the default storage), never the
    # third party's address: a reader's browser asks only this site.
    image = models.CharField(max_length=300, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices)
    error = models.CharField(max_length=300, blank=True)
    fetched_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.url


class MessagePreview(models.Model):
    """The link card of a message as the persistence job copied it from Redis (the
    ``previews`` hash of messaging.store.previews): the card, or none (the link was edited
    away), or removed by its author or a moderator (it stays removed for that URL)."""

    message = models.OneToOneField(Message, on_delete=models.CASCADE, related_name="link_preview")
    url = models.URLField(max_length=2000)
    card = models.JSONField(null=True, blank=True)  # protocol.wire's `preview`; null: no card
    removed = models.BooleanField(default=False)
    rev = models.PositiveBigIntegerField()

    def __str__(self) -> str:
        return f"preview of {self.message}"


class ThreadFollow(models.Model):
    """A user following a thread of a room: its root's author and every replier follow it (the
    persistence job writes that); ``following`` False is one who unfollowed. ``last_read_seq``:
    the newest reply of the thread they have read."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="thread_follows")
    room = models.ForeignKey("rooms.Room", on_delete=models.CASCADE, related_name="+")
    root_seq = models.PositiveBigIntegerField()
    following = models.BooleanField(default=True)
    last_read_seq = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "room", "root_seq"], name="thread_follow_once_per_user"),
        ]
        indexes = [models.Index(fields=["room", "root_seq"], name="thread_follow_by_thread")]

    def __str__(self) -> str:
        return f"{self.user_id} follows #{self.root_seq} in {self.room_id}"


class Reaction(models.Model):
    """One user's emoji on one message (messaging.reactions); written by the persistence job
    from Redis, which holds the current state (messaging.store.reactions)."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="reactions")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="reactions")
    # One emoji grapheme (messaging.reactions.emoji_or_refuse); the longest (family ZWJ
    # sequences with skin tones) is 11 code points.
    emoji = models.CharField(max_length=32)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["message", "user", "emoji"], name="reaction_once_per_user_emoji_message"),
        ]

    def __str__(self) -> str:
        return f"{self.user} {self.emoji} on {self.message}"


class Pin(models.Model):
    """A pinned message of its room (messaging.pins); written by the persistence job from
    Redis (messaging.store.pins), deleted when the message is unpinned."""

    message = models.OneToOneField(Message, on_delete=models.CASCADE, related_name="pin")
    pinned_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    pinned_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"pin of {self.message}"
