"""Messages show their author's display name (from the member list's profiles), with the
username on hover; an author without one shows by username."""

from __future__ import annotations

import uuid

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import Profile
from messaging.models import Message

pytestmark = pytest.mark.django_db


def say(room, author, body: str, seq: int) -> None:
    Message.objects.create(room=room, seq=seq, author=author, body=body, client_id=uuid.uuid4(), sent_at=timezone.now())


def test_a_message_shows_its_authors_display_name_and_the_username_on_hover(alice, bob, private_room):
    Profile.objects.create(user=bob, display_name="Bob Builder")
    say(private_room, bob, "can we fix it?", 1)
    say(private_room, alice, "yes we can", 2)
    browser = Client()
    browser.force_login(alice)

    page = browser.get(private_room.get_absolute_url()).content.decode()

    assert 'title="@bob: send a direct message">Bob Builder</button>' in page
    assert '<span class="message__author" title="@alice">alice</span>' in page
    assert 'data-username="bob" data-display-name="Bob Builder"' in page


def test_the_room_page_reads_the_display_names_with_the_member_list(
    alice, bob, private_room, make_user, django_assert_max_num_queries
):
    from rooms.models import Membership

    people = [make_user(f"member{i}") for i in range(8)]
    for i, person in enumerate(people):
        Membership.objects.create(room=private_room, user=person)
        Profile.objects.create(user=person, display_name=f"Member {i}")
        say(private_room, person, f"hello {i}", i + 1)
    browser = Client()
    browser.force_login(alice)
    browser.get(private_room.get_absolute_url())  # warm: sessions, the room's counters

    with django_assert_max_num_queries(40) as queries:
        page = browser.get(private_room.get_absolute_url()).content.decode()

    assert all(f">Member {i}</button>" in page for i in range(8))
    assert not [q for q in queries.captured_queries if 'FROM "accounts_profile"' in q["sql"] and "IN (" not in q["sql"]]
