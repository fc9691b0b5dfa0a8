"""Pins from the admin: the moderation act with staff rights (audited, live), and reactions
and pins listed but never edited there.

alice owns the room, dave moderates it, bob is a member; staff runs the admin.
"""

import json

import pytest
from django.urls import reverse

from messaging.models import Message, Pin, Reaction
from messaging.pins import room_pins_list
from messaging.store.persistence import messages_persist_server
from rooms.models import AuditLog
from rooms.tests.conftest import post_message

pytestmark = pytest.mark.django_db


def run_action(client, changelist: str, action: str, objects) -> list[str]:
    response = client.post(
        reverse(f"admin:{changelist}"), {"action": action, "_selected_action": [o.pk for o in objects]}, follow=True
    )
    assert response.status_code == 200
    return [str(m) for m in response.context["messages"]]


def test_staff_pins_and_unpins_from_the_admin_through_the_audited_act(
    client, staff, room, bob, sent_events, django_capture_on_commit_callbacks
):
    seq = post_message(room, bob, "house rules")
    messages_persist_server(server=0)
    message = Message.objects.get(room=room, seq=seq)
    client.force_login(staff)
    with django_capture_on_commit_callbacks(execute=True):
        said = run_action(client, "messaging_message_changelist", "pin_messages", [message])
    assert said == ["1 message(s) pinned."]
    assert [p["seq"] for p in room_pins_list(room_id=room.pk)] == [seq]
    frames = [json.loads(event["frame"]) for _, event in sent_events]
    assert [(f["type"], f["seq"], f["pinned"], f["by"]["username"]) for f in frames] == [("pinned", seq, True, "staff")]
    said = run_action(client, "messaging_message_changelist", "pin_messages", [message])
    assert said == [f"#{seq} in {room.pk}: The message is already pinned."]
    messages_persist_server(server=0)
    pin = Pin.objects.get()
    assert pin.pinned_by == staff
    assert client.get(reverse("admin:messaging_pin_changelist")).status_code == 200
    assert run_action(client, "messaging_pin_changelist", "unpin", [pin]) == ["1 message(s) unpinned."]
    assert room_pins_list(room_id=room.pk) == []
    entries = list(AuditLog.objects.order_by("pk").values_list("action", "seq", "target", "as_staff"))
    assert entries == [("pin_message", seq, bob.pk, True), ("unpin_message", seq, bob.pk, True)]


def test_reactions_and_pins_are_listed_but_not_edited_in_the_admin(client, staff, room, bob):
    seq = post_message(room, bob, "hello")
    messages_persist_server(server=0)
    reaction = Reaction.objects.create(message=Message.objects.get(room=room, seq=seq), user=bob, emoji="👍")
    client.force_login(staff)
    listing = client.get(reverse("admin:messaging_reaction_changelist"))
    assert listing.status_code == 200 and "👍" in listing.content.decode()
    assert client.get(reverse("admin:messaging_reaction_add")).status_code == 403
    assert client.get(reverse("admin:messaging_reaction_delete", args=[reaction.pk])).status_code == 403
    assert (
        client.post(reverse("admin:messaging_reaction_change", args=[reaction.pk]), {"emoji": "👎"}).status_code == 403
    )
    reaction.refresh_from_db()
    assert reaction.emoji == "👍"
    assert client.get(reverse("admin:messaging_pin_add")).status_code == 403


def test_a_moderator_pins_but_a_member_or_a_direct_conversation_cannot(room, dave, bob, alice):
    from django.core.exceptions import PermissionDenied

    from messaging.pins import room_message_pin
    from rooms.services import direct_open

    seq = post_message(room, bob, "pin me")
    room_message_pin(room=room, actor=dave, seq=seq, pinned=True)
    assert AuditLog.objects.get().actor == dave
    with pytest.raises(PermissionDenied):
        room_message_pin(room=room, actor=bob, seq=seq, pinned=False)
    direct = direct_open(opener=alice, usernames=["bob"])
    dm_seq = post_message(direct, alice, "between us")
    with pytest.raises(PermissionDenied, match="no moderators"):
        room_message_pin(room=direct, actor=alice, seq=dm_seq, pinned=True)
