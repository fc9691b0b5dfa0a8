"""Attachments on the wire: a ``send`` names uploads by id and claims them (its uploader's
only, in that room, once); the ``message`` frame carries their wire forms live, in the
history, in the room page and after persistence; the files are served to the room's readers
only, and no longer once the message is deleted or hidden."""

from __future__ import annotations

import uuid

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.test import Client

from attachments.jobs import withdraw_attachments
from attachments.models import Attachment
from attachments.services import attachments_cleanup
from attachments.tests.conftest import client_for, png_bytes, upload
from messaging.moderation import room_message_hide
from messaging.selectors import message_history
from messaging.store.persistence import messages_persist_server
from messaging.tests.wsclient import connected
from pubsub_site.redis.client import all_room_redis_urls, get_redis
from rooms.services import direct_open, room_join

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("async_cleanup")]


@pytest.fixture
def lobby(public_room, bob):
    room_join(room=public_room, user=bob)
    return public_room


async def uploaded(user, room_slug: str, name: str, data: bytes) -> dict:
    response = await sync_to_async(lambda: upload(client_for(user), room_slug, name, data))()
    assert response.status_code == 201, response.content
    return response.json()


async def send_with(ws, room: str, body: str, attachments: list[str], client_id: str | None = None) -> dict:
    """Send a message naming ``attachments``; the ack or the error."""
    client_id = client_id or str(uuid.uuid4())
    await ws.send(
        {
            "type": "send",
            "room": room,
            "body": body,
            "client_id": client_id,
            "ref": client_id,
            "attachments": attachments,
        }
    )
    while True:
        frame = await ws.recv()
        if frame["type"] in ("ack", "error"):
            return frame
        if frame["type"] == "message":
            ws.early_messages.append(frame)


async def get(user, url: str):
    return await sync_to_async(lambda: client_for(user).get(url))()


async def test_a_message_carries_its_attachments_live_to_every_reader(lobby, alice, bob):
    image = await uploaded(bob, lobby.slug, "shot.png", png_bytes())
    doc = await uploaded(bob, lobby.slug, "notes.txt", b"hello")
    alice_ws, bob_ws = await connected(alice), await connected(bob)
    await alice_ws.subscribe(lobby.slug)
    await bob_ws.subscribe(lobby.slug)
    ack = await send_with(bob_ws, lobby.slug, "", [doc["id"], image["id"]])  # an empty body: files only
    assert ack["type"] == "ack"
    frame = await alice_ws.recv_type("message")
    assert frame["body"] == "" and frame["attachments"] == [doc, image]  # in the order named
    assert (await get(alice, image["url"])).status_code == 200
    assert (await get(alice, image["thumb_url"])).status_code == 200
    await alice_ws.close()
    await bob_ws.close()


async def test_a_reader_gets_the_file_as_soon_as_its_message_is_stored_before_the_sender_marks_it_sent(
    lobby, alice, bob
):
    # The readers get the message frame before the sender's socket writes the seq on the
    # file (attachments_mark_sent follows the broadcast): a reader asking in between is served.
    image = await uploaded(bob, lobby.slug, "shot.png", png_bytes())
    ws = await connected(bob)
    await ws.subscribe(lobby.slug)
    ack = await send_with(ws, lobby.slug, "look", [image["id"]])
    await ws.close()
    await database_sync_to_async(Attachment.objects.filter(id=image["id"]).update)(seq=None)
    assert (await get(alice, image["thumb_url"])).status_code == 200
    assert (await get(alice, image["url"])).status_code == 200
    await database_sync_to_async(room_message_hide)(room=lobby, actor=alice, seq=ack["seq"])
    assert (await get(alice, image["url"])).status_code == 404  # that message's rules still hold


async def test_a_claimed_file_whose_send_was_not_stored_is_its_uploaders_alone(lobby, alice, bob):
    doc = await uploaded(bob, lobby.slug, "draft.txt", b"draft")
    await database_sync_to_async(Attachment.objects.filter(id=doc["id"]).update)(client_id=uuid.uuid4())
    assert (await get(alice, doc["url"])).status_code == 404
    assert (await get(bob, doc["url"])).status_code == 200


async def test_a_message_without_attachments_has_no_attachments_field(lobby, alice, bob):
    ws = await connected(bob)
    await ws.subscribe(lobby.slug)
    await ws.post(lobby.slug, "just words")
    assert "attachments" not in await ws.recv_type("message")
    await ws.close()


async def test_a_send_cannot_claim_another_users_upload(lobby, alice, bob):
    alices = await uploaded(alice, lobby.slug, "a.txt", b"mine")
    ws = await connected(bob)
    await ws.subscribe(lobby.slug)
    error = await send_with(ws, lobby.slug, "look", [alices["id"]])
    assert error["type"] == "error" and error["code"] == "attachment_invalid"
    assert await ws.nothing_more()
    assert (await database_sync_to_async(Attachment.objects.get)(id=alices["id"])).client_id is None
    await ws.close()


async def test_an_upload_of_another_room_cannot_be_sent_here(lobby, private_room, bob):
    elsewhere = await uploaded(bob, private_room.slug, "a.txt", b"secret")
    ws = await connected(bob)
    await ws.subscribe(lobby.slug)
    error = await send_with(ws, lobby.slug, "look", [elsewhere["id"]])
    assert error["code"] == "attachment_invalid"
    await ws.close()


async def test_an_upload_goes_out_with_one_message_only_but_a_retry_of_that_send_is_acked(lobby, bob):
    doc = await uploaded(bob, lobby.slug, "a.txt", b"once")
    ws = await connected(bob)
    await ws.subscribe(lobby.slug)
    client_id = str(uuid.uuid4())
    first = await send_with(ws, lobby.slug, "one", [doc["id"]], client_id=client_id)
    retry = await send_with(ws, lobby.slug, "one", [doc["id"]], client_id=client_id)
    assert first["type"] == retry["type"] == "ack" and first["seq"] == retry["seq"]
    again = await send_with(ws, lobby.slug, "two", [doc["id"]])
    assert again["type"] == "error" and again["code"] == "attachment_invalid"
    await ws.close()


async def test_too_many_attachments_are_refused(lobby, bob, settings):
    settings.ATTACHMENTS_PER_MESSAGE = 2
    ids = [(await uploaded(bob, lobby.slug, f"{i}.txt", b"x"))["id"] for i in range(3)]
    ws = await connected(bob)
    await ws.subscribe(lobby.slug)
    error = await send_with(ws, lobby.slug, "three", ids)
    assert error["code"] == "too_many_attachments"
    assert (await send_with(ws, lobby.slug, "two", ids[:2]))["type"] == "ack"
    await ws.close()


async def test_an_empty_message_without_attachments_is_still_refused(lobby, bob):
    ws = await connected(bob)
    await ws.subscribe(lobby.slug)
    error = await send_with(ws, lobby.slug, "  ", [])
    assert error["code"] == "bad_request"
    await ws.close()


async def test_attachments_survive_persistence_into_the_history_and_the_room_page(lobby, alice, bob):
    image = await uploaded(bob, lobby.slug, "shot.png", png_bytes())
    ws = await connected(bob)
    await ws.subscribe(lobby.slug)
    ack = await send_with(ws, lobby.slug, "the screenshot", [image["id"]])
    await ws.close()
    await database_sync_to_async(messages_persist_server)(server=0)
    row = await database_sync_to_async(Attachment.objects.get)(id=image["id"])
    assert row.seq == ack["seq"] and row.message_id is not None
    for url in all_room_redis_urls():  # what follows is read from PostgreSQL alone
        get_redis(url=url).flushdb()
    history = await database_sync_to_async(message_history)(room=lobby, before=None, limit=50)
    assert history.messages[-1]["attachments"] == [image]
    page = await get(alice, f"/rooms/{lobby.slug}/")
    assert image["url"] in page.content.decode() and image["thumb_url"] in page.content.decode()


async def test_a_private_rooms_attachment_is_served_to_members_only(private_room, alice, bob, charlie):
    doc = await uploaded(bob, private_room.slug, "plan.txt", b"the plan")
    ws = await connected(bob)
    await ws.subscribe(private_room.slug)
    assert (await send_with(ws, private_room.slug, "", [doc["id"]]))["type"] == "ack"
    await ws.close()
    assert (await get(alice, doc["url"])).status_code == 200
    assert (await get(charlie, doc["url"])).status_code == 404
    assert (await sync_to_async(Client().get)(doc["url"])).status_code == 404  # anonymous


async def test_a_direct_conversations_attachment_is_served_to_its_people_only(alice, bob, charlie):
    room = await database_sync_to_async(direct_open)(opener=alice, usernames=["bob"])
    doc = await uploaded(alice, room.slug, "for-bob.txt", b"hi bob")
    ws = await connected(alice)
    await ws.subscribe(room.slug)
    assert (await send_with(ws, room.slug, "", [doc["id"]]))["type"] == "ack"
    await ws.close()
    assert (await get(bob, doc["url"])).status_code == 200
    assert (await get(charlie, doc["url"])).status_code == 404


async def test_deleting_the_message_removes_access_at_once_and_the_job_removes_the_objects(
    lobby, alice, bob, attachment_dir
):
    image = await uploaded(bob, lobby.slug, "shot.png", png_bytes())
    ws = await connected(bob)
    await ws.subscribe(lobby.slug)
    ack = await send_with(ws, lobby.slug, "oops", [image["id"]])
    row = await database_sync_to_async(Attachment.objects.get)(id=image["id"])
    assert (attachment_dir / row.storage_key).exists()
    await ws.send({"type": "delete", "room": lobby.slug, "seq": ack["seq"]})
    await ws.recv_type("message_deleted")
    await ws.close()
    # At once: nothing has been persisted or purged yet.
    assert (await get(alice, image["url"])).status_code == 404
    assert (await get(bob, image["thumb_url"])).status_code == 404
    history = await database_sync_to_async(message_history)(room=lobby, before=None, limit=50)
    assert "attachments" not in history.messages[-1]
    # Then the job (queued by the deletion) removes the objects.
    assert await database_sync_to_async(withdraw_attachments)(lobby.pk, ack["seq"]) == 1
    assert not (attachment_dir / row.storage_key).exists() and not (attachment_dir / row.thumb_key).exists()
    assert await database_sync_to_async(withdraw_attachments)(lobby.pk, ack["seq"]) == 0  # idempotent


async def test_a_hidden_messages_attachment_is_refused_at_once(lobby, alice, bob):
    doc = await uploaded(bob, lobby.slug, "spam.txt", b"spam")
    ws = await connected(bob)
    await ws.subscribe(lobby.slug)
    ack = await send_with(ws, lobby.slug, "", [doc["id"]])
    await ws.close()
    assert (await get(alice, doc["url"])).status_code == 200
    await database_sync_to_async(room_message_hide)(room=lobby, actor=alice, seq=ack["seq"])
    assert (await get(alice, doc["url"])).status_code == 404
    assert (await get(bob, doc["url"])).status_code == 404


async def test_the_cleanup_removes_uploads_never_sent_and_keeps_sent_ones(lobby, bob, settings, attachment_dir):
    never = await uploaded(bob, lobby.slug, "never.txt", b"never sent")
    sent = await uploaded(bob, lobby.slug, "sent.txt", b"sent")
    ws = await connected(bob)
    await ws.subscribe(lobby.slug)
    await send_with(ws, lobby.slug, "", [sent["id"]])
    await ws.close()
    await database_sync_to_async(messages_persist_server)(server=0)
    assert await database_sync_to_async(attachments_cleanup)() == 0  # not stale yet
    settings.ATTACHMENT_UNCLAIMED_HOURS = -1  # everything is stale now
    assert await database_sync_to_async(attachments_cleanup)() == 1
    rows = {str(a.id): a async for a in Attachment.objects.all()}
    assert rows[never["id"]].deleted_at is not None and not (attachment_dir / rows[never["id"]].storage_key).exists()
    assert rows[sent["id"]].deleted_at is None and (attachment_dir / rows[sent["id"]].storage_key).exists()
