from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models.functions import Lower
from django.urls import reverse
from django.utils import timezone


class Room(models.Model):
    class Visibility(models.TextChoices):
        PUBLIC = "public", "Public"
        PRIVATE = "private", "Private"

    class Kind(models.TextChoices):
        ROOM = "room", "Room"
        # A private conversation of 2 to DIRECT_MAX_MEMBERS people (rooms.services.direct_open).
        DIRECT = "direct", "Direct message"

    name = models.CharField(max_length=80)
    slug = models.SlugField(max_length=100, unique=True)
    topic = models.CharField(max_length=200, blank=True)
    visibility = models.CharField(max_length=10, choices=Visibility.choices, default=Visibility.PUBLIC)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="rooms_created")
    created_at = models.DateTimeField(default=timezone.now)
    locked = models.BooleanField(default=False, help_text="A locked room can be read but not posted in.")
    slow_mode_seconds = models.PositiveIntegerField(
        default=0, db_default=0, help_text="Members wait this long between two messages; 0 turns slow mode off."
    )
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.ROOM, db_default=Kind.ROOM)
    # A direct conversation's people, as their sorted ids ("3,8"): opening one with the same
    # people again finds it. Null for rooms.
    dm_key = models.CharField(max_length=100, null=True, blank=True, unique=True, editable=False)
    # An archived room is read-only and left out of the room list (rooms.room_settings.room_archive).
    archived = models.BooleanField(
        default=False, db_default=False, help_text="An archived room can be read but not posted in."
    )

    class Meta:
        ordering = ["name"]
        constraints = [
            # Public rooms' names are unique. A private room's name is its members' business: a
            # public or private room may share it (else creating one would reveal the name), and
            # direct conversations are named after their people.
            models.UniqueConstraint(
                Lower("name"), condition=models.Q(kind="room", visibility="public"), name="room_public_name_unique_ci"
            ),
            models.CheckConstraint(
                condition=models.Q(kind="room", dm_key__isnull=True)
                | models.Q(kind="direct", dm_key__isnull=False, visibility="private"),
                name="room_direct_is_private_and_keyed",
            ),
            # A direct conversation has no owner to archive it (rooms.room_settings).
            models.CheckConstraint(
                condition=models.Q(kind="room") | models.Q(archived=False), name="room_direct_never_archived"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("room-detail", kwargs={"slug": self.slug})

    @property
    def is_public(self) -> bool:
        return self.visibility == self.Visibility.PUBLIC

    @property
    def is_direct(self) -> bool:
        return self.kind == self.Kind.DIRECT

    @property
    def read_only(self) -> bool:
        """Nobody posts: locked by a moderator, or archived by the owner."""
        return self.locked or self.archived

    @property
    def group_name(self) -> str:
        """The channel-layer group of the room's subscribers: built from the id, never from user text."""
        return f"room.{self.pk}"


class RoomSlugAlias(models.Model):
    """An address a room had before (a direct conversation's random slug before it was named
    after its people): the room page redirects from it to the room's current address."""

    slug = models.SlugField(max_length=100, unique=True)
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="slug_aliases")

    def __str__(self) -> str:
        return f"{self.slug} -> {self.room_id}"


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner", "Owner"
        MODERATOR = "moderator", "Moderator"
        MEMBER = "member", "Member"
        SPECTATOR = "spectator", "Spectator"

    class NotifyLevel(models.TextChoices):
        """What of the room the member is told about (messaging.notifications.preferences).
        In a direct conversation every message counts as a mention."""

        ALL = "all", "All messages"
        MENTIONS = "mentions", "Mentions only"
        NOTHING = "nothing", "Nothing"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    # Spectators read and clap but do not post.
    joined_at = models.DateTimeField(default=timezone.now)
    last_read_seq = models.PositiveBigIntegerField(default=0)
    # A moderation mute: the member cannot post until then (rooms.moderation). Not to be
    # confused with notifications_snoozed_until, the member's own choice to hear nothing.
    muted_until = models.DateTimeField(null=True, blank=True)
    banned = models.BooleanField(default=False)
    # db_default too: during a rolling deploy the previous release, which knows nothing of the
    # column, still inserts memberships (docs/deploy.md, "Upgrades").
    notify_level = models.CharField(
        "Notify me of",
        max_length=10,
        choices=NotifyLevel.choices,
        default=NotifyLevel.MENTIONS,
        db_default=NotifyLevel.MENTIONS,
    )
    # The member silenced the room's notifications until then ("mute for 1 hour").
    notifications_snoozed_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["joined_at"]
        constraints = [
            models.UniqueConstraint(fields=["user", "room"], name="membership_one_per_user_and_room"),
        ]
        indexes = [
            models.Index(fields=["room", "role"]),
            # Who hears every message of a room (messaging.notifications.preferences.recipients).
            models.Index(fields=["room", "notify_level"], name="membership_room_notify_level"),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.room} ({self.role})"

    @property
    def can_post(self) -> bool:
        return not self.banned and self.role != self.Role.SPECTATOR

    @property
    def can_moderate(self) -> bool:
        return not self.banned and self.role in {self.Role.OWNER, self.Role.MODERATOR}

    def is_muted(self, now=None) -> bool:
        return self.muted_until is not None and self.muted_until > (now or timezone.now())

    def snoozed_until(self, now=None):
        """When the member's snooze of the room's notifications ends, or None if it is not snoozed."""
        until = self.notifications_snoozed_until
        return until if until is not None and until > (now or timezone.now()) else None


class Report(models.Model):
    """A member's report of a message, which the room's moderators resolve or dismiss.

    A message is named by (room, seq): it may still be only in the Redis buffer.
    """

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        RESOLVED = "resolved", "Resolved"
        DISMISSED = "dismissed", "Dismissed"

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="reports")
    seq = models.PositiveBigIntegerField()
    reporter = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="reports_made")
    reason = models.CharField(max_length=500)
    created_at = models.DateTimeField(default=timezone.now)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["reporter", "room", "seq"],
                condition=models.Q(status="open"),
                name="report_one_open_per_reporter_and_message",
            ),
            models.CheckConstraint(
                condition=models.Q(status="open", resolved_at__isnull=True)
                | (~models.Q(status="open") & models.Q(resolved_at__isnull=False)),
                name="report_closed_exactly_when_resolved_at_is_set",
            ),
            models.CheckConstraint(condition=~models.Q(reason=""), name="report_reason_not_empty"),
        ]
        indexes = [models.Index(fields=["room", "status"])]

    def __str__(self) -> str:
        return f"Report #{self.pk} of #{self.seq} in {self.room_id} ({self.status})"

    @property
    def is_open(self) -> bool:
        return self.status == self.Status.OPEN


class AppendOnly(Exception):
    """An audit entry was about to be changed or deleted."""


class AuditLogQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AppendOnly("The audit log is append-only: entries cannot be changed.")

    def delete(self):
        raise AppendOnly("The audit log is append-only: entries cannot be deleted.")


class AuditLog(models.Model):
    """One moderation act, recorded by the service that did it. Append-only."""

    class Action(models.TextChoices):
        PROMOTE = "promote", "Promote to moderator"
        DEMOTE = "demote", "Demote to member"
        MUTE = "mute", "Mute"
        UNMUTE = "unmute", "Unmute"
        BAN = "ban", "Ban"
        UNBAN = "unban", "Unban"
        REMOVE = "remove", "Remove"
        LOCK = "lock", "Lock"
        UNLOCK = "unlock", "Unlock"
        SLOW_MODE = "slow_mode", "Set slow mode"
        HIDE_MESSAGE = "hide_message", "Hide message"
        RESOLVE_REPORT = "resolve_report", "Resolve report"
        DISMISS_REPORT = "dismiss_report", "Dismiss report"
        RENAME = "rename", "Rename the room"
        EDIT_TOPIC = "edit_topic", "Edit the topic"
        ARCHIVE = "archive", "Archive the room"
        UNARCHIVE = "unarchive", "Unarchive the room"
        DELETE_ROOM = "delete_room", "Delete the room"
        PIN_MESSAGE = "pin_message", "Pin message"
        UNPIN_MESSAGE = "unpin_message", "Unpin message"

    # Entries outlive the room they are about (SET_NULL); an actor with entries cannot be deleted.
    room = models.ForeignKey(Room, null=True, blank=True, on_delete=models.SET_NULL, related_name="audit_entries")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="audit_entries")
    as_staff = models.BooleanField(
        default=False, help_text="The actor used site staff rights (the admin), not a role in the room."
    )
    action = models.CharField(max_length=20, choices=Action.choices)
    target = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="audit_entries_about"
    )
    seq = models.PositiveBigIntegerField(null=True, blank=True)
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = AuditLogQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["room", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.actor_id} {self.action} in {self.room_id} at {self.created_at:%Y-%m-%d %H:%M}"

    def save(self, *args, **kwargs) -> None:
        if self.pk is not None:
            raise AppendOnly("The audit log is append-only: entries cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnly("The audit log is append-only: entries cannot be deleted.")
