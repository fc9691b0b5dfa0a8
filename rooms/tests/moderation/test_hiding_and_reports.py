"""Moderating messages: a moderator hides a message, a member reports one and a moderator
resolves or dismisses the report; who may, what it changes and what it records.

alice owns the room, dave moderates it, bob is a member, erin is banned, charlie is an outsider.
"""

import re

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from messaging import moderation as message_moderation
from messaging.selectors import message_get
from rooms.models import AuditLog, Membership, Report
from rooms.tests.conftest import last_entry, post_message

pytestmark = pytest.mark.django_db


# --- Hiding messages -------------------------------------------------------------


def test_a_moderator_hides_a_message(room, dave, bob):
    seq = post_message(room, bob, "buy cheap watches")
    rev = message_moderation.room_message_hide(room=room, actor=dave, seq=seq, reason="spam")
    _, state = message_get(room_id=room.pk, seq=seq)
    assert state.deleted
    assert rev > 0
    entry = last_entry()
    assert (entry.action, entry.actor, entry.target, entry.seq, entry.reason) == (
        AuditLog.Action.HIDE_MESSAGE,
        dave,
        bob,
        seq,
        "spam",
    )


def test_hiding_a_missing_or_deleted_message_is_explained_and_not_recorded(room, dave, bob):
    with pytest.raises(ValidationError, match=re.escape("No such message.")):
        message_moderation.room_message_hide(room=room, actor=dave, seq=99)
    seq = post_message(room, bob, "hello")
    message_moderation.room_message_hide(room=room, actor=dave, seq=seq)
    with pytest.raises(ValidationError, match=re.escape("The message was already deleted.")):
        message_moderation.room_message_hide(room=room, actor=dave, seq=seq)
    assert AuditLog.objects.filter(action=AuditLog.Action.HIDE_MESSAGE).count() == 1


@pytest.mark.parametrize("actor", ["bob", "charlie", "erin"])
def test_only_moderators_hide_messages(room, alice, request, actor):
    seq = post_message(room, alice, "hello")
    with pytest.raises(PermissionDenied):
        message_moderation.room_message_hide(room=room, actor=request.getfixturevalue(actor), seq=seq)
    assert not message_get(room_id=room.pk, seq=seq)[1].deleted


def test_a_moderator_hides_neither_the_owners_message_nor_another_moderators(room, alice, dave, make_user):
    erica = make_user("erica")
    Membership.objects.create(room=room, user=erica, role=Membership.Role.MODERATOR)
    for author in (alice, erica):
        seq = post_message(room, author, "hello")
        with pytest.raises(PermissionDenied):
            message_moderation.room_message_hide(room=room, actor=dave, seq=seq)
        assert not message_get(room_id=room.pk, seq=seq)[1].deleted
    assert not AuditLog.objects.filter(action=AuditLog.Action.HIDE_MESSAGE).exists()


def test_the_owner_hides_a_moderators_message_and_staff_the_owners(room, alice, dave, staff):
    seq = post_message(room, dave, "hello")
    message_moderation.room_message_hide(room=room, actor=alice, seq=seq)
    seq = post_message(room, alice, "hello")
    message_moderation.room_message_hide(room=room, actor=staff, seq=seq, acting_as_staff=True)
    assert message_get(room_id=room.pk, seq=seq)[1].deleted


# --- Reports -----------------------------------------------------------------------


def test_a_member_reports_a_message_and_a_moderator_resolves_it(room, alice, bob, dave):
    seq = post_message(room, alice, "rude words")
    report = message_moderation.report_create(room=room, reporter=bob, seq=seq, reason="  rude  ")
    assert (report.status, report.reason, report.seq) == (Report.Status.OPEN, "rude", seq)
    message_moderation.report_resolve(report=report, actor=dave)
    report.refresh_from_db()
    assert (report.status, report.resolved_by) == (Report.Status.RESOLVED, dave)
    assert report.resolved_at is not None
    entry = last_entry()
    assert (entry.action, entry.seq, entry.target) == (AuditLog.Action.RESOLVE_REPORT, seq, bob)
    with pytest.raises(ValidationError, match=re.escape("This report was already resolved.")):
        message_moderation.report_dismiss(report=report, actor=dave)


def test_a_dismissed_report_leaves_the_message_alone(room, alice, bob, dave):
    seq = post_message(room, alice, "fine words")
    report = message_moderation.report_create(room=room, reporter=bob, seq=seq, reason="I disagree")
    message_moderation.report_dismiss(report=report, actor=dave)
    report.refresh_from_db()
    assert report.status == Report.Status.DISMISSED
    assert last_entry().action == AuditLog.Action.DISMISS_REPORT
    assert not message_get(room_id=room.pk, seq=seq)[1].deleted


def test_hiding_a_reported_message_resolves_all_its_reports(room, alice, bob, dave, make_user):
    seq = post_message(room, bob, "spam spam spam")
    frank = make_user("frank")
    Membership.objects.create(room=room, user=frank)
    first = message_moderation.report_create(room=room, reporter=alice, seq=seq, reason="spam")
    message_moderation.report_create(room=room, reporter=frank, seq=seq, reason="also spam")
    assert message_moderation.report_hide_message(report=first, actor=dave) == 2
    assert message_get(room_id=room.pk, seq=seq)[1].deleted
    assert not Report.objects.filter(status=Report.Status.OPEN).exists()
    actions = list(AuditLog.objects.order_by("pk").values_list("action", flat=True))
    assert actions == ["hide_message", "resolve_report", "resolve_report"]


@pytest.mark.parametrize(
    ("reason", "field", "message"),
    [
        ("", "reason", "Say why you report this message."),
        ("   ", "reason", "Say why you report this message."),
        ("x" * 501, "reason", "at most 500 characters"),
        ("nul\x00byte", "reason", "NUL"),
    ],
)
def test_a_report_needs_a_reason(room, alice, bob, reason, field, message):
    seq = post_message(room, alice, "hello")
    with pytest.raises(ValidationError) as caught:
        message_moderation.report_create(room=room, reporter=bob, seq=seq, reason=reason)
    assert any(message in m for m in caught.value.message_dict[field])
    assert not Report.objects.exists()


def test_bad_reports_are_explained(room, alice, bob):
    seq = post_message(room, alice, "hello")
    mine = post_message(room, bob, "my own")
    cases = [(99, "No such message."), (mine, "You cannot report your own message.")]
    for bad_seq, message in cases:
        with pytest.raises(ValidationError) as caught:
            message_moderation.report_create(room=room, reporter=bob, seq=bad_seq, reason="why")
        assert caught.value.message_dict["seq"] == [message]
    message_moderation.report_create(room=room, reporter=bob, seq=seq, reason="why")
    with pytest.raises(ValidationError) as caught:
        message_moderation.report_create(room=room, reporter=bob, seq=seq, reason="again")
    assert caught.value.message_dict["seq"] == ["You already reported this message."]
    assert Report.objects.count() == 1


@pytest.mark.parametrize("reporter", ["charlie", "erin"])
def test_outsiders_and_the_banned_cannot_report(room, alice, request, reporter):
    seq = post_message(room, alice, "hello")
    with pytest.raises(PermissionDenied):
        message_moderation.report_create(room=room, reporter=request.getfixturevalue(reporter), seq=seq, reason="x")


@pytest.mark.parametrize("actor", ["bob", "charlie", "erin"])
def test_only_moderators_resolve_or_dismiss_reports(room, alice, dave, request, actor):
    seq = post_message(room, alice, "hello")
    report = message_moderation.report_create(room=room, reporter=dave, seq=seq, reason="x")
    user = request.getfixturevalue(actor)
    for act in (
        message_moderation.report_resolve,
        message_moderation.report_dismiss,
        message_moderation.report_hide_message,
    ):
        with pytest.raises(PermissionDenied):
            act(report=report, actor=user)
    report.refresh_from_db()
    assert report.is_open
