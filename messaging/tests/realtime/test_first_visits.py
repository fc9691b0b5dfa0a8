"""A thousand first subscribes at once join their public rooms together: the room's pages
hear of each new member once, and every subscriber gets its rights."""

import asyncio

import pytest
from channels.db import database_sync_to_async

from messaging.tests.wsclient import AMBIENT, connected
from rooms.models import Membership

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
