"""First visits to public rooms (rooms.joins): many at once in one transaction, every right kept."""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from channels.db import database_sync_to_async
from django.db import connection

from rooms import joins, services
from rooms.models import Membership
from rooms.services import RoomBanned, room_access_for_subscriber, room_create


def test_a_membership_that_exists_is_left_as_it_is(public_room, bob, charlie):
    Membership.objects.create(room=public_room, user=bob, banned=True)
    found = joins.memberships_join_public(pairs=[(public_room.pk, bob.pk), (public_room.pk, charlie.pk)])
    assert found[(public_room.pk, bob.pk)].banned
    assert not found[(public_room.pk, bob.pk)].created
    assert found[(public_room.pk, charlie.pk)] == joins.Joined(
        role=Membership.Role.MEMBER, muted_until=None, banned=False, created=True
    )
    assert Membership.objects.filter(room=public_room, user=bob, banned=True).count() == 1
    assert Membership.objects.filter(room=public_room, user=charlie, banned=False).count() == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("async_cleanup")
async def test_a_batch_from_the_event_loop_leaves_what_exists_and_makes_rows_as_the_orm_would(
    public_room, bob, charlie, make_user
):
    await database_sync_to_async(Membership.objects.create)(
        room=public_room, user=bob, banned=True, role=Membership.Role.SPECTATOR
    )
    dave = await database_sync_to_async(make_user)("dave")
    pairs = [(public_room.pk, bob.pk), (public_room.pk, charlie.pk), (public_room.pk, dave.pk)]
    found = await joins.amemberships_join_public(pairs=pairs + pairs[:1])
    assert found == {
        (public_room.pk, bob.pk): joins.Joined(
            role=Membership.Role.SPECTATOR, muted_until=None, banned=True, created=False
        ),
        (public_room.pk, charlie.pk): joins.Joined(
            role=Membership.Role.MEMBER, muted_until=None, banned=False, created=True
        ),
        (public_room.pk, dave.pk): joins.Joined(
            role=Membership.Role.MEMBER, muted_until=None, banned=False, created=True
        ),
    }
    # The new rows hold every field's default, as Membership(...) and the ORM's write would.
    made = await database_sync_to_async(
        lambda: {m.user_id: m for m in Membership.objects.filter(room=public_room, user__in=[charlie, dave])}
    )()
    reference = Membership(room=public_room, user=charlie)
    for membership in made.values():
        for field in Membership._meta.concrete_fields:
            if field.name not in {"id", "user", "joined_at"}:
                assert getattr(membership, field.attname) == getattr(reference, field.attname), field.name
        assert membership.joined_at is not None
    # Again: nothing is made twice, and each row is read as it stands.
    again = await joins.amemberships_join_public(pairs=pairs)
    assert [again[pair].created for pair in pairs] == [False, False, False]
    assert again[(public_room.pk, bob.pk)].banned
    assert await database_sync_to_async(Membership.objects.filter(room=public_room).count)() == 4


@pytest.mark.postgresql_only(reason="the batch is one statement on the event loop on PostgreSQL only")
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("async_cleanup")
async def test_a_row_another_process_commits_while_the_batch_waits_on_it_is_read_and_not_counted_as_made(
    public_room, bob, charlie, async_db_queries
):
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    other = await psycopg.AsyncConnection.connect(**params)  # another process's join, not committed yet
    try:
        await other.execute(
            "INSERT INTO rooms_membership (room_id, user_id, role, joined_at, last_read_seq, banned, notify_level)"
            " VALUES (%s, %s, 'spectator', now(), 0, false, 'mentions')",
            [public_room.pk, bob.pk],
        )
        batch = asyncio.ensure_future(
            joins.amemberships_join_public(pairs=[(public_room.pk, bob.pk), (public_room.pk, charlie.pk)])
        )
        await asyncio.sleep(0.3)
        assert not batch.done()  # the insert waits on the uncommitted row's conflict
        await other.commit()
        found = await asyncio.wait_for(batch, timeout=10)
    finally:
        await other.close()
    assert found[(public_room.pk, bob.pk)] == joins.Joined(
        role=Membership.Role.SPECTATOR, muted_until=None, banned=False, created=False
    )
    assert found[(public_room.pk, charlie.pk)].created
    # The statement's snapshot was older than the other's commit: bob's row was read again.
    assert [p[:2] for p in async_db_queries] == [
        [[public_room.pk, public_room.pk], [bob.pk, charlie.pk]],
        [[public_room.pk], [bob.pk]],
    ]


def test_a_subscriber_banned_between_the_read_and_the_join_is_refused(public_room, bob, monkeypatch):
    read = services._room_access_row

    def read_then_ban(**kwargs):
        row = read(**kwargs)  # no membership yet: the subscribe goes on to join
        Membership.objects.create(room=public_room, user=bob, banned=True)  # a moderator, meanwhile
        return row

    monkeypatch.setattr(services, "_room_access_row", read_then_ban)
    with pytest.raises(RoomBanned):
        room_access_for_subscriber(slug=public_room.slug, user_id=bob.pk)
    assert list(Membership.objects.filter(room=public_room, user=bob).values_list("banned", flat=True)) == [True]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("async_cleanup")
async def test_first_visits_at_once_are_written_in_one_batch(alice, make_user, monkeypatch):
    rooms = [
        await database_sync_to_async(room_create)(creator=alice, name=f"Room {i}", visibility="public")
        for i in range(2)
    ]
    users = [await database_sync_to_async(make_user)(f"user{i}") for i in range(30)]
    batches = []
    write = joins.amemberships_join_public

    async def counted(*, pairs):
        batches.append(list(pairs))
        return await write(pairs=pairs)

    monkeypatch.setattr(joins, "amemberships_join_public", counted)
    visits = [(room, user) for room in rooms for user in users]
    # Each visit twice: two tabs of the same user subscribing at the same moment.
    results = await asyncio.gather(
        *(
            joins.ajoin_public_room(room_id=room.pk, room_slug=room.slug, user_id=user.pk, username=user.username)
            for room, user in visits + visits
        )
    )
    assert len(batches) == 1
    assert sorted(batches[0]) == sorted((room.pk, user.pk) for room, user in visits)
    assert all(r.role == Membership.Role.MEMBER and not r.banned and r.created for r in results)
    counts = await database_sync_to_async(
        lambda: Membership.objects.filter(room__in=rooms).exclude(user=alice).count()
    )()
    assert counts == len(visits)
    # Members now: a second visit writes nothing.
    again = await joins.ajoin_public_room(
        room_id=rooms[0].pk, room_slug=rooms[0].slug, user_id=users[0].pk, username=users[0].username
    )
    assert not again.created and len(batches) == 2


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("async_cleanup")
async def test_a_failed_batch_fails_its_subscribes_and_the_next_one_is_written(public_room, bob, charlie, monkeypatch):
    write = joins.amemberships_join_public
    calls = []

    async def fails_once(*, pairs):
        calls.append(pairs)
        if len(calls) == 1:
            raise RuntimeError("the database went away")
        return await write(pairs=pairs)

    monkeypatch.setattr(joins, "amemberships_join_public", fails_once)
    with pytest.raises(RuntimeError):
        await joins.ajoin_public_room(
            room_id=public_room.pk, room_slug=public_room.slug, user_id=bob.pk, username="bob"
        )
    joined = await joins.ajoin_public_room(
        room_id=public_room.pk, room_slug=public_room.slug, user_id=charlie.pk, username="charlie"
    )
    assert joined.created
    members = await database_sync_to_async(
        lambda: set(Membership.objects.filter(room=public_room).values_list("user__username", flat=True))
    )()
    assert members == {"alice", "charlie"}
