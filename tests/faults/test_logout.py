"""A user logged out in another tab: the session's still-open sockets hear nothing more
and their next `send` is refused (and stores nothing); the same user's other session (another
browser) is unaffected.

Design: Django's user_logged_out signal sends `user.logged_out`, naming the session by a
fingerprint, to the user's group; the sockets of that session end their subscriptions
and refuse every later frame with `forbidden`, then close (1008). No PostgreSQL query runs
per message; the event is in the layer before the logout's HTTP response leaves.
"""

from __future__ import annotations

import asyncio
import re
from http.cookiejar import Cookie, CookieJar
from urllib.parse import urlencode, urlparse
from urllib.request import HTTPCookieProcessor, Request, build_opener

import pytest

from rooms.services import room_create
from tests.faults.kit import (
    ChatClient,
    Ledger,
    base_env,
    chaos_row,
    pg_rows,
    report,
    start_webs,
    tracebacks,
    wait_for_rows,
)
from tests.netclient import session_key_for

pytestmark = pytest.mark.processes


def log_out(port: int, session_key: str) -> str:
    """What the browser does: fetch a page for the CSRF token, POST /accounts/logout/."""
    jar = CookieJar()
    jar.set_cookie(
        Cookie(0, "sessionid", session_key, None, False, "127.0.0.1", False, False, "/", True, False, None, True,
               None, None, {}, False)
    )  # fmt: skip
    opener = build_opener(HTTPCookieProcessor(jar))
    page = opener.open(f"http://127.0.0.1:{port}/", timeout=10).read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    data = urlencode({"csrfmiddlewaretoken": token}).encode()
    request = Request(
        f"http://127.0.0.1:{port}/accounts/logout/", data=data, headers={"Referer": f"http://127.0.0.1:{port}/"}
    )
    with opener.open(request, timeout=10) as response:  # redirected to the log-in page
        return f"{response.status} {urlparse(response.geturl()).path}"


def test_the_next_send_after_a_logout_in_another_tab_is_refused(make_cluster, alice, bob):
    cluster = make_cluster(base_env())
    port = start_webs(cluster, 1)[0]
    cluster.start_worker()
    room = room_create(creator=alice, name="Tabs")
    browser_a, browser_b, bobs = session_key_for(alice), session_key_for(alice), session_key_for(bob)
    ledger = Ledger()

    async def scenario():
        def tab(name, key):
            return ChatClient(name, key, lambda: [port], [room.slug], first_port=port, reconnect_for=3)

        tab_1, tab_2 = tab("A tab 1", browser_a), tab("A tab 2", browser_a)
        other_browser, watcher = tab("B", browser_b), tab("bob", bobs)
        for client in (tab_1, tab_2, other_browser, watcher):
            await client.start()
        before = ledger.new(room.slug, "before the logout")
        assert await tab_2.attempt(before) == "acked"

        status = await asyncio.to_thread(log_out, port, browser_a)
        after = ledger.new(room.slug, "sent from tab 2 after the logout in tab 1")
        refused = await tab_2.attempt(after)
        elsewhere = ledger.new(room.slug, "browser B goes on")
        assert await other_browser.attempt(elsewhere) == "acked"
        await asyncio.sleep(4)  # tab 2 tries to reconnect, with a session that is gone
        for client in (tab_1, tab_2, other_browser, watcher):
            await client.close()
        return status, refused, tab_2, watcher, after, elsewhere

    status, refused, tab_2, watcher, after, elsewhere = asyncio.run(scenario())
    rows = wait_for_rows([room.pk], 2)
    stored = {cid for _, _, cid in pg_rows([room.pk])}
    report(
        "logged out in another tab",
        f"logout answered (after its redirect) {status}; tab 2's next send: {refused}; "
        f"close codes it saw {dict(tab_2.close_codes)}, "
        f"reconnections refused afterwards {tab_2.failed_handshakes} (the session is gone)",
        f"tab 2 received {len(tab_2.received[room.slug])} messages (the one before the logout), bob "
        f"{len(watcher.received[room.slug])}; rows in PostgreSQL {len(rows)}: the refused send is "
        f"{'stored' if after.client_id in stored else 'not stored'}; tracebacks: {tracebacks(cluster)}",
    )
    acked_ids = {s.client_id for s in ledger.of("acked")}
    chaos_row(
        "logged out in another tab",
        acked=len(acked_ids),
        stored=len(rows),
        delivered=len(watcher.received[room.slug]),
        lost=len(acked_ids - stored),
        duplicated=len(rows) - len(stored),
    )
    assert status == "200 /accounts/login/"
    assert refused == "refused:forbidden"
    assert tab_2.close_codes == {1008: 1} and tab_2.reconnects == 0 and tab_2.failed_handshakes > 0
    assert after.client_id not in stored and elsewhere.client_id in stored and len(rows) == 2
    assert tab_2.received[room.slug] == [1]  # not the other browser's message
    assert watcher.received[room.slug] == [1, 2]
