"""The moderation page and its POST endpoints, the report endpoint, watch and participate.

alice owns the room, dave moderates it, bob is a member, erin is banned, charlie is an outsider.
"""

import json
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from messaging.selectors import message_get
from rooms.models import AuditLog, Membership, Report
from rooms.tests.conftest import post_message

pytestmark = pytest.mark.django_db


def url(name: str, room, **kwargs) -> str:
    return reverse(name, kwargs={"slug": room.slug, **kwargs})


def flashes(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def membership(room, user) -> Membership | None:
    return Membership.objects.filter(room=room, user=user).first()


# --- The page ------------------------------------------------------------------------


@pytest.mark.parametrize("persona", ["alice", "dave"])
def test_the_owner_and_moderators_see_the_moderation_page(client, room, request, persona):
    client.force_login(request.getfixturevalue(persona))
    response = client.get(url("room-moderation", room))
    assert response.status_code == 200
    html = response.content.decode()
    for name in ("bob", "dave", "erin"):
        assert name in html
    assert "banned" in html
    assert url("room-lock", room) in html
    assert url("room-slow-mode", room) in html


def test_a_member_who_does_not_moderate_gets_403(client, room, bob):
    client.force_login(bob)
    assert client.get(url("room-moderation", room)).status_code == 403


@pytest.mark.parametrize("persona", ["charlie", "erin"])
def test_outsiders_and_the_banned_get_404_and_learn_nothing(client, room, request, persona):
    client.force_login(request.getfixturevalue(persona))
    response = client.get(url("room-moderation", room))
    assert response.status_code == 404
    assert "Secret Plans" not in response.content.decode()


def test_the_page_needs_a_signed_in_user(client, room):
    response = client.get(url("room-moderation", room))
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


def test_a_moderator_sees_forms_only_for_those_they_may_act_on(client, room, dave, bob):
    client.force_login(dave)
    members = dict(client.get(url("room-moderation", room)).context["members"])
    actionable = {m.user.username: can for m, can in members.items()}
    assert actionable == {"alice": False, "dave": False, "bob": True, "erin": True}


def test_the_owner_may_act_on_moderators(client, room, alice):
    client.force_login(alice)
    members = dict(client.get(url("room-moderation", room)).context["members"])
    assert {m.user.username: can for m, can in members.items()}["dave"] is True


def test_the_page_lists_open_reports_with_their_message(client, room, alice, bob, dave):
    seq = post_message(room, bob, "very rude words")
    Report.objects.create(room=room, seq=seq, reporter=alice, reason="insulting")
    client.force_login(dave)
    response = client.get(url("room-moderation", room))
    [item] = response.context["reports"]
    assert (item.author, item.excerpt, item.deleted) == ("bob", "very rude words", False)
    html = response.content.decode()
    assert "very rude words" in html and "insulting" in html
    assert url("report-hide", room, report_id=item.report.pk) in html


def test_the_audit_log_is_newest_first_and_paginated(client, room, alice, dave):
    for _ in range(26):
        AuditLog.objects.create(room=room, actor=dave, action=AuditLog.Action.LOCK)
        AuditLog.objects.create(room=room, actor=dave, action=AuditLog.Action.UNLOCK)
    last = AuditLog.objects.create(room=room, actor=alice, action=AuditLog.Action.SLOW_MODE, reason="10 seconds")
    client.force_login(alice)
    first_page = client.get(url("room-moderation", room)).context["audit_page"]
    assert first_page.object_list[0] == last
    assert len(first_page.object_list) == 50
    second_page = client.get(url("room-moderation", room) + "?page=2").context["audit_page"]
    assert len(second_page.object_list) == 3


# --- The acts ----------------------------------------------------------------------


def test_a_moderator_mutes_a_member_for_the_chosen_duration(client, room, dave, bob):
    client.force_login(dave)
    response = client.post(url("room-mute", room), {"username": "bob", "duration": "1 day"}, follow=True)
    assert flashes(response) == ["bob is muted."]
    until = membership(room, bob).muted_until
    assert timezone.now() + timedelta(hours=23) < until <= timezone.now() + timedelta(days=1)
    assert response.redirect_chain[-1][0] == url("room-moderation", room)


def test_a_bad_mute_duration_is_explained(client, room, dave, bob):
    client.force_login(dave)
    response = client.post(url("room-mute", room), {"username": "bob", "duration": "forever"}, follow=True)
    assert "Select a valid choice" in flashes(response)[0]
    assert membership(room, bob).muted_until is None


@pytest.mark.parametrize(
    ("act", "data", "check", "message"),
    [
        ("room-unmute", {"username": "bob"}, lambda r, u: u["bob"].muted_until is None, "bob can post again."),
        ("room-ban", {"username": "bob", "reason": "spam"}, lambda r, u: u["bob"].banned, "bob is banned."),
        ("room-unban", {"username": "erin"}, lambda r, u: "erin" not in u, "erin is no longer banned."),
        ("room-remove", {"username": "bob"}, lambda r, u: "bob" not in u, "bob was removed from the room."),
        ("room-ban", {"username": "charlie"}, lambda r, u: u["charlie"].banned, "charlie is banned."),
    ],
)
def test_each_act_changes_the_room_and_says_so(client, room, dave, bob, charlie, act, data, check, message):
    Membership.objects.filter(room=room, user=bob).update(muted_until=timezone.now() + timedelta(hours=1))
    client.force_login(dave)
    response = client.post(url(act, room), data, follow=True)
    assert flashes(response) == [message]
    by_name = {m.user.username: m for m in Membership.objects.filter(room=room).select_related("user")}
    assert check(room, by_name)
    assert AuditLog.objects.filter(room=room, actor=dave).count() == 1


def test_the_owner_promotes_and_demotes_from_the_page(client, room, alice, bob):
    client.force_login(alice)
    response = client.post(url("room-promote", room), {"username": "bob"}, follow=True)
    assert flashes(response) == ["bob is now a moderator."]
    assert membership(room, bob).role == Membership.Role.MODERATOR
    response = client.post(url("room-demote", room), {"username": "BOB"}, follow=True)
    assert flashes(response) == ["bob is no longer a moderator."]
    assert membership(room, bob).role == Membership.Role.MEMBER


@pytest.mark.parametrize(
    ("act", "username", "message"),
    [
        ("room-ban", "alice", "Nobody can ban the room's owner."),
        ("room-mute", "dave", "You cannot mute yourself."),
        ("room-promote", "bob", "Only the owner can appoint moderators."),
        ("room-remove", "nobody", "There is no user with this name."),
        ("room-ban", "", "This field is required."),
    ],
)
def test_refused_acts_are_explained_and_change_nothing(client, room, dave, act, username, message):
    client.force_login(dave)
    response = client.post(url(act, room), {"username": username, "duration": "1 hour"}, follow=True)
    assert any(message in m for m in flashes(response)), flashes(response)
    assert not AuditLog.objects.exists()
    assert membership(room, dave).role == Membership.Role.MODERATOR


def test_a_moderator_cannot_ban_another_moderator_from_the_page(client, room, dave, bob):
    Membership.objects.filter(room=room, user=bob).update(role=Membership.Role.MODERATOR)
    client.force_login(dave)
    response = client.post(url("room-ban", room), {"username": "bob"}, follow=True)
    assert flashes(response) == ["Only the owner can ban a moderator."]
    assert not membership(room, bob).banned


def test_lock_unlock_and_slow_mode_from_the_page(client, room, dave):
    client.force_login(dave)
    assert flashes(client.post(url("room-lock", room), follow=True))[0].startswith("The room is locked")
    room.refresh_from_db()
    assert room.locked
    assert flashes(client.post(url("room-lock", room), follow=True)) == ["The room is already locked."]
    assert flashes(client.post(url("room-unlock", room), follow=True)) == ["The room is unlocked."]
    room.refresh_from_db()
    assert not room.locked
    response = client.post(url("room-slow-mode", room), {"seconds": "30"}, follow=True)
    assert flashes(response) == ["Slow mode: one message every 30 seconds per member."]
    room.refresh_from_db()
    assert room.slow_mode_seconds == 30
    response = client.post(url("room-slow-mode", room), {"seconds": "7"}, follow=True)
    assert "Select a valid choice" in flashes(response)[0]
    room.refresh_from_db()
    assert room.slow_mode_seconds == 30


def test_an_act_from_the_room_page_goes_back_there_but_never_off_site(client, room, dave):
    client.force_login(dave)
    response = client.post(url("room-lock", room), {"next": room.get_absolute_url()})
    assert response.url == room.get_absolute_url()
    response = client.post(url("room-unlock", room), {"next": "https://evil.example/"})
    assert response.url == url("room-moderation", room)


@pytest.mark.parametrize("target", ["723236841494630144", "room-list", "admin:index", "lobby", "./x", "//evil.example"])
def test_a_next_that_is_no_path_of_this_site_goes_back_to_the_moderation_page(client, room, dave, target):
    """Django's redirect() reads a word as a URL pattern's name: `next=723236841494630144` was a
    500 (NoReverseMatch), found by tests/hostile/test_http_fuzz.py. Only a path of this site is
    followed."""
    client.force_login(dave)
    response = client.post(url("room-lock", room), {"next": target})
    assert response.status_code == 302
    assert response.url == url("room-moderation", room)


def test_a_moderator_hides_a_message_from_the_page(client, room, dave, bob):
    seq = post_message(room, bob, "spam")
    client.force_login(dave)
    response = client.post(url("room-message-hide", room, seq=seq), follow=True)
    assert flashes(response) == [f"Message #{seq} is hidden."]
    assert message_get(room_id=room.pk, seq=seq)[1].deleted
    response = client.post(url("room-message-hide", room, seq=seq), follow=True)
    assert flashes(response) == ["The message was already deleted."]


@pytest.mark.parametrize(
    ("act", "status", "message"),
    [
        ("report-resolve", Report.Status.RESOLVED, "The report is resolved."),
        ("report-dismiss", Report.Status.DISMISSED, "The report is dismissed."),
        ("report-hide", Report.Status.RESOLVED, "The message is hidden and its reports are resolved."),
    ],
)
def test_a_moderator_closes_reports_from_the_page(client, room, alice, bob, dave, act, status, message):
    seq = post_message(room, bob, "rude")
    report = Report.objects.create(room=room, seq=seq, reporter=alice, reason="rude")
    client.force_login(dave)
    response = client.post(url(act, room, report_id=report.pk), follow=True)
    assert flashes(response) == [message]
    report.refresh_from_db()
    assert (report.status, report.resolved_by) == (status, dave)
    assert message_get(room_id=room.pk, seq=seq)[1].deleted == (act == "report-hide")


def test_a_report_of_another_room_is_404(client, room, public_room, alice, dave, bob):
    seq = post_message(public_room, bob, "elsewhere")
    report = Report.objects.create(room=public_room, seq=seq, reporter=alice, reason="x")
    client.force_login(dave)
    assert client.post(url("report-resolve", room, report_id=report.pk)).status_code == 404
    report.refresh_from_db()
    assert report.is_open


ACT_URLS = [
    ("room-promote", {}),
    ("room-demote", {}),
    ("room-mute", {}),
    ("room-unmute", {}),
    ("room-ban", {}),
    ("room-unban", {}),
    ("room-remove", {}),
    ("room-lock", {}),
    ("room-unlock", {}),
    ("room-slow-mode", {}),
    ("room-message-hide", {"seq": 1}),
    ("report-resolve", {"report_id": 1}),
    ("report-dismiss", {"report_id": 1}),
    ("report-hide", {"report_id": 1}),
]


@pytest.mark.parametrize(("name", "kwargs"), ACT_URLS)
def test_every_act_refuses_members_outsiders_and_the_banned(client, room, bob, charlie, erin, name, kwargs):
    data = {"username": "dave", "duration": "1 hour", "seconds": "10"}
    for user, status in ((bob, 403), (charlie, 404), (erin, 404)):
        client.force_login(user)
        assert client.post(url(name, room, **kwargs), data).status_code == status
    room.refresh_from_db()
    assert not room.locked and room.slow_mode_seconds == 0
    assert not AuditLog.objects.exists()
    assert membership(room, bob).role == Membership.Role.MEMBER


@pytest.mark.parametrize(("name", "kwargs"), ACT_URLS)
def test_every_act_needs_post_and_the_csrf_token(room, dave, name, kwargs):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(dave)
    assert strict.get(url(name, room, **kwargs)).status_code == 405
    assert strict.post(url(name, room, **kwargs), {"username": "bob", "seconds": "10"}).status_code == 403
    assert not AuditLog.objects.exists()


# --- Reporting a message ------------------------------------------------------------


def test_a_member_reports_a_message(client, room, alice, bob):
    seq = post_message(room, alice, "something rude")
    client.force_login(bob)
    response = client.post(url("message-report", room, seq=seq), {"reason": "rude"})
    assert response.status_code == 201
    assert response.json()["status"] == "reported"
    report = Report.objects.get()
    assert (report.room, report.seq, report.reporter, report.reason) == (room, seq, bob, "rude")


def test_a_report_may_come_as_json(client, room, alice, bob):
    seq = post_message(room, alice, "something rude")
    client.force_login(bob)
    response = client.post(
        url("message-report", room, seq=seq), json.dumps({"reason": "rude"}), content_type="application/json"
    )
    assert response.status_code == 201
    response = client.post(url("message-report", room, seq=seq), "{not json", content_type="application/json")
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({}, "reason", "Say why you report this message."),
        ({"reason": "   "}, "reason", "Say why you report this message."),
        ({"reason": "x" * 501}, "reason", "at most 500 characters"),
    ],
)
def test_a_report_without_a_good_reason_is_400_with_the_errors(client, room, alice, bob, data, field, message):
    seq = post_message(room, alice, "hello")
    client.force_login(bob)
    response = client.post(url("message-report", room, seq=seq), data)
    assert response.status_code == 400
    assert any(message in e for e in response.json()["errors"][field])
    assert not Report.objects.exists()


def test_reporting_twice_or_ones_own_message_is_400(client, room, alice, bob):
    seq = post_message(room, alice, "hello")
    mine = post_message(room, bob, "mine")
    client.force_login(bob)
    assert client.post(url("message-report", room, seq=seq), {"reason": "x"}).status_code == 201
    again = client.post(url("message-report", room, seq=seq), {"reason": "x"})
    assert again.status_code == 400
    assert again.json()["errors"] == {"seq": ["You already reported this message."]}
    own = client.post(url("message-report", room, seq=mine), {"reason": "x"})
    assert own.json()["errors"] == {"seq": ["You cannot report your own message."]}


def test_reporting_a_message_that_does_not_exist_is_404(client, room, bob):
    client.force_login(bob)
    assert client.post(url("message-report", room, seq=5), {"reason": "x"}).status_code == 404


@pytest.mark.parametrize("persona", ["charlie", "erin"])
def test_outsiders_and_the_banned_cannot_report(client, room, alice, request, persona):
    seq = post_message(room, alice, "hello")
    client.force_login(request.getfixturevalue(persona))
    assert client.post(url("message-report", room, seq=seq), {"reason": "x"}).status_code == 404
    assert not Report.objects.exists()


def test_reporting_needs_post_and_the_csrf_token(room, alice, bob):
    seq = post_message(room, alice, "hello")
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(bob)
    assert strict.get(url("message-report", room, seq=seq)).status_code == 405
    assert strict.post(url("message-report", room, seq=seq), {"reason": "x"}).status_code == 403


# --- Watching and taking part ----------------------------------------------------------


def test_watching_a_public_room_makes_a_spectator_and_participating_a_member(client, public_room, bob):
    client.force_login(bob)
    response = client.post(url("room-watch", public_room), follow=True)
    assert flashes(response) == ["You are watching Lobby."]
    assert membership(public_room, bob).role == Membership.Role.SPECTATOR
    response = client.post(url("room-participate", public_room), follow=True)
    assert flashes(response) == ["You take part in Lobby."]
    assert membership(public_room, bob).role == Membership.Role.MEMBER


def test_a_private_room_cannot_be_watched_or_joined_by_an_outsider(client, room, charlie):
    client.force_login(charlie)
    assert client.post(url("room-watch", room)).status_code == 404
    assert client.post(url("room-participate", room)).status_code == 404
    assert membership(room, charlie) is None


def test_the_banned_can_neither_watch_nor_participate(client, public_room, alice, charlie):
    Membership.objects.create(room=public_room, user=charlie, banned=True)
    client.force_login(charlie)
    assert client.post(url("room-watch", public_room)).status_code == 404
    assert client.post(url("room-participate", public_room)).status_code == 404
    assert membership(public_room, charlie).banned


def test_watch_and_participate_need_post(client, public_room, bob):
    client.force_login(bob)
    assert client.get(url("room-watch", public_room)).status_code == 405
    assert client.get(url("room-participate", public_room)).status_code == 405
