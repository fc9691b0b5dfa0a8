"""aroom_counters: a room's (seq, rev) from the event loop, Redis first, PostgreSQL when Redis lost them."""

import asyncio

import pytest
from channels.db import database_sync_to_async

from messaging import selectors
from messaging.selectors import aroom_counters, room_counters
from messaging.store import buffer
from messaging.store.persistence import messages_persist_server
from pubsub_site.redis.client import get_redis
from rooms.tests.conftest import post_message

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("async_cleanup")]


@pytest.fixture
def room_with_three_messages(alice, public_room):
    """Three messages in the room, written to PostgreSQL as the job does."""
    for body in ("one", "two", "three"):
        post_message(public_room, alice, body)
    messages_persist_server(server=0)
    return public_room


async def test_it_matches_room_counters_when_redis_holds_them_without_a_database_hop(
    room_with_three_messages, monkeypatch
):
    public_room = room_with_three_messages
    expected = await database_sync_to_async(room_counters)(room_id=public_room.pk)
    assert expected[0] == 3

    def no_hop(func):
        raise AssertionError(f"database hop for {func.__name__}")

    monkeypatch.setattr(selectors, "database_sync_to_async", no_hop)
    assert await aroom_counters(room_id=public_room.pk) == expected


@pytest.mark.postgresql_only(reason="PostgreSQL is read on the event loop (async_db); other databases take the hop")
async def test_it_matches_room_counters_after_redis_was_flushed_and_fills_redis_again(
    room_with_three_messages, monkeypatch
):
    public_room = room_with_three_messages
    before = await database_sync_to_async(room_counters)(room_id=public_room.pk)
    await database_sync_to_async(get_redis(public_room.pk).flushdb)()
    assert await buffer.acounters(room_id=public_room.pk) is None

    def no_hop(func):
        raise AssertionError(f"database hop for {func.__name__}")

    with monkeypatch.context() as patched:
        patched.setattr(selectors, "database_sync_to_async", no_hop)  # PostgreSQL is read on the loop
        assert await aroom_counters(room_id=public_room.pk) == before
    assert await buffer.acounters(room_id=public_room.pk) == before
    assert await database_sync_to_async(room_counters)(room_id=public_room.pk) == before


async def test_it_reads_room_counters_from_the_database_after_redis_was_flushed(room_with_three_messages):
    """On every database: what the job wrote gives Redis its counters back (on SQLite through the hop)."""
    public_room = room_with_three_messages
    before = await database_sync_to_async(room_counters)(room_id=public_room.pk)
    await database_sync_to_async(get_redis(public_room.pk).flushdb)()
    assert await aroom_counters(room_id=public_room.pk) == before == (3, 3)
    assert await buffer.acounters(room_id=public_room.pk) == before


async def test_a_room_without_messages_counts_zero(public_room):
    assert await aroom_counters(room_id=public_room.pk) == (0, 0)


async def test_subscribers_arriving_together_after_redis_was_flushed_read_each_room_once(
    room_with_three_messages, private_room, monkeypatch
):
    """A room's first twenty subscribers come together (a new room, Redis restarted empty):
    one read of each room and one initialisation, not one each; every caller gets the counters."""
    public_room = room_with_three_messages
    before = await database_sync_to_async(room_counters)(room_id=public_room.pk)
    await database_sync_to_async(get_redis(public_room.pk).flushdb)()
    reads: list[int] = []
    real = selectors._aroom_counters

    async def counting(*, room_id):
        reads.append(room_id)
        return await real(room_id=room_id)

    monkeypatch.setattr(selectors, "_aroom_counters", counting)
    rooms = [public_room.pk] * 20 + [private_room.pk] * 5
    answers = await asyncio.gather(*(aroom_counters(room_id=room_id) for room_id in rooms))
    assert answers == [before] * 20 + [(0, 0)] * 5
    assert sorted(reads) == sorted([public_room.pk, private_room.pk])
