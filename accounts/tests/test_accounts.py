import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_it_signs_up_and_logs_the_new_user_in(client):
    response = client.post(
        reverse("signup"),
        {"username": "dora", "password1": "a-long-passphrase-1", "password2": "a-long-passphrase-1"},
    )
    assert response.status_code == 302
    assert response.url == reverse("room-list")
    assert get_user_model().objects.filter(username="dora").exists()
    assert client.get(reverse("room-list")).context["user"].username == "dora"


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
    assert client.get(reverse("room-list")).status_code == 302


def test_it_refuses_a_wrong_password_with_a_clear_error(client, alice):
    response = client.post(reverse("login"), {"username": "alice", "password": "wrong"})
    assert response.status_code == 200
    assert "Please enter a correct username and password." in response.content.decode()


def test_pages_need_a_signed_in_user(client):
    response = client.get(reverse("room-list"))
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))
