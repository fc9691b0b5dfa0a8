"""Link previews (messaging.previews): the card of a message's first link, fetched by a job queued
by the persistence job, cached per URL, made under pubsub_site.outbound's rules, arriving as a
change (`message_preview`, a `rev`), recovered by `rev`, persisted, refetched after an edit,
and removed by its author (or a moderator) for good. The pages it links to are served by a
real HTTP server in the test; the sockets are the real ASGI application on the real layer."""

from __future__ import annotations

import http.server
import io
import logging
import threading
from datetime import timedelta

import django_rq
import pytest
from channels.db import database_sync_to_async
from django.conf import settings
from django.core.files.storage import default_storage
from django.utils import timezone
from PIL import Image

from messaging import job_paths
from messaging.models import LinkPreview, MessagePreview
from messaging.previews import first_link, link_preview_get, link_previews_apply, page_metadata
from messaging.selectors import message_history
from messaging.store.persistence import messages_persist_server
from messaging.tests.wsclient import connected
from pubsub_site.redis.client import get_redis
from rooms.models import Membership

pytestmark = pytest.mark.django_db(transaction=True)

ARTICLE = b"""<!doctype html><html><head><meta charset="utf-8">
<title>Ignored when og:title is there</title>
<meta property="og:title" content="  The   article  ">
<meta property="og:description" content="What it is about &amp; more">
<meta property="og:site_name" content="Example News">
<meta property="og:image" content="/cover.png">
<meta name="description" content="not this one">
</head><body><p>text</p></body></html>"""


def png(width=300, height=200) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), "teal").save(out, format="PNG")
    return out.getvalue()


class Pages(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.server.hits.append(self.path)
        status, content_type, body = self.server.routes.get(self.path, (404, "text/html", b"<title>404</title>"))
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def site(settings, tmp_path):
    """A web site on 127.0.0.1 that the outbound rules let the site reach (this test only)."""
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    settings.MEDIA_ROOT = str(tmp_path / "media")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Pages)
    server.daemon_threads = True
    server.hits = []
    server.routes = {
        "/article": (200, "text/html; charset=utf-8", ARTICLE),
        "/other": (200, "text/html", b"<html><head><title>The other page</title></head></html>"),
        "/cover.png": (200, "image/png", png()),
        "/data.json": (200, "application/json", b'{"title": "no"}'),
    }
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield server
    server.shutdown()
    server.server_close()


def queued_preview_jobs() -> list:
    queue = django_rq.get_queue("previews", connection=get_redis(url=settings.REDIS_URL))
    return [job for job in queue.jobs if job.func_name == job_paths.FETCH_LINK_PREVIEWS]


def run_preview_jobs() -> list:
    jobs = queued_preview_jobs()
    for job in jobs:
        job.perform()
        job.delete()
    return [job.args for job in jobs]


# --- Which link, and what a page says ---------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "link"),
    [
        ("see https://example.com/a and https://example.com/b", "https://example.com/a"),
        ("**look: https://example.com/bold**", "https://example.com/bold"),
        ("`https://example.com/in-code` then http://example.com/x.", "http://example.com/x"),
        ("```\nhttps://example.com/fenced\n```\nnothing else", None),
        ("ftp://example.com/no", None),
        ("no link at all", None),
    ],
)
def test_the_first_link_is_the_first_the_message_shows_as_a_link(body, link):
    assert first_link(body) == link


def test_open_graph_tags_make_the_card_with_an_absolute_image_address():
    found = page_metadata(ARTICLE, content_type="text/html; charset=utf-8", base_url="https://news.example/a/b")
    assert found == {
        "title": "The article",
        "description": "What it is about & more",
        "site_name": "Example News",
        "image_url": "https://news.example/cover.png",
    }


def test_twitter_tags_then_the_title_and_description_stand_in_for_open_graph():
    page = b"""<html><head><title>Plain
    title</title><meta name="twitter:description" content="From twitter">
    <meta name="twitter:image" content="javascript:alert(1)"><meta name="description" content="plain"></head></html>"""
    found = page_metadata(page, content_type="text/html", base_url="https://example.com/")
    assert found == {"title": "Plain title", "description": "From twitter", "site_name": "", "image_url": ""}


def test_a_page_in_another_charset_is_read_in_it():
    page = "<html><head><title>Café crème</title></head></html>".encode("latin-1")
    assert page_metadata(page, content_type="text/html; charset=iso-8859-1", base_url="https://x.example/")[
        "title"
    ] == ("Café crème")
    sniffed = b'<html><head><meta charset="iso-8859-1"><title>Caf\xe9</title></head></html>'
    assert page_metadata(sniffed, content_type="text/html", base_url="https://x.example/")["title"] == "Café"


# --- Fetching: cached, under the outbound rules -------------------------------------------------


def test_a_url_is_fetched_once_then_again_after_the_ttl(site, settings):
    settings.LINK_PREVIEW_TTL = 3600
    first = link_preview_get(url=f"{site.url}/other")
    again = link_preview_get(url=f"{site.url}/other")
    assert (first.pk, first.title, first.status) == (again.pk, "The other page", LinkPreview.Status.OK)
    assert site.hits == ["/other"]
    LinkPreview.objects.filter(pk=first.pk).update(fetched_at=timezone.now() - timedelta(seconds=3601))
    link_preview_get(url=f"{site.url}/other")
    assert site.hits == ["/other", "/other"]
    assert LinkPreview.objects.count() == 1


def test_the_image_is_the_site_s_own_thumbnail_never_the_third_party_s_address(site):
    preview = link_preview_get(url=f"{site.url}/article")
    assert preview.status == LinkPreview.Status.OK
    assert preview.image.startswith("previews/") and preview.image.endswith(".jpg")
    with default_storage.open(preview.image) as stored, Image.open(stored) as thumb:
        assert thumb.format == "JPEG" and thumb.size == (settings.AVATAR_SIZE, settings.AVATAR_SIZE)
    assert "/cover.png" in site.hits


def test_a_private_address_is_refused_logged_and_the_job_goes_on(site, settings, alice, public_room, caplog):
    settings.OUTBOUND_ALLOWED_NETWORKS = []  # the default: the test's server is loopback
    with caplog.at_level(logging.WARNING, logger="messaging.previews"):
        preview = link_preview_get(url=f"{site.url}/article")
    assert preview.status == LinkPreview.Status.REFUSED
    assert "not a public address" in preview.error
    assert any("refused" in record.getMessage() for record in caplog.records)
    assert site.hits == []


def test_a_page_that_is_not_html_gives_no_card(site):
    preview = link_preview_get(url=f"{site.url}/data.json")
    assert preview.status == LinkPreview.Status.FAILED
    assert "content type" in preview.error
    missing = link_preview_get(url=f"{site.url}/gone")
    assert (missing.status, missing.error) == (LinkPreview.Status.FAILED, "status 404")


# --- The change, over the real socket --------------------------------------------------------------

persist = database_sync_to_async(messages_persist_server)
run_jobs = database_sync_to_async(run_preview_jobs)


@pytest.mark.usefixtures("async_cleanup")
async def test_the_card_arrives_as_a_change_is_recovered_by_rev_and_persisted(site, alice, bob, public_room):
    alice_ws, bob_ws = await connected(alice), await connected(bob)
    subscribed = await bob_ws.subscribe(public_room.slug)
    await alice_ws.subscribe(public_room.slug)
    await alice_ws.post(public_room.slug, f"read this: {site.url}/article")
    sent = (await bob_ws.messages(1))[0]
    assert "preview" not in sent  # nothing fetched on the send path
    assert site.hits == []

    await persist(server=0)  # the persistence job queues the previews' job
    assert await run_jobs() == [(public_room.pk, [[1, f"{site.url}/article", 0]])]
    change = await bob_ws.recv_type("message_preview")
    card = change["preview"]
    assert change["seq"] == 1 and change["rev"] > sent["rev"]
    assert (card["url"], card["title"], card["description"], card["site_name"]) == (
        f"{site.url}/article",
        "The article",
        "What it is about & more",
        "Example News",
    )
    assert card["image"].startswith(settings.MEDIA_URL + "previews/")

    # A client that was away at the rev of the message gets the card back by rev.
    late = await connected(bob)
    await late.subscribe(public_room.slug, since=1, rev=subscribed["rev"] + 1)
    replayed = await late.recv_type("message_preview")
    assert (replayed["seq"], replayed["preview"]) == (1, card)

    await persist(server=0)
    stored = await database_sync_to_async(MessagePreview.objects.get)(message__room=public_room, message__seq=1)
    assert (stored.card, stored.removed, stored.rev) == (card, False, change["rev"])
    page = await database_sync_to_async(message_history)(room=public_room)
    assert page.messages[0]["preview"] == card
    for ws in (alice_ws, bob_ws, late):
        await ws.close()


@pytest.mark.usefixtures("async_cleanup")
async def test_the_card_survives_a_redis_that_lost_its_state(site, alice, public_room):
    alice_ws = await connected(alice)
    await alice_ws.subscribe(public_room.slug)
    await alice_ws.post(public_room.slug, f"{site.url}/other")
    await alice_ws.messages(1)
    await persist(server=0)
    await run_jobs()
    await persist(server=0)
    await alice_ws.close()
    get_redis(public_room.pk).flushdb()  # PostgreSQL's copy is all that is left
    page = await database_sync_to_async(message_history)(room=public_room)
    assert page.messages[0]["preview"]["title"] == "The other page"


@pytest.mark.usefixtures("async_cleanup")
async def test_an_edit_to_another_link_refetches_and_a_stale_card_is_dropped(site, alice, bob, public_room):
    alice_ws, bob_ws = await connected(alice), await connected(bob)
    await alice_ws.subscribe(public_room.slug)
    await bob_ws.subscribe(public_room.slug)
    await alice_ws.post(public_room.slug, f"{site.url}/article")
    await bob_ws.messages(1)
    await persist(server=0)
    first_jobs = await database_sync_to_async(queued_preview_jobs)()
    # Alice edits before the job ran: the job's card is for a body the message no longer has.
    await alice_ws.send({"type": "edit", "room": public_room.slug, "seq": 1, "body": f"no, {site.url}/other"})
    edited = await bob_ws.recv_type("message_updated")
    assert (
        await database_sync_to_async(link_previews_apply)(room_id=public_room.pk, items=[(1, f"{site.url}/article", 0)])
        == 0
    )
    for job in first_jobs:
        await database_sync_to_async(job.delete)()
    await persist(server=0)  # writes the edit, queues its job
    assert await run_jobs() == [(public_room.pk, [[1, f"{site.url}/other", edited["rev"]]])]
    change = await bob_ws.recv_type("message_preview")
    assert change["preview"]["title"] == "The other page"
    # An edit that keeps the link queues nothing; one that drops it clears the card.
    await alice_ws.send({"type": "edit", "room": public_room.slug, "seq": 1, "body": f"yes, {site.url}/other"})
    await bob_ws.recv_type("message_updated")
    await persist(server=0)
    assert await run_jobs() == []
    await alice_ws.send({"type": "edit", "room": public_room.slug, "seq": 1, "body": "never mind"})
    await bob_ws.recv_type("message_updated")
    await persist(server=0)
    await run_jobs()
    assert (await bob_ws.recv_type("message_preview"))["preview"] is None
    for ws in (alice_ws, bob_ws):
        await ws.close()


@pytest.mark.usefixtures("async_cleanup")
async def test_the_author_removes_the_card_for_good_and_others_may_not(site, alice, bob, charlie, public_room):
    def roles():  # alice, who made the room, is a plain member here; charlie moderates
        Membership.objects.filter(room=public_room, user=alice).update(role=Membership.Role.MEMBER)
        Membership.objects.create(room=public_room, user=charlie, role=Membership.Role.MODERATOR)

    await database_sync_to_async(roles)()
    sockets = [await connected(user) for user in (alice, bob, charlie)]
    alice_ws, bob_ws, charlie_ws = sockets
    for ws in sockets:
        await ws.subscribe(public_room.slug)
    await bob_ws.post(public_room.slug, f"{site.url}/article")
    await alice_ws.post(public_room.slug, f"{site.url}/other")
    await alice_ws.messages(2)
    await persist(server=0)
    await run_jobs()
    for ws in sockets:
        cards = [await ws.recv_type("message_preview"), await ws.recv_type("message_preview")]
        assert sorted(card["seq"] for card in cards) == [1, 2]

    # Alice is neither bob's message's author nor a moderator.
    await alice_ws.send({"type": "remove_preview", "room": public_room.slug, "seq": 1, "ref": "r1"})
    refused = await alice_ws.recv_type("error")
    assert (refused["code"], refused["ref"]) == ("forbidden", "r1")
    # Her own card she removes; a moderator removes bob's.
    await alice_ws.send({"type": "remove_preview", "room": public_room.slug, "seq": 2})
    gone = await bob_ws.recv_type("message_preview")
    assert (gone["seq"], gone["preview"]) == (2, None)
    await charlie_ws.send({"type": "remove_preview", "room": public_room.slug, "seq": 1})
    assert (await bob_ws.recv_type("message_preview"))["seq"] == 1
    await alice_ws.send({"type": "remove_preview", "room": public_room.slug, "seq": 2, "ref": "again"})
    assert (await alice_ws.recv_type("error"))["code"] == "not_found"

    # A job that fetches the same URL again (a second run, an expired cache) does not bring it back.
    await database_sync_to_async(LinkPreview.objects.update)(fetched_at=timezone.now() - timedelta(days=30))
    assert (
        await database_sync_to_async(link_previews_apply)(room_id=public_room.pk, items=[(2, f"{site.url}/other", 0)])
        == 0
    )
    await persist(server=0)
    page = await database_sync_to_async(message_history)(room=public_room)
    assert [m.get("preview") for m in page.messages] == [None, None]
    rows = await database_sync_to_async(lambda: sorted(MessagePreview.objects.values_list("message__seq", "removed")))()
    assert rows == [(1, True), (2, True)]
    for ws in sockets:
        await ws.close()


@pytest.mark.usefixtures("async_cleanup")
async def test_an_outsider_cannot_remove_a_card_in_a_private_room(site, alice, bob, charlie, private_room):
    alice_ws, charlie_ws = await connected(alice), await connected(charlie)
    await alice_ws.subscribe(private_room.slug)
    await alice_ws.post(private_room.slug, f"{site.url}/article")
    await alice_ws.messages(1)
    await charlie_ws.send({"type": "remove_preview", "room": private_room.slug, "seq": 1, "ref": "x"})
    refused = await charlie_ws.recv_type("error")
    assert refused["code"] in {"not_subscribed", "not_found", "forbidden"}
    for ws in (alice_ws, charlie_ws):
        await ws.close()


def test_the_cache_is_listed_in_the_admin_and_typed_in_by_nobody(site, admin_client):
    from django.urls import reverse

    link_preview_get(url=f"{site.url}/other")
    listing = admin_client.get(reverse("admin:messaging_linkpreview_changelist"))
    assert listing.status_code == 200
    assert "The other page" in listing.content.decode()
    assert admin_client.get(reverse("admin:messaging_linkpreview_add")).status_code == 403


def test_previews_wait_in_their_own_queue_ten_messages_a_job(settings, public_room):
    from messaging.previews import previews_after_batch

    records = [{"seq": n, "body": f"link {n}: https://example.com/{n}"} for n in range(1, 26)]
    records.insert(3, {"seq": 99, "body": "no link here"})
    previews_after_batch(room_id=public_room.pk, records=records)
    jobs = queued_preview_jobs()
    assert [len(job.args[1]) for job in jobs] == [10, 10, 5]
    assert [item[0] for job in jobs for item in job.args[1]] == list(range(1, 26))
    default = django_rq.get_queue("default", connection=get_redis(url=settings.REDIS_URL))
    assert default.count == 0  # persistence never waits behind a fetch
    settings.LINK_PREVIEWS = False
    previews_after_batch(room_id=public_room.pk, records=records)
    assert len(queued_preview_jobs()) == 3
