"""Profiles: display name, status with an expiry, time zone, and an avatar made from an
upload (a square JPEG, EXIF and its GPS position stripped, stored through default_storage,
served under MEDIA_URL); shown in the member list and in a profile card that only people
who share a room see."""

from __future__ import annotations

import io
import re
import zoneinfo
from datetime import datetime, timedelta

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone
from PIL import Image

from accounts.models import Profile
from rooms.models import Membership

pytestmark = pytest.mark.django_db

GPS_IFD = 0x8825


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return tmp_path / "media"


def jpeg_with_gps(width: int = 800, height: int = 600) -> bytes:
    image = Image.new("RGB", (width, height), (200, 30, 30))
    exif = Image.Exif()
    exif[0x010F] = "SpyCam"  # Make
    exif[0x0112] = 1  # Orientation
    exif.get_ifd(GPS_IFD).update({1: "N", 2: (48.0, 51.0, 30.0), 3: "E", 4: (2.0, 17.0, 40.0)})
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif)
    data = out.getvalue()
    assert Image.open(io.BytesIO(data)).getexif().get_ifd(GPS_IFD)  # the test's own premise
    return data


def upload_avatar(client, data: bytes, name: str = "me.jpg", content_type: str = "image/jpeg"):
    return client.post(
        reverse("profile-edit"), {"form": "avatar", "avatar": SimpleUploadedFile(name, data, content_type=content_type)}
    )


def test_an_avatar_is_a_square_jpeg_without_exif(client, bob):
    client.force_login(bob)
    response = upload_avatar(client, jpeg_with_gps())
    assert response.status_code == 302

    profile = Profile.objects.get(user=bob)
    assert profile.avatar.startswith(f"avatars/{bob.pk}/") and profile.avatar.endswith(".jpg")
    with default_storage.open(profile.avatar) as stored:
        data = stored.read()
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG"
    assert image.size == (256, 256)
    assert dict(image.getexif()) == {}
    assert not image.getexif().get_ifd(GPS_IFD)
    assert b"SpyCam" not in data and b"Exif" not in data


def test_a_png_with_transparency_is_normalised_to_jpeg(client, bob):
    client.force_login(bob)
    image = Image.new("RGBA", (64, 120), (0, 0, 255, 0))
    out = io.BytesIO()
    image.save(out, format="PNG")
    assert upload_avatar(client, out.getvalue(), "me.png", "image/png").status_code == 302
    with default_storage.open(Profile.objects.get(user=bob).avatar) as stored:
        saved = Image.open(io.BytesIO(stored.read()))
    assert (saved.format, saved.size, saved.mode) == ("JPEG", (256, 256), "RGB")


def test_the_avatar_is_served_under_media_url(client, bob):
    client.force_login(bob)
    upload_avatar(client, jpeg_with_gps(300, 300))
    url = f"/media/{Profile.objects.get(user=bob).avatar}"
    response = client.get(url)
    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg"
    assert response["X-Content-Type-Options"] == "nosniff"


def test_a_new_avatar_replaces_the_old_file(client, bob, django_capture_on_commit_callbacks):
    client.force_login(bob)
    upload_avatar(client, jpeg_with_gps(300, 300))
    first = Profile.objects.get(user=bob).avatar
    with django_capture_on_commit_callbacks(execute=True):
        upload_avatar(client, jpeg_with_gps(400, 300))
    assert Profile.objects.get(user=bob).avatar != first
    assert not default_storage.exists(first)


@pytest.mark.parametrize(
    ("data", "name", "message"),
    [
        (b"%PDF-1.4 not an image", "me.jpg", "This file is not an image that can be read."),
        (b"GIF89a" + b"\x00" * 20, "me.gif", "This file is not an image that can be read."),
    ],
)
def test_it_refuses_what_is_not_an_image_with_a_clear_error(client, bob, data, name, message):
    client.force_login(bob)
    response = upload_avatar(client, data, name)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Profile.objects.get(user=bob).avatar


def test_it_refuses_an_image_format_not_allowed(client, bob):
    client.force_login(bob)
    out = io.BytesIO()
    Image.new("RGB", (10, 10)).save(out, format="BMP")
    response = upload_avatar(client, out.getvalue(), "me.bmp", "image/bmp")
    assert response.status_code == 400
    assert "Upload a JPEG, PNG, GIF or WebP image." in response.content.decode()


def test_it_refuses_a_file_too_large(client, bob, settings):
    settings.AVATAR_MAX_BYTES = 1024 * 1024
    client.force_login(bob)
    response = upload_avatar(client, b"\xff\xd8" + b"0" * (1024 * 1024 + 1))
    assert response.status_code == 400
    assert "The image is too large: at most 1 MB." in response.content.decode()


def test_it_refuses_a_decompression_bomb(client, bob):
    client.force_login(bob)
    out = io.BytesIO()
    Image.new("1", (10000, 10000)).save(out, format="PNG")  # a few kB, 100 megapixels
    response = upload_avatar(client, out.getvalue(), "bomb.png", "image/png")
    assert response.status_code == 400
    assert "The image has too many pixels: at most 40 megapixels." in response.content.decode()
    assert not Profile.objects.get(user=bob).avatar


def test_it_saves_the_name_status_and_time_zone(client, bob):
    client.force_login(bob)
    response = client.post(
        reverse("profile-edit"),
        {"form": "profile", "display_name": " Bob B. ", "status": "on holiday", "time_zone": "Europe/Paris"},
    )
    assert response.status_code == 302
    profile = Profile.objects.get(user=bob)
    assert (profile.display_name, profile.status, profile.time_zone) == ("Bob B.", "on holiday", "Europe/Paris")


def test_it_refuses_an_unknown_time_zone(client, bob):
    client.force_login(bob)
    response = client.post(reverse("profile-edit"), {"form": "profile", "time_zone": "Mars/Olympus"})
    assert response.status_code == 400
    assert Profile.objects.filter(user=bob, time_zone="Mars/Olympus").count() == 0


def card(client, user):
    return client.get(reverse("profile-card", args=[user.pk]))


def test_a_member_sees_the_card_of_someone_they_share_a_room_with(client, alice, bob, private_room):
    Profile.objects.create(user=alice, display_name="Alice A.", status="writing the plan", time_zone="Asia/Tokyo")
    client.force_login(bob)
    response = card(client, alice)
    assert response.status_code == 200
    page = response.content.decode()
    assert "Alice A." in page and "@alice" in page and "writing the plan" in page and "Asia/Tokyo" in page
    tokyo = timezone.now().astimezone(zoneinfo.ZoneInfo("Asia/Tokyo"))
    shown = re.search(r'<time datetime="([^"]+)">(\d\d:\d\d)</time>', page)
    assert shown.group(1).endswith("+09:00")  # the person's time, not the site's (UTC)
    assert abs(datetime.fromisoformat(shown.group(1)) - tokyo) < timedelta(minutes=2)
    assert shown.group(2) == datetime.fromisoformat(shown.group(1)).strftime("%H:%M")


def test_an_outsider_sees_no_card(client, alice, charlie, private_room):
    client.force_login(charlie)
    assert card(client, alice).status_code == 404
    assert client.get(reverse("profile-card", args=[99999])).status_code == 404  # the same as nobody


def test_a_visitor_of_a_public_room_who_did_not_join_sees_no_card(client, alice, charlie, public_room):
    client.force_login(charlie)
    assert card(client, alice).status_code == 404
    Membership.objects.create(room=public_room, user=charlie)
    assert card(client, alice).status_code == 200


def test_a_banned_member_sees_no_card(client, alice, bob, private_room):
    Membership.objects.filter(room=private_room, user=bob).update(banned=True)
    client.force_login(bob)
    assert card(client, alice).status_code == 404


def test_an_anonymous_visitor_is_sent_to_log_in(client, alice):
    response = card(client, alice)
    assert response.status_code == 302 and response.url.startswith(reverse("login"))


def test_an_expired_status_is_not_shown(client, alice, bob, private_room):
    Profile.objects.create(user=alice, status="in a meeting", status_expires_at=timezone.now() - timedelta(minutes=1))
    client.force_login(bob)
    assert "in a meeting" not in card(client, alice).content.decode()


def test_the_member_list_shows_display_names_avatars_and_statuses(client, alice, bob, private_room):
    Profile.objects.create(user=alice, display_name="Alice A.", status="writing the plan")
    client.force_login(bob)
    upload_avatar(client, jpeg_with_gps(300, 300))
    page = client.get(private_room.get_absolute_url()).content.decode()
    assert "Alice A.</button>" in page and "writing the plan" in page
    assert f'src="/media/{Profile.objects.get(user=bob).avatar}"' in page
    assert f'data-profile-card="{reverse("profile-card", args=[alice.pk])}"' in page


def test_the_status_expiry_is_read_in_the_users_time_zone(client, bob):
    Profile.objects.create(user=bob, time_zone="Asia/Tokyo")
    client.force_login(bob)
    client.post(
        reverse("profile-edit"),
        {"form": "profile", "status": "at lunch", "status_expires_at": "2030-01-02T13:00", "time_zone": "Asia/Tokyo"},
    )
    expires = Profile.objects.get(user=bob).status_expires_at
    assert expires == datetime(2030, 1, 2, 4, 0, tzinfo=zoneinfo.ZoneInfo("UTC"))  # 13:00 in Tokyo
