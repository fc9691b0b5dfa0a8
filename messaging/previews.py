"""Link previews: the first link of a message gets a card (title, description, image, site
name), fetched by a job, never on the send path.

- **When**: the persistence job, after writing a batch of messages, queues one
  ``link_previews_fetch`` job for those with a link (``previews_after_batch``); after writing
  edits, one for the messages whose first link changed (``previews_after_changes``). The send
  and the edit do no extra work.
- **Fetching** goes through ``pubsub_site.outbound`` (no private, loopback or link-local
  address, also after redirects; a total timeout; a size cap; ``text/html`` only), and its
  result, a card or a failure, is kept per URL in ``LinkPreview`` for ``LINK_PREVIEW_TTL``
  seconds, so a link posted a thousand times is fetched once. A refused or failed fetch is
  logged and gives no card; the job goes on with the next message.
- **Parsing** uses the standard library's ``html.parser``: a card needs only the ``<meta>``
  tags and the ``<title>``, which it reads in linear time on any input without a new
  dependency (BeautifulSoup would build a whole tree of a 1 MB page for a few tags).
- **The image** is never the third party's address (a reader's browser would tell that site
  who reads the room, and the page's CSP allows images from this site only): the job fetches
  it with the same rules (images only, ``LINK_PREVIEW_IMAGE_MAX_BYTES``), makes a thumbnail
  with the avatars' code (Pillow, re-encoded as JPEG, no metadata) and stores it through
  ``default_storage``; the card names that copy. No copy, no image.
- **The card is a change** of the message (messaging.store.previews: the room's next
  ``rev``), broadcast as ``message_preview`` and recovered by ``rev`` like an edit. A card
  fetched for a body the author has edited since is dropped (the edit's own job follows).
- **Removing**: the author, or a moderator of the room, removes the card
  (``message_preview_remove``); it stays removed for that URL, and an edit to another link
  brings a new card.
"""

from __future__ import annotations

import html.parser
import logging
import re
import secrets
from datetime import timedelta
from urllib.parse import urljoin, urlsplit

import django_rq
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone

from accounts.services import avatar_image
from messaging import job_paths
from messaging.formatting import parse
from messaging.models import LinkPreview
from messaging.selectors import message_get, room_counters
from messaging.services import ActionRefused, persist_enqueue
from messaging.store import previews as store
from protocol import events
from protocol.events import room_group
from protocol.wire import message_preview_wire, preview_card_wire
from pubsub_site import outbound
from pubsub_site.redis.client import all_room_redis_urls, get_redis, room_redis_url
from rooms.models import Room

logger = logging.getLogger(__name__)

TITLE_MAX, DESCRIPTION_MAX, SITE_NAME_MAX = 300, 500, 100
IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")


# --- Which link ------------------------------------------------------------------------------


def first_link(body: str) -> str | None:
    """The first link of a body as the formatting shows it (messaging.formatting: not one in
    code), or None."""

    def walk(nodes) -> str | None:
        for kind, value in nodes:
            if kind == "link":
                return value
            if isinstance(value, list):
                found = walk(value)
                if found:
                    return found
        return None

    return walk(parse(body))


# --- Parsing a page ------------------------------------------------------------------------------


class _HeadParser(html.parser.HTMLParser):
    """Collects ``<meta property|name=… content=…>`` and the first ``<title>``'s text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.meta: dict[str, str] = {}
        self.title: str | None = None
        self._in_title = False
        self._title_parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "meta":
            found = dict(attrs)
            key = (found.get("property") or found.get("name") or "").strip().lower()
            content = found.get("content")
            if key and content is not None and key not in self.meta:
                self.meta[key] = content
        elif tag == "title" and self.title is None:
            self._in_title = True

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self._title_parts.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "title" and self._in_title:
            self._in_title = False
            self.title = "".join(self._title_parts)


def _clean(text: str | None, limit: int) -> str:
    line = " ".join((text or "").split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", re.IGNORECASE)


def _decode(body: bytes, content_type: str | None) -> str:
    match = re.search(r"charset\s*=\s*[\"']?([A-Za-z0-9_.:-]+)", content_type or "", re.IGNORECASE)
    sniffed = _META_CHARSET.search(body[:4096])
    for charset in (match and match.group(1), sniffed and sniffed.group(1).decode("ascii"), "utf-8"):
        if charset:
            try:
                return body.decode(charset, errors="replace")
            except LookupError:
                continue
    return body.decode("utf-8", errors="replace")


def page_metadata(body: bytes, *, content_type: str | None, base_url: str) -> dict[str, str]:
    """Title, description, site name and image URL (absolute, http(s)) of an HTML page:
    Open Graph first, then Twitter's tags, then ``<title>`` and ``<meta name=description>``."""
    parser = _HeadParser()
    parser.feed(_decode(body, content_type))
    parser.close()
    meta = parser.meta

    def first(*keys: str) -> str:
        return next((meta[k] for k in keys if meta.get(k, "").strip()), "")

    image = first("og:image:secure_url", "og:image", "og:image:url", "twitter:image", "twitter:image:src").strip()
    image = urljoin(base_url, image) if image else ""
    if urlsplit(image).scheme not in {"http", "https"}:
        image = ""
    return {
        "title": _clean(first("og:title", "twitter:title") or parser.title, TITLE_MAX),
        "description": _clean(first("og:description", "twitter:description", "description"), DESCRIPTION_MAX),
        "site_name": _clean(first("og:site_name", "application-name"), SITE_NAME_MAX),
        "image_url": image,
    }


# --- Fetching, cached per URL ----------------------------------------------------------------------


def _image_copy(image_url: str) -> str:
    """The storage name of the site's thumbnail of ``image_url``, or "" when it cannot be made."""
    try:
        response = outbound.fetch(
            image_url,
            timeout=settings.LINK_PREVIEW_TIMEOUT,
            max_bytes=settings.LINK_PREVIEW_IMAGE_MAX_BYTES,
            content_types=IMAGE_TYPES,
        )
        if response.status != 200:
            raise outbound.OutboundError(f"status {response.status}")
        thumbnail = avatar_image(response.body)
    except (outbound.OutboundRefused, outbound.OutboundError, ValidationError) as exc:
        logger.info("link preview image %s not copied: %s", image_url, exc)
        return ""
    return default_storage.save(f"previews/{secrets.token_hex(12)}.jpg", ContentFile(thumbnail))


def _fetch_page(url: str) -> dict:
    """The LinkPreview fields for ``url`` (a card, or a failure and why)."""
    try:
        response = outbound.fetch(
            url,
            timeout=settings.LINK_PREVIEW_TIMEOUT,
            max_bytes=settings.LINK_PREVIEW_MAX_BYTES,
            content_types={"text/html", "application/xhtml+xml"},
        )
    except outbound.OutboundRefused as exc:
        logger.warning("link preview of %s refused: %s", url, exc)
        return {"status": LinkPreview.Status.REFUSED, "error": str(exc)[:300]}
    except outbound.OutboundError as exc:
        logger.info("link preview of %s failed: %s", url, exc)
        return {"status": LinkPreview.Status.FAILED, "error": str(exc)[:300]}
    if response.status != 200:
        return {"status": LinkPreview.Status.FAILED, "error": f"status {response.status}"}
    found = page_metadata(response.body, content_type=response.headers.get("Content-Type"), base_url=response.url)
    if not found["title"]:
        return {"status": LinkPreview.Status.FAILED, "error": "the page has no title"}
    image = _image_copy(found["image_url"]) if found["image_url"] else ""
    return {
        "status": LinkPreview.Status.OK,
        "error": "",
        "title": found["title"],
        "description": found["description"],
        "site_name": found["site_name"],
        "image": image,
    }


def link_preview_get(*, url: str) -> LinkPreview:
    """The cached preview of ``url``, fetched when it has none younger than LINK_PREVIEW_TTL."""
    cached = LinkPreview.objects.filter(url=url).first()
    if cached is not None and cached.fetched_at >= timezone.now() - timedelta(seconds=settings.LINK_PREVIEW_TTL):
        return cached
    fields = {"title": "", "description": "", "site_name": "", "image": "", **_fetch_page(url)}
    preview, _ = LinkPreview.objects.update_or_create(url=url, defaults={**fields, "fetched_at": timezone.now()})
    if cached is not None and cached.image and cached.image != preview.image:
        default_storage.delete(cached.image)
    return preview


def card_of(preview: LinkPreview) -> dict | None:
    if preview.status != LinkPreview.Status.OK:
        return None
    return preview_card_wire(
        url=preview.url,
        title=preview.title,
        description=preview.description,
        image=default_storage.url(preview.image) if preview.image else "",
        site_name=preview.site_name,
    )


# --- The change --------------------------------------------------------------------------------


def _write(*, room_id: int, seq: int, **kwargs) -> store.PreviewResult:
    result = store.preview_write(room_id=room_id, seq=seq, **kwargs)
    if result.status == store.NOT_INITIALISED:  # a fresh (or wiped) Redis: its counters from PostgreSQL
        room_counters(room_id=room_id)
        result = store.preview_write(room_id=room_id, seq=seq, **kwargs)
    return result


def _announce(*, room_id: int, room_slug: str, seq: int, card: dict | None, result: store.PreviewResult) -> None:
    frame = message_preview_wire(room=room_slug, seq=seq, preview=card, rev=result.rev)
    async_to_sync(get_channel_layer().group_send)(
        room_group(room_id), events.room_change_event(room_id=room_id, frame=frame)
    )
    if result.schedule_persist:
        persist_enqueue(server=all_room_redis_urls().index(room_redis_url(room_id)))


def link_previews_apply(*, room_id: int, items: list[tuple[int, str, int]]) -> int:
    """Fetch (or take from the cache) the card of each ``(seq, url, edit_rev)`` and set it on the
    message; an empty url clears the message's card. Returns how many cards changed."""
    room = Room.objects.filter(pk=room_id).only("slug").first()
    if room is None:
        return 0
    changed = 0
    for seq, url, edit_rev in items:
        card = card_of(link_preview_get(url=url)) if url else None
        mode = store.SET if card else store.CLEAR
        result = _write(room_id=room_id, seq=seq, mode=mode, url=url, card=card, edit_rev=edit_rev)
        if result.status == 1:
            _announce(room_id=room_id, room_slug=room.slug, seq=seq, card=card, result=result)
            changed += 1
    return changed


def message_preview_remove(*, room_id: int, room_slug: str, seq: int, user_id: int, can_moderate: bool) -> int:
    """The author, or a moderator of the room, removes a message's card; returns the new ``rev``."""
    found = message_get(room_id=room_id, seq=seq)
    if found is None:
        raise ActionRefused("not_found", "No such message.")
    record, _ = found
    if record["author"]["id"] != user_id and not can_moderate:
        raise ActionRefused("forbidden", "Only the author or a moderator can remove a link preview.")
    result = _write(room_id=room_id, seq=seq, mode=store.REMOVE)
    if result.status == store.DELETED:
        raise ActionRefused("not_found", "The message was deleted.")
    if result.status < 0:
        raise ActionRefused("not_found", "This message has no link preview.")
    _announce(room_id=room_id, room_slug=room_slug, seq=seq, card=None, result=result)
    return result.rev


# --- Queued off the send path: the persistence job's hooks ----------------------------------------


# Messages per job: each may take two fetches of LINK_PREVIEW_TIMEOUT, and a job has
# RQ_QUEUES' 300 seconds.
ITEMS_PER_JOB = 10


def _enqueue(room_id: int, items: list[tuple[int, str, int]]) -> None:
    """Queue the jobs on the "previews" queue, which the worker takes after "default"."""
    queue = django_rq.get_queue("previews", connection=get_redis(url=settings.REDIS_URL))
    for start in range(0, len(items), ITEMS_PER_JOB):
        chunk = items[start : start + ITEMS_PER_JOB]
        queue.enqueue(job_paths.FETCH_LINK_PREVIEWS, room_id, [list(item) for item in chunk])


def previews_after_batch(*, room_id: int, records: list[dict]) -> None:
    """After a batch of messages is written: one job for those with a link."""
    if not settings.LINK_PREVIEWS:
        return
    items = [(r["seq"], url, 0) for r in records if (url := first_link(r["body"]))]
    if items:
        _enqueue(room_id, items)


def previews_after_changes(*, room_id: int, states: dict, after_rev: int) -> None:
    """After changes are written: one job for the messages edited since ``after_rev`` whose
    first link is not the one their card was made for."""
    if not settings.LINK_PREVIEWS:
        return
    items = []
    for seq, state in states.items():
        if state.edit is None or state.edit["rev"] <= after_rev:
            continue
        url = first_link(state.edit["body"]) or ""
        current = state.preview["url"] if state.preview else None
        if url != (current or "") and (url or current is not None):
            items.append((seq, url, state.edit["rev"]))
    if items:
        _enqueue(room_id, items)
