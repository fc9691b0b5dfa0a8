"""Link previews in Chromium: the card of a message's link appears after the send (a page on a
local HTTP server, which only this test's processes may fetch: OUTBOUND_ALLOWED_NETWORKS),
with the site's own copy of its image, survives a reload, and its sender removes it."""

from __future__ import annotations

import http.server
import io
import re
import threading

import pytest
from PIL import Image
from playwright.sync_api import expect

from tests.browser.axe import audit, failing, report
from tests.browser.kit import message, say

pytestmark = [pytest.mark.browser, pytest.mark.processes]


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (400, 300), "orange").save(out, format="PNG")
    return out.getvalue()


PAGE = b"""<!doctype html><html><head><title>Release notes</title>
<meta property="og:title" content="Version 2 is out">
<meta property="og:description" content="Everything that changed, in one page.">
<meta property="og:site_name" content="The Project">
<meta property="og:image" content="/cover.png"></head><body>notes</body></html>"""
ROUTES = {"/notes": ("text/html; charset=utf-8", PAGE), "/cover.png": ("image/png", _png())}


class Pages(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        content_type, body = ROUTES.get(self.path, ("text/plain", b"missing"))
        self.send_response(200 if self.path in ROUTES else 404)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def linked_site():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Pages)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def local_pages_allowed(cluster, tmp_path):
    """Only this test's processes may fetch from 127.0.0.1 (the default refuses it)."""
    cluster.env.update({"OUTBOUND_ALLOWED_NETWORKS": "127.0.0.1/32", "MEDIA_ROOT": str(tmp_path / "media")})


@pytest.fixture
def site(local_pages_allowed, site):
    return site


def test_a_link_card_appears_after_the_send_survives_a_reload_and_its_sender_removes_it(
    site, linked_site, alice, bob, lobby
):
    alice_page = site.page_for(alice, lobby.get_absolute_url())
    bob_page = site.page_for(bob, lobby.get_absolute_url())
    for page in (alice_page, bob_page):
        expect(page.locator("#connection")).to_have_text("connected")

    say(alice_page, f"The notes: {linked_site}/notes")
    for page in (alice_page, bob_page):
        card = message(page, "The notes:").locator(".link-preview")
        expect(card).to_be_visible(timeout=20_000)
        expect(card.locator(".link-preview__title")).to_have_text("Version 2 is out")
        expect(card.locator(".link-preview__title")).to_have_attribute("href", f"{linked_site}/notes")
        expect(card.locator(".link-preview__description")).to_have_text("Everything that changed, in one page.")
        expect(card.locator(".link-preview__site")).to_have_text("The Project")
        image = card.locator("img.link-preview__image")
        # The site's own thumbnail, loaded (the page's CSP allows no other origin's image).
        expect(image).to_have_attribute("src", re.compile(r"^/media/previews/[0-9a-f]+\.jpg$"))
        page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    # Bob may not remove alice's card; alice may.
    expect(message(bob_page, "The notes:").locator("[data-action=remove-preview]")).to_have_count(0)
    for label, page in (("author", alice_page), ("reader", bob_page)):
        violations = audit(page)
        assert not failing(violations), report(f"a room with a link card ({label})", violations)

    bob_page.reload()
    card = message(bob_page, "The notes:").locator(".link-preview")
    expect(card.locator(".link-preview__title")).to_have_text("Version 2 is out")
    expect(bob_page.locator("#connection")).to_have_text("connected")

    message(alice_page, "The notes:").locator("[data-action=remove-preview]").click()
    for page in (alice_page, bob_page):
        expect(message(page, "The notes:").locator(".link-preview")).to_have_count(0)
    alice_page.reload()
    expect(message(alice_page, "The notes:")).to_be_visible()
    expect(message(alice_page, "The notes:").locator(".link-preview")).to_have_count(0)
