"""The page heals itself: a web process dies and comes back on the same port, and the
pages reconnect and show every message once; a busy web process that sends it away (1013)
is tried again less and less often; scrolling up reads older history."""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from itertools import pairwise

import pytest
from playwright.sync_api import expect

from tests.browser.kit import message_bodies, say, send_over_websocket

pytestmark = [pytest.mark.browser, pytest.mark.processes]


def expect_each_once(page, bodies: list[str]) -> None:
    expect(page.locator("#messages li.message:not(.message--pending)")).to_have_count(len(bodies), timeout=20000)
    counts = Counter(message_bodies(page))
    assert all(counts[body] == 1 for body in bodies), counts
    assert message_bodies(page) == bodies  # and in seq order, the same for everyone


def test_both_pages_reconnect_after_their_web_process_restarts_and_miss_nothing(site, alice, bob, lobby):
    first = site.port
    second = site.cluster.start_web()
    alice_page = site.page_for(alice, lobby.get_absolute_url(), port=first)
    bob_page = site.page_for(bob, lobby.get_absolute_url(), port=second)
    for page in (alice_page, bob_page):
        expect(page.locator("#connection")).to_have_text("connected")
    say(alice_page, "before the crash")
    expect(bob_page.locator("#messages li.message")).to_have_count(1)
    expect(alice_page.locator("#messages li.message:not(.message--pending)")).to_have_count(1)

    # Alice's process dies. Her page says so (reconnecting at once, offline once it
    # lasts) and keeps what she writes meanwhile pending; bob talks on.
    site.cluster.kill_web(first)
    connection = alice_page.locator("#connection")
    expect(connection).to_have_text("reconnecting…")
    expect(connection).to_have_attribute("data-state", "reconnecting")
    say(bob_page, "bob while alice is away 1")
    say(bob_page, "bob while alice is away 2")
    say(alice_page, "alice while offline")
    expect(alice_page.locator("li.message--pending")).to_have_count(1)
    send_over_websocket(second, bob, lobby.slug, ["bob from another client"])
    expect(connection).to_have_text("offline", timeout=10000)

    site.cluster.start_web(first)
    expect(connection).to_have_text("connected", timeout=20000)
    expected = [
        "before the crash",
        "bob while alice is away 1",
        "bob while alice is away 2",
        "bob from another client",
        "alice while offline",
    ]
    expect_each_once(alice_page, expected)
    expect_each_once(bob_page, expected)

    # Now bob's process: the same, the other way round.
    site.cluster.kill_web(second)
    expect(bob_page.locator("#connection")).to_have_text("reconnecting…")
    say(alice_page, "alice while bob is away")
    send_over_websocket(first, alice, lobby.slug, ["alice from another client"])
    say(bob_page, "bob while offline")
    site.cluster.start_web(second)
    expect(bob_page.locator("#connection")).to_have_text("connected", timeout=20000)
    expected += ["alice while bob is away", "alice from another client", "bob while offline"]
    expect_each_once(bob_page, expected)
    expect_each_once(alice_page, expected)


def test_scrolling_up_loads_older_history(site, alice, bob, lobby):
    bodies = [f"message number {n}" for n in range(1, 121)]
    send_over_websocket(site.port, alice, lobby.slug, bodies)
    page = site.page_for(alice, lobby.get_absolute_url())
    messages = page.locator("#messages li.message")
    expect(messages).to_have_count(50)  # the latest page, rendered by the server
    assert message_bodies(page)[-1] == "message number 120"
    expect(page.locator("#messages")).to_have_js_property(
        "scrollTop", page.locator("#messages").evaluate("el => el.scrollHeight - el.clientHeight")
    )

    for count in (100, 120):
        page.locator("#messages").evaluate("el => { el.scrollTop = 0; }")
        expect(messages).to_have_count(count)
    assert message_bodies(page) == bodies
    expect(page.locator("#load-older")).to_have_count(0)  # the beginning of the room
    # Where the reader was stays in view: loading older messages does not jump.
    assert page.locator("#messages").evaluate("el => el.scrollTop") > 0

    # A new message while the reader is up there: no jump, a button to go down to it.
    send_over_websocket(site.port, bob, lobby.slug, ["something new"])
    expect(messages).to_have_count(121)
    jump = page.get_by_role("button", name="New messages below")
    expect(jump).to_be_visible()
    assert page.locator("#messages").evaluate("el => el.scrollTop") < 1000
    jump.click()
    expect(jump).to_be_hidden()
    expect(page.locator("#messages")).to_be_focused()
    assert page.locator("#messages").evaluate("el => el.scrollHeight - el.scrollTop - el.clientHeight") < 5


def test_a_page_whose_web_process_restarts_gracefully_comes_back_and_misses_nothing(site, alice, bob, lobby):
    """SIGTERM (a deploy): alice's socket is told `reconnect` and closed with 1012; her page
    reconnects after the hint (then with its backoff, until the process is back on its port),
    resubscribes and shows every message once, hers written meanwhile included."""
    first = site.port
    second = site.cluster.start_web()
    alice_page = site.page_for(alice, lobby.get_absolute_url(), port=first)
    bob_page = site.page_for(bob, lobby.get_absolute_url(), port=second)
    for page in (alice_page, bob_page):
        expect(page.locator("#connection")).to_have_text("connected")
    say(alice_page, "before the restart")
    expect(bob_page.locator("#messages li.message")).to_have_count(1)

    restart = threading.Thread(target=site.cluster.restart_web, args=(first,))
    restart.start()
    connection = alice_page.locator("#connection")
    expect(connection).to_have_attribute("data-state", "reconnecting", timeout=10000)
    say(bob_page, "bob during the restart")
    say(alice_page, "alice during the restart")
    restart.join(timeout=120)
    expect(connection).to_have_text("connected", timeout=20000)
    expected = ["before the restart", "bob during the restart", "alice during the restart"]
    expect_each_once(alice_page, expected)
    expect_each_once(bob_page, expected)


# Each WebSocket the page makes, when it was made and when it closed (the page's clock, in ms):
# the waits of its client, whenever the test's side handles the routed socket.
SOCKET_TIMES = """
window.socketTimes = [];
window.WebSocket = class extends window.WebSocket {
  constructor(...args) {
    super(...args);
    const times = { opened: performance.now(), open: false, closed: null };
    window.socketTimes.push(times);
    this.addEventListener("open", () => { times.open = true; });
    this.addEventListener("close", () => { times.closed = performance.now(); });
  }
};
"""


def busy_server(page, busy: int) -> None:
    """Between the page and /ws/: its first ``busy`` connections are sent away as a busy web
    process sends them (accepted, then closed with 1013 without a frame); the next goes
    through to the site."""
    routed = []

    def handle(route) -> None:
        routed.append(route)
        if len(routed) > busy:
            route.connect_to_server()
            return
        # At the page's first frame (its subscribe): the page saw the socket open.
        route.on_message(lambda _message: route.close(code=1013, reason=""))

    page.route_web_socket(re.compile(r"/ws/$"), handle)
    page.add_init_script(SOCKET_TIMES)  # over the routed WebSocket that Playwright puts in the page


def waits_between_sockets(page) -> list[float]:
    """Seconds from each socket's close to the next socket (each of them opened, as a socket a
    busy process sends away does: it is accepted, then closed)."""
    times = page.evaluate("window.socketTimes")
    assert all(socket["open"] for socket in times), times
    return [(later["opened"] - earlier["closed"]) / 1000 for earlier, later in pairwise(times)]


def test_a_page_sent_away_by_a_busy_web_process_again_and_again_backs_off_each_time(site, alice, lobby):
    """Closes with 1013 in a row count as failures, though each connection opened: the waits
    are the backoff's steps (0.5-1 s, 1-2 s, 2-4 s), not 0.5-1 s each time."""
    page = site.page_for(alice, None)
    busy_server(page, 3)
    page.goto(lobby.get_absolute_url())
    expect(page.locator("#connection")).to_have_text("connected", timeout=20000)
    expect(page.locator("#online .online__user", has_text="alice")).to_be_visible()  # served: subscribed
    waits = waits_between_sockets(page)
    assert len(waits) == 3
    for wait, (low, high) in zip(waits, [(0.5, 1.0), (1.0, 2.0), (2.0, 4.0)], strict=True):
        assert low <= wait <= high + 0.1, waits

    # Served, the count starts again: a lost connection is tried again within a second.
    page.evaluate("window.pubsubRoomSocket.drop()")
    deadline = time.monotonic() + 5  # (wait_for_function evaluates a string: the page's CSP forbids it)
    while not page.evaluate("window.socketTimes.length === 5 && window.socketTimes[4].open"):
        assert time.monotonic() < deadline
        page.wait_for_timeout(50)
    assert 0.5 <= waits_between_sockets(page)[-1] <= 1.1
    expect(page.locator("#connection")).to_have_text("connected")
