"""What the persistence job writes besides messages: read markers, in one statement per room."""

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.test.utils import CaptureQueriesContext

from messaging.store import changes
from messaging.store.persistence import reads_persist_room
from rooms.models import Membership

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
