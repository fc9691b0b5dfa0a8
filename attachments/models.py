"""An uploaded file, claimed by the message whose ``send`` names it (docs/protocol.md)."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

# Served inline (an <img>, a lightbox) only these: anything else is a download.
SAFE_INLINE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})


class Attachment(models.Model):
    """One uploaded file. Unclaimed (``client_id`` null) it belongs to its uploader alone; the
    send that names it claims it with the message's ``client_id`` and gives it the message's
    ``seq``; the persistence job links it to the message row. ``deleted_at`` set, it is never
    served again; a job removes its objects from the storage (``objects_removed``)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    uploader = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="attachments")
    room = models.ForeignKey("rooms.Room", on_delete=models.CASCADE, related_name="attachments")
    message = models.ForeignKey(
        "messaging.Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="attachments"
    )
    client_id = models.UUIDField(null=True, blank=True, help_text="The client_id of the send that claimed it.")
    seq = models.PositiveBigIntegerField(null=True, blank=True, help_text="The seq of the message it went out with.")
    position = models.PositiveSmallIntegerField(default=0, help_text="Its place among the message's attachments.")
    name = models.CharField(max_length=255)
    size = models.PositiveBigIntegerField()
    content_type = models.CharField(max_length=100)
    storage_key = models.CharField(max_length=255)
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    thumb_key = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    deleted_at = models.DateTimeField(null=True, blank=True)
    objects_removed = models.BooleanField(default=False)

    class Meta:
        ordering = ["position", "created_at"]
        indexes = [
            models.Index(fields=["room", "seq"]),
            models.Index(fields=["uploader", "created_at"]),
            models.Index(fields=["client_id"]),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.id})"

    @property
    def is_image(self) -> bool:
        return self.content_type in SAFE_INLINE_TYPES and self.width is not None
