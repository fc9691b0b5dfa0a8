"""Writes to accounts: e-mail addresses and their verification, the end of a user's
sessions and sockets, account deletion, and profiles (name, avatar, status, time zone).

Guarantees:
- An address is used (password reset, digests) only once its link was followed
  (``Profile.email_verified``); changing it un-verifies it until the new link is followed,
  and the old address is told.
- When a password changes or an account is deleted, every socket of the user's other
  sessions ends at once (``user_sessions_end``), the same way a log-out ends its own
  session's sockets (protocol.events.session_logged_out); their HTTP sessions already fail
  Django's session hash check.
- A deleted account's row stays, inactive and anonymous: messages (PostgreSQL rows and
  records still in Redis waiting for the persistence job) keep their author id, and show
  "deleted user #<id>".
"""

from __future__ import annotations

import io
import logging
import secrets
import smtplib
import zoneinfo
from collections.abc import Iterable
from datetime import datetime

import orjson
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core import signing
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Max
from django.template.loader import render_to_string
from django.urls import reverse
from PIL import ImageOps
from redis.exceptions import RedisError, WatchError

from accounts.models import Profile
from messaging.models import Notification
from messaging.store.keys import RoomKeys
from protocol.events import (
    send_to_group,
    session_fingerprint,
    sessions_end_told_by_caller,
    user_group,
    user_sessions_ended_event,
)
from pubsub_site.images import flattened, read_upright
from pubsub_site.ratelimit import allow
from pubsub_site.redis.client import get_redis
from rooms.models import Membership

logger = logging.getLogger(__name__)

EMAIL_VERIFY_SALT = "accounts.email-verify"
DELETED_USERNAME = "deleted user #{pk}"  # a space: no sign-up can take the name first


def profile_get(*, user: AbstractBaseUser) -> Profile:
    """The user's profile, made with the defaults the first time."""
    profile, _ = Profile.objects.get_or_create(user=user)
    return profile


def _absolute(path: str) -> str:
    return settings.SITE_URL.rstrip("/") + path


# --- E-mail addresses ------------------------------------------------------


def email_verification_token(*, user: AbstractBaseUser, email: str) -> str:
    """A signed, timestamped link token naming the user, the address to confirm, and the
    address they have now (a link made before another change is refused)."""
    return signing.dumps({"u": user.pk, "e": email, "o": user.email}, salt=EMAIL_VERIFY_SALT)


def email_verification_send(*, user: AbstractBaseUser, email: str) -> bool:
    """Send the link that confirms ``email`` for ``user`` (and, when it replaces an address,
    tell the old one). False when the user asked too often (``RATE_LIMITS["email_verify"]``)."""
    if not allow("email_verify", f"user:{user.pk}"):
        return False
    link = _absolute(reverse("email-verify", args=[email_verification_token(user=user, email=email)]))
    context = {"user": user, "email": email, "link": link, "hours": settings.EMAIL_VERIFY_TIMEOUT // 3600}
    try:
        send_mail(
            "Confirm your e-mail address",
            render_to_string("accounts/email/verify.txt", context),
            None,
            [email],
        )
        if user.email and user.email.lower() != email.lower():
            send_mail(
                "Your e-mail address is being changed",
                render_to_string("accounts/email/change_notice.txt", context),
                None,
                [user.email],
            )
    except (OSError, smtplib.SMTPException):
        # The sign-up or the settings still saved; the user can ask for the link again.
        logger.warning("could not send the verification link of user %s", user.pk, exc_info=True)
        return False
    return True


@transaction.atomic
def email_verify(*, token: str) -> AbstractBaseUser:
    """Follow a verification link: the address becomes the user's, verified. Raises
    ValidationError for a link that is forged, expired, or made before a later change."""
    try:
        data = signing.loads(token, salt=EMAIL_VERIFY_SALT, max_age=settings.EMAIL_VERIFY_TIMEOUT)
    except signing.SignatureExpired:
        raise ValidationError("This link has expired. Ask for a new one from your settings.") from None
    except signing.BadSignature:
        raise ValidationError("This link is not valid.") from None
    user = get_user_model().objects.select_for_update().filter(pk=data["u"], is_active=True).first()
    if user is None or (user.email != data["o"] and user.email != data["e"]):
        raise ValidationError("This link is no longer valid: the address was changed since.")
    profile_get(user=user)
    if user.email != data["e"]:
        user.email = data["e"]
        user.save(update_fields=["email"])
    Profile.objects.filter(user=user).update(email_verified=True)
    return user


@transaction.atomic
def profile_update_email(*, user: AbstractBaseUser, email: str, mention_emails: bool) -> bool:
    """Ask to change the user's address, and set whether they get e-mail about mentions they miss.

    A new address is not taken at once: a link goes to it (``email_verification_send``),
    and the address changes when it is followed. An empty address removes the one they have.
    True when a link went out.

    Turned back on, the e-mails start from the next mention: the ones made while they were
    off count as covered (``mention_emailed_upto``), never e-mailed."""
    sent = False
    profile_get(user=user)
    profile = Profile.objects.select_for_update().get(user=user)  # a digest claim moves the same row
    fields: list[str] = []
    if not email and user.email:
        user.email = ""
        user.save(update_fields=["email"])
        profile.email_verified = False
        fields.append("email_verified")
    elif email and email != user.email:
        sent = email_verification_send(user=user, email=email)
    if profile.mention_emails != mention_emails:
        profile.mention_emails = mention_emails
        fields.append("mention_emails")
        if mention_emails:
            latest = Notification.objects.filter(user=user).aggregate(latest=Max("pk"))["latest"] or 0
            profile.mention_emailed_upto = max(profile.mention_emailed_upto, latest)
            fields.append("mention_emailed_upto")
    if fields:
        profile.save(update_fields=fields)
    return sent


# --- Sessions and sockets --------------------------------------------------


def user_sessions_end(*, user: AbstractBaseUser, detail: str, keep_session_keys: Iterable[str | None] = ()) -> None:
    """End every open socket of the user except those of the sessions named in
    ``keep_session_keys`` (the browser that changed the password), after the commit.

    The HTTP sessions need nothing here: a changed password changes the session hash
    that Django (and pubsub_site.wsauth at a handshake) checks, and a deactivated user is
    refused by both. The sockets are told through the user's group, as a log-out tells
    its own session's sockets (``user.logged_out``), with the kept sessions named by their
    fingerprints; each other consumer sends ``detail`` in a ``forbidden`` error and closes (1008)."""
    event = user_sessions_ended_event(
        detail=detail, keep=sorted({session_fingerprint(key) for key in keep_session_keys if key})
    )
    group = user_group(user.pk)

    def send() -> None:
        try:
            send_to_group(group, event)
        except RedisError:
            # The change stands with Redis down; the sockets then close with the layer.
            logger.warning("could not tell the sockets of user %s that their sessions ended", user.pk)

    transaction.on_commit(send)


def password_changed(*, user: AbstractBaseUser, keep_session_keys: Iterable[str | None] = ()) -> None:
    """The user's password changed (changed in the settings, or reset by mail): every
    other session's sockets end."""
    user_sessions_end(user=user, detail="The password changed; sign in again.", keep_session_keys=keep_session_keys)


# --- Deletion --------------------------------------------------------------


@transaction.atomic
def account_delete(*, user: AbstractBaseUser) -> None:
    """Delete the user's account: they can never log in again, and nothing personal remains.

    The row itself stays, inactive and anonymous ("deleted user #<id>"), because rows and
    records point at it: messages (``on_delete=PROTECT``; records still in Redis are written
    to PostgreSQL later by the persistence job with this author id), rooms they created,
    the moderation audit. Their memberships stay, so direct conversations keep their
    history and their other members. Their avatar file, address, notifications and
    profile fields go; their sockets end; the records in Redis show the new name."""
    profile = profile_get(user=user)
    avatar = profile.avatar
    user.username = DELETED_USERNAME.format(pk=user.pk)
    user.email = ""
    user.first_name = user.last_name = ""
    user.is_active = user.is_staff = user.is_superuser = False
    user.set_unusable_password()
    sessions_end_told_by_caller(user)  # below, saying the account was deleted
    user.save()
    Profile.objects.filter(pk=profile.pk).update(
        email_verified=False,
        mention_emails=False,
        display_name="",
        avatar="",
        status="",
        status_expires_at=None,
        time_zone="",
    )
    Notification.objects.filter(user=user).delete()
    room_ids = list(Membership.objects.filter(user=user).values_list("room_id", flat=True))
    user_sessions_end(user=user, detail="This account was deleted.")
    transaction.on_commit(lambda: _rename_buffered_records(user_id=user.pk, username=user.username, room_ids=room_ids))
    if avatar:
        transaction.on_commit(lambda: default_storage.delete(avatar))


def _rename_buffered_records(*, user_id: int, username: str, room_ids: list[int]) -> None:
    """Rewrite the author name in the user's records still in the rooms' Redis buffers
    (a record is the member of a sorted set: removed and added again with the same seq,
    under WATCH, so a concurrent append or trim is never lost)."""
    for room_id in room_ids:
        key = RoomKeys(room_id).buf
        client = get_redis(room_id)
        for _ in range(10):
            try:
                with client.pipeline() as pipe:
                    pipe.watch(key)
                    renamed = []
                    for raw, score in pipe.zrange(key, 0, -1, withscores=True):
                        record = orjson.loads(raw)
                        if record.get("author", {}).get("id") == user_id:
                            new = orjson.dumps({**record, "author": {**record["author"], "username": username}})
                            renamed.append((raw, new, score))
                    if not renamed:
                        break
                    pipe.multi()
                    for raw, new, score in renamed:
                        pipe.zrem(key, raw)
                        pipe.zadd(key, {new: score})
                    pipe.execute()
                    break
            except WatchError:
                continue
            except RedisError:
                logger.warning("could not rename user %s in the buffer of room %s", user_id, room_id, exc_info=True)
                break


# --- Profiles --------------------------------------------------------------


def profile_update(
    *,
    user: AbstractBaseUser,
    display_name: str,
    status: str,
    status_expires_at: datetime | None,
    time_zone: str,
) -> Profile:
    """Set how the user shows themselves. A time zone must be one the system knows."""
    if time_zone and time_zone not in zoneinfo.available_timezones():
        raise ValidationError(f"Unknown time zone {time_zone[:64]!r}.")
    profile = profile_get(user=user)
    profile.display_name = display_name.strip()
    profile.status = status.strip()
    profile.status_expires_at = status_expires_at if profile.status else None
    profile.time_zone = time_zone
    profile.save(update_fields=["display_name", "status", "status_expires_at", "time_zone"])
    return profile


def avatar_image(data: bytes) -> bytes:
    """The avatar made from an upload: a square JPEG of AVATAR_SIZE pixels, turned the way
    its EXIF said, without any of its metadata (GPS position, camera, comments). Raises
    ValidationError with what is wrong for anything else."""
    if len(data) > settings.AVATAR_MAX_BYTES:
        raise ValidationError(f"The image is too large: at most {settings.AVATAR_MAX_BYTES // (1024 * 1024)} MB.")
    upright, _ = read_upright(data)
    square = ImageOps.fit(flattened(upright), (settings.AVATAR_SIZE, settings.AVATAR_SIZE))
    out = io.BytesIO()
    square.save(out, format="JPEG", quality=85)  # no exif= argument: nothing of the original's metadata
    return out.getvalue()


def profile_set_avatar(*, user: AbstractBaseUser, upload: UploadedFile) -> Profile:
    """Store the avatar made from ``upload`` (``avatar_image``) through default_storage,
    under a new random name (browsers may cache the old one), and remove the old file."""
    if upload.size is not None and upload.size > settings.AVATAR_MAX_BYTES:
        raise ValidationError(f"The image is too large: at most {settings.AVATAR_MAX_BYTES // (1024 * 1024)} MB.")
    data = avatar_image(upload.read(settings.AVATAR_MAX_BYTES + 1))
    name = default_storage.save(f"avatars/{user.pk}/{secrets.token_hex(8)}.jpg", ContentFile(data))
    profile = profile_get(user=user)
    old, profile.avatar = profile.avatar, name
    profile.save(update_fields=["avatar"])
    if old:
        transaction.on_commit(lambda: default_storage.delete(old))
    return profile


def profile_remove_avatar(*, user: AbstractBaseUser) -> None:
    profile = profile_get(user=user)
    if profile.avatar:
        old, profile.avatar = profile.avatar, ""
        profile.save(update_fields=["avatar"])
        transaction.on_commit(lambda: default_storage.delete(old))
