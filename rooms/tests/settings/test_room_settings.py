"""Room settings: rename, topic, archive and delete (issue 21), with the invitation notice.

alice owns the private room, dave moderates it, bob is a member, charlie is an outsider
who must neither see nor change anything; staff acts from the admin. Every act is in the
audit log; what the room's open pages hear is checked in test_room_settings_live.py.
"""

from __future__ import annotations

import re

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse

from messaging.models import Message, Notification
from messaging.notifications.invites import room_invite
from messaging.store import buffer, watermarks
from messaging.store.persistence import messages_persist_server
from protocol.wire import encode
from rooms import room_settings
from rooms.models import AuditLog, Room
from rooms.selectors import room_list_for_user, rooms_of_user
from rooms.services import room_access_for_subscriber
from rooms.tests.conftest import post_message

pytestmark = pytest.mark.django_db


def last_entry() -> AuditLog:
    return AuditLog.objects.order_by("-pk").first()


# --- Rename and topic ------------------------------------------------------------------


def test_a_moderator_renames_the_room_and_it_is_audited(room, dave, sent_events, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        room_settings.room_rename(room=room, actor=dave, name="Grand Plans", reason="clearer")
    room.refresh_from_db()
    assert (room.name, room.slug) == ("Grand Plans", "secret-plans")  # the address stays
    entry = last_entry()
    assert (entry.action, entry.actor, entry.room, entry.reason) == (
        AuditLog.Action.RENAME,
        dave,
        room,
        "Secret Plans → Grand Plans: clearer",
    )
    frame = {
        "type": "room_updated",
        "room": room.slug,
        "name": "Grand Plans",
        "topic": "",
        "archived": False,
        "details": 1,  # the room's first change (protocol.details)
    }
    assert sent_events == [(f"room.{room.pk}", {"type": "room.notice", "room_id": room.pk, "frame": encode(frame)})]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "A room needs a name."),
        ("   ", "A room needs a name."),
        ("x" * 81, "at most 80 characters"),
        ("Lobby", "A room with this name already exists."),
        ("LOBBY", "A room with this name already exists."),
        ("Secret Plans", "already called"),
        ("evil\u202ename", "control or text-direction"),
    ],
)
def test_a_bad_name_is_refused_and_nothing_changes(room, alice, public_room, name, message):
    with pytest.raises(ValidationError, match=message):
        room_settings.room_rename(room=room, actor=alice, name=name)
    room.refresh_from_db()
    assert room.name == "Secret Plans"
    assert not AuditLog.objects.filter(action=AuditLog.Action.RENAME).exists()


def test_renaming_a_room_after_a_private_room_of_someone_else_reveals_nothing(public_room, alice, charlie, room):
    """charlie owns a public room of his own; a private room he is not in already has the name
    he picks: the rename goes through, as a creation would (nothing tells him it exists)."""
    from rooms.services import room_create

    his = room_create(creator=charlie, name="Charlie's corner")
    renamed = room_settings.room_rename(room=his, actor=charlie, name=room.name.upper())
    assert renamed.name == room.name.upper()
    with pytest.raises(ValidationError, match="already exists"):
        room_settings.room_rename(room=his, actor=charlie, name=public_room.name)


def test_the_topic_is_set_and_removed(room, alice):
    room_settings.room_set_topic(room=room, actor=alice, topic="  World domination  ")
    room.refresh_from_db()
    assert room.topic == "World domination"
    room_settings.room_set_topic(room=room, actor=alice, topic="")
    room.refresh_from_db()
    assert room.topic == ""
    assert [e.reason for e in AuditLog.objects.filter(action=AuditLog.Action.EDIT_TOPIC).order_by("pk")] == [
        "“World domination”",
        "removed",
    ]
    with pytest.raises(ValidationError, match="at most 200"):
        room_settings.room_set_topic(room=room, actor=alice, topic="x" * 201)


def test_a_member_and_an_outsider_cannot_change_the_room(room, bob, charlie):
    for user in (bob, charlie):
        with pytest.raises(PermissionDenied):
            room_settings.room_rename(room=room, actor=user, name="Mine now")
        with pytest.raises(PermissionDenied):
            room_settings.room_set_topic(room=room, actor=user, topic="Mine now")
        with pytest.raises(PermissionDenied):
            room_settings.room_archive(room=room, actor=user)
        with pytest.raises(PermissionDenied):
            room_settings.room_delete(room=room, actor=user, confirm="Secret Plans")
    room.refresh_from_db()
    assert (room.name, room.topic, room.archived) == ("Secret Plans", "", False)
    assert not AuditLog.objects.exists()


def test_a_direct_conversation_has_no_settings(alice, bob):
    from rooms.services import direct_open

    dm = direct_open(opener=alice, usernames=["bob"])
    with pytest.raises(PermissionDenied, match="no moderators"):
        room_settings.room_rename(room=dm, actor=alice, name="Ours")


# --- Archive -----------------------------------------------------------------------


def test_only_the_owner_archives_and_the_room_turns_read_only_and_leaves_the_lists(room, alice, dave, bob):
    with pytest.raises(PermissionDenied, match=re.escape("Only the room's owner can archive it.")):
        room_settings.room_archive(room=room, actor=dave)
    room_settings.room_archive(room=room, actor=alice, reason="done")
    room.refresh_from_db()
    assert room.archived and room.read_only and not room.locked
    assert last_entry().action == AuditLog.Action.ARCHIVE
    assert room_access_for_subscriber(slug=room.slug, user_id=bob.pk).locked
    assert "Secret Plans" not in [r.name for r in room_list_for_user(user=bob)]
    assert "Secret Plans" not in [r.name for r in rooms_of_user(user=bob)]
    with pytest.raises(ValidationError, match="already archived"):
        room_settings.room_archive(room=room, actor=alice)
    room_settings.room_unarchive(room=room, actor=alice)
    room.refresh_from_db()
    assert not room.archived
    assert not room_access_for_subscriber(slug=room.slug, user_id=bob.pk).locked
    assert last_entry().action == AuditLog.Action.UNARCHIVE


def test_an_archived_room_is_still_read_by_its_members_and_hidden_from_outsiders(client, room, alice, bob, charlie):
    room_settings.room_archive(room=room, actor=alice)
    client.force_login(bob)
    page = client.get(room.get_absolute_url())
    assert page.status_code == 200
    html = page.content.decode()
    assert "This room is archived: it is read-only." in html and 'id="composer"' not in html
    client.force_login(charlie)
    assert client.get(room.get_absolute_url()).status_code == 404


# --- Delete ------------------------------------------------------------------------


def test_the_owner_deletes_the_room_after_naming_it(
    room, alice, bob, dave, sent_events, django_capture_on_commit_callbacks
):
    post_message(room, bob, "a message that goes with the room")
    messages_persist_server(server=0)
    post_message(room, bob, "one still only in Redis")
    with pytest.raises(ValidationError, match=re.escape("Type the room's name, Secret Plans, to delete it.")):
        room_settings.room_delete(room=room, actor=alice, confirm="Secret")
    assert Room.objects.filter(pk=room.pk).exists()
    room_id = room.pk
    with django_capture_on_commit_callbacks(execute=True):
        room_settings.room_delete(room=room, actor=alice, confirm="secret plans", reason="finished")
    assert not Room.objects.filter(pk=room_id).exists()
    assert not Message.objects.filter(room_id=room_id).exists()
    entry = last_entry()
    assert (entry.action, entry.actor, entry.room, entry.reason) == (
        AuditLog.Action.DELETE_ROOM,
        alice,
        None,
        "Secret Plans (secret-plans): finished",
    )
    kicked = {group: event for group, event in sent_events if event["type"] == "user.kicked"}
    assert set(kicked) == {f"user.{u.pk}" for u in (alice, bob, dave)}  # not erin: she is banned
    assert kicked[f"user.{bob.pk}"]["reason"] == "Secret Plans was deleted by alice."
    # Its Redis state went with it: the persistence job finds nothing to write.
    assert room_id not in watermarks.dirty_room_ids(url=_room_url(room_id))
    assert buffer.counters(room_id=room_id) is None
    assert messages_persist_server(server=0) == 0


def _room_url(room_id: int) -> str:
    from pubsub_site.redis.client import room_redis_url

    return room_redis_url(room_id)


def test_a_moderator_cannot_delete_the_room(room, dave):
    with pytest.raises(PermissionDenied, match=re.escape("Only the room's owner can delete it.")):
        room_settings.room_delete(room=room, actor=dave, confirm="Secret Plans")
    assert Room.objects.filter(pk=room.pk).exists()


def test_staff_deletes_from_the_admin(room, staff):
    room_settings.room_delete(room=room, actor=staff, confirm="Secret Plans", acting_as_staff=True)
    entry = last_entry()
    assert (entry.action, entry.as_staff) == (AuditLog.Action.DELETE_ROOM, True)


# --- The pages -----------------------------------------------------------------------


def test_the_settings_endpoints_work_for_the_owner(client, room, alice):
    client.force_login(alice)
    client.post(reverse("room-rename", kwargs={"slug": room.slug}), {"name": "Plans B"})
    client.post(reverse("room-topic", kwargs={"slug": room.slug}), {"topic": "Second try"})
    client.post(reverse("room-archive", kwargs={"slug": room.slug}), {})
    room.refresh_from_db()
    assert (room.name, room.topic, room.archived) == ("Plans B", "Second try", True)
    page = client.get(reverse("room-moderation", kwargs={"slug": room.slug})).content.decode()
    assert "Unarchive the room" in page and "Type <strong>Plans B</strong> to confirm" in page
    response = client.post(reverse("room-delete", kwargs={"slug": room.slug}), {"confirm": "nope"}, follow=True)
    assert "Type the room&#x27;s name, Plans B, to delete it." in response.content.decode()
    response = client.post(reverse("room-delete", kwargs={"slug": room.slug}), {"confirm": "Plans B"})
    assert response.status_code == 302 and response.url == reverse("room-list")
    assert not Room.objects.filter(pk=room.pk).exists()


@pytest.mark.parametrize("name", ["room-rename", "room-topic", "room-archive", "room-unarchive", "room-delete"])
def test_the_settings_endpoints_refuse_a_member_and_hide_the_room_from_an_outsider(client, room, bob, charlie, name):
    data = {"name": "Hijacked", "topic": "Hijacked", "confirm": "Secret Plans"}
    client.force_login(bob)
    assert client.post(reverse(name, kwargs={"slug": room.slug}), data).status_code == 403
    client.force_login(charlie)
    assert client.post(reverse(name, kwargs={"slug": room.slug}), data).status_code == 404
    room.refresh_from_db()
    assert (room.name, room.topic, room.archived) == ("Secret Plans", "", False)


def test_the_settings_endpoints_need_post(client, room, alice):
    client.force_login(alice)
    assert client.get(reverse("room-delete", kwargs={"slug": room.slug})).status_code == 405


# --- Invitations -----------------------------------------------------------------------


def test_an_invitation_notifies_the_invited_person(client, room, alice, charlie, sent_events):
    room_invite(room=room, by=alice, username="charlie")
    notification = Notification.objects.get(user=charlie)
    assert (notification.kind, notification.room, notification.from_user) == ("invite", room, alice)
    client.force_login(charlie)
    html = client.get(reverse("notifications")).content.decode()
    assert "alice" in html and "invited you to" in html and "Secret Plans" in html


def test_an_invitation_reaches_the_invited_persons_sockets_and_the_member_lists(
    room, alice, charlie, sent_events, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        room_invite(room=room, by=alice, username="charlie")
    groups = [group for group, _ in sent_events]
    assert groups == [f"room.{room.pk}", f"user.{charlie.pk}"]
    notify = sent_events[1][1]
    assert notify["type"] == "user.notify"
    assert '"kind":"invite"' in notify["frame"] and '"title":"Secret Plans"' in notify["frame"]


def test_inviting_a_member_says_they_are_one_and_notifies_nobody(client, room, alice, bob):
    client.force_login(alice)
    response = client.post(reverse("room-invite", kwargs={"slug": room.slug}), {"username": "BOB"}, follow=True)
    assert "bob is already a member." in [str(m) for m in response.context["messages"]]
    assert not Notification.objects.exists()


def test_nobody_is_notified_by_an_outsiders_invitation(room, charlie, make_user):
    make_user("frank")
    with pytest.raises(PermissionDenied):
        room_invite(room=room, by=charlie, username="frank")
    assert not Notification.objects.exists()


def test_the_room_list_names_archived_rooms_apart_for_their_members_only(client, room, alice, bob, charlie):
    room_settings.room_archive(room=room, actor=alice)
    client.force_login(bob)
    page = client.get(reverse("room-list"))
    assert room not in page.context["rooms"]
    assert page.context["archived_rooms"] == [room]
    assert "Archived" in page.content.decode()
    client.force_login(charlie)
    page = client.get(reverse("room-list"))
    assert page.context["archived_rooms"] == []
    assert "Secret Plans" not in page.content.decode()


def test_the_database_refuses_an_archived_direct_conversation(alice, bob):
    from django.db import IntegrityError, transaction

    from rooms.services import direct_open

    dm = direct_open(opener=alice, usernames=["bob"])
    with pytest.raises(IntegrityError), transaction.atomic():
        Room.objects.filter(pk=dm.pk).update(archived=True)
