"""The typing indicator is not dropped after one sends (issue 21).

A message ends its author's typing on every reader's page; the author's next keystroke,
even within TYPING_INTERVAL, shows them typing again. alice writes, bob reads (over real
WebSockets and Redis).
"""

import pytest

from messaging.tests.wsclient import connected

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("async_cleanup")]

SEES_TYPING = frozenset({"presence", "presence_diff", "unread", "clap_board", "member_updated"})


async def test_typing_right_after_sending_reaches_the_others(alice, bob, public_room, settings):
    settings.TYPING_INTERVAL = 60.0  # far longer than the test: only a renewal can pass
    bob_ws = await connected(bob, ignore=SEES_TYPING)
    await bob_ws.subscribe(public_room.slug)
    alice_ws = await connected(alice)
    await alice_ws.subscribe(public_room.slug)
    await alice_ws.send({"type": "typing", "room": public_room.slug})
    assert (await bob_ws.recv_type("typing"))["user"]["username"] == "alice"
    await alice_ws.post(public_room.slug, "first")
    assert (await bob_ws.recv())["type"] == "message"
    await alice_ws.send({"type": "typing", "room": public_room.slug})
    assert (await bob_ws.recv())["type"] == "typing"
    # The usual limit still holds: more keystrokes announce nothing more.
    await alice_ws.send({"type": "typing", "room": public_room.slug})
    assert await bob_ws.nothing_more(0.5)
    await alice_ws.close()
    await bob_ws.close()


async def test_typing_is_not_renewed_without_a_message(alice, bob, public_room, settings):
    settings.TYPING_INTERVAL = 60.0
    bob_ws = await connected(bob, ignore=SEES_TYPING)
    await bob_ws.subscribe(public_room.slug)
    alice_ws = await connected(alice)
    await alice_ws.subscribe(public_room.slug)
    await alice_ws.send({"type": "typing", "room": public_room.slug})
    await bob_ws.recv_type("typing")
    await alice_ws.send({"type": "typing", "room": public_room.slug})
    assert await bob_ws.nothing_more(0.5)
    await alice_ws.close()
    await bob_ws.close()
