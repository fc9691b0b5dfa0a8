"""The room's open pages follow its members and settings live (issue 21, defect 4 and the
room settings), over real WebSockets, Redis and the channel layer.

alice owns the rooms, bob is a member with the room open, charlie is an outsider who
hears nothing of a private room until he is invited; frank joins the public room.
"""

import asyncio
import uuid

import pytest
from channels.db import database_sync_to_async

from messaging.notifications.invites import room_invite
from messaging.tests.wsclient import connected
from rooms import moderation, room_settings
from rooms.services import room_join, room_leave

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("async_cleanup")]

# Only the frames these tests are about are skipped when they are not looked for.
PAGE = frozenset({"presence", "presence_diff", "unread", "typing", "clap_board"})


async def next_of(ws, frame_type: str, timeout: float = 5) -> dict:
    return await ws.recv_type(frame_type, timeout=timeout)


async def test_the_member_list_hears_of_a_join_and_a_leave(alice, bob, public_room, make_user):
    frank = await database_sync_to_async(make_user)("frank")
    bob_ws = await connected(bob, ignore=PAGE)
    await bob_ws.subscribe(public_room.slug)
    await database_sync_to_async(room_join)(room=public_room, user=frank)
    joined = await next_of(bob_ws, "member_updated")
    assert joined == {
        "type": "member_updated",
        "room": public_room.slug,
        "user": {"id": frank.pk, "username": "frank"},
        "role": "member",
        "details": 2,  # the room's details revision after the change: bob's first visit was the 1st
    }
    await database_sync_to_async(room_leave)(room=public_room, user=frank)
    left = await next_of(bob_ws, "member_left")
    assert left == {
        "type": "member_left",
        "room": public_room.slug,
        "user": {"id": frank.pk, "username": "frank"},
        "details": 3,
    }
    await bob_ws.close()


async def test_a_first_visit_over_the_socket_is_a_join_the_others_see(alice, bob, public_room):
    alice_ws = await connected(alice, ignore=PAGE)
    await alice_ws.subscribe(public_room.slug)
    bob_ws = await connected(bob, ignore=PAGE)
    await bob_ws.subscribe(public_room.slug)  # bob was no member: subscribing joined him
    joined = await next_of(alice_ws, "member_updated")
    assert (joined["user"]["username"], joined["role"]) == ("bob", "member")
    await alice_ws.close()
    await bob_ws.close()


async def test_a_promotion_and_a_removal_reach_the_member_list(alice, bob, charlie, public_room):
    await database_sync_to_async(room_join)(room=public_room, user=bob)
    await database_sync_to_async(room_join)(room=public_room, user=charlie)
    alice_ws = await connected(alice, ignore=PAGE)
    await alice_ws.subscribe(public_room.slug)
    await database_sync_to_async(moderation.membership_promote)(room=public_room, actor=alice, user=bob)
    promoted = await next_of(alice_ws, "member_updated")
    assert (promoted["user"]["username"], promoted["role"]) == ("bob", "moderator")
    await database_sync_to_async(moderation.membership_remove)(room=public_room, actor=alice, user=charlie)
    assert (await next_of(alice_ws, "member_left"))["user"]["username"] == "charlie"
    await alice_ws.close()


async def test_a_rename_and_a_topic_reach_the_members_and_not_the_outsider(alice, bob, charlie, private_room):
    bob_ws = await connected(bob, ignore=PAGE)
    await bob_ws.subscribe(private_room.slug)
    charlie_ws = await connected(charlie, ignore=frozenset({"presence", "presence_diff"}))
    await charlie_ws.send({"type": "subscribe", "room": private_room.slug})
    assert (await charlie_ws.recv_type("error"))["code"] == "not_found"
    await database_sync_to_async(room_settings.room_rename)(room=private_room, actor=alice, name="Open Plans")
    await database_sync_to_async(room_settings.room_set_topic)(room=private_room, actor=alice, topic="Tuesday")
    renamed = await next_of(bob_ws, "room_updated")
    assert (renamed["name"], renamed["topic"], renamed["archived"]) == ("Open Plans", "", False)
    assert (await next_of(bob_ws, "room_updated"))["topic"] == "Tuesday"
    assert await charlie_ws.nothing_more(1.0)
    await bob_ws.close()
    await charlie_ws.close()


async def test_an_archived_room_refuses_posts_live_and_says_so(alice, bob, private_room):
    bob_ws = await connected(bob, ignore=PAGE)
    await bob_ws.subscribe(private_room.slug)
    assert (await bob_ws.post(private_room.slug, "before"))["seq"] == 1
    await database_sync_to_async(room_settings.room_archive)(room=private_room, actor=alice)
    archived = await next_of(bob_ws, "room_updated")
    assert archived["archived"] is True
    await bob_ws.send(
        {"type": "send", "room": private_room.slug, "body": "after", "client_id": str(uuid.uuid4()), "ref": "x"}
    )
    refused = await next_of(bob_ws, "error")
    assert (refused["code"], refused["ref"]) == ("room_locked", "x")
    await bob_ws.close()


async def test_a_deleted_room_ends_every_members_subscription(alice, bob, private_room):
    bob_ws = await connected(bob, ignore=PAGE)
    await bob_ws.subscribe(private_room.slug)
    await database_sync_to_async(room_settings.room_delete)(room=private_room, actor=alice, confirm="Secret Plans")
    kicked = await next_of(bob_ws, "kicked")
    assert kicked == {"type": "kicked", "room": "secret-plans", "reason": "Secret Plans was deleted by alice."}
    await bob_ws.send({"type": "subscribe", "room": "secret-plans"})
    assert (await bob_ws.recv_type("error"))["code"] == "not_found"
    await bob_ws.close()


async def test_an_invitation_reaches_the_invited_persons_open_pages(alice, bob, charlie, private_room):
    charlie_ws = await connected(charlie, ignore=PAGE)
    bob_ws = await connected(bob, ignore=PAGE)
    await bob_ws.subscribe(private_room.slug)
    await database_sync_to_async(room_invite)(room=private_room, by=alice, username="charlie")
    notification = await next_of(charlie_ws, "notification")
    assert notification == {
        "type": "notification",
        "kind": "invite",
        "room": private_room.slug,
        "seq": 0,
        "from": {"id": alice.pk, "username": "alice"},
        "excerpt": "",
        "title": "Secret Plans",
    }
    joined = await next_of(bob_ws, "member_updated")
    assert joined["user"]["username"] == "charlie"
    # Invited, charlie may now subscribe.
    assert (await charlie_ws.subscribe(private_room.slug))["room"] == private_room.slug
    await asyncio.gather(charlie_ws.close(), bob_ws.close())
