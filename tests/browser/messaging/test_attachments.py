"""Attachments in the browser: files added by the button, by pasting and by dropping them,
each with its progress bar (and a cancel), sent in one message; an image shown inline to
another member live and after a reload, opening in a lightbox; a private room's file
refused to an outsider."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image
from playwright.sync_api import expect

from tests.browser.kit import message, say

pytestmark = [pytest.mark.browser, pytest.mark.processes]


def png(color=(30, 120, 200), size=(800, 600)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


def paste_file(page, name: str, data: bytes, mime: str) -> None:
    page.evaluate(
        """([name, b64, mime]) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], name, { type: mime }));
            const target = document.getElementById("composer-body");
            target.dispatchEvent(new ClipboardEvent("paste", { clipboardData: dt, bubbles: true, cancelable: true }));
        }""",
        [name, base64.b64encode(data).decode(), mime],
    )


def drop_file(page, name: str, data: bytes, mime: str) -> None:
    page.evaluate(
        """([name, b64, mime]) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], name, { type: mime }));
            const target = document.getElementById("messages-log");
            for (const type of ["dragenter", "dragover", "drop"]) {
                target.dispatchEvent(new DragEvent(type, { dataTransfer: dt, bubbles: true, cancelable: true }));
            }
        }""",
        [name, base64.b64encode(data).decode(), mime],
    )


def test_files_added_by_button_paste_and_drop_show_progress_and_go_out_in_one_message(site, alice, bob, lobby):
    bob_page = site.page_for(bob, lobby.get_absolute_url())
    page = site.page_for(alice, lobby.get_absolute_url())
    expect(page.locator("#connection")).to_have_text("connected")
    # The first upload is held on its way, to see its progress bar before it completes.
    held = []
    page.route("**/attachments/", lambda route: held.append(route) if not held else route.continue_())

    with page.expect_file_chooser() as chooser:
        page.locator("[data-action=attach]").click()
    chooser.value.set_files(files=[{"name": "report.pdf", "mimeType": "application/pdf", "buffer": b"%PDF-1.4 x"}])
    upload = page.locator(".upload", has_text="report.pdf")
    expect(upload.locator("progress")).to_be_visible()
    expect(upload).not_to_have_class("upload upload--done")
    paste_file(page, "pasted.png", png(), "image/png")
    drop_file(page, "dropped.txt", b"dropped text", "text/plain")
    expect(page.locator(".upload")).to_have_count(3)
    # Sending while a file is still on its way waits, saying so.
    say(page, "three files")
    expect(page.locator("#composer-error")).to_contain_text("Wait until the files are uploaded")
    held[0].continue_()
    expect(page.locator(".upload.upload--done")).to_have_count(3)
    expect(upload.locator("progress")).to_have_js_property("value", 100)

    page.locator("#composer-body").press("Enter")
    sent = message(page, "three files")
    expect(sent.locator(".attachment")).to_have_count(3)
    expect(page.locator(".upload")).to_have_count(0)
    live = message(bob_page, "three files")
    expect(live.locator(".attachment--file")).to_have_count(2)
    expect(live.locator(".attachment__card", has_text="report.pdf")).to_contain_text("application/pdf")
    expect(live.locator(".attachment--image img")).to_have_attribute("alt", "pasted.png")


def test_an_upload_can_be_cancelled_and_is_not_sent(site, alice, lobby):
    page = site.page_for(alice, lobby.get_absolute_url())
    expect(page.locator("#connection")).to_have_text("connected")
    page.route("**/attachments/", lambda route: None)  # never answered: cancelled by the user
    drop_file(page, "slow.txt", b"slow", "text/plain")
    upload = page.locator(".upload", has_text="slow.txt")
    expect(upload.locator("progress")).to_be_visible()
    upload.locator(".upload__cancel").click()
    expect(page.locator(".upload")).to_have_count(0)
    say(page, "no file after all")
    expect(message(page, "no file after all")).not_to_have_class("message message--pending")
    expect(message(page, "no file after all").locator(".attachment")).to_have_count(0)


def test_a_refused_file_says_why(site, alice, lobby):
    page = site.page_for(alice, lobby.get_absolute_url())
    expect(page.locator("#connection")).to_have_text("connected")
    drop_file(page, "fake.png", b"not an image at all", "image/png")
    expect(page.locator("#composer-error")).to_contain_text("fake.png: This file is not an image that can be read.")
    expect(page.locator(".upload")).to_have_count(0)


def test_an_image_shows_inline_to_another_member_live_and_after_a_reload(site, alice, bob, lobby):
    bob_page = site.page_for(bob, lobby.get_absolute_url())
    page = site.page_for(alice, lobby.get_absolute_url())
    expect(page.locator("#connection")).to_have_text("connected")
    paste_file(page, "sunset.png", png((250, 120, 30)), "image/png")
    expect(page.locator(".upload.upload--done")).to_have_count(1)
    say(page, "look at this")

    for view in (bob_page, None):
        if view is None:
            bob_page.reload()
            view = bob_page
        image = message(view, "look at this").locator(".attachment--image img")
        expect(image).to_be_visible()
        view.wait_for_function(
            "() => { const i = document.querySelector('.attachment--image img');"
            " return i && i.complete && i.naturalWidth === 400; }"
        )
    message(bob_page, "look at this").locator(".attachment__image").click()
    lightbox = bob_page.locator("dialog.lightbox")
    expect(lightbox).to_be_visible()
    bob_page.wait_for_function("() => document.querySelector('dialog.lightbox img').naturalWidth === 800")
    bob_page.keyboard.press("Escape")
    expect(lightbox).to_be_hidden()


def test_an_outsider_is_refused_a_private_rooms_attachment(site, alice, bob, charlie, private_room):
    page = site.page_for(bob, private_room.get_absolute_url())
    expect(page.locator("#connection")).to_have_text("connected")
    drop_file(page, "plan.txt", b"the secret plan", "text/plain")
    expect(page.locator(".upload.upload--done")).to_have_count(1)
    say(page, "the plan")
    link = message(page, "the plan").locator(".attachment__card")
    expect(link).to_be_visible()
    url = link.get_attribute("href")

    alice_page = site.page_for(alice, private_room.get_absolute_url())
    assert alice_page.request.get(url).text() == "the secret plan"
    outsider = site.page_for(charlie, "/")
    refused = outsider.request.get(url)
    assert refused.status == 404 and "secret" not in refused.text()
