"""``member_joined`` from the first subscribes' batches (rooms.joins, on the event loop): recorded
for the rooms whose endpoints ask for it, and no trip to Django's database thread for the others."""

from __future__ import annotations

import orjson
import pytest
from channels.db import database_sync_to_async

from outgoing_webhooks import events, services
from outgoing_webhooks.models import WebhookDelivery, WebhookEndpoint
from pubsub_site import async_db
from rooms import joins
from rooms.joins import NewMember, amembers_joined_hooks
from rooms.services import room_create

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("async_cleanup", "loopback_allowed")]


def joined(room, *users) -> list[NewMember]:
    return [
        NewMember(room_id=room.pk, room_slug=room.slug, user_id=u.pk, username=u.username, role="member") for u in users
    ]


@pytest.fixture
def thread_trips(monkeypatch):
    """The batches that reached the synchronous hook (in Django's database thread)."""
    trips = []
    record = events.members_joined

    def counted(members):
        trips.append([m.username for m in members])
        return record(members)

    if hasattr(record, "aio"):
        counted.aio = record.aio
    monkeypatch.setattr(events, "members_joined", counted)
    monkeypatch.setattr(joins, "MEMBERS_JOINED", [counted if hook is record else hook for hook in joins.MEMBERS_JOINED])
    return trips


async def test_a_batch_in_rooms_that_want_no_member_joined_makes_no_trip_to_the_database_thread(
    alice, bob, charlie, public_room, thread_trips
):
    await database_sync_to_async(services.endpoint_create)(
        room=public_room, actor=alice, url="http://127.0.0.1:8080/hook", events=[WebhookEndpoint.Event.MESSAGE.value]
    )
    quiet, _ = await database_sync_to_async(services.endpoint_create)(
        room=public_room,
        actor=alice,
        url="http://127.0.0.1:8080/off",
        events=[WebhookEndpoint.Event.MEMBER_JOINED.value],
    )
    await database_sync_to_async(WebhookEndpoint.objects.filter(pk=quiet.pk).update)(active=False)
    other = await database_sync_to_async(room_create)(creator=alice, name="No hooks", visibility="public")

    await amembers_joined_hooks(joined(public_room, bob) + joined(other, charlie))

    # On PostgreSQL the rooms' endpoints are read on the event loop; elsewhere (SQLite, in
    # development) the hook runs in the database thread, which finds nothing to record.
    assert thread_trips == ([] if async_db.native() else [["bob", "charlie"]])
    assert await database_sync_to_async(WebhookDelivery.objects.count)() == 0


async def test_a_batch_with_a_room_that_wants_member_joined_records_it_for_that_room_only(
    alice, bob, charlie, public_room, thread_trips
):
    endpoint, _ = await database_sync_to_async(services.endpoint_create)(
        room=public_room,
        actor=alice,
        url="http://127.0.0.1:8080/hook",
        events=[WebhookEndpoint.Event.MESSAGE.value, WebhookEndpoint.Event.MEMBER_JOINED.value],
    )
    other = await database_sync_to_async(room_create)(creator=alice, name="No hooks", visibility="public")

    await amembers_joined_hooks(joined(public_room, bob, charlie) + joined(other, alice))

    assert thread_trips == [["bob", "charlie", "alice"]]
    recorded = await database_sync_to_async(
        lambda: sorted(
            (d.endpoint_id, d.type, orjson.loads(d.payload)["data"]["user"]["username"])
            for d in WebhookDelivery.objects.all()
        )
    )()
    assert recorded == [(endpoint.pk, "member_joined", "bob"), (endpoint.pk, "member_joined", "charlie")]
