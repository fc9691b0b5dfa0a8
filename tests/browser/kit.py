"""What the browser tests share: the site on real processes, signed-in tabs, helpers that
must run away from Playwright's event loop, and a colour-contrast check."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from django.db import connections
from playwright.sync_api import BrowserContext, Page, WebSocketRoute

from pubsub_site.cluster import Cluster
from tests.netclient import NetClient, session_key_for

T = TypeVar("T")

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def off_loop(function: Callable[..., T], *args, **kwargs) -> T:
    """Run ``function`` in a thread of its own, away from Playwright's loop: for code that
    runs asyncio itself (NetClient) or broadcasts through ``async_to_sync`` (services)."""

    def call() -> T:
        try:
            return function(*args, **kwargs)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(call).result(timeout=120)


def send_over_websocket(port: int, user, room: str, bodies: Iterable[str | tuple[str, int]]) -> None:
    """Post messages as ``user`` through a wire-contract client, and wait for every ack; a
    ``(body, seq)`` pair is a reply to message ``seq``."""
    bodies = list(bodies)
    key = session_key_for(user)

    async def run() -> None:
        client = await NetClient.open(port, key)
        try:
            await client.subscribe(room)
            for body in bodies:
                if isinstance(body, tuple):
                    text, reply_to = body
                    ref = str(uuid.uuid4())
                    await client.send(
                        {"type": "send", "room": room, "body": text, "client_id": ref, "ref": ref, "reply_to": reply_to}
                    )
                else:
                    await client.send_message(room, body)
            await client.collect(lambda c: len(c.of_type("ack")) >= len(bodies), timeout=60)
        finally:
            await client.close()

    off_loop(lambda: asyncio.run(run()))


@dataclass
class Site:
    """The site on real processes, and tabs in browsers of their own, signed in as a user."""

    cluster: Cluster
    port: int
    new_context: Callable[..., BrowserContext]
    problems: list[str] = field(default_factory=list)
    # Every page's WebSocket traffic, printed when a test fails.
    traffic: list[str] = field(default_factory=list)
    traffic_labels: list[str] = field(default_factory=list)

    def url(self, port: int | None = None) -> str:
        return f"http://127.0.0.1:{port or self.port}"

    def watch(self, page: Page) -> Page:
        """Record what must never happen on any page: a CSP violation, an uncaught error."""

        def on_console(message) -> None:
            if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
                self.problems.append(f"{page.url}: {message.text}")

        def on_websocket(ws) -> None:
            label = f"tab {len(self.traffic_labels)}"
            self.traffic_labels.append(label)
            self.traffic.append(f"{label} opened {ws.url}")
            ws.on("framesent", lambda payload: self.traffic.append(f"{label} > {payload}"))
            ws.on("framereceived", lambda payload: self.traffic.append(f"{label} < {payload}"))
            ws.on("close", lambda _: self.traffic.append(f"{label} closed"))

        page.on("console", on_console)
        page.on("pageerror", lambda error: self.problems.append(f"{page.url}: uncaught {error}"))
        page.on("websocket", on_websocket)
        return page

    def anonymous(self, path: str | None = "/", **context_args) -> Page:
        context = self.new_context(base_url=self.url(), **{"viewport": DESKTOP, **context_args})
        page = self.watch(context.new_page())
        if path is not None:
            page.goto(path)
        return page

    def page_for(self, user, path: str | None = "/", *, port: int | None = None, **context_args) -> Page:
        """A tab signed in as ``user`` through the session cookie (faster than the form)."""
        base = self.url(port)
        context = self.new_context(base_url=base, **{"viewport": DESKTOP, **context_args})
        context.add_cookies([{"name": "sessionid", "value": session_key_for(user), "url": base}])
        page = self.watch(context.new_page())
        if path is not None:
            page.goto(path)
        return page


class HeldReplies:
    """Sits between a page and /ws/ and holds back the server's replies to the page's own
    messages (``ack`` and the broadcast of its ``client_id``) until released: the test
    can look at a message in its pending state for as long as it likes."""

    def __init__(self, page: Page):
        self.holding = True
        self.client_ids: set[str] = set()
        self.held: list[str] = []
        self.route: WebSocketRoute | None = None
        page.route_web_socket(re.compile(r"/ws/$"), self._handle)

    def _handle(self, route: WebSocketRoute) -> None:
        self.route = route
        server = route.connect_to_server()

        def from_page(message: str | bytes) -> None:
            frame = json.loads(message)
            if frame.get("type") == "send":
                self.client_ids.add(frame["client_id"])
            server.send(message)

        def from_server(message: str | bytes) -> None:
            frame = json.loads(message)
            if self.holding and frame.get("client_id") in self.client_ids:
                self.held.append(message)
            else:
                route.send(message)

        route.on_message(from_page)
        server.on_message(from_server)

    def release(self) -> None:
        self.holding = False
        for message in self.held:
            self.route.send(message)
        self.held.clear()


def message_bodies(page: Page) -> list[str]:
    return page.locator("#messages li.message .message__body").all_inner_texts()


# --- Contrast (WCAG 2.x) ----------------------------------------------------------

_RGBA = re.compile(r"rgba?\(([\d.]+),?\s*([\d.]+),?\s*([\d.]+)(?:,?\s*/?\s*([\d.]+))?\)")


def parse_colour(css: str) -> tuple[float, float, float, float]:
    match = _RGBA.fullmatch(css.strip())
    if not match:
        raise ValueError(f"not an rgb() colour: {css!r}")
    r, g, b, a = match.groups()
    return float(r), float(g), float(b), float(a) if a is not None else 1.0


def _luminance(rgb: tuple[float, float, float]) -> float:
    def channel(value: float) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(v) for v in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(foreground: str, background: str) -> float:
    """The contrast ratio of a CSS colour (alpha blended) on an opaque one."""
    fr, fg, fb, fa = parse_colour(foreground)
    br, bg, bb, _ = parse_colour(background)
    blended = (fr * fa + br * (1 - fa), fg * fa + bg * (1 - fa), fb * fa + bb * (1 - fa))
    lighter, darker = sorted((_luminance(blended), _luminance((br, bg, bb))), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


# Every visible element with text of its own: its colour, its opacity and the first
# opaque background behind it (walking up the ancestors).
TEXT_COLOURS_JS = """
() => {
  const out = [];
  const opaque = (c) => c && c !== "transparent" && !/rgba\\([^)]*,\\s*0\\)$/.test(c);
  for (const el of document.querySelectorAll("body *")) {
    const own = Array.from(el.childNodes).some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own || el.closest(".visually-hidden, [hidden], [aria-hidden=true], option")) continue;
    const rect = el.getBoundingClientRect();
    if (!rect.width || !rect.height) continue;
    const style = getComputedStyle(el);
    if (style.visibility !== "visible") continue;
    let bg = null, opacity = 1;
    for (let node = el; node; node = node.parentElement) {
      const s = getComputedStyle(node);
      opacity *= Number(s.opacity);
      if (!bg && opaque(s.backgroundColor)) bg = s.backgroundColor;
    }
    if (opacity < 0.05) continue; // shown on hover or focus only, and checked then
    if (rect.width <= 1 && rect.height <= 1) continue; // visually hidden, for screen readers
    const text = Array.from(el.childNodes).filter((n) => n.nodeType === 3).map((n) => n.textContent).join("").trim();
    out.push({
      what: `${el.tagName.toLowerCase()}${el.id ? "#" + el.id : ""}.${el.className}: ${text.slice(0, 30)}`,
      color: style.color, background: bg || "rgb(255, 255, 255)", opacity,
      size: parseFloat(style.fontSize), weight: Number(style.fontWeight),
    });
  }
  return out;
}
"""


def contrast_failures(page: Page) -> list[str]:
    """WCAG AA: 4.5:1 for text, 3:1 for large text (24px, or 18.66px bold)."""
    failures = []
    for item in page.evaluate(TEXT_COLOURS_JS):
        r, g, b, a = parse_colour(item["color"])
        colour = f"rgba({r}, {g}, {b}, {a * item['opacity']})"
        ratio = contrast(colour, item["background"])
        large = item["size"] >= 24 or (item["size"] >= 18.66 and item["weight"] >= 700)
        if ratio < (3 if large else 4.5):
            failures.append(f"{ratio:.2f}:1 {item['what']} ({item['color']} on {item['background']})")
    return failures


def say(page: Page, text: str) -> None:
    """Type a message into the room's composer and send it, as a person does."""
    page.locator("#composer-body").fill(text)
    page.locator("#composer-body").press("Enter")


def message(page: Page, body: str):
    """The message of the page's room whose body contains ``body``."""
    return page.locator("#messages li.message").filter(has=page.locator(".message__body", has_text=body))
