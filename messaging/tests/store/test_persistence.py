"""What the persistence job writes: rounds fair to every room, and the read markers in one statement per room."""

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext

from messaging.models import Message
from messaging.store import changes, persistence
from messaging.store.persistence import messages_persist_server, reads_persist_room
from rooms.models import Membership
from rooms.services import room_create
from rooms.tests.conftest import post_message

pytestmark = pytest.mark.django_db(transaction=True)


def test_read_markers_of_every_member_are_raised_in_one_statement_and_never_lowered(alice, bob, charlie, public_room):
    for user in (bob, charlie):
        Membership.objects.create(room=public_room, user=user)
    Membership.objects.filter(room=public_room, user=charlie).update(last_read_seq=9)  # read further elsewhere
    for user, seq in ((alice, 4), (bob, 7), (charlie, 5)):
        async_to_sync(changes.mark_read)(room_id=public_room.pk, user_id=user.pk, seq=seq)

    with CaptureQueriesContext(connection) as queries:
        reads_persist_room(room_id=public_room.pk)

    assert len(queries) == 1
    markers = dict(Membership.objects.filter(room=public_room).values_list("user__username", "last_read_seq"))
    assert markers == {"alice": 4, "bob": 7, "charlie": 9}
    with CaptureQueriesContext(connection) as queries:
        reads_persist_room(room_id=public_room.pk)  # nothing new: no statement
    assert len(queries) == 0


def test_read_markers_of_more_than_two_hundred_members_are_raised_two_hundred_at_a_time(
    alice, public_room, django_user_model
):
    """SQLite bounds a statement's parameters: each statement names at most 200 members."""
    users = django_user_model.objects.bulk_create(django_user_model(username=f"reader{n}") for n in range(450))
    Membership.objects.bulk_create(Membership(room=public_room, user=user) for user in users)
    for n, user in enumerate(users):
        async_to_sync(changes.mark_read)(room_id=public_room.pk, user_id=user.pk, seq=n + 1)

    with CaptureQueriesContext(connection) as queries:
        reads_persist_room(room_id=public_room.pk)

    assert len(queries) == 3
    markers = dict(Membership.objects.filter(user__in=users).values_list("user__username", "last_read_seq"))
    assert markers == {f"reader{n}": n + 1 for n in range(450)}


def test_a_room_sent_to_while_it_is_persisted_does_not_hold_the_other_rooms_back(alice, public_room, monkeypatch):
    """A round takes what each dirty room holds when its turn comes; what arrives meanwhile is
    the next round's. Chasing a busy room's newest message wrote it one or two messages a batch,
    each paying its hooks' queries, while the other rooms' messages waited (PostgreSQL fell
    seconds behind at 1,500 sends a second)."""
    other = room_create(creator=alice, name="Other", visibility="public")
    post_message(public_room, alice, "busy 1")
    post_message(other, alice, "quiet 1")
    batches: list[tuple[int, list[str]]] = []

    def a_send_arrives_meanwhile(*, room_id, records):
        batches.append((room_id, [r["body"] for r in records]))
        arrived = sum(1 for room, _ in batches if room == public_room.pk)
        if room_id == public_room.pk and arrived <= 3:
            post_message(public_room, alice, f"busy {arrived + 1}")

    monkeypatch.setattr(persistence, "AFTER_BATCH", [a_send_arrives_meanwhile])
    monkeypatch.setattr(settings, "PERSIST_LINGER_SECONDS", 0)

    assert messages_persist_server(server=0) == 5

    assert public_room.pk < other.pk  # a round takes the dirty rooms by id: the busy one first
    assert [room for room, _ in batches[:2]] == [public_room.pk, other.pk], batches
    busy = [bodies for room, bodies in batches if room == public_room.pk]
    assert busy == [["busy 1"], ["busy 2"], ["busy 3"], ["busy 4"]]
    assert Message.objects.filter(room=public_room).count() == 4
    assert Message.objects.filter(room=other).count() == 1
