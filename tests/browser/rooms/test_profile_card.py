"""The profile card in a browser: a click on a member's avatar opens it in a dialog (the
person's display name, avatar, status and local time), with no CSP violation; its
screenshot goes to docs/screenshots/."""

from __future__ import annotations

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image, ImageDraw
from playwright.sync_api import expect

from accounts.services import profile_set_avatar, profile_update
from rooms.models import Membership, Room
from rooms.services import room_create
from tests.browser.pages.test_pages import shoot

pytestmark = [pytest.mark.browser, pytest.mark.processes]


@pytest.fixture
def media_root(tmp_path, monkeypatch, settings):
    """Uploads go to a directory of the test's own, for this process and the web processes."""
    path = str(tmp_path / "media")
    monkeypatch.setenv("MEDIA_ROOT", path)
    settings.MEDIA_ROOT = path
    return path


def a_portrait() -> SimpleUploadedFile:
    image = Image.new("RGB", (640, 480), (37, 99, 235))
    draw = ImageDraw.Draw(image)
    draw.ellipse((220, 90, 420, 290), fill=(253, 224, 171))
    draw.rectangle((170, 300, 470, 480), fill=(234, 88, 12))
    out = io.BytesIO()
    image.save(out, format="JPEG")
    return SimpleUploadedFile("portrait.jpg", out.getvalue(), content_type="image/jpeg")


def test_a_click_on_a_members_avatar_opens_the_profile_card(media_root, site, alice, bob):
    room = room_create(creator=alice, name="Design", topic="Pixels and words", visibility=Room.Visibility.PRIVATE)
    Membership.objects.create(room=room, user=bob)
    profile_update(
        user=bob, display_name="Bob Builder", status="Fixing the lift", status_expires_at=None, time_zone="Europe/Paris"
    )
    profile_set_avatar(user=bob, upload=a_portrait())

    page = site.page_for(alice, room.get_absolute_url())
    member = page.get_by_role("button", name="Profile of Bob Builder")
    expect(member.locator("img")).to_be_visible()
    member.click()
    dialog = page.locator("#profile-card-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator(".profile-card__name")).to_have_text("Bob Builder")
    expect(dialog.locator(".profile-card__username")).to_have_text("@bob")
    expect(dialog.locator(".profile-card__status")).to_have_text("Fixing the lift")
    expect(dialog.locator(".profile-card__time")).to_contain_text("Europe/Paris")
    assert dialog.locator("img.profile-card__avatar").evaluate("img => img.naturalWidth") == 256
    shoot(page, "profile-card-desktop")

    page.get_by_role("button", name="Close").click()
    expect(dialog).to_be_hidden()
    expect(member).to_be_focused()
    assert site.problems == []
