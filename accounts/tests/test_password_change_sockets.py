"""A password change (or a reset by mail) ends the user's other sessions and their open
sockets, over the real ASGI application on the Redis channel layer; the browser that made
the change stays logged in, and its socket stays open."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.tokens import default_token_generator
from django.test import Client as HttpClient
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from messaging.tests.wsclient import Client, connect, connected, session_key_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("async_cleanup")]

NEW_PASSWORD = "a-brand-new-passphrase-7"


async def connected_with_session(session_key: str) -> Client:
    ok, code, client = await connect(None, extra_headers=[(b"cookie", f"sessionid={session_key}".encode())])
    assert ok, code
    return client


async def closed_with(client: Client, timeout: float = 5) -> int:
    """The close code the server ends the socket with (frames before it are skipped)."""
    code, _ = await ending(client, timeout)
    return code


async def ending(client: Client, timeout: float = 5) -> tuple[int, list[str]]:
    """The close code, and the errors (code, detail) the server sent before it."""
    errors = []
    while True:
        output = await client.ws.receive_output(timeout=timeout)
        if output["type"] == "websocket.close":
            return output["code"], errors
        frame = json.loads(output.get("text", "{}"))
        if frame.get("type") == "error":
            errors.append((frame["code"], frame["detail"]))


async def test_a_password_change_closes_the_other_sessions_sockets_and_keeps_this_one(bob, public_room):
    browser = HttpClient()
    await sync_to_async(browser.force_login)(bob)
    here = await connected_with_session(browser.session.session_key)
    elsewhere_key = await session_key_for(bob)  # another browser: a session of its own
    elsewhere = await connected_with_session(elsewhere_key)
    await elsewhere.subscribe(public_room.slug)

    response = await sync_to_async(browser.post)(
        reverse("password_change"),
        {"old_password": "correct-horse-battery", "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert response.status_code == 302 and response.url == reverse("password_change_done")

    assert await ending(elsewhere) == (1008, [("forbidden", "The password changed; sign in again.")])
    await here.send({"type": "ping", "ref": "still-here"})
    assert await here.recv() == {"type": "pong", "ref": "still-here"}
    # This browser's new session works; the other browser's session is refused at a handshake.
    assert (await sync_to_async(browser.get)(reverse("account-settings"))).status_code == 200
    again = await connected_with_session(browser.session.session_key)
    await again.close()
    refused, _, _ = await connect(None, extra_headers=[(b"cookie", f"sessionid={elsewhere_key}".encode())])
    assert not refused
    await here.close()


async def test_a_reset_by_mail_closes_every_socket_of_the_user(bob, alice):
    bobs, alices = await connected(bob), await connected(alice)
    link = reverse(
        "password_reset_confirm",
        args=[urlsafe_base64_encode(force_bytes(bob.pk)), default_token_generator.make_token(bob)],
    )
    browser = HttpClient()
    form_page = await sync_to_async(browser.get)(link, follow=True)
    assert form_page.context["validlink"] is True
    done = await sync_to_async(browser.post)(
        form_page.redirect_chain[-1][0], {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
    )
    assert done.status_code == 302

    assert await closed_with(bobs) == 1008
    await alices.send({"type": "ping", "ref": "p"})
    assert json.loads(await alices.ws.receive_from()) == {"type": "pong", "ref": "p"}  # alice is not touched
    await alices.close()
