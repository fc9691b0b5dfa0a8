import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from rooms.models import Membership, Room

pytestmark = pytest.mark.django_db


def test_it_signs_up_and_logs_the_new_user_in(client):
    response = client.post(
        reverse("signup"),
        {"username": "dora", "password1": "a-long-passphrase-1", "password2": "a-long-passphrase-1"},
    )
    # She lands in the default room (made for her: the site had none), with a welcome.
    assert response.status_code == 302
    assert response.url == reverse("room-detail", kwargs={"slug": "lobby"})
    dora = get_user_model().objects.get(username="dora")
    assert Membership.objects.filter(room__name="Lobby", user=dora).exists()
    page = client.get(response.url)
    assert page.context["user"].username == "dora"
    assert "Welcome to pubsub, dora! This is Lobby, where everyone starts: say hello." in page.content.decode()


def test_a_new_user_joins_the_existing_default_room_and_its_members_see_it(client, public_room, bob, settings):
    settings.DEFAULT_ROOM = "lobby"
    response = client.post(
        reverse("signup"),
        {"username": "dora", "password1": "a-long-passphrase-1", "password2": "a-long-passphrase-1"},
    )
    assert response.url == public_room.get_absolute_url()
    assert Membership.objects.get(room=public_room, user__username="dora").role == Membership.Role.MEMBER
    assert Room.objects.count() == 1


def test_without_a_default_room_a_new_user_lands_on_the_room_list(client, settings):
    settings.DEFAULT_ROOM = ""
    response = client.post(
        reverse("signup"),
        {"username": "dora", "password1": "a-long-passphrase-1", "password2": "a-long-passphrase-1"},
    )
    assert response.url == reverse("room-list")
    assert not Room.objects.exists()


def test_a_private_or_archived_default_room_is_not_joined(client, private_room, alice, settings):
    from rooms.room_settings import room_archive

    settings.DEFAULT_ROOM = private_room.name
    response = client.post(
        reverse("signup"),
        {"username": "dora", "password1": "a-long-passphrase-1", "password2": "a-long-passphrase-1"},
    )
    assert response.url == reverse("room-list")
    assert not Membership.objects.filter(user__username="dora").exists()
    room_archive(room=private_room, actor=alice)
    assert Room.objects.count() == 1


def test_it_refuses_a_duplicate_username(client, alice):
    response = client.post(
        reverse("signup"),
        {"username": "alice", "password1": "a-long-passphrase-1", "password2": "a-long-passphrase-1"},
    )
    assert response.status_code == 400
    assert "A user with that username already exists." in response.content.decode()


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        (
            {"username": "", "password1": "a-long-passphrase-1", "password2": "a-long-passphrase-1"},
            "username",
            "This field is required.",
        ),
        (
            {"username": "dora", "password1": "a-long-passphrase-1", "password2": "different-passphrase"},
            "password2",
            "The two password fields didn’t match.",
        ),
        ({"username": "dora", "password1": "short", "password2": "short"}, "password2", "This password is too short."),
        (
            {"username": "dora", "password1": "12345678901", "password2": "12345678901"},
            "password2",
            "This password is entirely numeric.",
        ),
        (
            {"username": "bad name!", "password1": "a-long-passphrase-1", "password2": "a-long-passphrase-1"},
            "username",
            "Enter a valid username.",
        ),
    ],
)
def test_it_explains_every_bad_sign_up_field(client, data, field, message):
    response = client.post(reverse("signup"), data)
    assert response.status_code == 400
    errors = response.context["form"].errors[field]
    assert any(message in error for error in errors), errors
    assert not get_user_model().objects.filter(username=data["username"]).exists()


def test_sign_up_needs_the_csrf_token():
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    response = strict.post(
        reverse("signup"),
        {"username": "dora", "password1": "a-long-passphrase-1", "password2": "a-long-passphrase-1"},
    )
    assert response.status_code == 403


def test_it_logs_in_and_out(client, alice):
    response = client.post(reverse("login"), {"username": "alice", "password": "correct-horse-battery"})
    assert response.status_code == 302
    assert client.get(reverse("room-list")).status_code == 200
    response = client.post(reverse("logout"))
    assert response.status_code == 302
    assert client.get(reverse("room-create")).status_code == 302


def test_it_refuses_a_wrong_password_with_a_clear_error(client, alice):
    response = client.post(reverse("login"), {"username": "alice", "password": "wrong"})
    assert response.status_code == 200
    assert "Please enter a correct username and password." in response.content.decode()


def test_pages_need_a_signed_in_user(client):
    for name in ("room-create", "notifications", "search"):
        response = client.get(reverse(name))
        assert response.status_code == 302
        assert response.url.startswith(reverse("login"))


def test_the_logged_out_home_page_says_what_the_site_is(client, public_room, private_room):
    response = client.get(reverse("room-list"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "chat rooms that stay live" in html
    assert reverse("signup") in html and reverse("login") in html
    assert "Secret Plans" not in html and "Lobby" not in html  # nothing of any room
