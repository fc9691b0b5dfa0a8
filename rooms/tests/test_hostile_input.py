"""Hostile names, topics, usernames, reasons and message bodies: refused with a clear error,
or stored as they are and escaped wherever a page shows them."""

import uuid

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from django.utils.html import escape

from messaging.tests.wsclient import connected
from rooms import moderation
from rooms.models import Membership, Report, Room
from rooms.tests.conftest import post_message

SCRIPT = "<script>alert(1)</script>"
ATTRIBUTE = '" onmouseover="alert(1)'
SINGLE_QUOTED_ATTRIBUTE = "' onmouseover='alert(1)"
LINK = '<a href="javascript:alert(1)">x</a>'
IMAGE = "<img src=x onerror=alert(1)>"
CLOSE_TEXTAREA = "</textarea><script>alert(1)</script>"
TEMPLATE = "{{ 7|add:42 }} {% now 'Y' %}"
JAVASCRIPT_URL = "javascript:alert(1)"
RTL_OVERRIDE = "\u202egnp.exe"
NUL = "nul\x00byte"
EMOJI = "🙂🎉 party 👩‍👩‍👧"
LONG_WORD = "W" * 80

SHOWN = [SCRIPT, ATTRIBUTE, SINGLE_QUOTED_ATTRIBUTE, LINK, IMAGE, CLOSE_TEXTAREA, TEMPLATE, JAVASCRIPT_URL, EMOJI]


def assert_escaped(html: str, text: str) -> None:
    """The text shows as text: escaped, never as markup."""
    assert escape(text) in html, text
    if any(ch in text for ch in "<>\"'&"):
        assert text not in html, f"unescaped: {text!r}"
    assert 'href="javascript:' not in html
    assert 'onmouseover="alert' not in html and "onmouseover='alert" not in html
    assert "<img src=x" not in html


# --- Room names and topics, through the form ----------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("text", [*SHOWN, LONG_WORD])
def test_hostile_room_names_and_topics_are_shown_escaped(client, alice, bob, text):
    client.force_login(alice)
    response = client.post(reverse("room-create"), {"name": text, "topic": text, "visibility": "public"})
    assert response.status_code == 302, response.context["form"].errors
    room = Room.objects.get()
    assert (room.name, room.topic) == (text.strip(), text.strip())
    assert room.slug and all(ch.isalnum() or ch == "-" for ch in room.slug)
    for page in (room.get_absolute_url(), reverse("room-list")):
        assert_escaped(client.get(page).content.decode(), text.strip())
    client.force_login(bob)
    assert_escaped(client.get(reverse("room-list")).content.decode(), text.strip())


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("name", "topic", "field", "message"),
    [
        (NUL, "", "name", "Null characters are not allowed."),
        ("fine", NUL, "topic", "Null characters are not allowed."),
        (RTL_OVERRIDE, "", "name", "A room name cannot contain control or text-direction characters."),
        ("fine", RTL_OVERRIDE, "topic", "A topic cannot contain control or text-direction characters."),
        ("tab\there", "", "name", "A room name cannot contain control or text-direction characters."),
        ("W" * 81, "", "name", "Ensure this value has at most 80 characters (it has 81)."),
    ],
)
def test_unusable_room_names_and_topics_are_refused_clearly(client, alice, name, topic, field, message):
    client.force_login(alice)
    response = client.post(reverse("room-create"), {"name": name, "topic": topic, "visibility": "public"})
    assert response.status_code == 400
    assert message in response.context["form"].errors[field]
    assert message in response.content.decode().replace("&#x27;", "'")
    assert not Room.objects.exists()


# --- Usernames, at sign-up ---------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("username", "message"),
    [
        (SCRIPT, "Enter a valid username."),
        (ATTRIBUTE, "Enter a valid username."),
        (LINK, "Enter a valid username."),
        (JAVASCRIPT_URL, "Enter a valid username."),
        (RTL_OVERRIDE, "Enter a valid username."),
        (EMOJI, "Enter a valid username."),
        (NUL, "Null characters are not allowed."),
        ("W" * 151, "Ensure this value has at most 150 characters (it has 151)."),
    ],
)
def test_hostile_usernames_are_refused_at_sign_up_with_a_clear_error(username, message):
    password = "a-long-passphrase-1"
    response = Client().post(reverse("signup"), {"username": username, "password1": password, "password2": password})
    assert response.status_code == 400
    assert any(message in error for error in response.context["form"].errors["username"])
    assert not get_user_model().objects.exists()
    if "\x00" not in username:
        assert_escaped(response.content.decode(), username)


# --- Message bodies, report reasons, audit reasons ------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("body", [*SHOWN, RTL_OVERRIDE, "W" * 4000])
def test_hostile_message_bodies_are_escaped_on_the_page_and_exact_in_the_json_history(
    client, public_room, alice, bob, body
):
    Membership.objects.create(room=public_room, user=bob)
    seq = post_message(public_room, alice, body)
    client.force_login(bob)
    assert_escaped(client.get(public_room.get_absolute_url()).content.decode(), body)
    history = client.get(reverse("room-messages", kwargs={"slug": public_room.slug}))
    assert history["Content-Type"] == "application/json"
    assert history["X-Content-Type-Options"] == "nosniff"
    [message] = history.json()["messages"]
    assert (message["seq"], message["body"]) == (seq, body)


@pytest.mark.django_db
@pytest.mark.parametrize("text", SHOWN)
def test_hostile_reasons_and_reported_bodies_are_escaped_on_the_moderation_page(
    client, private_room, alice, bob, make_user, text
):
    seq = post_message(private_room, bob, text)
    Report.objects.create(room=private_room, seq=seq, reporter=alice, reason=text)
    mallory = make_user("mallory")
    Membership.objects.create(room=private_room, user=mallory)
    moderation.membership_ban(room=private_room, actor=alice, user=mallory, reason=text)
    client.force_login(alice)
    html = client.get(reverse("room-moderation", kwargs={"slug": private_room.slug})).content.decode()
    assert html.count(escape(text)) >= 3  # the excerpt, the report's reason, the audit entry
    assert_escaped(html, text)


@pytest.mark.django_db
def test_a_report_reason_with_a_nul_byte_is_refused(client, public_room, alice, bob):
    seq = post_message(public_room, alice, "hello")
    client.force_login(bob)
    response = client.post(reverse("message-report", kwargs={"slug": public_room.slug, "seq": seq}), {"reason": NUL})
    assert response.status_code == 400
    assert response.json()["errors"]["reason"] == ["Null characters are not allowed."]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("async_cleanup")
async def test_a_message_with_a_nul_byte_is_refused_over_the_websocket(bob, public_room):
    client = await connected(bob)
    await client.subscribe(public_room.slug)
    await client.send({"type": "send", "room": public_room.slug, "body": NUL, "client_id": str(uuid.uuid4())})
    error = await client.recv_type("error")
    assert error["code"] == "bad_request"
    assert "NUL" in error["detail"]
    await client.close()
