"""The audit log is append-only, and the admin moderates through the same services as the pages.

alice owns the room, dave moderates it, bob is a member, erin is banned; staff runs the admin.
"""

import pytest
from django.urls import reverse

from messaging.models import Message
from messaging.selectors import message_get
from messaging.store.persistence import messages_persist_server
from rooms.models import AppendOnly, AuditLog, Membership, Report, Room
from rooms.tests.conftest import post_message

pytestmark = pytest.mark.django_db


# --- Append-only ---------------------------------------------------------------------


def test_an_audit_entry_cannot_be_changed_or_deleted(room, dave):
    entry = AuditLog.objects.create(room=room, actor=dave, action=AuditLog.Action.LOCK, reason="calm down")
    entry.reason = "nothing happened"
    with pytest.raises(AppendOnly):
        entry.save()
    with pytest.raises(AppendOnly):
        entry.delete()
    with pytest.raises(AppendOnly):
        AuditLog.objects.filter(pk=entry.pk).update(reason="nothing happened")
    with pytest.raises(AppendOnly):
        AuditLog.objects.all().delete()
    entry.refresh_from_db()
    assert entry.reason == "calm down"


def test_entries_outlive_the_room_they_are_about(room, dave):
    AuditLog.objects.create(room=room, actor=dave, action=AuditLog.Action.LOCK)
    Room.objects.filter(pk=room.pk).delete()
    entry = AuditLog.objects.get()
    assert entry.room is None
    assert entry.actor == dave


def admin_url(name: str, *args) -> str:
    return reverse(f"admin:{name}", args=args)


def test_the_admin_shows_the_audit_log_but_cannot_add_change_or_delete(client, staff, room, dave):
    entry = AuditLog.objects.create(room=room, actor=dave, action=AuditLog.Action.BAN, reason="spam")
    client.force_login(staff)
    listing = client.get(admin_url("rooms_auditlog_changelist"))
    assert listing.status_code == 200
    assert "spam" in listing.content.decode()
    assert "delete_selected" not in listing.content.decode()
    assert client.get(admin_url("rooms_auditlog_add")).status_code == 403
    assert client.get(admin_url("rooms_auditlog_delete", entry.pk)).status_code == 403
    # The change page only shows the entry; posting to it changes nothing.
    assert client.get(admin_url("rooms_auditlog_change", entry.pk)).status_code == 200
    assert client.post(admin_url("rooms_auditlog_change", entry.pk), {"reason": "x"}).status_code == 403
    search = client.get(admin_url("rooms_auditlog_changelist") + "?q=dave&action__exact=ban")
    assert list(search.context["cl"].result_list) == [entry]


def test_a_search_and_filters_find_reports(client, staff, room, alice, bob):
    seq = post_message(room, bob, "hello")
    report = Report.objects.create(room=room, seq=seq, reporter=alice, reason="rude greeting")
    client.force_login(staff)
    found = client.get(admin_url("rooms_report_changelist") + "?q=greeting&status__exact=open")
    assert list(found.context["cl"].result_list) == [report]
    assert client.get(admin_url("rooms_report_add")).status_code == 403


# --- Admin actions -------------------------------------------------------------------


def run_action(client, changelist: str, action: str, objects) -> list[str]:
    response = client.post(
        admin_url(changelist),
        {"action": action, "_selected_action": [obj.pk for obj in objects]},
        follow=True,
    )
    assert response.status_code == 200
    return [str(m) for m in response.context["messages"]]


def test_banning_and_unbanning_from_the_admin_is_the_service_with_staff_rights(client, staff, room, alice, bob, dave):
    client.force_login(staff)
    memberships = Membership.objects.filter(room=room, user__in=[alice, bob, dave]).order_by("user__username")
    said = run_action(client, "rooms_membership_changelist", "ban_members", memberships)
    assert "2 member(s) banned." in said
    assert any("Nobody can ban the room's owner." in s for s in said)
    by_name = {m.user.username: m for m in Membership.objects.filter(room=room).select_related("user")}
    assert by_name["bob"].banned and by_name["dave"].banned
    assert by_name["dave"].role == Membership.Role.MEMBER
    assert not by_name["alice"].banned
    entries = AuditLog.objects.filter(action=AuditLog.Action.BAN).order_by("target__username")
    assert [(e.actor, e.as_staff, e.target.username, e.room) for e in entries] == [
        (staff, True, "bob", room),
        (staff, True, "dave", room),
    ]

    said = run_action(client, "rooms_membership_changelist", "unban_members", [by_name["bob"]])
    assert said == ["1 member(s) unbanned."]
    assert not Membership.objects.filter(room=room, user=bob).exists()
    assert AuditLog.objects.filter(action=AuditLog.Action.UNBAN, target=bob, as_staff=True).count() == 1


def test_promoting_from_the_admin_records_it(client, staff, room, bob):
    client.force_login(staff)
    membership = Membership.objects.get(room=room, user=bob)
    assert run_action(client, "rooms_membership_changelist", "promote_members", [membership]) == [
        "1 member(s) made moderators."
    ]
    membership.refresh_from_db()
    assert membership.role == Membership.Role.MODERATOR
    assert AuditLog.objects.get().action == AuditLog.Action.PROMOTE


def test_locking_and_unlocking_rooms_from_the_admin(client, staff, room, public_room):
    client.force_login(staff)
    assert run_action(client, "rooms_room_changelist", "lock_rooms", [room, public_room]) == ["2 room(s) locked."]
    assert set(Room.objects.values_list("locked", flat=True)) == {True}
    said = run_action(client, "rooms_room_changelist", "lock_rooms", [room])
    assert said == ["Secret Plans: The room is already locked."]
    assert run_action(client, "rooms_room_changelist", "unlock_rooms", [room]) == ["1 room(s) unlocked."]
    room.refresh_from_db()
    assert not room.locked
    actions = list(AuditLog.objects.order_by("pk").values_list("action", "as_staff"))
    assert actions == [("lock", True), ("lock", True), ("unlock", True)]


def test_archiving_and_unarchiving_rooms_from_the_admin(client, staff, room):
    client.force_login(staff)
    assert run_action(client, "rooms_room_changelist", "archive_rooms", [room]) == ["1 room(s) archived."]
    room.refresh_from_db()
    assert room.archived
    assert run_action(client, "rooms_room_changelist", "archive_rooms", [room]) == [
        "Secret Plans: The room is already archived."
    ]
    assert run_action(client, "rooms_room_changelist", "unarchive_rooms", [room]) == ["1 room(s) unarchived."]
    room.refresh_from_db()
    assert not room.archived
    actions = list(AuditLog.objects.order_by("pk").values_list("action", "as_staff"))
    assert actions == [("archive", True), ("unarchive", True)]


def test_hiding_messages_from_the_admin(client, staff, room, bob):
    first = post_message(room, bob, "spam one")
    second = post_message(room, bob, "spam two")
    messages_persist_server(server=0)
    rows = Message.objects.filter(room=room).order_by("seq")
    assert [m.seq for m in rows] == [first, second]
    client.force_login(staff)
    assert run_action(client, "messaging_message_changelist", "hide_messages", rows) == ["2 message(s) hidden."]
    assert message_get(room_id=room.pk, seq=first)[1].deleted
    assert message_get(room_id=room.pk, seq=second)[1].deleted
    entries = AuditLog.objects.filter(action=AuditLog.Action.HIDE_MESSAGE).order_by("seq")
    assert [(e.seq, e.target, e.actor, e.as_staff) for e in entries] == [
        (first, bob, staff, True),
        (second, bob, staff, True),
    ]
    said = run_action(client, "messaging_message_changelist", "hide_messages", rows[:1])
    assert said == [f"#{first} in {room.pk}: The message was already deleted."]


def test_closing_reports_from_the_admin(client, staff, room, alice, bob):
    first = post_message(room, bob, "rude")
    second = post_message(room, bob, "ruder")
    third = post_message(room, bob, "fine")
    to_resolve = Report.objects.create(room=room, seq=first, reporter=alice, reason="rude")
    to_hide = Report.objects.create(room=room, seq=second, reporter=alice, reason="ruder")
    to_dismiss = Report.objects.create(room=room, seq=third, reporter=alice, reason="meh")
    client.force_login(staff)
    assert run_action(client, "rooms_report_changelist", "resolve_reports", [to_resolve]) == ["1 report(s) resolved."]
    assert run_action(client, "rooms_report_changelist", "dismiss_reports", [to_dismiss]) == ["1 report(s) dismissed."]
    assert run_action(client, "rooms_report_changelist", "hide_reported_messages", [to_hide]) == [
        "Messages of 1 report(s) hidden."
    ]
    statuses = dict(Report.objects.values_list("seq", "status"))
    assert statuses == {first: "resolved", second: "resolved", third: "dismissed"}
    assert Report.objects.filter(resolved_by=staff).count() == 3
    assert message_get(room_id=room.pk, seq=second)[1].deleted
    assert not message_get(room_id=room.pk, seq=first)[1].deleted
    actions = list(AuditLog.objects.order_by("pk").values_list("action", flat=True))
    assert actions == ["resolve_report", "dismiss_report", "hide_message", "resolve_report"]


def test_live_fields_are_read_only_in_the_admin(client, staff, room, bob):
    client.force_login(staff)
    membership = Membership.objects.get(room=room, user=bob)
    page = client.get(admin_url("rooms_membership_change", membership.pk)).content.decode()
    assert 'name="banned"' not in page and 'name="role"' not in page and 'name="muted_until"' not in page
    page = client.get(admin_url("rooms_room_change", room.pk)).content.decode()
    assert 'name="locked"' not in page and 'name="slow_mode_seconds"' not in page


def test_only_staff_reach_the_admin_actions(client, room, dave, bob):
    client.force_login(dave)
    membership = Membership.objects.get(room=room, user=bob)
    response = client.post(
        admin_url("rooms_membership_changelist"), {"action": "ban_members", "_selected_action": [membership.pk]}
    )
    assert response.status_code == 302
    assert response.url.startswith(admin_url("login"))
    membership.refresh_from_db()
    assert not membership.banned
