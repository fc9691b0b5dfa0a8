"""room_access_for_subscriber, which every subscribe runs: one query, the same answers.

alice owns the rooms, bob is a member of the private one, charlie is an outsider."""

import asyncio
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from rooms.models import Membership
from rooms.services import RoomBanned, RoomNotFound, aroom_access_for_subscriber, room_access_for_subscriber

pytestmark = pytest.mark.django_db


def test_it_reads_a_members_rights_in_one_query(private_room, bob, django_assert_num_queries):
    until = timezone.now() + timedelta(hours=1)
    Membership.objects.filter(room=private_room, user=bob).update(role=Membership.Role.SPECTATOR, muted_until=until)
    private_room.locked, private_room.slow_mode_seconds = True, 30
    private_room.save()
    with django_assert_num_queries(1):
        access = room_access_for_subscriber(slug=private_room.slug, user_id=bob.pk)
    assert (access.room_id, access.slug, access.role, access.muted_until) == (
        private_room.pk,
        private_room.slug,
        Membership.Role.SPECTATOR,
        until,
    )
    assert (access.locked, access.slow_mode_seconds, access.can_post, access.is_muted()) == (True, 30, False, True)


def test_each_user_gets_their_own_membership_not_anothers(private_room, alice, bob):
    assert room_access_for_subscriber(slug=private_room.slug, user_id=alice.pk).role == Membership.Role.OWNER
    assert room_access_for_subscriber(slug=private_room.slug, user_id=bob.pk).role == Membership.Role.MEMBER


def test_an_outsider_of_a_private_room_is_told_it_does_not_exist_and_joins_nothing(
    private_room, charlie, django_assert_num_queries
):
    with django_assert_num_queries(1), pytest.raises(RoomNotFound):
        room_access_for_subscriber(slug=private_room.slug, user_id=charlie.pk)
    assert not Membership.objects.filter(room=private_room, user=charlie).exists()


def test_an_unknown_room_is_not_found(bob, django_assert_num_queries):
    with django_assert_num_queries(1), pytest.raises(RoomNotFound):
        room_access_for_subscriber(slug="nowhere", user_id=bob.pk)


def test_a_banned_member_is_refused_in_one_query(public_room, bob, django_assert_num_queries):
    Membership.objects.create(room=public_room, user=bob, banned=True)
    with django_assert_num_queries(1), pytest.raises(RoomBanned):
        room_access_for_subscriber(slug=public_room.slug, user_id=bob.pk)


def test_subscribing_to_a_public_room_joins_it_once_then_reads_in_one_query(
    public_room, bob, django_assert_num_queries
):
    # The read, then the join's INSERT and the read of the row it left (in a savepoint here, as the
    # test runs in a transaction: rooms.joins), then the username the room's member lists show (a
    # first visit only).
    with django_assert_num_queries(6):
        first = room_access_for_subscriber(slug=public_room.slug, user_id=bob.pk)
    membership = Membership.objects.get(room=public_room, user=bob)
    assert (first.role, membership.role) == (Membership.Role.MEMBER, Membership.Role.MEMBER)
    with django_assert_num_queries(1):
        again = room_access_for_subscriber(slug=public_room.slug, user_id=bob.pk)
    assert again == first
    assert Membership.objects.filter(room=public_room, user=bob).count() == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("async_cleanup")
@pytest.mark.postgresql_only(reason="subscribes read on the event loop (async_db), together, on PostgreSQL only")
async def test_subscribes_that_arrive_together_are_read_in_one_query_each_with_its_own_answer(
    private_room, public_room, alice, bob, charlie, async_db_queries
):
    await database_sync_to_async(Membership.objects.create)(room=public_room, user=charlie, banned=True)
    queries = async_db_queries
    asked = [
        (private_room.slug, alice),
        (private_room.slug, bob),
        (private_room.slug, charlie),  # an outsider of a private room
        (public_room.slug, charlie),  # banned
        ("nowhere", bob),
        ("bad\x00slug", bob),  # a slug PostgreSQL cannot take is not found, and fails no one else's read
        (public_room.slug, alice),
    ]
    answers = await asyncio.gather(
        *(aroom_access_for_subscriber(slug=slug, user_id=user.pk, username=user.username) for slug, user in asked),
        return_exceptions=True,
    )
    assert [answer.role if not isinstance(answer, Exception) else type(answer) for answer in answers] == [
        Membership.Role.OWNER,
        Membership.Role.MEMBER,
        RoomNotFound,
        RoomBanned,
        RoomNotFound,
        RoomNotFound,
        Membership.Role.OWNER,
    ]
    assert answers[1].room_id == private_room.pk and answers[6].room_id == public_room.pk
    assert len(queries) == 1
