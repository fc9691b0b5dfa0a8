"""An invitation: a moderator adds someone to a room, and the invitee hears of it.

The membership (rooms' domain) and the notification (messaging's) are written in one
transaction, and the `notification` frame goes to the invitee's open connections on commit.
It lives here, above both, so that rooms' domain code does not import messaging.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from messaging.models import Notification
from protocol import events
from protocol.events import send_to_group_on_commit, user_group
from protocol.wire import notification_frame, user_wire
from rooms.models import Membership, Room
from rooms.services import member_joined_tell


def room_invite(*, room: Room, by: AbstractBaseUser, username: str) -> Membership:
    """A moderator adds someone to the room; they hear of it in their notifications (and live
    on their open pages), the room's open pages list them. Someone already in the room, or
    banned from it, is refused with a sentence saying so."""
    inviter = Membership.objects.filter(room=room, user=by).first()
    if inviter is None or not inviter.can_moderate:
        raise PermissionDenied("Only the owner and moderators can invite.")
    if room.is_direct:
        raise PermissionDenied("A direct conversation has no invitations: open a new one with these people.")
    invitee = get_user_model().objects.filter(username__iexact=username.strip()).first()
    if invitee is None:
        raise ValidationError({"username": "There is no user with this name."})
    with transaction.atomic():
        membership, created = Membership.objects.get_or_create(room=room, user=invitee)
        if not created:
            if membership.banned:
                raise ValidationError({"username": f"{invitee.username} is banned from this room."})
            raise ValidationError({"username": f"{invitee.username} is already a member."})
        member_joined_tell(membership)
        notification_invite(room=room, user=invitee, by=by)
    return membership


def notification_invite(*, room, user, by) -> Notification:
    """Tell ``user`` that ``by`` added them to ``room``: a notification (one per room: an
    invitation after a removal is new again) and, on commit, a `notification` frame to their
    open connections. The caller holds the transaction that made the membership."""
    notification, _ = Notification.objects.update_or_create(
        user=user,
        room=room,
        seq=0,
        kind=Notification.Kind.INVITE,
        defaults={"from_user": by, "excerpt": room.name[:200], "created_at": timezone.now(), "read_at": None},
    )
    frame = notification_frame(
        kind="invite", room=room.slug, seq=0, sender=user_wire(by.pk, by.get_username()), excerpt="", title=room.name
    )
    send_to_group_on_commit(user_group(user.pk), events.user_notify_event(frame=frame))
    return notification
