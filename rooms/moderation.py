"""Moderation of rooms: roles, mutes, bans, removals, lock, slow mode, hidden messages, reports.

These are the only writers of moderation state: the moderation pages, the admin
and any job call them. Every act is checked here, recorded in the AuditLog in
the same transaction, and its live effect goes out on commit.

Who may act on whom:
- the owner appoints and demotes moderators, and acts on moderators and members;
- moderators act on members and spectators only;
- site staff, from the admin (``acting_as_staff=True``), have the owner's powers;
- nobody acts on the room's owner, nor on themselves;
- messages follow the same order: a moderator hides a member's or a spectator's message,
  the owner a moderator's too, nobody the owner's (but site staff, from the admin); anyone
  with the power may hide their own;
- a direct conversation has no moderation: only site staff, from the admin, hide its messages
  and close its reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from messaging import events
from messaging.selectors import message_get
from messaging.services import ActionRefused, message_hide
from rooms.models import AuditLog, Membership, Report, Room
from rooms.selectors import room_can_read

# What the pages offer; the services accept any value within the bounds below.
MUTE_DURATIONS: dict[str, timedelta] = {
    "10 minutes": timedelta(minutes=10),
    "1 hour": timedelta(hours=1),
    "1 day": timedelta(days=1),
    "1 week": timedelta(weeks=1),
}
MUTE_MAX = timedelta(days=365)
SLOW_MODE_CHOICES = (0, 5, 10, 30, 60, 300)
SLOW_MODE_MAX_SECONDS = 3600
REPORT_REASON_MAX = 500


@dataclass(frozen=True)
class _Authority:
    """Who acts, and with which powers."""

    actor: AbstractBaseUser
    is_owner: bool  # the owner, or site staff acting from the admin
    as_staff: bool


def _authority(*, room: Room, actor: AbstractBaseUser, acting_as_staff: bool, message_act: bool = False) -> _Authority:
    if room.is_direct and not (acting_as_staff and message_act):
        # Its people are equals: no roles, bans, mutes, lock or slow mode. Site staff may
        # still hide a reported message from the admin.
        raise PermissionDenied("A direct conversation has no moderators.")
    if acting_as_staff:
        if not (actor.is_active and actor.is_staff):
            raise PermissionDenied("Only site staff can moderate rooms from the admin.")
        return _Authority(actor=actor, is_owner=True, as_staff=True)
    membership = Membership.objects.filter(room=room, user=actor).first()
    if membership is None or not membership.can_moderate:
        raise PermissionDenied("Only the room's owner and moderators can moderate it.")
    return _Authority(actor=actor, is_owner=membership.role == Membership.Role.OWNER, as_staff=False)


def _check_may_act_on(authority: _Authority, user: AbstractBaseUser, membership: Membership | None, verb: str) -> None:
    if user.pk == authority.actor.pk:
        raise PermissionDenied(f"You cannot {verb} yourself.")
    if membership is None:
        return
    if membership.role == Membership.Role.OWNER:
        raise PermissionDenied(f"Nobody can {verb} the room's owner.")
    if membership.role == Membership.Role.MODERATOR and not authority.is_owner:
        raise PermissionDenied(f"Only the owner can {verb} a moderator.")


def _locked_membership(*, room: Room, user: AbstractBaseUser) -> Membership | None:
    return Membership.objects.select_for_update().filter(room=room, user=user).first()


def _member_or_refuse(*, room: Room, user: AbstractBaseUser) -> Membership:
    membership = _locked_membership(room=room, user=user)
    if membership is None or membership.banned:
        raise ValidationError(f"{user.get_username()} is not a member of this room.")
    return membership


def _record(
    authority: _Authority,
    *,
    room: Room,
    action: str,
    target: AbstractBaseUser | None = None,
    target_id: int | None = None,
    seq: int | None = None,
    reason: str = "",
) -> AuditLog:
    return AuditLog.objects.create(
        room=room,
        actor=authority.actor,
        as_staff=authority.as_staff,
        action=action,
        target_id=target.pk if target is not None else target_id,
        seq=seq,
        reason=reason.strip(),
    )


def _tell_role(*, room: Room, user: AbstractBaseUser, role: str) -> None:
    """The room's member lists show the new role."""
    events.member_updated_on_commit(
        room_id=room.pk, room_slug=room.slug, user_id=user.pk, username=user.get_username(), role=role
    )


def _with_reason(details: str, reason: str) -> str:
    reason = reason.strip()
    return f"{details}: {reason}" if reason else details


# --- Roles ---------------------------------------------------------------------


def membership_promote(
    *, room: Room, actor: AbstractBaseUser, user: AbstractBaseUser, reason: str = "", acting_as_staff: bool = False
) -> Membership:
    """The owner makes a member a moderator."""
    with transaction.atomic():
        authority = _authority(room=room, actor=actor, acting_as_staff=acting_as_staff)
        if not authority.is_owner:
            raise PermissionDenied("Only the owner can appoint moderators.")
        membership = _locked_membership(room=room, user=user)
        _check_may_act_on(authority, user, membership, "promote")
        if membership is None or membership.banned:
            raise ValidationError(f"{user.get_username()} is not a member of this room.")
        if membership.role == Membership.Role.MODERATOR:
            raise ValidationError(f"{user.get_username()} is already a moderator.")
        if membership.role == Membership.Role.SPECTATOR:
            raise ValidationError(f"{user.get_username()} only watches this room: they must take part first.")
        membership.role = Membership.Role.MODERATOR
        membership.save(update_fields=["role"])
        _record(authority, room=room, action=AuditLog.Action.PROMOTE, target=user, reason=reason)
        events.membership_changed_on_commit(user_id=user.pk, room=room)
        _tell_role(room=room, user=user, role=membership.role)
    return membership


def membership_demote(
    *, room: Room, actor: AbstractBaseUser, user: AbstractBaseUser, reason: str = "", acting_as_staff: bool = False
) -> Membership:
    """The owner makes a moderator a plain member again."""
    with transaction.atomic():
        authority = _authority(room=room, actor=actor, acting_as_staff=acting_as_staff)
        if not authority.is_owner:
            raise PermissionDenied("Only the owner can demote moderators.")
        membership = _locked_membership(room=room, user=user)
        _check_may_act_on(authority, user, membership, "demote")
        if membership is None or membership.banned or membership.role != Membership.Role.MODERATOR:
            raise ValidationError(f"{user.get_username()} is not a moderator.")
        membership.role = Membership.Role.MEMBER
        membership.save(update_fields=["role"])
        _record(authority, room=room, action=AuditLog.Action.DEMOTE, target=user, reason=reason)
        events.membership_changed_on_commit(user_id=user.pk, room=room)
        _tell_role(room=room, user=user, role=membership.role)
    return membership


# --- Mutes, bans, removals -------------------------------------------------------


def membership_mute(
    *,
    room: Room,
    actor: AbstractBaseUser,
    user: AbstractBaseUser,
    duration: timedelta,
    reason: str = "",
    acting_as_staff: bool = False,
) -> Membership:
    """Stop a member from posting for ``duration`` (a new mute replaces the current one)."""
    if not timedelta(0) < duration <= MUTE_MAX:
        raise ValidationError({"duration": f"A mute lasts more than 0 seconds and at most {MUTE_MAX.days} days."})
    with transaction.atomic():
        authority = _authority(room=room, actor=actor, acting_as_staff=acting_as_staff)
        membership = _locked_membership(room=room, user=user)
        _check_may_act_on(authority, user, membership, "mute")
        if membership is None or membership.banned:
            raise ValidationError(f"{user.get_username()} is not a member of this room.")
        membership.muted_until = timezone.now() + duration
        membership.save(update_fields=["muted_until"])
        details = f"until {membership.muted_until:%Y-%m-%d %H:%M} UTC"
        _record(authority, room=room, action=AuditLog.Action.MUTE, target=user, reason=_with_reason(details, reason))
        events.membership_changed_on_commit(user_id=user.pk, room=room)
    return membership


def membership_unmute(
    *, room: Room, actor: AbstractBaseUser, user: AbstractBaseUser, reason: str = "", acting_as_staff: bool = False
) -> Membership:
    with transaction.atomic():
        authority = _authority(room=room, actor=actor, acting_as_staff=acting_as_staff)
        membership = _locked_membership(room=room, user=user)
        _check_may_act_on(authority, user, membership, "unmute")
        if membership is None or membership.banned:
            raise ValidationError(f"{user.get_username()} is not a member of this room.")
        if not membership.is_muted():
            raise ValidationError(f"{user.get_username()} is not muted.")
        membership.muted_until = None
        membership.save(update_fields=["muted_until"])
        _record(authority, room=room, action=AuditLog.Action.UNMUTE, target=user, reason=reason)
        events.membership_changed_on_commit(user_id=user.pk, room=room)
    return membership


def membership_ban(
    *, room: Room, actor: AbstractBaseUser, user: AbstractBaseUser, reason: str = "", acting_as_staff: bool = False
) -> Membership:
    """Ban a user from the room, member or not: they can neither read nor rejoin it.

    A banned moderator loses the role: an unban never gives back moderation rights.
    """
    with transaction.atomic():
        authority = _authority(room=room, actor=actor, acting_as_staff=acting_as_staff)
        membership = _locked_membership(room=room, user=user)
        _check_may_act_on(authority, user, membership, "ban")
        if membership is not None and membership.banned:
            raise ValidationError(f"{user.get_username()} is already banned.")
        if membership is None:
            membership, _ = Membership.objects.select_for_update().get_or_create(room=room, user=user)
            _check_may_act_on(authority, user, membership, "ban")  # someone may have appointed them meanwhile
        membership.banned = True
        membership.role = Membership.Role.MEMBER
        membership.muted_until = None
        membership.save(update_fields=["banned", "role", "muted_until"])
        _record(authority, room=room, action=AuditLog.Action.BAN, target=user, reason=reason)
        events.user_kicked_on_commit(
            user_id=user.pk, room=room, reason=_with_reason("You were banned from this room", reason) + "."
        )
        events.member_left_on_commit(room=room, user_id=user.pk, username=user.get_username())
    return membership


def membership_unban(
    *, room: Room, actor: AbstractBaseUser, user: AbstractBaseUser, reason: str = "", acting_as_staff: bool = False
) -> None:
    """Lift a ban. The user is no member afterwards: a private room needs a new invitation."""
    with transaction.atomic():
        authority = _authority(room=room, actor=actor, acting_as_staff=acting_as_staff)
        membership = _locked_membership(room=room, user=user)
        _check_may_act_on(authority, user, membership, "unban")
        if membership is None or not membership.banned:
            raise ValidationError(f"{user.get_username()} is not banned.")
        membership.delete()
        _record(authority, room=room, action=AuditLog.Action.UNBAN, target=user, reason=reason)


def membership_remove(
    *, room: Room, actor: AbstractBaseUser, user: AbstractBaseUser, reason: str = "", acting_as_staff: bool = False
) -> None:
    """Take a member out of the room; they may come back to a public room (a ban keeps them out)."""
    with transaction.atomic():
        authority = _authority(room=room, actor=actor, acting_as_staff=acting_as_staff)
        membership = _locked_membership(room=room, user=user)
        _check_may_act_on(authority, user, membership, "remove")
        if membership is None or membership.banned:
            raise ValidationError(f"{user.get_username()} is not a member of this room.")
        membership.delete()
        _record(authority, room=room, action=AuditLog.Action.REMOVE, target=user, reason=reason)
        events.user_kicked_on_commit(
            user_id=user.pk, room=room, reason=_with_reason("You were removed from this room", reason) + "."
        )
        events.member_left_on_commit(room=room, user_id=user.pk, username=user.get_username())


# --- The room ------------------------------------------------------------------


def _locked_room(room: Room) -> Room:
    return Room.objects.select_for_update().get(pk=room.pk)


def _set_locked(*, room: Room, actor: AbstractBaseUser, locked: bool, reason: str, acting_as_staff: bool) -> Room:
    with transaction.atomic():
        authority = _authority(room=room, actor=actor, acting_as_staff=acting_as_staff)
        current = _locked_room(room)
        if current.locked == locked:
            raise ValidationError("The room is already locked." if locked else "The room is not locked.")
        current.locked = locked
        current.save(update_fields=["locked"])
        action = AuditLog.Action.LOCK if locked else AuditLog.Action.UNLOCK
        _record(authority, room=current, action=action, reason=reason)
        events.room_state_changed_on_commit(room=current)
    room.locked = locked
    return room


def room_lock(*, room: Room, actor: AbstractBaseUser, reason: str = "", acting_as_staff: bool = False) -> Room:
    """Nobody posts in a locked room; everyone who could read it still can."""
    return _set_locked(room=room, actor=actor, locked=True, reason=reason, acting_as_staff=acting_as_staff)


def room_unlock(*, room: Room, actor: AbstractBaseUser, reason: str = "", acting_as_staff: bool = False) -> Room:
    return _set_locked(room=room, actor=actor, locked=False, reason=reason, acting_as_staff=acting_as_staff)


def room_set_slow_mode(
    *, room: Room, actor: AbstractBaseUser, seconds: int, reason: str = "", acting_as_staff: bool = False
) -> Room:
    """Members wait ``seconds`` between two messages; 0 turns slow mode off."""
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not 0 <= seconds <= SLOW_MODE_MAX_SECONDS:
        raise ValidationError({"seconds": f"Slow mode is between 0 (off) and {SLOW_MODE_MAX_SECONDS} seconds."})
    with transaction.atomic():
        authority = _authority(room=room, actor=actor, acting_as_staff=acting_as_staff)
        current = _locked_room(room)
        if current.slow_mode_seconds == seconds:
            raise ValidationError(
                f"Slow mode is already {seconds} seconds." if seconds else "Slow mode is already off."
            )
        current.slow_mode_seconds = seconds
        current.save(update_fields=["slow_mode_seconds"])
        details = f"{seconds} seconds" if seconds else "off"
        _record(authority, room=current, action=AuditLog.Action.SLOW_MODE, reason=_with_reason(details, reason))
        events.room_state_changed_on_commit(room=current)
    room.slow_mode_seconds = seconds
    return room


# --- Messages and reports ------------------------------------------------------


def _check_may_hide(authority: _Authority, *, room: Room, author_id: int) -> None:
    if author_id == authority.actor.pk or authority.as_staff:
        return
    role = Membership.objects.filter(room=room, user_id=author_id, banned=False).values_list("role", flat=True).first()
    if role == Membership.Role.OWNER:
        raise PermissionDenied("Nobody can hide a message of the room's owner.")
    if role == Membership.Role.MODERATOR and not authority.is_owner:
        raise PermissionDenied("Only the owner can hide a moderator's message.")


def _hide(authority: _Authority, *, room: Room, seq: int, reason: str) -> int:
    """Hide a message and record it; the caller holds a transaction."""
    found = message_get(room_id=room.pk, seq=seq)
    if found is None:
        raise ValidationError("No such message.")
    record, state = found
    if state.deleted:
        raise ValidationError("The message was already deleted.")
    _check_may_hide(authority, room=room, author_id=record["author"]["id"])
    # The entry first: if hiding fails, the transaction takes it back.
    _record(
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
        authority = _authority(room=room, actor=actor, acting_as_staff=acting_as_staff, message_act=True)
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


def _close_report(authority: _Authority, report: Report, status: str) -> Report:
    report.status = status
    report.resolved_by = authority.actor
    report.resolved_at = timezone.now()
    report.save(update_fields=["status", "resolved_by", "resolved_at"])
    action = AuditLog.Action.RESOLVE_REPORT if status == Report.Status.RESOLVED else AuditLog.Action.DISMISS_REPORT
    _record(
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
        authority = _authority(room=report.room, actor=actor, acting_as_staff=acting_as_staff, message_act=True)
        return _close_report(authority, _open_report_or_refuse(report), Report.Status.RESOLVED)


def report_dismiss(*, report: Report, actor: AbstractBaseUser, acting_as_staff: bool = False) -> Report:
    """The report was wrong: nothing is done about the message."""
    with transaction.atomic():
        authority = _authority(room=report.room, actor=actor, acting_as_staff=acting_as_staff, message_act=True)
        return _close_report(authority, _open_report_or_refuse(report), Report.Status.DISMISSED)


def report_hide_message(*, report: Report, actor: AbstractBaseUser, acting_as_staff: bool = False) -> int:
    """Hide the reported message and resolve every open report of it; returns how many were resolved."""
    with transaction.atomic():
        authority = _authority(room=report.room, actor=actor, acting_as_staff=acting_as_staff, message_act=True)
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
