"""Attachments over real processes: uploaded to one web process, sent on the socket, seen
live by a reader on another; recovered after a reconnect (``since``) with their files;
persisted with the message; served to the room's readers and refused to an outsider."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from attachments.models import Attachment
from tests.conftest import wait_until
from tests.http_upload import get, upload_file
from tests.netclient import NetClient, session_key_for

pytestmark = pytest.mark.processes


def test_attachments_go_live_across_processes_are_recovered_by_since_persisted_and_refused_to_outsiders(
    cluster, alice, bob, charlie, private_room
):
    uploader_port, reader_port = cluster.start_web(), cluster.start_web()
    cluster.start_worker()
    alice_key, bob_key, charlie_key = session_key_for(alice), session_key_for(bob), session_key_for(charlie)
    uploads = []
    for name, data in (("first.txt", b"first file"), ("second.txt", b"second file"), ("third.txt", b"third")):
        status, wire = upload_file(uploader_port, bob_key, private_room.slug, name, data)
        assert status == 201, wire
        uploads.append(wire)
    status, refused = upload_file(uploader_port, charlie_key, private_room.slug, "x.txt", b"x")
    assert status == 404 and refused["error"]["code"] == "not_found"  # an outsider cannot even upload there

    async def send(client, body, ids):
        client_id = str(uuid.uuid4())
        frame = {"type": "send", "room": private_room.slug, "body": body, "client_id": client_id, "attachments": ids}
        await client.send(frame)
        return client_id

    async def scenario():
        reader = await NetClient.open(reader_port, alice_key)
        await reader.subscribe(private_room.slug)
        sender = await NetClient.open(uploader_port, bob_key)
        await sender.subscribe(private_room.slug)
        await send(sender, "", [uploads[0]["id"]])
        live = await reader.recv_type("message")
        await reader.close()
        # alice is away while two more go out; she comes back with what she had.
        await send(sender, "two", [uploads[1]["id"]])
        await send(sender, "three", [uploads[2]["id"]])
        await sender.collect(lambda c: len(c.of_type("ack")) == 3)
        back = await NetClient.open(reader_port, alice_key)
        await back.subscribe(private_room.slug, since=live["seq"])
        await back.collect(lambda c: len(c.of_type("message")) == 2)
        await back.close()
        await sender.close()
        outsider = await NetClient.open(reader_port, charlie_key)
        await outsider.send({"type": "subscribe", "room": private_room.slug})
        answer = await outsider.recv_type("error")
        await outsider.close()
        return live, back.of_type("message"), answer

    live, recovered, outsider_answer = asyncio.run(scenario())
    assert live["body"] == "" and live["attachments"] == [uploads[0]]
    assert [m["attachments"] for m in recovered] == [[uploads[1]], [uploads[2]]]
    assert outsider_answer["code"] in ("not_found", "forbidden")

    rows = wait_until(
        lambda: (
            list(Attachment.objects.filter(room=private_room, message__isnull=False).order_by("seq"))
            if Attachment.objects.filter(room=private_room, message__isnull=True).count() == 0
            else None
        )
    )
    assert [(str(r.id), r.seq, r.message.seq) for r in rows] == [(u["id"], i + 1, i + 1) for i, u in enumerate(uploads)]
    status, body, _ = get(reader_port, alice_key, f"/rooms/{private_room.slug}/messages/?after=0")
    assert status == 200 and uploads[2]["url"].encode() in body
    status, body, headers = get(reader_port, alice_key, uploads[1]["url"])
    assert status == 200 and body == b"second file" and headers["X-Content-Type-Options"] == "nosniff"
    status, body, _ = get(reader_port, charlie_key, uploads[1]["url"])
    assert status == 404 and body != b"second file"
