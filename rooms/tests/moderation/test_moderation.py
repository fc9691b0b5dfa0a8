"""Moderation services: who may do what to whom, what it changes, what it records and broadcasts
(messages hidden and reported: test_hiding_and_reports.py).

alice owns the room, dave moderates it, bob is a member, erin is banned, charlie is an outsider.
"""

import re
from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from protocol.wire import encode
from rooms import moderation
from rooms.models import AuditLog, Membership
from rooms.services import room_access_for_subscriber
from rooms.tests.conftest import last_entry

pytestmark = pytest.mark.django_db


def membership(room, user) -> Membership | None:
    return Membership.objects.filter(room=room, user=user).first()


def notice(room, frame: dict, *, details: int) -> dict:
    """The event that brings ``frame`` (with the room's slug) to the room's subscribers, the
    ``details``-th change of the room's details (protocol.details)."""
    frame = {"type": frame["type"], "room": room.slug, **{k: v for k, v in frame.items() if k != "type"}}
    frame["details"] = details
    return {"type": "room.notice", "room_id": room.pk, "frame": encode(frame)}


# --- Roles ---------------------------------------------------------------------


def test_the_owner_promotes_a_member_and_demotes_them_again(
    alice, bob, room, sent_events, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        moderation.membership_promote(room=room, actor=alice, user=bob, reason="trusted")
    assert membership(room, bob).role == Membership.Role.MODERATOR
    entry = last_entry()
    assert (entry.room, entry.actor, entry.action, entry.target, entry.reason) == (
        room,
        alice,
        AuditLog.Action.PROMOTE,
        bob,
        "trusted",
    )
    bob_json = {"id": bob.pk, "username": "bob"}
    assert sent_events == [
        (f"user.{bob.pk}", {"type": "user.membership", "room_id": room.pk}),
        (f"room.{room.pk}", notice(room, {"type": "member_updated", "user": bob_json, "role": "moderator"}, details=1)),
    ]

    with django_capture_on_commit_callbacks(execute=True):
        moderation.membership_demote(room=room, actor=alice, user=bob)
    assert membership(room, bob).role == Membership.Role.MEMBER
    assert last_entry().action == AuditLog.Action.DEMOTE
    assert sent_events[2:] == [
        (f"user.{bob.pk}", {"type": "user.membership", "room_id": room.pk}),
        (f"room.{room.pk}", notice(room, {"type": "member_updated", "user": bob_json, "role": "member"}, details=2)),
    ]


def test_a_moderator_cannot_promote_or_demote(dave, bob, alice, room):
    with pytest.raises(PermissionDenied, match=re.escape("Only the owner can appoint moderators.")):
        moderation.membership_promote(room=room, actor=dave, user=bob)
    Membership.objects.filter(room=room, user=bob).update(role=Membership.Role.MODERATOR)
    with pytest.raises(PermissionDenied, match=re.escape("Only the owner can demote moderators.")):
        moderation.membership_demote(room=room, actor=dave, user=bob)
    assert not AuditLog.objects.exists()


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("alice", "You cannot promote yourself."),
        ("dave", "dave is already a moderator."),
        ("erin", "erin is not a member of this room."),
        ("charlie", "charlie is not a member of this room."),
    ],
)
def test_bad_promotions_are_explained(alice, room, request, target, message):
    with pytest.raises((PermissionDenied, ValidationError), match=message):
        moderation.membership_promote(room=room, actor=alice, user=request.getfixturevalue(target))
    assert not AuditLog.objects.exists()


def test_a_spectator_must_take_part_before_being_promoted(alice, charlie, public_room):
    Membership.objects.create(room=public_room, user=charlie, role=Membership.Role.SPECTATOR)
    with pytest.raises(ValidationError, match="only watches this room"):
        moderation.membership_promote(room=public_room, actor=alice, user=charlie)


def test_demoting_someone_who_is_no_moderator_is_explained(alice, bob, room):
    with pytest.raises(ValidationError, match=re.escape("bob is not a moderator.")):
        moderation.membership_demote(room=room, actor=alice, user=bob)


# --- Who may act at all ------------------------------------------------------------------

ACTS = {
    "mute": lambda room, actor, user: moderation.membership_mute(
        room=room, actor=actor, user=user, duration=timedelta(hours=1)
    ),
    "unmute": lambda room, actor, user: moderation.membership_unmute(room=room, actor=actor, user=user),
    "ban": lambda room, actor, user: moderation.membership_ban(room=room, actor=actor, user=user),
    "remove": lambda room, actor, user: moderation.membership_remove(room=room, actor=actor, user=user),
    "promote": lambda room, actor, user: moderation.membership_promote(room=room, actor=actor, user=user),
    "demote": lambda room, actor, user: moderation.membership_demote(room=room, actor=actor, user=user),
    "unban": lambda room, actor, user: moderation.membership_unban(room=room, actor=actor, user=user),
}


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("actor", ["bob", "charlie", "erin"])
def test_members_outsiders_and_the_banned_cannot_moderate(room, request, act, actor, dave):
    with pytest.raises(PermissionDenied, match=re.escape("Only the room's owner and moderators can moderate it.")):
        ACTS[act](room, request.getfixturevalue(actor), dave)
    assert not AuditLog.objects.exists()


@pytest.mark.parametrize("act", ACTS)
def test_nobody_acts_on_the_owner(room, alice, dave, act):
    with pytest.raises(PermissionDenied):
        ACTS[act](room, dave, alice)
    assert membership(room, alice).role == Membership.Role.OWNER
    assert not AuditLog.objects.exists()


@pytest.mark.parametrize("act", ["mute", "ban", "remove", "unmute"])
def test_a_moderator_cannot_act_on_another_moderator(room, dave, bob, act):
    Membership.objects.filter(room=room, user=bob).update(role=Membership.Role.MODERATOR)
    with pytest.raises(PermissionDenied, match=r"Only the owner can \w+ a moderator\."):
        ACTS[act](room, dave, bob)
    assert membership(room, bob).role == Membership.Role.MODERATOR
    assert not membership(room, bob).banned


@pytest.mark.parametrize("act", ["mute", "ban", "remove"])
def test_nobody_acts_on_themselves(room, alice, dave, act):
    for actor in (alice, dave):
        with pytest.raises(PermissionDenied, match="yourself"):
            ACTS[act](room, actor, actor)
    assert not AuditLog.objects.exists()


def test_the_owner_acts_on_moderators(room, alice, dave):
    moderation.membership_mute(room=room, actor=alice, user=dave, duration=timedelta(minutes=10))
    assert membership(room, dave).is_muted()
    moderation.membership_ban(room=room, actor=alice, user=dave)
    banned = membership(room, dave)
    assert banned.banned
    assert banned.role == Membership.Role.MEMBER, "a ban takes the moderator role away"


# --- Mutes -----------------------------------------------------------------------


def test_a_moderator_mutes_a_member_for_a_while_and_unmutes_them(
    room, dave, bob, sent_events, django_capture_on_commit_callbacks
):
    before = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        moderation.membership_mute(room=room, actor=dave, user=bob, duration=timedelta(hours=1), reason="flooding")
    muted = membership(room, bob)
    assert before + timedelta(minutes=59) < muted.muted_until <= timezone.now() + timedelta(hours=1)
    assert room_access_for_subscriber(slug=room.slug, user_id=bob.pk).is_muted()
    entry = last_entry()
    assert (entry.action, entry.actor, entry.target) == (AuditLog.Action.MUTE, dave, bob)
    assert entry.reason.startswith("until ") and entry.reason.endswith(": flooding")
    assert sent_events == [(f"user.{bob.pk}", {"type": "user.membership", "room_id": room.pk})]

    with django_capture_on_commit_callbacks(execute=True):
        moderation.membership_unmute(room=room, actor=dave, user=bob)
    assert membership(room, bob).muted_until is None
    assert not room_access_for_subscriber(slug=room.slug, user_id=bob.pk).is_muted()
    assert last_entry().action == AuditLog.Action.UNMUTE
    assert len(sent_events) == 2


@pytest.mark.parametrize("duration", [timedelta(0), timedelta(seconds=-5), timedelta(days=366)])
def test_a_mute_needs_a_sensible_duration(room, dave, bob, duration):
    with pytest.raises(ValidationError, match="A mute lasts"):
        moderation.membership_mute(room=room, actor=dave, user=bob, duration=duration)
    assert membership(room, bob).muted_until is None


def test_unmuting_someone_who_is_not_muted_is_explained(room, dave, bob):
    with pytest.raises(ValidationError, match=re.escape("bob is not muted.")):
        moderation.membership_unmute(room=room, actor=dave, user=bob)


def test_an_outsider_cannot_be_muted(room, dave, charlie):
    with pytest.raises(ValidationError, match=re.escape("charlie is not a member of this room.")):
        moderation.membership_mute(room=room, actor=dave, user=charlie, duration=timedelta(hours=1))


# --- Bans and removals ---------------------------------------------------------------


def test_a_ban_ends_the_members_access_and_kicks_them_live(
    room, dave, bob, sent_events, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        moderation.membership_ban(room=room, actor=dave, user=bob, reason="spam")
    assert membership(room, bob).banned
    entry = last_entry()
    assert (entry.action, entry.actor, entry.target, entry.reason) == (AuditLog.Action.BAN, dave, bob, "spam")
    assert sent_events == [
        (
            f"user.{bob.pk}",
            {
                "type": "user.kicked",
                "room_id": room.pk,
                "room": room.slug,
                "reason": "You were banned from this room: spam.",
            },
        ),
        (
            f"room.{room.pk}",
            notice(room, {"type": "member_left", "user": {"id": bob.pk, "username": "bob"}}, details=1),
        ),
    ]


def test_banning_someone_who_is_not_a_member_keeps_them_out(public_room, alice, charlie):
    moderation.membership_ban(room=public_room, actor=alice, user=charlie)
    assert membership(public_room, charlie).banned
    from rooms.services import RoomBanned, room_join

    with pytest.raises(RoomBanned):
        room_access_for_subscriber(slug=public_room.slug, user_id=charlie.pk)
    with pytest.raises(PermissionDenied, match=re.escape("You are banned from this room.")):
        room_join(room=public_room, user=charlie)


def test_banning_twice_is_explained(room, dave, erin):
    with pytest.raises(ValidationError, match=re.escape("erin is already banned.")):
        moderation.membership_ban(room=room, actor=dave, user=erin)


def test_an_unban_lifts_the_ban_without_readmitting_to_a_private_room(room, dave, erin):
    moderation.membership_unban(room=room, actor=dave, user=erin, reason="appeal accepted")
    assert membership(room, erin) is None
    assert last_entry().action == AuditLog.Action.UNBAN
    with pytest.raises(ValidationError, match=re.escape("erin is not banned.")):
        moderation.membership_unban(room=room, actor=dave, user=erin)


def test_a_removal_takes_the_member_out_and_kicks_them_live(
    room, dave, bob, sent_events, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        moderation.membership_remove(room=room, actor=dave, user=bob)
    assert membership(room, bob) is None
    assert last_entry().action == AuditLog.Action.REMOVE
    assert sent_events[0][1]["type"] == "user.kicked"
    assert sent_events[0][1]["reason"] == "You were removed from this room."


def test_removing_a_banned_user_or_an_outsider_is_explained(room, dave, erin, charlie):
    for user in (erin, charlie):
        with pytest.raises(ValidationError, match=re.escape("is not a member of this room.")):
            moderation.membership_remove(room=room, actor=dave, user=user)
    assert membership(room, erin).banned


def test_nothing_is_broadcast_when_the_act_is_refused(
    room, dave, alice, sent_events, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(PermissionDenied):
        moderation.membership_ban(room=room, actor=dave, user=alice)
    assert sent_events == []


# --- The room --------------------------------------------------------------------


def test_a_moderator_locks_and_unlocks_the_room(room, dave, sent_events, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        moderation.room_lock(room=room, actor=dave, reason="cooling down")
    room.refresh_from_db()
    assert room.locked
    assert room_access_for_subscriber(slug=room.slug, user_id=dave.pk).locked
    assert last_entry().action == AuditLog.Action.LOCK
    assert sent_events == [
        (f"room.{room.pk}", {"type": "room.state", "room_id": room.pk, "locked": True, "slow_mode_seconds": 0})
    ]
    with pytest.raises(ValidationError, match=re.escape("The room is already locked.")):
        moderation.room_lock(room=room, actor=dave)

    with django_capture_on_commit_callbacks(execute=True):
        moderation.room_unlock(room=room, actor=dave)
    room.refresh_from_db()
    assert not room.locked
    assert last_entry().action == AuditLog.Action.UNLOCK
    with pytest.raises(ValidationError, match=re.escape("The room is not locked.")):
        moderation.room_unlock(room=room, actor=dave)


def test_a_moderator_sets_slow_mode_and_subscribers_learn_it(
    room, alice, bob, sent_events, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        moderation.room_set_slow_mode(room=room, actor=alice, seconds=30)
    room.refresh_from_db()
    assert room.slow_mode_seconds == 30
    assert room_access_for_subscriber(slug=room.slug, user_id=bob.pk).slow_mode_seconds == 30
    entry = last_entry()
    assert (entry.action, entry.reason) == (AuditLog.Action.SLOW_MODE, "30 seconds")
    assert sent_events == [
        (f"room.{room.pk}", {"type": "room.state", "room_id": room.pk, "locked": False, "slow_mode_seconds": 30})
    ]
    moderation.room_set_slow_mode(room=room, actor=alice, seconds=0)
    assert last_entry().reason == "off"


@pytest.mark.parametrize("seconds", [-1, 3601, True, "10"])
def test_slow_mode_refuses_bad_values(room, alice, seconds):
    with pytest.raises(ValidationError, match="Slow mode is between 0"):
        moderation.room_set_slow_mode(room=room, actor=alice, seconds=seconds)


@pytest.mark.parametrize("actor", ["bob", "charlie", "erin"])
def test_only_the_owner_and_moderators_lock_or_slow_the_room(room, request, actor):
    user = request.getfixturevalue(actor)
    with pytest.raises(PermissionDenied):
        moderation.room_lock(room=room, actor=user)
    with pytest.raises(PermissionDenied):
        moderation.room_set_slow_mode(room=room, actor=user, seconds=10)
    room.refresh_from_db()
    assert not room.locked and room.slow_mode_seconds == 0


# --- Staff, from the admin ---------------------------------------------------------


def test_staff_have_the_owners_powers_but_not_over_the_owner(room, staff, dave, alice):
    moderation.membership_ban(room=room, actor=staff, user=dave, acting_as_staff=True)
    assert membership(room, dave).banned
    entry = last_entry()
    assert (entry.actor, entry.as_staff) == (staff, True)
    with pytest.raises(PermissionDenied, match=re.escape("Nobody can ban the room's owner.")):
        moderation.membership_ban(room=room, actor=staff, user=alice, acting_as_staff=True)


def test_acting_as_staff_needs_a_staff_account(room, bob, charlie):
    with pytest.raises(PermissionDenied, match="Only site staff"):
        moderation.room_lock(room=room, actor=charlie, acting_as_staff=True)
    with pytest.raises(PermissionDenied, match="Only site staff"):
        moderation.membership_ban(room=room, actor=charlie, user=bob, acting_as_staff=True)
