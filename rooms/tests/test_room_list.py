"""The room list counts every member of each room, whoever looks (issue 21, defect 3).

alice owns a private room with bob and dave in it (a banned erin does not count);
charlie, an outsider, does not see it at all.
"""

import pytest
from django.urls import reverse

from rooms.models import Membership
from rooms.selectors import room_list_for_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def team(private_room, make_user):
    """A private room of three: alice (owner), bob and dave; erin is banned from it."""
    Membership.objects.create(room=private_room, user=make_user("dave"))
    Membership.objects.create(room=private_room, user=make_user("erin"), banned=True)
    return private_room


def counts(user) -> dict[str, int]:
    return {room.name: room.member_count for room in room_list_for_user(user=user)}


def test_it_counts_every_member_of_a_private_room_for_each_member(alice, bob, team, public_room):
    assert counts(alice) == {"Lobby": 1, "Secret Plans": 3}
    assert counts(bob) == {"Lobby": 1, "Secret Plans": 3}


def test_it_counts_the_members_of_a_public_room_the_viewer_is_not_in(bob, charlie, public_room):
    Membership.objects.create(room=public_room, user=bob)
    assert counts(charlie) == {"Lobby": 2}


def test_an_outsider_does_not_see_the_private_room_or_its_count(charlie, team, public_room):
    assert counts(charlie) == {"Lobby": 1}


def test_the_room_list_page_shows_three_members(client, bob, charlie, team):
    client.force_login(bob)
    html = client.get(reverse("room-list")).content.decode()
    assert "3 members" in html
    client.force_login(charlie)
    assert "3 members" not in client.get(reverse("room-list")).content.decode()


def test_it_lists_each_room_once_in_one_query(alice, bob, team, public_room, django_assert_num_queries):
    Membership.objects.create(room=public_room, user=bob)
    with django_assert_num_queries(1):
        rooms = list(room_list_for_user(user=bob))
    assert [room.name for room in rooms] == ["Lobby", "Secret Plans"]
