"""Deleting an account (with the password): the person can never log in again and their
sockets end; their messages stay, in PostgreSQL and in the Redis buffer not yet persisted,
shown as "deleted user #<id>" on the page, in the history and on the wire; the other member
of their direct conversation keeps it whole.

Why the row stays (accounts.services.account_delete): messages, rooms created and the audit
point at it with PROTECT, and records still in Redis are written to PostgreSQL later by the
persistence job with this author id: a deleted row would make that job fail for ever.
"""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.test import Client as HttpClient
from django.urls import reverse

from accounts.models import Profile
from accounts.services import account_delete
from accounts.tests.test_password_change_sockets import ending
from messaging.models import Message
from messaging.store.persistence import messages_persist_server
from messaging.tests.wsclient import connected
from rooms.models import Membership
from rooms.services import direct_open

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("async_cleanup")]


async def test_a_deleted_account_leaves_its_direct_conversation_readable_as_deleted_user(alice, bob):
    dm = await sync_to_async(direct_open)(opener=alice, usernames=["bob"])
    bobs = await connected(bob)
    await bobs.subscribe(dm.slug)
    await bobs.post(dm.slug, "persisted before the deletion")
    await sync_to_async(messages_persist_server)(server=0)
    await bobs.post(dm.slug, "still only in Redis at the deletion")

    browser = HttpClient()
    await sync_to_async(browser.force_login)(bob)
    response = await sync_to_async(browser.post)(reverse("account-delete"), {"password": "correct-horse-battery"})
    assert response.status_code == 302 and response.url == reverse("login")
    assert await ending(bobs) == (1008, [("forbidden", "This account was deleted.")])

    deleted_name = f"deleted user #{bob.pk}"
    # On the wire: a new subscriber replays both, under the new name, with the same author id.
    alices = await connected(alice)
    await alices.send({"type": "subscribe", "room": dm.slug, "since": 0, "rev": None})
    frames = await alices.messages(2)
    assert [(f["author"], f["body"]) for f in frames] == [
        ({"id": bob.pk, "username": deleted_name}, "persisted before the deletion"),
        ({"id": bob.pk, "username": deleted_name}, "still only in Redis at the deletion"),
    ]
    await alices.close()

    # The persistence job still writes the pending message, with the kept row as its author.
    await sync_to_async(messages_persist_server)(server=0)
    rows = await sync_to_async(list)(Message.objects.filter(room=dm).order_by("seq").values_list("author_id", "body"))
    assert rows == [(bob.pk, "persisted before the deletion"), (bob.pk, "still only in Redis at the deletion")]

    # In the page and the history: alice still has the conversation, and bob's name is gone.
    alice_browser = HttpClient()
    await sync_to_async(alice_browser.force_login)(alice)
    page = (await sync_to_async(alice_browser.get)(dm.get_absolute_url())).content.decode()
    assert deleted_name in page and "still only in Redis at the deletion" in page
    assert ">bob<" not in page
    history = (await sync_to_async(alice_browser.get)(reverse("room-messages", args=[dm.slug]))).json()
    assert {m["author"]["username"] for m in history["messages"]} == {deleted_name}


def test_it_asks_for_the_password_and_deletes_nothing_without_it(client, bob):
    client.force_login(bob)
    response = client.post(reverse("account-delete"), {"password": "not-my-password"})
    assert response.status_code == 400
    assert "That is not your password." in response.content.decode()
    bob.refresh_from_db()
    assert bob.is_active and bob.username == "bob"


def test_a_deleted_account_cannot_log_in_and_keeps_nothing_personal(client, bob, public_room):
    Profile.objects.create(user=bob, display_name="Bobby", status="here", email_verified=True)
    bob.email = "bob@example.com"
    bob.save()
    Membership.objects.create(room=public_room, user=bob)
    account_delete(user=bob)

    bob.refresh_from_db()
    assert (bob.username, bob.email, bob.is_active, bob.has_usable_password()) == (
        f"deleted user #{bob.pk}",
        "",
        False,
        False,
    )
    profile = Profile.objects.get(user=bob)
    assert (profile.display_name, profile.status, profile.email_verified) == ("", "", False)
    response = client.post(reverse("login"), {"username": "bob", "password": "correct-horse-battery"})
    assert response.status_code == 200 and not response.context["user"].is_authenticated
    assert get_user_model().objects.filter(username="bob").count() == 0  # the name is free again


def test_the_page_needs_a_log_in(client):
    response = client.get(reverse("account-delete"))
    assert response.status_code == 302 and response.url.startswith(reverse("login"))
