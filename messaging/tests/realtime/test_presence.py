"""Presence in a room that fills up: coalesced diffs, a capped list with the count of all."""

import asyncio
from urllib.parse import urlsplit

import pytest

from messaging import metrics
from messaging.realtime import presence
from messaging.store.keys import RoomKeys
from messaging.tests.wsclient import connected
from pubsub_site.redis.client import get_async_redis
from tests.faults.fixtures import make_proxy  # noqa: F401 (a fixture)

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
    await asyncio.sleep(presence.SAMPLE_SECONDS)  # the fans' sample is not alice's
    watch = await connected(alice, ignore=NOT_PRESENCE)
    await watch.subscribe(public_room.slug)
    online = await watch.recv_type("presence")
    assert online["count"] == 6
    assert [u["username"] for u in online["online"]] == ["alice", "fan0", "fan1"]  # by name
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


def _user(user) -> dict:
    return {"id": user.pk, "username": user.username, "spectator": False}


async def _online(room_id: int, *users) -> None:
    for user in users:
        member = presence.member_key(user_id=user.pk, username=user.username, spectator=False, channel="elsewhere")
        await presence.join(room_id=room_id, member=member)


async def test_news_that_come_while_the_room_was_just_told_go_out_when_the_interval_ends(
    alice, bob, crowd, public_room, settings
):
    # Two processes with news of the same room in the same second (here two calls of one
    # process, as each would make): the room hears the first at once, the second when the
    # interval of the first has passed, not both at once.
    settings.PRESENCE_COALESCE_SECONDS = 0.5
    watch = await connected(alice, ignore=NOT_PRESENCE)
    await watch.subscribe(public_room.slug)
    await watch.recv_type("presence")
    await asyncio.sleep(1.2)  # alice's own join told (not to her), and its interval over
    await _online(public_room.pk, bob, crowd[0])
    loop = asyncio.get_running_loop()
    started = loop.time()
    first, second = await asyncio.gather(
        presence.tell(room_id=public_room.pk, users={bob.pk: _user(bob)}),
        presence.tell(room_id=public_room.pk, users={crowd[0].pk: _user(crowd[0])}),
    )
    assert (first, second) == (True, True)
    one = await watch.recv_type("presence_diff")
    two = await watch.recv_type("presence_diff")
    assert [u["username"] for u in one["joins"]] == ["bob"]
    assert [u["username"] for u in two["joins"]] == ["fan0"] and two["count"] == 3
    assert loop.time() - started >= 0.45
    assert await watch.nothing_more(0.8)
    await watch.close()


async def test_a_process_leaves_its_news_to_whoever_tells_the_room_next(alice, bob, crowd, public_room, settings):
    # While the room was just told and a task already waits to tell it again, more news are
    # left in Redis and go out in that next frame: one frame for all of them.
    settings.PRESENCE_COALESCE_SECONDS = 0.5
    watch = await connected(alice, ignore=NOT_PRESENCE)
    await watch.subscribe(public_room.slug)
    await watch.recv_type("presence")
    await asyncio.sleep(1.2)
    await _online(public_room.pk, bob, *crowd[:3])
    assert await presence.tell(room_id=public_room.pk, users={bob.pk: _user(bob)})
    waiter = asyncio.create_task(presence.tell(room_id=public_room.pk, users={crowd[0].pk: _user(crowd[0])}))
    await asyncio.sleep(0.05)
    left = [await presence.tell(room_id=public_room.pk, users={fan.pk: _user(fan)}) for fan in crowd[1:3]]
    assert left == [False, False]  # left for the waiting task
    assert await waiter is True
    await watch.recv_type("presence_diff")
    diff = await watch.recv_type("presence_diff")
    assert sorted(u["username"] for u in diff["joins"]) == ["fan0", "fan1", "fan2"] and diff["count"] == 5
    assert await watch.nothing_more(0.8)
    keys = RoomKeys(public_room.pk)
    assert not await get_async_redis(public_room.pk).exists(keys.presence_news)
    await watch.close()


async def test_the_process_keeps_its_entries_alive_in_one_beat_and_sweeps_each_room_once(alice, bob, public_room):

    redis = get_async_redis(public_room.pk)
    key = RoomKeys(public_room.pk).presence
    ours = [presence.member_key(user_id=alice.pk, username="alice", spectator=False, channel=f"c{i}") for i in (1, 2)]
    dead = presence.member_key(user_id=bob.pk, username="bob", spectator=False, channel="of-a-dead-process")
    for member in ours:
        await presence.join(room_id=public_room.pk, member=member)
    await presence.join(room_id=public_room.pk, member=dead)
    await redis.zadd(key, {dead: presence._now() - 1})  # expired: its process stopped refreshing it
    before = {m: await redis.zscore(key, m) for m in ours}
    gone_calls = []

    async def on_gone(room_id, users):
        gone_calls.append((room_id, users))

    keeper = presence.PresenceKeeper(on_gone)
    for member in ours:
        keeper.entries.setdefault(public_room.pk, set()).add(member)
    await asyncio.sleep(0.01)
    await keeper.beat()

    after = {m: await redis.zscore(key, m) for m in ours}
    assert all(after[m] > before[m] for m in ours)  # pushed back
    assert await redis.zscore(key, dead) is None
    assert gone_calls == [(public_room.pk, [{"id": bob.pk, "username": "bob", "spectator": False}])]
    keeper.discard(public_room.pk, ours[0])
    keeper.discard(public_room.pk, ours[1])
    assert keeper.entries == {}


def _member(user_id: int, channel: str, *, spectator: bool = False) -> str:

    return presence.member_key(user_id=user_id, username=f"user{user_id}", spectator=spectator, channel=channel)


@pytest.mark.usefixtures("async_cleanup")
async def test_two_tabs_are_one_person_who_leaves_with_the_last_tab():

    room_id = 901
    first = await presence.join(room_id=room_id, member=_member(7, "tab-1"))
    second = await presence.join(room_id=room_id, member=_member(7, "tab-2"))
    again = await presence.join(room_id=room_id, member=_member(7, "tab-2"))  # a repeated join counts once
    assert (first.came_online, second.came_online, again.came_online) == (True, False, False)
    assert second.online.count == 1 and [u["id"] for u in second.online.users] == [7]
    assert await presence.leave(room_id=room_id, member=_member(7, "tab-1")) is False
    assert await presence.leave(room_id=room_id, member=_member(7, "tab-1")) is False  # already gone
    assert await presence.leave(room_id=room_id, member=_member(7, "tab-2")) is True
    assert not await get_async_redis(room_id).exists(RoomKeys(room_id).presence_users)


@pytest.mark.usefixtures("async_cleanup")
async def test_a_big_room_counts_everyone_and_lists_a_capped_sample(settings):

    settings.PRESENCE_LIST_MAX = 3
    room_id = 902
    for user_id in range(1, 41):
        joined = await presence.join(room_id=room_id, member=_member(user_id, f"c{user_id}", spectator=user_id > 2))
    assert joined.online.count == 40
    assert len(joined.online.users) == 3
    assert len({u["id"] for u in joined.online.users}) == 3
    five, absent = (
        {"id": 5, "username": "user5", "spectator": True},
        {"id": 99, "username": "user99", "spectator": False},
    )
    counts = RoomKeys(room_id).presence_users
    redis = get_async_redis(room_id)
    assert await redis.hlen(counts) == 40
    assert (await redis.hget(counts, five["id"]), await redis.hget(counts, absent["id"])) == (b"1", None)


@pytest.mark.usefixtures("async_cleanup")
async def test_a_sweep_announces_only_users_with_no_entry_left():
    room_id = 903
    redis = get_async_redis(room_id)
    key = RoomKeys(room_id).presence
    for member in (_member(1, "dead"), _member(1, "alive"), _member(2, "dead")):
        await presence.join(room_id=room_id, member=member)
    await redis.zadd(key, {_member(1, "dead"): presence._now() - 1, _member(2, "dead"): presence._now() - 1})
    beat = {room_id: {_member(1, "alive")}}  # the live process's entry
    gone = await presence.heartbeat(entries=beat)
    assert [u["id"] for u in gone[room_id]] == [2]  # user 1 still has a tab
    assert await presence.heartbeat(entries=beat) == {}
    assert await redis.hgetall(RoomKeys(room_id).presence_users) == {b"1": b"1"}


@pytest.mark.usefixtures("async_cleanup")
async def test_a_rooms_presence_keys_outlive_their_newest_entry_and_no_more(settings):
    # The entries of a process that died stay until a live process sweeps the room; when no
    # live process is left there, the keys themselves expire: nothing stays behind in Redis.

    settings.PRESENCE_TTL = 1
    room_id = 904
    redis = get_async_redis(room_id)
    keys = RoomKeys(room_id)
    await presence.join(room_id=room_id, member=_member(1, "dead"))
    for key in (keys.presence, keys.presence_users):
        assert 1000 < await redis.pttl(key) <= 2000  # PRESENCE_TTL and a second
    await asyncio.sleep(1.0)
    await presence.heartbeat(entries={room_id: {_member(1, "dead")}})  # a beat pushes both back
    assert await redis.pttl(keys.presence) > 1500 and await redis.pttl(keys.presence_users) > 1500
    await presence.join(room_id=room_id, member=_member(2, "alive"))
    settings.PRESENCE_TTL = 45
    await presence.heartbeat(entries={room_id: {_member(2, "alive")}})
    assert await redis.pttl(keys.presence) > 40_000  # a longer lifetime wins ...
    settings.PRESENCE_TTL = 1
    await presence.join(room_id=room_id, member=_member(3, "late"))
    assert await redis.pttl(keys.presence) > 40_000  # ... and is never shortened
    await redis.persist(keys.presence)  # a key written before keys had a lifetime gets one
    await presence.heartbeat(entries={room_id: {_member(3, "late")}})
    assert 0 < await redis.pttl(keys.presence) <= 2000


@pytest.mark.usefixtures("async_cleanup")
async def test_nothing_of_a_dead_processs_room_is_left_once_its_entries_expired(settings):

    settings.PRESENCE_TTL = 1
    room_id = 905
    redis = get_async_redis(room_id)
    keys = RoomKeys(room_id)
    for user_id in (1, 2, 3):
        await presence.join(room_id=room_id, member=_member(user_id, "killed"))  # and never a leave
    await asyncio.sleep(2.3)
    assert not await redis.exists(keys.presence, keys.presence_users)


@pytest.mark.usefixtures("async_cleanup")
async def test_one_heartbeat_refreshes_and_sweeps_every_room_of_the_process_at_once():

    rooms = range(910, 916)
    redis = get_async_redis(rooms[0])
    for room_id in rooms:
        await presence.join(room_id=room_id, member=_member(1, f"ours-{room_id}"))
        await presence.join(room_id=room_id, member=_member(room_id, "dead"))
        await redis.zadd(RoomKeys(room_id).presence, {_member(room_id, "dead"): presence._now() - 1})
    before = await redis.zscore(RoomKeys(rooms[0]).presence, _member(1, f"ours-{rooms[0]}"))
    await asyncio.sleep(0.01)
    gone = await presence.heartbeat(entries={room_id: {_member(1, f"ours-{room_id}")} for room_id in rooms})
    assert gone == {room_id: [{"id": room_id, "username": f"user{room_id}", "spectator": False}] for room_id in rooms}
    for room_id in rooms:
        assert await redis.zrange(RoomKeys(room_id).presence, 0, -1) == [_member(1, f"ours-{room_id}").encode()]
    assert await redis.zscore(RoomKeys(rooms[0]).presence, _member(1, f"ours-{rooms[0]}")) > before
    # An entry a sweep already dropped is not brought back by its process's beat.
    assert await presence.heartbeat(entries={rooms[0]: {_member(99, "swept")}}) == {}
    assert await redis.zscore(RoomKeys(rooms[0]).presence, _member(99, "swept")) is None


@pytest.mark.usefixtures("async_cleanup")
async def test_the_keeper_beats_a_slice_of_its_rooms_at_a_time_and_every_room_once_a_round(settings):
    # One slice a second, not every room at once every PRESENCE_HEARTBEAT: the work of a beat
    # is spread over the interval instead of a burst in every process at the same moment.

    settings.PRESENCE_HEARTBEAT = 3
    assert presence.beat_slices() == 3
    rooms = range(930, 936)
    redis = get_async_redis(rooms[0])

    async def on_gone(room_id, users):
        pass

    keeper = presence.PresenceKeeper(on_gone)
    for room_id in rooms:
        await presence.join(room_id=room_id, member=_member(1, f"k{room_id}"))
        keeper.entries[room_id] = {_member(1, f"k{room_id}")}

    async def scores():
        return {room_id: await redis.zscore(RoomKeys(room_id).presence, _member(1, f"k{room_id}")) for room_id in rooms}

    refreshed: list[int] = []
    for index in range(3):
        before = await scores()
        await asyncio.sleep(0.01)
        await keeper.beat(slice_of=(index, 3))
        after = await scores()
        now = [room_id for room_id in rooms if after[room_id] > before[room_id]]
        assert now == [room_id for room_id in rooms if room_id % 3 == index]
        refreshed += now
    assert sorted(refreshed) == list(rooms)


@pytest.mark.usefixtures("async_cleanup")
async def test_a_big_rooms_sample_is_read_once_a_second_per_process_a_small_rooms_list_every_time(settings):
    # In a room of more than PRESENCE_LIST_MAX people the list is a sample: the subscribers of
    # one process that arrive within SAMPLE_SECONDS share one read of it. A room that small
    # enough to be listed whole is read at every join, exact.
    settings.PRESENCE_LIST_MAX = 3
    big, small = 941, 942
    for user_id in range(10, 15):
        await presence.join(room_id=big, member=_member(user_id, f"b{user_id}"))
    first = await presence.join(room_id=big, member=_member(15, "b15"))
    early = await presence.join(room_id=big, member=_member(1, "b1"))  # "user1": first by name
    assert early.online.count == 7
    assert early.online.users == first.online.users and 1 not in {u["id"] for u in early.online.users}
    await asyncio.sleep(presence.SAMPLE_SECONDS)
    later = await presence.join(room_id=big, member=_member(16, "b16"))
    assert later.online.count == 8 and later.online.users[0]["id"] == 1

    await presence.join(room_id=small, member=_member(20, "s20"))
    joined = await presence.join(room_id=small, member=_member(2, "s2"))
    assert [u["id"] for u in joined.online.users] == [2, 20]


async def test_news_that_could_not_be_told_while_redis_was_out_of_reach_go_out_once_it_is_back(
    alice,
    bob,
    public_room,
    settings,
    make_proxy,  # noqa: F811 (the fixture)
):
    # The rooms' Redis behind a link that can be cut (the channel layer keeps its own).
    settings.PRESENCE_COALESCE_SECONDS = 0.3
    real = urlsplit(settings.ROOM_REDIS_URLS[0])
    link = make_proxy(real.port)
    settings.ROOM_REDIS_URLS = [real._replace(netloc=f"127.0.0.1:{link.port}").geturl()]
    watch = await connected(alice, ignore=NOT_PRESENCE)
    await watch.subscribe(public_room.slug)
    await watch.recv_type("presence")
    await asyncio.sleep(0.7)  # alice's own join told (not to her), and its interval over
    await _online(public_room.pk, bob)

    link.cut()
    deferred = metrics.PRESENCE_NEWS_DEFERRED._value.get()
    await presence.presence_broadcast(room_id=public_room.pk, joins=[_user(bob)], leaves=[])
    await asyncio.sleep(1.0)
    assert metrics.PRESENCE_NEWS_DEFERRED._value.get() > deferred  # tried, and kept
    assert await watch.nothing_more(0.1)

    link.restore()
    diff = await watch.recv_type("presence_diff", timeout=5)
    assert [u["username"] for u in diff["joins"]] == ["bob"] and diff["leaves"] == [] and diff["count"] == 2
    await watch.close()
