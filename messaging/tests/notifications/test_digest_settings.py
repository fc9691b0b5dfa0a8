"""The e-mail digests obey the notification settings: a room set to "nothing", or snoozed, is
left out; a direct message is digested like a mention."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from accounts.models import Profile
from messaging.models import Message, Notification
from messaging.notifications.digests import mention_digests_send
from rooms.models import Membership
from rooms.services import direct_open

pytestmark = pytest.mark.django_db

T0 = timezone.now().replace(microsecond=0)
LATER = T0 + timedelta(minutes=11)


@pytest.fixture
def bob(make_user):
    user = make_user("bob")
    user.email = "bob@example.com"
    user.save()
    Profile.objects.create(user=user, email_verified=True)
    return user


def notify(room, author, user, body, *, kind=Notification.Kind.MENTION) -> Notification:
    seq = (Message.objects.filter(room=room).order_by("-seq").values_list("seq", flat=True).first() or 0) + 1
    Message.objects.create(room=room, seq=seq, author=author, body=body, client_id=uuid.uuid4(), sent_at=T0)
    return Notification.objects.create(
        user=user, room=room, seq=seq, kind=kind, from_user=author, excerpt=body[:200], created_at=T0
    )


def test_it_leaves_out_a_room_set_to_nothing_since_the_mention(alice, bob, private_room):
    notify(private_room, alice, bob, "@bob look")
    Membership.objects.filter(room=private_room, user=bob).update(notify_level="nothing")

    assert mention_digests_send(now=LATER) == 0
    assert mail.outbox == []


def test_it_leaves_out_a_snoozed_room_and_never_digests_it_later(alice, bob, private_room):
    notify(private_room, alice, bob, "@bob look")
    Membership.objects.filter(room=private_room, user=bob).update(
        notifications_snoozed_until=LATER + timedelta(hours=1)
    )

    assert mention_digests_send(now=LATER) == 0
    assert mail.outbox == []
    # Passed over: the snooze ending does not dig it up again.
    assert mention_digests_send(now=LATER + timedelta(hours=2)) == 0
    assert mail.outbox == []


def test_it_digests_the_other_rooms_of_a_user_who_silenced_one(alice, bob, private_room, public_room):
    Membership.objects.create(room=public_room, user=bob, notify_level="nothing")
    notify(public_room, alice, bob, "@bob in the lobby")
    notify(private_room, alice, bob, "@bob in secret")

    assert mention_digests_send(now=LATER) == 1

    (email,) = mail.outbox
    assert "@bob in secret" in email.body
    assert "@bob in the lobby" not in email.body


def test_it_digests_a_direct_message_like_a_mention(alice, bob):
    room = direct_open(opener=alice, usernames=["bob"])
    notify(room, alice, bob, "lunch at noon?", kind=Notification.Kind.DIRECT)

    assert mention_digests_send(now=LATER) == 1

    (email,) = mail.outbox
    assert email.subject == "alice sent you a direct message"
    assert "alice in a direct message:" in email.body
    assert "lunch at noon?" in email.body
