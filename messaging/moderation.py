"""Moderation of messages: a moderator hides one, anyone who can read the room reports one,
and a moderator resolves or dismisses the reports; beside the other message writes.

Each act is checked with the room's moderation authority (``rooms.moderation.authority_for``:
who acts, with which powers), recorded in the AuditLog in the same transaction
(``rooms.moderation.audit_record``), and its live effect goes out on commit. Who may hide
whose message follows the order of rooms.moderation's docstring: a moderator a member's or a
spectator's, the owner a moderator's too, nobody the owner's (but site staff, from the
admin); anyone with the power may hide their own. A direct conversation has no moderation:
only site staff, from the admin, hide its messages and close its reports.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from messaging.selectors import message_get
from messaging.services import ActionRefused, message_hide
from rooms.models import AuditLog, Membership, Report, Room
from rooms.moderation import REPORT_REASON_MAX, Authority, audit_record, authority_for
from rooms.selectors import room_can_read


def _check_may_hide(authority: Authority, *, room: Room, author_id: int) -> None:
    if author_id == authority.actor.pk or authority.as_staff:
        return
    role = Membership.objects.filter(room=room, user_id=author_id, banned=False).values_list("role", flat=True).first()
    if role == Membership.Role.OWNER:
        raise PermissionDenied("Nobody can hide a message of the room's owner.")
    if role == Membership.Role.MODERATOR and not authority.is_owner:
        raise PermissionDenied("Only the owner can hide a moderator's message.")


def _hide(authority: Authority, *, room: Room, seq: int, reason: str) -> int:
    """Hide a message and record it; the caller holds a transaction."""
    found = message_get(room_id=room.pk, seq=seq)
    if found is None:
        raise ValidationError("No such message.")
    record, state = found
    if state.deleted:
        raise ValidationError("The message was already deleted.")
    _check_may_hide(authority, room=room, author_id=record["author"]["id"])
    # The entry first: if hiding fails, the transaction takes it back.
    audit_record(
        authority,
        room=room,
        action=AuditLog.Action.HIDE_MESSAGE,
        target_id=record["author"]["id"],
        seq=seq,
        reason=reason,
    )
    try:
        rev = message_hide(room_id=room.pk, room_slug=room.slug, seq=seq, moderator_id=authority.actor.pk)
    except ActionRefused as refused:
        raise ValidationError(refused.detail) from None
    if rev is None:
        raise ValidationError("The message was already deleted.")
    return rev


def room_message_hide(
    *, room: Room, actor: AbstractBaseUser, seq: int, reason: str = "", acting_as_staff: bool = False
) -> int:
    """A moderator hides a message from everyone; it keeps its ``seq``. Returns the room's new ``rev``."""
    with transaction.atomic():
        authority = authority_for(room=room, actor=actor, acting_as_staff=acting_as_staff, message_act=True)
        return _hide(authority, room=room, seq=seq, reason=reason)


def room_message_hide_by_ids(*, room_id: int, actor_id: int, seq: int, reason: str = "") -> int:
    """``room_message_hide`` for a caller that holds ids: a moderator's delete of someone
    else's message over the WebSocket is this act, checked and recorded as on the page."""
    room = Room.objects.filter(pk=room_id).first()
    actor = get_user_model().objects.filter(pk=actor_id, is_active=True).first()
    if room is None or actor is None:
        raise PermissionDenied("Only the room's owner and moderators can moderate it.")
    return room_message_hide(room=room, actor=actor, seq=seq, reason=reason)


def report_create(*, room: Room, reporter: AbstractBaseUser, seq: int, reason: str) -> Report:
    """Anyone who can read the room reports a message of someone else to its moderators."""
    membership = Membership.objects.filter(room=room, user=reporter).first()
    if not room_can_read(room=room, membership=membership):
        raise PermissionDenied("You cannot report messages in this room.")
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "Say why you report this message."})
    if len(reason) > REPORT_REASON_MAX:
        raise ValidationError({"reason": f"A reason has at most {REPORT_REASON_MAX} characters."})
    if "\x00" in reason:
        raise ValidationError({"reason": "The reason contains a NUL character."})
    found = message_get(room_id=room.pk, seq=seq)
    if found is None:
        raise ValidationError({"seq": "No such message."})
    record, state = found
    if state.deleted:
        raise ValidationError({"seq": "The message was deleted."})
    if record["author"]["id"] == reporter.pk:
        raise ValidationError({"seq": "You cannot report your own message."})
    try:
        with transaction.atomic():
            return Report.objects.create(room=room, seq=seq, reporter=reporter, reason=reason)
    except IntegrityError:
        raise ValidationError({"seq": "You already reported this message."}) from None


def _close_report(authority: Authority, report: Report, status: str) -> Report:
    report.status = status
    report.resolved_by = authority.actor
    report.resolved_at = timezone.now()
    report.save(update_fields=["status", "resolved_by", "resolved_at"])
    action = AuditLog.Action.RESOLVE_REPORT if status == Report.Status.RESOLVED else AuditLog.Action.DISMISS_REPORT
    audit_record(
        authority,
        room=report.room,
        action=action,
        target=report.reporter,
        seq=report.seq,
        reason=f"Report #{report.pk}: {report.reason}",
    )
    return report


def _open_report_or_refuse(report: Report) -> Report:
    current = Report.objects.select_for_update().select_related("room", "reporter").get(pk=report.pk)
    if not current.is_open:
        raise ValidationError(f"This report was already {current.get_status_display().lower()}.")
    return current


def report_resolve(*, report: Report, actor: AbstractBaseUser, acting_as_staff: bool = False) -> Report:
    """The report was right (whatever was done about it)."""
    with transaction.atomic():
        authority = authority_for(room=report.room, actor=actor, acting_as_staff=acting_as_staff, message_act=True)
        return _close_report(authority, _open_report_or_refuse(report), Report.Status.RESOLVED)


def report_dismiss(*, report: Report, actor: AbstractBaseUser, acting_as_staff: bool = False) -> Report:
    """The report was wrong: nothing is done about the message."""
    with transaction.atomic():
        authority = authority_for(room=report.room, actor=actor, acting_as_staff=acting_as_staff, message_act=True)
        return _close_report(authority, _open_report_or_refuse(report), Report.Status.DISMISSED)


def report_hide_message(*, report: Report, actor: AbstractBaseUser, acting_as_staff: bool = False) -> int:
    """Hide the reported message and resolve every open report of it; returns how many were resolved."""
    with transaction.atomic():
        authority = authority_for(room=report.room, actor=actor, acting_as_staff=acting_as_staff, message_act=True)
        report = _open_report_or_refuse(report)
        found = message_get(room_id=report.room_id, seq=report.seq)
        if found is not None and not found[1].deleted:
            _hide(authority, room=report.room, seq=report.seq, reason=f"Report #{report.pk}: {report.reason}")
        same_message = (
            Report.objects.select_for_update()
            .select_related("room", "reporter")
            .filter(room_id=report.room_id, seq=report.seq, status=Report.Status.OPEN)
            .order_by("pk")
        )
        closed = [_close_report(authority, open_report, Report.Status.RESOLVED) for open_report in same_message]
    return len(closed)
