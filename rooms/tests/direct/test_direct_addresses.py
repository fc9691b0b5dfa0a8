"""A direct conversation's page and address name the people in it, its page has no clap
board (issue 21); the random addresses of before still lead there, for its people only.

alice and bob talk; charlie, an outsider, learns nothing from either address.
"""

import re

import pytest
from django.urls import reverse

from rooms.models import RoomSlugAlias
from rooms.services import direct_open

pytestmark = pytest.mark.django_db


@pytest.fixture
def dm(alice, bob):
    return direct_open(opener=alice, usernames=["bob"])


def test_the_address_names_the_people_and_stays_unique(alice, bob, make_user):
    carol = make_user("Carol.S")
    first = direct_open(opener=alice, usernames=["bob"])
    group = direct_open(opener=bob, usernames=["alice", "Carol.S"])
    assert re.fullmatch(r"alice-bob-[0-9a-f]{8}", first.slug)
    assert re.fullmatch(r"alice-bob-carols-[0-9a-f]{8}", group.slug)
    assert carol.username == "Carol.S"
    assert direct_open(opener=bob, usernames=["alice"]).slug == first.slug  # the same conversation


def test_the_page_is_titled_after_the_others_and_has_no_clap_board(client, alice, dm):
    client.force_login(alice)
    html = client.get(dm.get_absolute_url()).content.decode()
    assert "<title>bob · pubsub</title>" in html
    assert "Most clapped" not in html and "Clap board" not in html
    assert 'id="clap-board"' not in html


def test_a_room_keeps_its_clap_board(client, alice, public_room):
    client.force_login(alice)
    html = client.get(public_room.get_absolute_url()).content.decode()
    assert "Most clapped" in html and "Clap board" in html


def test_an_old_address_redirects_its_people_and_keeps_the_query(client, alice, bob, dm):
    RoomSlugAlias.objects.create(slug="Xq3-randomOldSlug_1", room=dm)
    client.force_login(bob)
    response = client.get("/rooms/Xq3-randomOldSlug_1/?around=5")
    assert response.status_code == 301
    assert response.url == f"{dm.get_absolute_url()}?around=5"


def test_an_old_address_is_404_to_an_outsider(client, charlie, dm):
    RoomSlugAlias.objects.create(slug="Xq3-randomOldSlug_1", room=dm)
    client.force_login(charlie)
    assert client.get("/rooms/Xq3-randomOldSlug_1/").status_code == 404
    assert client.get("/rooms/no-such-room/").status_code == 404


def test_the_room_list_of_an_outsider_names_no_conversation(client, charlie, dm):
    client.force_login(charlie)
    html = client.get(reverse("room-list")).content.decode()
    assert dm.slug not in html and "alice-bob" not in html


def test_a_new_room_does_not_take_an_old_address(alice, dm):
    from rooms.services import room_create

    RoomSlugAlias.objects.create(slug="book-club", room=dm)
    assert room_create(creator=alice, name="Book Club").slug == "book-club-2"
