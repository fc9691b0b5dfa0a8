"""A thousand first subscribes at once join their public rooms together: the room's pages
hear of each new member once (the first of a burst at once, the rest together), and every
subscriber gets its rights."""

import asyncio
import json

import pytest
from channels.db import database_sync_to_async

from messaging.tests.wsclient import AMBIENT, connected
from rooms.models import Membership
from rooms.moderation import membership_promote
from rooms.services import room_leave

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("async_cleanup")]


async def test_first_subscribes_at_once_tell_the_room_of_each_new_member_once(alice, bob, charlie, public_room):
    watcher = await connected(alice, ignore=AMBIENT - {"member_updated"})
    await watcher.subscribe(public_room.slug)
    # bob in two tabs and charlie, all subscribing at the same moment: their first visits
    sockets = [await connected(bob), await connected(bob), await connected(charlie)]
    subscribed = await asyncio.gather(*(socket.subscribe(public_room.slug) for socket in sockets))
    assert [frame["room"] for frame in subscribed] == [public_room.slug] * 3
    told = [await watcher.recv_type("member_updated"), await watcher.recv_type("member_updated")]
    assert sorted(frame["user"]["username"] for frame in told) == ["bob", "charlie"]
    assert {frame["role"] for frame in told} == {Membership.Role.MEMBER}
    assert await watcher.nothing_more(0.5)
    members = await database_sync_to_async(
        lambda: sorted(Membership.objects.filter(room=public_room).values_list("user__username", flat=True))
    )()
    assert members == ["alice", "bob", "charlie"]
    for socket in [watcher, *sockets]:
        await socket.close()


async def test_a_user_banned_before_their_first_visit_cannot_subscribe(bob, charlie, public_room):
    await database_sync_to_async(Membership.objects.create)(room=public_room, user=bob, banned=True)
    banned, newcomer = await connected(bob), await connected(charlie)
    await asyncio.gather(
        banned.send({"type": "subscribe", "room": public_room.slug, "ref": "b"}),
        newcomer.send({"type": "subscribe", "room": public_room.slug, "ref": "c"}),
    )
    assert (await banned.recv())["code"] == "banned"
    assert (await newcomer.recv_type("subscribed"))["ref"] == "c"
    await banned.close()
    await newcomer.close()


async def _frames_within(client, seconds: float) -> list[dict]:
    """Every frame (but ignored ones) the client gets within ``seconds``."""
    loop = asyncio.get_running_loop()
    deadline, got = loop.time() + seconds, []
    while (left := deadline - loop.time()) > 0 and not await client.ws.receive_nothing(timeout=left):
        frame = json.loads(await client.ws.receive_from())
        if frame["type"] not in client.ignore:
            got.append(frame)
    return got


async def test_a_burst_of_first_visits_is_told_to_the_room_at_once_for_the_first_then_together(
    settings, alice, bob, charlie, make_user, public_room
):
    settings.MEMBERS_JOINED_COALESCE_SECONDS = 2.0
    dave = await database_sync_to_async(make_user)("dave")
    watcher = await connected(alice, ignore=AMBIENT - {"member_updated"})
    await watcher.subscribe(public_room.slug)
    first = await connected(bob)
    await first.subscribe(public_room.slug)
    told_first = await watcher.recv_type("member_updated", timeout=1.5)  # at once, not at the interval's end
    assert told_first["user"]["username"] == "bob"
    later = [await connected(charlie), await connected(dave)]
    for socket in later:  # one after the other: two batches of first visits, within bob's interval
        await socket.subscribe(public_room.slug)
    told_later = [await watcher.recv_type("member_updated", timeout=4), await watcher.recv_type("member_updated")]
    assert sorted(frame["user"]["username"] for frame in told_later) == ["charlie", "dave"]
    # Told together: one change of the room's details for both, the one after bob's.
    assert [frame["details"] for frame in told_later] == [told_first["details"] + 1] * 2
    assert await watcher.nothing_more(0.5)
    for socket in [watcher, first, *later]:
        await socket.close()


async def test_the_members_of_a_burst_are_told_as_they_are_when_it_goes_out(
    settings, alice, bob, charlie, make_user, public_room
):
    settings.MEMBERS_JOINED_COALESCE_SECONDS = 2.0
    dave = await database_sync_to_async(make_user)("dave")
    watcher = await connected(alice, ignore=AMBIENT - {"member_updated", "member_left"})
    await watcher.subscribe(public_room.slug)
    first = await connected(bob)
    await first.subscribe(public_room.slug)
    assert (await watcher.recv_type("member_updated", timeout=1.5))["user"]["username"] == "bob"
    later = [await connected(charlie), await connected(dave)]
    for socket in later:  # within bob's interval: they wait for its end
        await socket.subscribe(public_room.slug)
    # Meanwhile charlie leaves and dave is made a moderator, each told at once.
    await database_sync_to_async(room_leave)(room=public_room, user=charlie)
    await database_sync_to_async(membership_promote)(room=public_room, actor=alice, user=dave)
    frames = await _frames_within(watcher, 3.5)
    told = [(frame["type"], frame["user"]["username"], frame.get("role")) for frame in frames]
    assert told == [
        ("member_left", "charlie", None),
        ("member_updated", "dave", Membership.Role.MODERATOR),  # the promotion
        ("member_updated", "dave", Membership.Role.MODERATOR),  # the burst, as dave is now; charlie is gone
    ]
    for socket in [watcher, first, *later]:
        await socket.close()
