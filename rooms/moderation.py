"""Moderation of rooms: roles, mutes, bans, removals, lock, slow mode (and the authority and
audit entry every moderation act shares; the acts on messages, hiding them and closing their
reports, are ``messaging.moderation``, beside the other message writes).

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

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from protocol import events
from rooms.models import AuditLog, Membership, Room

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
class Authority:
    """Who acts, and with which powers."""

    actor: AbstractBaseUser
    is_owner: bool  # the owner, or site staff acting from the admin
    as_staff: bool


def authority_for(
    *, room: Room, actor: AbstractBaseUser, acting_as_staff: bool, message_act: bool = False
) -> Authority:
    if room.is_direct and not (acting_as_staff and message_act):
        # Its people are equals: no roles, bans, mutes, lock or slow mode. Site staff may
        # still hide a reported message from the admin.
        raise PermissionDenied("A direct conversation has no moderators.")
    if acting_as_staff:
        if not (actor.is_active and actor.is_staff):
            raise PermissionDenied("Only site staff can moderate rooms from the admin.")
        return Authority(actor=actor, is_owner=True, as_staff=True)
    membership = Membership.objects.filter(room=room, user=actor).first()
    if membership is None or not membership.can_moderate:
        raise PermissionDenied("Only the room's owner and moderators can moderate it.")
    return Authority(actor=actor, is_owner=membership.role == Membership.Role.OWNER, as_staff=False)


def _check_may_act_on(authority: Authority, user: AbstractBaseUser, membership: Membership | None, verb: str) -> None:
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


def audit_record(
    authority: Authority,
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
        authority = authority_for(room=room, actor=actor, acting_as_staff=acting_as_staff)
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
        audit_record(authority, room=room, action=AuditLog.Action.PROMOTE, target=user, reason=reason)
        events.membership_changed_on_commit(user_id=user.pk, room=room)
        _tell_role(room=room, user=user, role=membership.role)
    return membership


def membership_demote(
    *, room: Room, actor: AbstractBaseUser, user: AbstractBaseUser, reason: str = "", acting_as_staff: bool = False
) -> Membership:
    """The owner makes a moderator a plain member again."""
    with transaction.atomic():
        authority = authority_for(room=room, actor=actor, acting_as_staff=acting_as_staff)
        if not authority.is_owner:
            raise PermissionDenied("Only the owner can demote moderators.")
        membership = _locked_membership(room=room, user=user)
        _check_may_act_on(authority, user, membership, "demote")
        if membership is None or membership.banned or membership.role != Membership.Role.MODERATOR:
            raise ValidationError(f"{user.get_username()} is not a moderator.")
        membership.role = Membership.Role.MEMBER
        membership.save(update_fields=["role"])
        audit_record(authority, room=room, action=AuditLog.Action.DEMOTE, target=user, reason=reason)
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
        authority = authority_for(room=room, actor=actor, acting_as_staff=acting_as_staff)
        membership = _locked_membership(room=room, user=user)
        _check_may_act_on(authority, user, membership, "mute")
        if membership is None or membership.banned:
            raise ValidationError(f"{user.get_username()} is not a member of this room.")
        membership.muted_until = timezone.now() + duration
        membership.save(update_fields=["muted_until"])
        details = f"until {membership.muted_until:%Y-%m-%d %H:%M} UTC"
        audit_record(
            authority, room=room, action=AuditLog.Action.MUTE, target=user, reason=_with_reason(details, reason)
        )
        events.membership_changed_on_commit(user_id=user.pk, room=room)
    return membership


def membership_unmute(
    *, room: Room, actor: AbstractBaseUser, user: AbstractBaseUser, reason: str = "", acting_as_staff: bool = False
) -> Membership:
    with transaction.atomic():
        authority = authority_for(room=room, actor=actor, acting_as_staff=acting_as_staff)
        membership = _locked_membership(room=room, user=user)
        _check_may_act_on(authority, user, membership, "unmute")
        if membership is None or membership.banned:
            raise ValidationError(f"{user.get_username()} is not a member of this room.")
        if not membership.is_muted():
            raise ValidationError(f"{user.get_username()} is not muted.")
        membership.muted_until = None
        membership.save(update_fields=["muted_until"])
        audit_record(authority, room=room, action=AuditLog.Action.UNMUTE, target=user, reason=reason)
        events.membership_changed_on_commit(user_id=user.pk, room=room)
    return membership


def membership_ban(
    *, room: Room, actor: AbstractBaseUser, user: AbstractBaseUser, reason: str = "", acting_as_staff: bool = False
) -> Membership:
    """Ban a user from the room, member or not: they can neither read nor rejoin it.

    A banned moderator loses the role: an unban never gives back moderation rights.
    """
    with transaction.atomic():
        authority = authority_for(room=room, actor=actor, acting_as_staff=acting_as_staff)
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
        audit_record(authority, room=room, action=AuditLog.Action.BAN, target=user, reason=reason)
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
        authority = authority_for(room=room, actor=actor, acting_as_staff=acting_as_staff)
        membership = _locked_membership(room=room, user=user)
        _check_may_act_on(authority, user, membership, "unban")
        if membership is None or not membership.banned:
            raise ValidationError(f"{user.get_username()} is not banned.")
        membership.delete()
        audit_record(authority, room=room, action=AuditLog.Action.UNBAN, target=user, reason=reason)


def membership_remove(
    *, room: Room, actor: AbstractBaseUser, user: AbstractBaseUser, reason: str = "", acting_as_staff: bool = False
) -> None:
    """Take a member out of the room; they may come back to a public room (a ban keeps them out)."""
    with transaction.atomic():
        authority = authority_for(room=room, actor=actor, acting_as_staff=acting_as_staff)
        membership = _locked_membership(room=room, user=user)
        _check_may_act_on(authority, user, membership, "remove")
        if membership is None or membership.banned:
            raise ValidationError(f"{user.get_username()} is not a member of this room.")
        membership.delete()
        audit_record(authority, room=room, action=AuditLog.Action.REMOVE, target=user, reason=reason)
        events.user_kicked_on_commit(
            user_id=user.pk, room=room, reason=_with_reason("You were removed from this room", reason) + "."
        )
        events.member_left_on_commit(room=room, user_id=user.pk, username=user.get_username())


# --- The room ------------------------------------------------------------------


def room_for_update(room: Room) -> Room:
    """The room's row, locked until the transaction ends: two acts on one room never interleave."""
    return Room.objects.select_for_update().get(pk=room.pk)


def _set_locked(*, room: Room, actor: AbstractBaseUser, locked: bool, reason: str, acting_as_staff: bool) -> Room:
    with transaction.atomic():
        authority = authority_for(room=room, actor=actor, acting_as_staff=acting_as_staff)
        current = room_for_update(room)
        if current.locked == locked:
            raise ValidationError("The room is already locked." if locked else "The room is not locked.")
        current.locked = locked
        current.save(update_fields=["locked"])
        action = AuditLog.Action.LOCK if locked else AuditLog.Action.UNLOCK
        audit_record(authority, room=current, action=action, reason=reason)
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
        authority = authority_for(room=room, actor=actor, acting_as_staff=acting_as_staff)
        current = room_for_update(room)
        if current.slow_mode_seconds == seconds:
            raise ValidationError(
                f"Slow mode is already {seconds} seconds." if seconds else "Slow mode is already off."
            )
        current.slow_mode_seconds = seconds
        current.save(update_fields=["slow_mode_seconds"])
        details = f"{seconds} seconds" if seconds else "off"
        audit_record(authority, room=current, action=AuditLog.Action.SLOW_MODE, reason=_with_reason(details, reason))
        events.room_state_changed_on_commit(room=current)
    room.slow_mode_seconds = seconds
    return room
