"""Writes of attachments: the upload, the send's claim, the link to the persisted message,
and the removal of what no message may show any more.

The guarantees: an upload is its uploader's alone until a send in its room claims it (a
conditional update, so two sends never take the same file, and a retry of the same send
takes it again); a claimed attachment is served only while its message is readable and not
deleted or hidden (attachments.selectors); objects leave the storage only after the row says
so (``deleted_at``), so no message ever points at a missing object that is still listed.
"""

from __future__ import annotations

import fnmatch
import logging
import mimetypes
import posixpath
import secrets
import unicodedata
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile, File
from django.core.files.storage import storages
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import Q, Subquery, Sum
from django.utils import timezone

from attachments.images import process_image
from attachments.models import SAFE_INLINE_TYPES, Attachment
from messaging.models import Message
from protocol.wire import attachment_wire
from rooms.models import Room

logger = logging.getLogger(__name__)


class UploadRefused(ValidationError):
    """An upload the limits refuse; ``code`` is the error code of docs/protocol.md."""

    def __init__(self, code: str, detail: str, status: int = 400):
        super().__init__(detail, code=code)
        self.status = status
        self.detail = detail


class ClaimRefused(Exception):
    def __init__(self, code: str, detail: str):
        super().__init__(detail)
        self.code = code
        self.detail = detail


def attachment_storage():
    return storages["attachments"]


def _clean_name(name: str) -> str:
    name = unicodedata.normalize("NFC", posixpath.basename(name.replace("\\", "/"))).strip()
    name = "".join(ch for ch in name if ch.isprintable())
    return (name or "file")[:200]


def content_type_for(name: str) -> str:
    guessed, _ = mimetypes.guess_type(name, strict=False)
    return guessed or "application/octet-stream"


def content_type_allowed(content_type: str) -> bool:
    return any(fnmatch.fnmatchcase(content_type, pattern) for pattern in settings.ATTACHMENT_TYPES)


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):g} MB"


def bytes_uploaded_today(*, user: AbstractBaseUser) -> int:
    since = timezone.now() - timedelta(days=1)
    total = Attachment.objects.filter(uploader=user, created_at__gte=since).aggregate(total=Sum("size"))["total"]
    return total or 0


def attachment_upload(*, user: AbstractBaseUser, room: Room, upload: UploadedFile) -> Attachment:
    """Store ``upload`` for ``user`` in ``room`` (the caller has checked that they may post
    there). Raises UploadRefused (``file_too_large``, ``daily_quota_exceeded``,
    ``type_not_allowed``, ``bad_image``)."""
    name = _clean_name(upload.name or "file")
    size = upload.size or 0
    if size > settings.ATTACHMENT_MAX_BYTES:
        raise UploadRefused("file_too_large", f"A file has at most {_megabytes(settings.ATTACHMENT_MAX_BYTES)}.", 413)
    if size == 0:
        raise UploadRefused("bad_request", "The file is empty.")
    content_type = content_type_for(name)
    if not content_type_allowed(content_type):
        raise UploadRefused("type_not_allowed", f"Files of type {content_type} cannot be attached.", 415)
    if bytes_uploaded_today(user=user) + size > settings.ATTACHMENT_DAILY_BYTES:
        raise UploadRefused(
            "daily_quota_exceeded",
            f"You can upload {_megabytes(settings.ATTACHMENT_DAILY_BYTES)} a day; try again later.",
            429,
        )
    attachment = Attachment(uploader=user, room=room, name=name, size=size, content_type=content_type)
    prefix = f"{attachment.id}/{secrets.token_hex(8)}"
    thumb: bytes | None = None
    if content_type in SAFE_INLINE_TYPES:
        try:
            image = process_image(upload.read())
        except ValidationError as refused:
            raise UploadRefused("bad_image", " ".join(refused.messages)) from None
        content: File = ContentFile(image.data)
        attachment.content_type, attachment.size = image.content_type, len(image.data)
        attachment.width, attachment.height = image.width, image.height
        thumb, attachment.thumb_key = image.thumb, f"{prefix}-thumb.webp"
    else:
        upload.seek(0)
        content = upload
    attachment.storage_key = f"{prefix}.bin"
    # The row first, the objects after: an object never exists without a row that names it,
    # so that a process dying in between leaves at worst a row without its objects (unclaimed:
    # nobody sees it; attachments_cleanup removes it), never an object nobody knows of.
    attachment.save(force_insert=True)
    storage = attachment_storage()
    try:
        if thumb is not None:
            _store(storage, attachment.thumb_key, ContentFile(thumb))
        _store(storage, attachment.storage_key, content)
    except Exception as error:
        Attachment.objects.filter(id=attachment.id).update(deleted_at=timezone.now())
        try:
            attachments_purge(ids=[str(attachment.id)])
        except Exception:  # the storage is down: attachments_cleanup finishes it later
            logger.warning("could not remove the objects of failed upload %s", attachment.id, exc_info=True)
        logger.error("upload %s not stored: %r", attachment.id, error)
        raise UploadRefused("unavailable", "The file could not be stored; try again later.", 503) from error
    return attachment


def _store(storage, key: str, content: File) -> None:
    saved = storage.save(key, content)
    if saved != key:  # the keys are random: a storage that renamed it has another object there
        storage.delete(saved)
        raise RuntimeError(f"the storage renamed {key} to {saved}")


def attachments_claim(*, room_id: int, uploader_id: int, ids: list[str], client_id: str) -> list[dict]:
    """Claim the uploads ``ids`` for the message ``client_id``: each must be the uploader's, in
    this room, not deleted, and unclaimed or claimed by this same send (a retry). Returns
    their wire forms in the order named. Raises ClaimRefused (``attachment_invalid``)."""
    if len(set(ids)) != len(ids):
        raise ClaimRefused("attachment_invalid", "`attachments` names a file twice.")
    with transaction.atomic():
        rows = list(
            Attachment.objects.select_for_update()
            .filter(id__in=ids, room_id=room_id, uploader_id=uploader_id, deleted_at__isnull=True)
            .filter(Q(client_id__isnull=True) | Q(client_id=client_id))
        )
        if len(rows) != len(ids):
            raise ClaimRefused(
                "attachment_invalid", "An attachment is unknown, not yours, of another room or already sent."
            )
        by_id = {str(row.id): row for row in rows}
        for position, attachment_id in enumerate(ids):
            row = by_id[attachment_id]
            row.client_id, row.position = client_id, position
        Attachment.objects.bulk_update(rows, ["client_id", "position"])
    return [attachment_wire(by_id[attachment_id]) for attachment_id in ids]


def attachments_mark_sent(*, room_id: int, client_id: str, seq: int) -> None:
    """The claimed attachments of ``client_id`` went out as message ``seq``: from now on they
    are served to the room's readers (the persistence job sets it too, should this be lost)."""
    Attachment.objects.filter(room_id=room_id, client_id=client_id, seq__isnull=True).update(seq=seq)


def attachments_link_persisted(*, room_id: int, records: list[dict]) -> None:
    """After the persistence job wrote ``records``: link their attachments to the rows."""

    for record in records:
        ids = [item["id"] for item in record.get("attachments") or ()]
        if not ids:
            continue
        message = Message.objects.filter(room_id=room_id, seq=record["seq"]).values("id")[:1]
        Attachment.objects.filter(id__in=ids, room_id=room_id).update(message=Subquery(message), seq=record["seq"])


def attachments_withdraw(*, room_id: int, seq: int) -> list[str]:
    """The message ``seq`` was deleted or hidden: its attachments are never served again
    (the view checks the message too, at once); the objects go later (attachments_purge)."""
    ids = list(
        Attachment.objects.filter(room_id=room_id, seq=seq, deleted_at__isnull=True).values_list("id", flat=True)
    )
    Attachment.objects.filter(id__in=ids).update(deleted_at=timezone.now())
    return [str(i) for i in ids]


def _delete_objects(keys: list[str]) -> None:
    storage = attachment_storage()
    for key in keys:
        if key:
            storage.delete(key)


def attachments_purge(*, ids: list[str] | None = None) -> int:
    """Remove the objects of the attachments marked deleted and not yet purged (of ``ids``
    only, when given). Idempotent: a crash halfway leaves rows the next run finishes.
    Returns how many attachments had their objects removed."""
    pending = Attachment.objects.filter(deleted_at__isnull=False, objects_removed=False)
    if ids is not None:
        pending = pending.filter(id__in=ids)
    removed = 0
    for row in pending.only("id", "storage_key", "thumb_key"):
        _delete_objects([row.storage_key, row.thumb_key])
        Attachment.objects.filter(id=row.id).update(objects_removed=True)
        removed += 1
    return removed


def attachments_cleanup() -> int:
    """The periodic cleanup (``manage.py attachments_cleanup``): mark as deleted the uploads
    never claimed within ATTACHMENT_UNCLAIMED_HOURS, the claims whose message never came,
    and the attachments of deleted or hidden messages; then remove every deleted one's
    objects (attachments_purge). Returns how many had their objects removed."""

    now = timezone.now()
    stale = now - timedelta(hours=settings.ATTACHMENT_UNCLAIMED_HOURS)
    live = Attachment.objects.filter(deleted_at__isnull=True)
    live.filter(client_id__isnull=True, created_at__lt=stale).update(deleted_at=now)
    # Claimed, not linked: linked now if the message was persisted (the job's link was lost
    # with its worker), deleted if the send never stored its message (refused, or the server
    # died first; a send's retry comes within seconds, not ATTACHMENT_UNCLAIMED_HOURS).
    claimed = live.filter(client_id__isnull=False, message__isnull=True, created_at__lt=stale)
    for row in claimed.only("id", "room_id", "uploader_id", "client_id"):
        message = Message.objects.filter(room_id=row.room_id, author_id=row.uploader_id, client_id=row.client_id)
        found = message.values_list("id", "seq").first()
        if found is None:
            Attachment.objects.filter(id=row.id).update(deleted_at=now)
        else:
            Attachment.objects.filter(id=row.id).update(message_id=found[0], seq=found[1])
    live.filter(Q(message__deleted_at__isnull=False) | Q(message__hidden_by__isnull=False)).update(deleted_at=now)
    return attachments_purge()
