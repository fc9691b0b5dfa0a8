import re

import pytest
from django.urls import reverse

from rooms.models import Membership, Room

pytestmark = pytest.mark.django_db


def test_creating_a_room_makes_the_creator_owner_and_opens_it(client, alice):
    client.force_login(alice)
    response = client.post(reverse("room-create"), {"name": "Book Club", "topic": "Novels", "visibility": "public"})
    room = Room.objects.get(name="Book Club")
    assert response.status_code == 302
    assert response.url == reverse("room-detail", kwargs={"slug": "book-club"})
    assert room.slug == "book-club"
    assert Membership.objects.get(room=room, user=alice).role == Membership.Role.OWNER


def test_slugs_are_made_unique(client, alice):
    client.force_login(alice)
    client.post(reverse("room-create"), {"name": "Book Club", "visibility": "public"})
    client.post(reverse("room-create"), {"name": "Book-Club", "visibility": "public"})
    client.post(reverse("room-create"), {"name": "!!!", "visibility": "public"})
    assert sorted(Room.objects.values_list("slug", flat=True)) == ["book-club", "book-club-2", "room"]


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"name": "", "visibility": "public"}, "name", "This field is required."),
        ({"name": "   ", "visibility": "public"}, "name", "This field is required."),
        ({"name": "x" * 81, "visibility": "public"}, "name", "at most 80 characters"),
        ({"name": "Fine", "visibility": "secret"}, "visibility", "Select a valid choice."),
    ],
)
def test_it_explains_every_bad_room_field(client, alice, data, field, message):
    client.force_login(alice)
    response = client.post(reverse("room-create"), data)
    assert response.status_code == 400
    assert any(message in e for e in response.context["form"].errors[field])
    assert not Room.objects.exists()


def test_it_refuses_a_duplicate_room_name_whatever_the_case(client, alice, public_room):
    client.force_login(alice)
    response = client.post(reverse("room-create"), {"name": "LOBBY", "visibility": "public"})
    assert response.status_code == 400
    assert response.context["form"].errors["name"] == ["A room with this name already exists."]
    assert Room.objects.count() == 1


def test_the_room_list_shows_public_rooms_and_mine_but_not_others_private(
    client, bob, charlie, public_room, private_room
):
    client.force_login(bob)
    names = [r.name for r in client.get(reverse("room-list")).context["rooms"]]
    assert names == ["Lobby", "Secret Plans"]
    client.force_login(charlie)
    page = client.get(reverse("room-list"))
    assert [r.name for r in page.context["rooms"]] == ["Lobby"]
    assert "Secret Plans" not in page.content.decode()


def test_the_room_page_shows_name_topic_and_members(client, bob, public_room):
    client.force_login(bob)
    client.post(reverse("room-join", kwargs={"slug": public_room.slug}))
    html = client.get(public_room.get_absolute_url()).content.decode()
    assert "Lobby" in html and "Say hello" in html
    assert "alice" in html and "bob" in html


def test_an_outsider_gets_404_for_a_private_room_and_learns_nothing(client, charlie, private_room):
    client.force_login(charlie)
    for name in ("room-detail", "room-messages"):
        response = client.get(reverse(name, kwargs={"slug": private_room.slug}))
        assert response.status_code == 404
        assert "Secret Plans" not in response.content.decode()
        assert "bob" not in response.content.decode()
    for name in ("room-join", "room-invite", "room-leave"):
        assert (
            client.post(reverse(name, kwargs={"slug": private_room.slug}), {"username": "charlie"}).status_code == 404
        )
    assert not Membership.objects.filter(room=private_room, user=charlie).exists()


def test_an_unknown_room_is_404(client, bob):
    client.force_login(bob)
    assert client.get(reverse("room-detail", kwargs={"slug": "nope"})).status_code == 404


def test_join_and_leave_a_public_room(client, bob, public_room):
    client.force_login(bob)
    client.post(reverse("room-join", kwargs={"slug": public_room.slug}))
    assert Membership.objects.filter(room=public_room, user=bob).exists()
    response = client.post(reverse("room-leave", kwargs={"slug": public_room.slug}))
    assert response.status_code == 302
    assert not Membership.objects.filter(room=public_room, user=bob).exists()


def test_join_and_leave_need_post(client, bob, public_room):
    client.force_login(bob)
    assert client.get(reverse("room-join", kwargs={"slug": public_room.slug})).status_code == 405
    assert client.get(reverse("room-leave", kwargs={"slug": public_room.slug})).status_code == 405


def test_the_owner_cannot_leave(client, alice, public_room):
    client.force_login(alice)
    client.post(reverse("room-leave", kwargs={"slug": public_room.slug}))
    assert Membership.objects.filter(room=public_room, user=alice, role="owner").exists()


def test_the_owner_invites_someone_to_a_private_room(client, alice, charlie, private_room):
    client.force_login(alice)
    response = client.post(reverse("room-invite", kwargs={"slug": private_room.slug}), {"username": "charlie"})
    assert response.status_code == 302
    assert Membership.objects.filter(room=private_room, user=charlie, role="member").exists()
    client.force_login(charlie)
    assert client.get(private_room.get_absolute_url()).status_code == 200


def test_a_plain_member_cannot_invite(client, bob, charlie, private_room):
    client.force_login(bob)
    response = client.post(reverse("room-invite", kwargs={"slug": private_room.slug}), {"username": "charlie"})
    assert response.status_code == 403
    assert not Membership.objects.filter(room=private_room, user=charlie).exists()


@pytest.mark.parametrize(
    ("username", "message"),
    [
        ("nobody", "There is no user with this name."),
        ("bob", "bob is already a member."),
        ("", "This field is required."),
    ],
)
def test_bad_invitations_are_explained(client, alice, private_room, username, message):
    client.force_login(alice)
    response = client.post(
        reverse("room-invite", kwargs={"slug": private_room.slug}), {"username": username}, follow=True
    )
    assert message in [str(m) for m in response.context["messages"]]


def test_a_private_room_cannot_be_joined_without_an_invitation(client, alice, charlie, private_room):
    from django.core.exceptions import PermissionDenied

    from rooms.services import room_join

    with pytest.raises(PermissionDenied):
        room_join(room=private_room, user=charlie)


# --- A private room's name says nothing to whoever is not in it -------------------------


def test_creating_a_room_named_like_a_private_room_reveals_nothing(client, alice, charlie):
    """charlie, the outsider, creates "Secret Plans" (public, then private): no "already
    exists", and a slug no different from the one he would get if alice's private room did
    not exist."""
    from rooms.services import room_create

    private_room = room_create(creator=alice, name="Secret Plans", visibility=Room.Visibility.PRIVATE)
    client.force_login(charlie)
    response = client.post(reverse("room-create"), {"name": "secret plans", "visibility": "public"})
    assert response.status_code == 302
    public = Room.objects.get(created_by=charlie, visibility=Room.Visibility.PUBLIC)
    assert public.slug == "secret-plans"  # what it would be were there no private room
    response = client.post(reverse("room-create"), {"name": "Secret Plans!", "visibility": "private"})
    assert response.status_code == 302
    mine = Room.objects.get(created_by=charlie, visibility=Room.Visibility.PRIVATE)
    assert mine.slug.startswith("secret-plans-") and mine.slug != private_room.slug


def test_a_private_rooms_slug_never_holds_the_slug_its_name_gives(alice):
    from rooms.services import room_create

    room = room_create(creator=alice, name="Quiet Corner", visibility=Room.Visibility.PRIVATE)
    assert re.fullmatch(r"quiet-corner-[0-9a-f]{8}", room.slug)
    assert not Room.objects.filter(slug="quiet-corner").exists()


def test_a_member_of_the_private_room_is_still_told_its_name_is_taken(client, bob, private_room):
    client.force_login(bob)
    response = client.post(reverse("room-create"), {"name": "SECRET PLANS", "visibility": "private"})
    assert response.status_code == 400
    assert response.context["form"].errors["name"] == ["A room with this name already exists."]


def test_public_room_names_stay_unique_in_the_database(alice, bob, public_room):
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        Room.objects.create(name="LOBBY", slug="lobby-again", created_by=bob)
