"""Link previews over real processes: a web process, a worker running the jobs, and a page on a
local HTTP server that only these processes may fetch (OUTBOUND_ALLOWED_NETWORKS)."""

from __future__ import annotations

import asyncio
import http.server
import threading

import pytest

from messaging.models import MessagePreview
from tests.conftest import wait_until
from tests.netclient import NetClient, session_key_for

pytestmark = pytest.mark.processes

PAGE = b"""<html><head><title>fallback</title><meta property="og:title" content="A page worth a card">
<meta property="og:description" content="Its description"></head><body></body></html>"""


class Page(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)


@pytest.fixture
def page_url():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/article"
    server.shutdown()
    server.server_close()


def test_the_card_arrives_as_a_change_is_recovered_by_rev_after_a_reconnect_and_persisted(
    cluster, alice, bob, public_room, page_url, tmp_path
):
    cluster.env.update({"OUTBOUND_ALLOWED_NETWORKS": "127.0.0.1/32", "MEDIA_ROOT": str(tmp_path)})
    port = cluster.start_web()
    cluster.start_worker()
    alice_key, bob_key = session_key_for(alice), session_key_for(bob)

    async def scenario():
        alice_ws = await NetClient.open(port, alice_key)
        await alice_ws.subscribe(public_room.slug)
        await alice_ws.send_message(public_room.slug, f"look: {page_url}")
        sent = await alice_ws.recv_type("message")  # as every subscriber had it: no card yet
        live = await alice_ws.recv_type("message_preview", timeout=30)
        # Bob had the message at its rev and was away when the card came: he gets it by rev.
        bob_ws = await NetClient.open(port, bob_key)
        await bob_ws.send({"type": "subscribe", "room": public_room.slug, "since": sent["seq"], "rev": sent["rev"]})
        await bob_ws.recv_type("subscribed")
        replayed = await bob_ws.recv_type("message_preview")
        # A client that never had the message gets it replayed with its card.
        carol_ws = await NetClient.open(port, bob_key)
        await carol_ws.subscribe(public_room.slug, since=0)
        message = await carol_ws.recv_type("message")
        # Alice removes her card: everyone hears it, and the card stays gone.
        await alice_ws.send({"type": "remove_preview", "room": public_room.slug, "seq": live["seq"]})
        removed = await bob_ws.recv_type("message_preview")
        for ws in (alice_ws, bob_ws, carol_ws):
            await ws.close()
        return sent, live, message, replayed, removed

    sent, live, message, replayed, removed = asyncio.run(scenario())
    card = {"url": page_url, "title": "A page worth a card", "description": "Its description"}
    assert "preview" not in sent
    assert live["preview"] == card and live["rev"] > sent["rev"]
    assert (replayed["seq"], replayed["preview"], replayed["rev"]) == (sent["seq"], card, live["rev"])
    assert message["preview"] == card
    assert (removed["preview"], removed["rev"] > live["rev"]) == (None, True)
    stored = wait_until(
        lambda: MessagePreview.objects.filter(message__room=public_room, message__seq=live["seq"], removed=True).first()
    )
    assert (stored.url, stored.card) == (page_url, None)
