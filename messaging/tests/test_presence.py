"""Presence in a room that fills up: coalesced diffs, a capped list with the count of all."""

import pytest

from messaging.tests.wsclient import connected

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("async_cleanup")]

NOT_PRESENCE = frozenset({"unread", "typing", "clap_board"})


@pytest.fixture
def crowd(make_user):
    return [make_user(f"fan{i}") for i in range(5)]


async def test_people_joining_within_the_interval_reach_the_room_as_one_presence_diff(alice, crowd, public_room):
    watch = await connected(alice, ignore=NOT_PRESENCE)
    await watch.subscribe(public_room.slug)
    assert (await watch.recv_type("presence"))["count"] == 1
    fans = []
    for user in crowd:
        fan = await connected(user)
        await fan.subscribe(public_room.slug)
        fans.append(fan)
    diff = await watch.recv_type("presence_diff")
    assert sorted(u["username"] for u in diff["joins"]) == [f"fan{i}" for i in range(5)]
    assert diff["leaves"] == [] and diff["count"] == 6
    assert await watch.nothing_more(1.5)  # one frame for five joins
    for fan in fans:
        await fan.close()
    await watch.close()


async def test_the_list_names_at_most_presence_list_max_people_and_counts_them_all(
    alice, bob, crowd, public_room, settings
):
    settings.PRESENCE_LIST_MAX = 3
    fans = []
    for user in crowd:
        fan = await connected(user)
        await fan.subscribe(public_room.slug)
        fans.append(fan)
    watch = await connected(alice, ignore=NOT_PRESENCE)
    await watch.subscribe(public_room.slug)
    presence = await watch.recv_type("presence")
    assert presence["count"] == 6
    assert [u["username"] for u in presence["online"]] == ["alice", "fan0", "fan1"]  # by name
    for fan in fans:
        await fan.close()
    await watch.close()


async def test_someone_who_came_and_went_within_the_interval_is_announced_as_gone(alice, bob, public_room):
    watch = await connected(alice, ignore=NOT_PRESENCE)
    await watch.subscribe(public_room.slug)
    await watch.recv_type("presence")
    visitor = await connected(bob)
    await visitor.subscribe(public_room.slug)
    await visitor.close()
    diff = await watch.recv_type("presence_diff")
    assert diff["joins"] == []
    assert [u["username"] for u in diff["leaves"]] == ["bob"] and diff["count"] == 1
    await watch.close()
