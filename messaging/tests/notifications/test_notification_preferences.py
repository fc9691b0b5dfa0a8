"""Notification settings per room: all, mentions only (the default), nothing, and snoozing;
direct conversations count every message as a mention (messaging.notifications.preferences)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from messaging.notifications.preferences import effective_level, recipients, should_notify
from rooms.models import Membership
from rooms.services import direct_open

pytestmark = pytest.mark.django_db

NOW = timezone.now()


def membership(room, user, **fields) -> Membership:
    row, _ = Membership.objects.update_or_create(room=room, user=user, defaults=fields)
    return row


def test_a_new_membership_hears_of_mentions_only(private_room, bob):
    row = Membership.objects.get(room=private_room, user=bob)

    assert row.notify_level == "mentions"
    assert effective_level(row, room=private_room) == "mentions"
    assert should_notify(row, room=private_room, mentioned=True)
    assert not should_notify(row, room=private_room, mentioned=False)


def test_a_reader_without_a_membership_hears_of_mentions_only(public_room):
    assert effective_level(None, room=public_room) == "mentions"
    assert should_notify(None, room=public_room, mentioned=True)
    assert not should_notify(None, room=public_room, mentioned=False)


def test_all_hears_every_message_and_nothing_hears_none(private_room, bob):
    loud = membership(private_room, bob, notify_level="all")
    assert should_notify(loud, room=private_room, mentioned=False)

    silent = membership(private_room, bob, notify_level="nothing")
    assert effective_level(silent, room=private_room) == "nothing"
    assert not should_notify(silent, room=private_room, mentioned=True)


def test_a_snoozed_room_is_silent_until_the_snooze_ends(private_room, bob):
    row = membership(private_room, bob, notify_level="all", notifications_snoozed_until=NOW + timedelta(hours=1))

    assert effective_level(row, room=private_room, now=NOW) == "nothing"
    assert not should_notify(row, room=private_room, mentioned=True, now=NOW)
    later = NOW + timedelta(hours=1, seconds=1)
    assert effective_level(row, room=private_room, now=later) == "all"
    assert should_notify(row, room=private_room, mentioned=False, now=later)


def test_the_moderation_mute_does_not_silence_notifications(private_room, bob):
    row = membership(private_room, bob, muted_until=NOW + timedelta(hours=1))

    assert should_notify(row, room=private_room, mentioned=True, now=NOW)


def test_in_a_direct_conversation_every_message_counts_as_a_mention(alice, bob):
    room = direct_open(opener=alice, usernames=["bob"])
    row = Membership.objects.get(room=room, user=bob)

    assert should_notify(row, room=room, mentioned=False)
    assert recipients(room=room, author_id=alice.pk, mentioned_user_ids=set()) == {bob.pk: "direct"}


def test_a_direct_conversation_set_to_nothing_notifies_no_one(alice, bob):
    room = direct_open(opener=alice, usernames=["bob"])
    membership(room, bob, notify_level="nothing")

    assert recipients(room=room, author_id=alice.pk, mentioned_user_ids={bob.pk}) == {}


def test_recipients_follow_each_members_setting(private_room, alice, bob, make_user):
    carol, dan, erin, fay = (make_user(name) for name in ("carol", "dan", "erin", "fay"))
    membership(private_room, carol, notify_level="all")
    membership(private_room, dan, notify_level="nothing")
    membership(private_room, erin, notify_level="all", notifications_snoozed_until=timezone.now() + timedelta(hours=8))
    membership(private_room, fay)  # mentions, not mentioned

    found = recipients(room=private_room, author_id=alice.pk, mentioned_user_ids={bob.pk, dan.pk, erin.pk})

    assert found == {bob.pk: "mention", carol.pk: "message"}


def test_a_mention_outranks_a_members_all_setting(private_room, alice, bob):
    membership(private_room, bob, notify_level="all")

    assert recipients(room=private_room, author_id=alice.pk, mentioned_user_ids={bob.pk}) == {bob.pk: "mention"}


def test_the_author_is_never_a_recipient(private_room, alice, bob):
    membership(private_room, alice, notify_level="all")

    assert recipients(room=private_room, author_id=alice.pk, mentioned_user_ids={alice.pk}) == {}


def test_an_outsider_mentioned_in_a_private_room_is_not_a_recipient(private_room, alice, charlie):
    assert recipients(room=private_room, author_id=alice.pk, mentioned_user_ids={charlie.pk}) == {}


def test_a_reader_of_a_public_room_without_a_membership_hears_of_a_mention(public_room, alice, charlie):
    assert recipients(room=public_room, author_id=alice.pk, mentioned_user_ids={charlie.pk}) == {charlie.pk: "mention"}


def test_a_banned_member_is_never_a_recipient(public_room, alice, charlie):
    membership(public_room, charlie, banned=True, notify_level="all")

    assert recipients(room=public_room, author_id=alice.pk, mentioned_user_ids={charlie.pk}) == {}


def test_an_inactive_account_is_never_a_recipient(public_room, private_room, alice, bob, charlie):
    membership(private_room, bob, notify_level="all")
    bob.is_active = charlie.is_active = False
    bob.save()
    charlie.save()

    assert recipients(room=private_room, author_id=alice.pk, mentioned_user_ids={bob.pk}) == {}
    assert recipients(room=public_room, author_id=alice.pk, mentioned_user_ids={charlie.pk}) == {}


def test_recipients_cost_two_queries_however_big_the_room(public_room, alice, make_user, django_assert_max_num_queries):
    people = [make_user(f"member{i}") for i in range(60)]
    for person in people[:50]:
        membership(public_room, person, notify_level="all" if person.pk % 2 else "mentions")
    outsiders = {p.pk for p in people[50:]}

    with django_assert_max_num_queries(2):
        found = recipients(room=public_room, author_id=alice.pk, mentioned_user_ids=outsiders | {people[0].pk})

    loud = {p.pk for p in people[:50] if p.pk % 2}
    assert {pk for pk, reason in found.items() if reason == "message"} == loud - {people[0].pk}
    assert {pk for pk, reason in found.items() if reason == "mention"} == outsiders | {people[0].pk}


def test_unread_mentions_are_those_after_the_read_marker(private_room, public_room, alice, bob):
    from asgiref.sync import async_to_sync

    from messaging.models import Notification
    from messaging.selectors import unread_mention_seqs
    from messaging.store import changes

    for seq in (3, 5, 9):
        Notification.objects.create(user=bob, room=private_room, seq=seq, from_user=alice, excerpt="@bob")
    Notification.objects.create(user=bob, room=private_room, seq=0, kind="invite", from_user=alice, excerpt="")
    Membership.objects.filter(room=private_room, user=bob).update(last_read_seq=3)

    assert unread_mention_seqs(user_id=bob.pk, room_ids=[private_room.pk, public_room.pk]) == {private_room.pk: [5, 9]}

    async_to_sync(changes.mark_read)(room_id=private_room.pk, user_id=bob.pk, seq=5)  # read live (Redis first)
    assert unread_mention_seqs(user_id=bob.pk, room_ids=[private_room.pk]) == {private_room.pk: [9]}
    async_to_sync(changes.mark_read)(room_id=private_room.pk, user_id=bob.pk, seq=9)
    assert unread_mention_seqs(user_id=bob.pk, room_ids=[private_room.pk]) == {}
