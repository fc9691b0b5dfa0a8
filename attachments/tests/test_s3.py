"""Attachments on S3, against a real S3-compatible server (SeaweedFS): the object lands in
the private bucket, a reader is redirected to a presigned URL that lives
ATTACHMENT_URL_SECONDS and serves the file with the headers the app chose, nothing is
readable without a signature, and the deletion job removes the objects."""

from __future__ import annotations

import uuid
from urllib.error import HTTPError
from urllib.parse import parse_qs, urlsplit
from urllib.request import urlopen

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async

from attachments.jobs import withdraw_attachments
from attachments.models import Attachment
from attachments.tests.conftest import client_for, png_bytes, upload
from messaging.tests.wsclient import connected
from rooms.services import room_join

pytestmark = [
    pytest.mark.processes,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("async_cleanup", "s3_storage"),
]


@pytest.fixture
def lobby(public_room, bob):
    room_join(room=public_room, user=bob)
    return public_room


def fetch(url: str):
    return urlopen(url, timeout=10)  # noqa: S310 (the test's own SeaweedFS on 127.0.0.1)


def test_a_reader_is_redirected_to_a_short_lived_presigned_url_that_serves_the_file(lobby, bob, s3_server):
    client = client_for(bob)
    wire = upload(client, lobby.slug, "shot.png", png_bytes()).json()
    row = Attachment.objects.get(id=wire["id"])
    assert {row.storage_key, row.thumb_key} <= s3_server.keys()

    response = client.get(wire["url"])
    assert response.status_code == 302 and response["Cache-Control"] == "private, no-store"
    location = response["Location"]
    assert location.startswith(s3_server.endpoint)
    query = parse_qs(urlsplit(location).query)
    assert query["X-Amz-Expires"] == ["60"]
    with fetch(location) as served:
        assert served.headers["Content-Type"] == "image/png"
        assert served.headers["Content-Disposition"].startswith("inline;")
        assert served.read()[:8] == b"\x89PNG\r\n\x1a\n"
    with fetch(client.get(wire["thumb_url"])["Location"]) as thumb:
        assert thumb.headers["Content-Type"] == "image/webp"


def test_behind_a_proxy_the_presigned_url_names_the_proxys_path_and_stays_valid(lobby, bob, s3_server, settings):
    settings.AWS_S3_PUBLIC_URL = "/_s3"
    client = client_for(bob)
    wire = upload(client, lobby.slug, "a.txt", b"through the proxy").json()
    location = client.get(wire["url"])["Location"]
    assert location.startswith(f"/_s3/{s3_server.bucket}/")
    # What the compose stack's nginx does: the same path and query at the endpoint, under
    # another Host (here "localhost" for "127.0.0.1"): the signature still holds.
    proxied = s3_server.endpoint.replace("127.0.0.1", "localhost") + location.removeprefix("/_s3")
    with fetch(proxied) as served:
        assert served.read() == b"through the proxy"


def test_the_bucket_serves_nothing_without_a_signature(lobby, bob, s3_server):
    wire = upload(client_for(bob), lobby.slug, "a.txt", b"private").json()
    key = Attachment.objects.get(id=wire["id"]).storage_key
    with pytest.raises(HTTPError) as refused:
        fetch(f"{s3_server.endpoint}/{s3_server.bucket}/{key}")
    assert refused.value.code == 403


def test_an_svg_on_s3_is_served_as_a_download_with_its_type(lobby, bob):
    client = client_for(bob)
    wire = upload(client, lobby.slug, "logo.svg", b'<svg xmlns="http://www.w3.org/2000/svg"/>').json()
    with fetch(client.get(wire["url"])["Location"]) as served:
        assert served.headers["Content-Type"] == "image/svg+xml"
        assert served.headers["Content-Disposition"].startswith("attachment;")


async def test_the_deletion_job_removes_the_objects_from_the_bucket(lobby, alice, bob, s3_server):
    wire = await sync_to_async(lambda: upload(client_for(bob), lobby.slug, "shot.png", png_bytes()).json())()
    row = await database_sync_to_async(Attachment.objects.get)(id=wire["id"])
    ws = await connected(bob)
    await ws.subscribe(lobby.slug)
    client_id = str(uuid.uuid4())
    await ws.send({"type": "send", "room": lobby.slug, "body": "", "client_id": client_id, "attachments": [wire["id"]]})
    ack = await ws.recv_type("ack")
    located = await sync_to_async(lambda: client_for(alice).get(wire["url"]))()
    assert located.status_code == 302
    await ws.send({"type": "delete", "room": lobby.slug, "seq": ack["seq"]})
    await ws.recv_type("message_deleted")
    await ws.close()
    assert (await sync_to_async(lambda: client_for(alice).get(wire["url"]))()).status_code == 404
    assert await database_sync_to_async(withdraw_attachments)(lobby.pk, ack["seq"]) == 1
    assert not {row.storage_key, row.thumb_key} & await sync_to_async(s3_server.keys)()
