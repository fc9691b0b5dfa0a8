"""The upload endpoint: who may upload where, the limits (size, a day's bytes, types) with
their error codes, images made safe (EXIF gone, orientation kept, bombs refused, a
thumbnail), and how each kind of file is served."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from attachments.models import Attachment
from attachments.tests.conftest import client_for, png_bytes, upload
from rooms.models import Membership
from rooms.services import room_join

pytestmark = pytest.mark.django_db


@pytest.fixture
def lobby(public_room, bob):
    room_join(room=public_room, user=bob)
    return public_room


def test_a_member_uploads_a_file_and_gets_its_wire_form(lobby, bob, attachment_dir):
    response = upload(client_for(bob), lobby.slug, "notes.pdf", b"%PDF-1.4 hello")
    assert response.status_code == 201
    wire = response.json()
    assert set(wire) == {"id", "name", "size", "type", "url"}
    assert wire["name"] == "notes.pdf" and wire["size"] == 14 and wire["type"] == "application/pdf"
    assert wire["url"] == f"/attachments/{wire['id']}/notes.pdf"
    row = Attachment.objects.get(id=wire["id"])
    assert row.uploader == bob and row.room == lobby and row.client_id is None and row.seq is None
    assert (attachment_dir / row.storage_key).read_bytes() == b"%PDF-1.4 hello"
    assert "notes" not in row.storage_key  # the key is random, not the user's file name


def test_an_image_gets_its_dimensions_and_a_thumbnail(lobby, bob, attachment_dir):
    wire = upload(client_for(bob), lobby.slug, "shot.png", png_bytes((1600, 900))).json()
    assert (wire["width"], wire["height"], wire["type"]) == (1600, 900, "image/png")
    assert wire["thumb_url"] == f"/attachments/{wire['id']}/thumb"
    row = Attachment.objects.get(id=wire["id"])
    with Image.open(attachment_dir / row.thumb_key) as thumb:
        assert thumb.format == "WEBP" and max(thumb.size) == 400 and thumb.size == (400, 225)


def test_a_file_over_the_size_limit_is_refused_with_file_too_large(lobby, bob, settings):
    settings.ATTACHMENT_MAX_BYTES = 1000
    response = upload(client_for(bob), lobby.slug, "big.txt", b"x" * 1001)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "file_too_large"
    assert not Attachment.objects.exists()


def test_a_days_bytes_past_the_quota_are_refused_with_daily_quota_exceeded(lobby, bob, settings):
    settings.ATTACHMENT_DAILY_BYTES = 25
    client = client_for(bob)
    assert upload(client, lobby.slug, "a.txt", b"x" * 20).status_code == 201
    response = upload(client, lobby.slug, "b.txt", b"x" * 10)
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "daily_quota_exceeded"
    assert Attachment.objects.count() == 1


def test_a_type_not_allowed_is_refused_with_type_not_allowed(lobby, bob, settings):
    settings.ATTACHMENT_TYPES = ["image/*"]
    response = upload(client_for(bob), lobby.slug, "tool.exe", b"MZ\x90\x00")
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "type_not_allowed"


def test_a_file_named_as_an_image_that_is_not_one_is_refused_with_bad_image(lobby, bob):
    response = upload(client_for(bob), lobby.slug, "cat.jpg", b"<html><script>alert(1)</script>")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_image"


def test_a_decompression_bomb_is_refused(lobby, bob):
    out = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(out, format="PNG")  # 100 megapixels, a few kB
    response = upload(client_for(bob), lobby.slug, "bomb.png", out.getvalue())
    assert response.status_code == 400
    assert "too many pixels" in response.json()["error"]["detail"]


def test_the_location_in_a_jpegs_exif_is_gone_from_the_stored_file_and_its_orientation_kept(lobby, bob, attachment_dir):
    image = Image.new("RGB", (300, 100), (10, 200, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to view
    exif[0x010F] = "SpyCam"  # Make
    exif.get_ifd(0x8825).update({1: "N", 2: (48.0, 51.0, 29.0), 3: "E", 4: (2.0, 17.0, 40.0)})  # GPS
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif)
    with Image.open(io.BytesIO(out.getvalue())) as sent:
        assert sent.getexif().get_ifd(0x8825)  # the upload does carry a location

    wire = upload(client_for(bob), lobby.slug, "holiday.jpg", out.getvalue()).json()
    stored = (attachment_dir / Attachment.objects.get(id=wire["id"]).storage_key).read_bytes()
    assert b"SpyCam" not in stored
    with Image.open(io.BytesIO(stored)) as kept:
        assert not kept.getexif().get_ifd(0x8825) and not kept.getexif()
        assert kept.size == (100, 300)  # turned upright, as the orientation said
    assert (wire["width"], wire["height"]) == (100, 300)


def test_an_outsider_cannot_upload_to_a_private_room(private_room, charlie):
    response = upload(client_for(charlie), private_room.slug, "a.txt", b"hello")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    assert not Attachment.objects.exists()


def test_a_reader_who_is_not_a_member_cannot_upload_to_a_public_room(public_room, charlie):
    response = upload(client_for(charlie), public_room.slug, "a.txt", b"hello")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"


def test_a_spectator_cannot_upload(lobby, bob):
    Membership.objects.filter(room=lobby, user=bob).update(role=Membership.Role.SPECTATOR)
    assert upload(client_for(bob), lobby.slug, "a.txt", b"hello").status_code == 403


def test_nobody_uploads_to_a_locked_room(lobby, bob):
    lobby.locked = True
    lobby.save(update_fields=["locked"])
    response = upload(client_for(bob), lobby.slug, "a.txt", b"hello")
    assert response.status_code == 403 and response.json()["error"]["code"] == "room_locked"


def test_an_anonymous_upload_is_sent_to_log_in(lobby):
    from django.test import Client

    response = Client().post(f"/rooms/{lobby.slug}/attachments/", {})
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_an_unsent_upload_is_served_to_its_uploader_alone(lobby, bob, alice):
    wire = upload(client_for(bob), lobby.slug, "a.txt", b"hello").json()
    assert client_for(bob).get(wire["url"]).status_code == 200
    assert client_for(alice).get(wire["url"]).status_code == 404


@pytest.mark.parametrize(
    ("name", "data", "served_type"),
    [
        ("logo.svg", b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>', "image/svg+xml"),
        ("page.html", b"<html><script>alert(1)</script></html>", "text/html"),
        ("notes.txt", b"plain", "text/plain"),
    ],
)
def test_anything_but_a_safe_image_is_served_as_an_attachment_with_nosniff(lobby, bob, name, data, served_type):
    client = client_for(bob)
    wire = upload(client, lobby.slug, name, data).json()
    response = client.get(wire["url"])
    assert response.status_code == 200
    assert response["Content-Type"].startswith(served_type)
    assert response["Content-Disposition"].startswith("attachment;") and name in response["Content-Disposition"]
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in response["Content-Security-Policy"]
    assert b"".join(response.streaming_content) == data


def test_a_safe_image_is_served_inline_and_its_thumbnail_too(lobby, bob):
    client = client_for(bob)
    wire = upload(client, lobby.slug, "shot.png", png_bytes()).json()
    response = client.get(wire["url"])
    assert response["Content-Type"] == "image/png"
    assert response["Content-Disposition"].startswith("inline;")
    assert response["X-Content-Type-Options"] == "nosniff"
    thumb = client.get(wire["thumb_url"])
    assert thumb["Content-Type"] == "image/webp" and thumb["Content-Disposition"].startswith("inline;")


def test_behind_nginx_the_file_is_handed_over_by_x_accel_redirect(lobby, bob, settings):
    settings.ATTACHMENT_X_ACCEL_PREFIX = "/_attachments/"
    client = client_for(bob)
    wire = upload(client, lobby.slug, "a.txt", b"hello").json()
    response = client.get(wire["url"])
    key = Attachment.objects.get(id=wire["id"]).storage_key
    assert response["X-Accel-Redirect"] == f"/_attachments/{key}"
    assert response.content == b""
    assert response["Content-Disposition"].startswith("attachment;")


def test_a_storage_that_fails_answers_unavailable_and_keeps_no_live_row(lobby, bob, settings, tmp_path):
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the storage wants a directory")
    settings.STORAGES = {
        **settings.STORAGES,
        "attachments": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(blocked)},
        },
    }
    response = upload(client_for(bob), lobby.slug, "a.txt", b"hello")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "unavailable"
    assert not Attachment.objects.filter(deleted_at__isnull=True).exists()
