"""Changes of who may read what reach the open sockets at once, wherever they are written.

Deactivating an account or changing its password ends every socket of that user (an error
frame, then a close with 1008, as a logged-out socket's next frame gets); deleting a
membership in the admin kicks that user's sockets out of the room; making a room private
has every subscriber read its rights again. Each goes to the user's group or the room's on
commit (protocol.events), over the real Redis channel layer.
"""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django.test import Client as BrowserClient
from django.urls import reverse

from messaging.tests.wsclient import connected
from rooms.models import Membership, Room

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("async_cleanup")]


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_superuser(username="root", password="staff-passphrase-1")


@database_sync_to_async
def admin_post(staff, path: str, data: dict) -> int:
    browser = BrowserClient()
    browser.force_login(staff, backend="django.contrib.auth.backends.ModelBackend")
    response = browser.post(path, data)
    assert response.status_code == 302, response.content.decode()[:2000]
    return response.status_code


async def assert_ended(socket, detail: str) -> None:
    frame = await socket.recv()
    assert frame["type"] == "error" and frame["code"] == "forbidden", frame
    assert detail in frame["detail"]
    output = await socket.ws.receive_output(timeout=3)
    assert output == {"type": "websocket.close", "code": 1008}


async def test_it_ends_the_sockets_of_a_user_deactivated_in_the_admin(staff, bob, alice, public_room):
    socket = await connected(bob)
    await socket.subscribe(public_room.slug)
    watcher = await connected(alice)
    await watcher.subscribe(public_room.slug)

    await admin_post(
        staff,
        reverse("admin:auth_user_change", args=[bob.pk]),
        {
            "username": "bob",
            "date_joined_0": bob.date_joined.strftime("%Y-%m-%d"),
            "date_joined_1": bob.date_joined.strftime("%H:%M:%S"),
            "initial-date_joined_0": bob.date_joined.strftime("%Y-%m-%d"),
            "initial-date_joined_1": bob.date_joined.strftime("%H:%M:%S"),
        },  # is_active left out: unticked
    )

    await assert_ended(socket, "deactivated")
    await watcher.post(public_room.slug, "bob no longer hears this")
    assert await watcher.nothing_more()


async def test_it_ends_the_sockets_of_a_user_whose_password_the_admin_changed(staff, bob, private_room):
    socket = await connected(bob)
    await socket.subscribe(private_room.slug)

    await admin_post(
        staff,
        reverse("admin:auth_user_password_change", args=[bob.pk]),
        {"password1": "another-long-passphrase-9", "password2": "another-long-passphrase-9", "usable_password": "true"},
    )

    await assert_ended(socket, "password")


async def test_it_ends_the_sockets_of_a_user_whose_password_changed_anywhere(bob, charlie, public_room):
    """`changepassword`, a shell, a script: the same save, the same event. Another user's
    sockets are not touched."""
    socket, other = await connected(bob), await connected(charlie)

    def change() -> None:
        bob.set_password("a-third-long-passphrase")
        bob.save()

    await database_sync_to_async(change)()

    await assert_ended(socket, "password")
    await other.send({"type": "ping"})
    assert (await other.recv())["type"] == "pong"


async def test_a_log_in_that_only_updates_last_login_ends_no_socket(bob):
    socket = await connected(bob)

    def log_in_again() -> None:
        response = BrowserClient().post(reverse("login"), {"username": "bob", "password": "correct-horse-battery"})
        assert response.status_code == 302

    await database_sync_to_async(log_in_again)()
    await socket.send({"type": "ping"})
    assert (await socket.recv())["type"] == "pong"


async def test_it_kicks_the_sockets_of_a_member_removed_in_the_admin(staff, alice, bob, private_room):
    socket = await connected(bob)
    await socket.subscribe(private_room.slug)
    membership = await Membership.objects.aget(room=private_room, user=bob)

    await admin_post(staff, reverse("admin:rooms_membership_delete", args=[membership.pk]), {"post": "yes"})

    kicked = await socket.recv_type("kicked")
    assert kicked["room"] == private_room.slug
    owner = await connected(alice)
    await owner.subscribe(private_room.slug)
    await owner.post(private_room.slug, "after bob was removed")
    assert await socket.nothing_more()


async def test_it_kicks_the_sockets_of_members_removed_by_the_admins_bulk_delete(staff, bob, private_room):
    socket = await connected(bob)
    await socket.subscribe(private_room.slug)
    membership = await Membership.objects.aget(room=private_room, user=bob)

    await admin_post(
        staff,
        reverse("admin:rooms_membership_changelist"),
        {"action": "delete_selected", "_selected_action": [membership.pk], "post": "yes"},
    )

    assert (await socket.recv_type("kicked"))["room"] == private_room.slug


def room_form(room: Room, memberships: list[Membership], *, visibility: str, delete: set[int] = frozenset()) -> dict:
    """The admin's room change form as a browser posts it, with its memberships inline."""
    data = {
        "name": room.name,
        "slug": room.slug,
        "topic": room.topic,
        "visibility": visibility,
        "created_by": room.created_by_id,
        "memberships-TOTAL_FORMS": len(memberships),
        "memberships-INITIAL_FORMS": len(memberships),
        "memberships-MIN_NUM_FORMS": 0,
        "memberships-MAX_NUM_FORMS": 1000,
    }
    for index, membership in enumerate(memberships):
        data[f"memberships-{index}-id"] = membership.pk
        data[f"memberships-{index}-room"] = room.pk
        data[f"memberships-{index}-user"] = membership.user_id
        if membership.pk in delete:
            data[f"memberships-{index}-DELETE"] = "on"
    return data


async def test_making_a_room_private_in_the_admin_kicks_whom_the_admin_removed_and_keeps_the_members(
    staff, alice, bob, charlie, public_room
):
    bobs, charlies = await connected(bob), await connected(charlie)
    await bobs.subscribe(public_room.slug)  # subscribing to a public room joins it
    await charlies.subscribe(public_room.slug)
    memberships = [m async for m in Membership.objects.filter(room=public_room).order_by("pk")]
    charlie_membership = next(m for m in memberships if m.user_id == charlie.pk)

    await admin_post(
        staff,
        reverse("admin:rooms_room_change", args=[public_room.pk]),
        room_form(public_room, memberships, visibility=Room.Visibility.PRIVATE, delete={charlie_membership.pk}),
    )

    assert (await charlies.recv_type("kicked"))["room"] == public_room.slug
    owner = await connected(alice)
    await owner.subscribe(public_room.slug)
    await owner.post(public_room.slug, "members only now")
    assert (await bobs.recv_type("message"))["body"] == "members only now"
    assert await charlies.nothing_more()


async def test_making_a_room_private_has_every_subscriber_read_its_rights_again(alice, bob, charlie, public_room):
    """A subscriber whose membership went without an event (a row removed by hand in SQL) is
    found out when the room turns private."""
    charlies = await connected(charlie)
    await charlies.subscribe(public_room.slug)

    def remove_by_hand_then_make_private() -> None:
        Membership.objects.filter(room=public_room, user=charlie)._raw_delete("default")
        public_room.visibility = Room.Visibility.PRIVATE
        public_room.save()

    await database_sync_to_async(remove_by_hand_then_make_private)()

    kicked = await charlies.recv_type("kicked")
    assert kicked["room"] == public_room.slug
