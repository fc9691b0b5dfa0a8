# ruff: noqa: F811 (the fixtures imported below are parameters of the test)
"""Hostile query strings and forms to every URL of the URL conf, on a live web process.

Every pattern of ``pubsub_site.urls`` (the admin's and django-rq's included) is enumerated
and filled in (a real room's slug, a real message's seq and report's id, or a hostile value
that the converter still matches); Hypothesis then sends GET and POST requests with hostile
query parameters and form fields (the names the views read and others; values huge,
negative, non-numeric, `9999999999999999999.1`, NUL, a lone surrogate as invalid UTF-8,
right-to-left marks, 5,000 characters), as an anonymous visitor, as a member (bob), as
the rooms' owner (alice) and as a superuser (root, for the admin), with a valid CSRF
token. Besides, every query parameter a view reads is swept with every value of
``HOSTILE_PARAMS``, each alone, by someone the view lets reach it.

The properties: no answer is a 5xx, and the web process logs no traceback and no ERROR
record (Django logs a 500 at ERROR).
"""

from __future__ import annotations

import http.client
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import quote

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from django.urls.resolvers import RegexPattern, RoutePattern
from hypothesis import given
from hypothesis import strategies as st

from messaging.models import Message
from rooms.models import Membership, Report, Room
from rooms.services import room_create
from tests.faults.fixtures import make_cluster  # noqa: F401 (fixture)
from tests.faults.kit import base_env
from tests.hostile import strategies as s
from tests.hostile.kit import WebLog, describe, fuzz_settings, unhandled
from tests.netclient import session_key_for

pytestmark = [pytest.mark.processes, pytest.mark.fuzz]

RATE_LIMITED = ["signup", "room_create", "report", "direct_open", "search"]  # settings.RATE_LIMITS
NEXT_VALUES = ["723236841494630144", "room-list", "x", "//evil.example/", "javascript:alert(1)", "/\x00", ""]
METHODS = ["GET", "POST", "GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS"]  # mostly GET and POST
CSRF = "h" * 32  # a token of our own in the cookie and the header: Django compares the two
# The query parameters each view reads (request.GET in its code), by URL name.
READS = {
    "search": ["q", "before", "page"],
    "room-messages": ["before", "after", "around", "limit"],
    "room-detail": ["around"],
    "room-claps": ["seqs"],
    "direct-new": ["to"],
    "room-moderation": ["page"],
    "notifications": ["page"],
    "login": ["next"],
}


@dataclass(frozen=True)
class Route:
    name: str | None
    path: str  # filled in, with a leading /
    real: bool  # its parameters name real objects (else one has a hostile value)


@dataclass
class Tally:
    requests: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


def patterns(resolvers=None, prefix: str = "") -> Iterator[tuple[str, URLPattern]]:
    """Every URL pattern of the URL conf, with the text of the patterns above it."""
    for entry in resolvers if resolvers is not None else get_resolver().url_patterns:
        if isinstance(entry, URLResolver):
            yield from patterns(entry.url_patterns, prefix + pattern_text(entry.pattern))
        else:
            yield prefix + pattern_text(entry.pattern), entry


def pattern_text(pattern) -> str:
    """A path() route as it is; a re_path() regex (the admin's) between ``<<`` and ``>>``."""
    if isinstance(pattern, RoutePattern):
        return str(pattern)
    assert isinstance(pattern, RegexPattern)
    return "<<" + pattern.regex.pattern.lstrip("^").rstrip("$").replace("\\Z", "") + ">>"


CONVERTER_VALUES = {
    "slug": ["{slug}", "no-such-room", "x" * 300, "-"],
    "int": ["{seq}", "0", "9999999999999999999", "99999999999999999999999999"],
    "str": ["{slug}", "1", "x" * 300, "%00", "%E2%80%AE", "%ED%A0%80"],
    "path": ["{slug}", "a/b", "%2e%2e/%2e%2e"],
    "uuid": [str(uuid.UUID(int=0))],
}
REGEX_CANDIDATES = ["auth", "user", "1", "rooms", "messaging", "accounts", "default", "x", "0"]
ROUTE_PARAM = re.compile(r"<(?:(\w+):)?(\w+)>")


def fill(text: str) -> list[str]:
    """Paths for a pattern: its parameters with real values first, then each parameter in turn
    with each of its converter's hostile values."""
    text = re.sub(r"<<(.*?)>>", lambda m: fill_regex(m.group(1)), text)
    params = ROUTE_PARAM.findall(text)
    real = ROUTE_PARAM.sub(
        lambda m: "{report}" if m.group(2) == "report_id" else CONVERTER_VALUES[m.group(1) or "str"][0], text
    )
    paths = [real]
    for converter, name in params:
        for value in CONVERTER_VALUES[converter or "str"][1:]:
            one = ROUTE_PARAM.sub(
                lambda m, name=name, value=value: value if m.group(2) == name else "<" + m.group(0)[1:-1] + ">", text
            )
            paths.append(
                ROUTE_PARAM.sub(
                    lambda m: "{report}" if m.group(2) == "report_id" else CONVERTER_VALUES[m.group(1) or "str"][0], one
                )
            )
    return ["/" + p for p in paths]


def fill_regex(regex: str) -> str:
    """The regex with each named group replaced by a candidate it matches and its optional
    parts left out: the admin's patterns are such."""

    def replace(match: re.Match) -> str:
        for candidate in REGEX_CANDIDATES:
            if re.fullmatch(match.group(2), candidate):
                return candidate
        return "x"

    text = re.sub(r"\(\?P<(\w+)>((?:[^()]|\([^()]*\))*)\)", replace, regex)
    text = re.sub(r"\(\?:[^()]*\)\?", "", text)
    return text.replace("\\", "")


def routes() -> list[Route]:
    found = []
    for text, entry in patterns():
        for n, path in enumerate(fill(text)):
            found.append(Route(entry.name, path, real=n == 0))
    return list(dict.fromkeys(found))


def encode(value: str) -> str:
    return quote(value, safe="", errors="surrogatepass")


def query(pairs: list[tuple[str, str]]) -> str:
    return "&".join(f"{encode(k)}={encode(v)}" for k, v in pairs)


def request(port: int, method: str, path: str, pairs, form, session: str | None) -> int:
    cookies = [f"csrftoken={CSRF}"] + ([f"sessionid={session}"] if session else [])
    headers = {"Host": f"127.0.0.1:{port}", "Cookie": "; ".join(cookies), "X-CSRFToken": CSRF}
    body = None
    if method in ("POST", "PUT"):
        body = form if isinstance(form, bytes) else query(form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    target = path + ("?" + query(pairs) if pairs else "")
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, target, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


forms = st.one_of(
    s.params,
    st.sampled_from([b"\xff\xfe=\xff", b"a=%ff%fe", b"=", b"&&&", b"a" * 3000, b"%", b"name=%00"]),
)


def fuzzer(route: Route, scale: float, personas: list[str], check) -> Callable[[], None]:
    @fuzz_settings(scale)
    @given(persona=st.sampled_from(personas), method=st.sampled_from(METHODS), pairs=s.params, form=forms)
    def fuzz(persona, method, pairs, form):
        check(persona, method, route.path, pairs, form)

    return fuzz


def test_it_answers_hostile_query_strings_and_forms_with_4xx_never_500(
    make_cluster, django_user_model, alice, bob, charlie, capsys
):
    lobby = room_create(creator=alice, name="Lobby")
    ours = room_create(creator=alice, name="Ours", visibility=Room.Visibility.PRIVATE)
    Membership.objects.create(room=ours, user=bob)
    room_create(creator=charlie, name="Theirs", visibility=Room.Visibility.PRIVATE)
    message = Message.objects.create(room=lobby, seq=1, author=bob, body="hello", client_id=uuid.uuid4(), rev=1)
    report = Report.objects.create(room=lobby, seq=message.seq, reporter=alice, reason="spam")
    seq, report_id = message.seq, report.pk

    # Page rate limits out of the way: a 429 would answer before the parameters are read.
    cluster = make_cluster(base_env(**{f"RATE_LIMIT_{name.upper()}": "100000/second" for name in RATE_LIMITED}))
    port = cluster.start_web()
    log = WebLog(cluster, port)
    root = django_user_model.objects.create_superuser("root", password="a-long-root-password")
    personas = {"anonymous": None, "bob": bob, "alice": alice, "root": root}
    all_routes = [
        Route(
            r.name,
            r.path.replace("{slug}", lobby.slug).replace("{seq}", str(seq)).replace("{report}", str(report_id)),
            r.real,
        )
        for r in routes()
    ]
    tally = Tally()
    started = time.monotonic()

    def session_for(persona: str, path: str) -> str | None:
        user = personas[persona]
        if user is None:
            return None
        # A new session for each request that may end or change one (log-out, settings).
        if path.startswith(("/accounts/logout", "/accounts/login")) or persona not in sessions:
            sessions[persona] = session_key_for(user)
        return sessions[persona]

    sessions: dict[str, str] = {}

    def check(persona: str, method: str, path: str, pairs, form) -> None:
        status = request(port, method, path, pairs, form, session_for(persona, path))
        tally.requests += 1
        tally.statuses[status] = tally.statuses.get(status, 0) + 1
        problems = []
        if status >= 500:
            problems.append(f"{status}")
        if trace := unhandled(log.new()):
            problems.append(f"the web process logged:\n{trace}")
        target = f"{path}?{query(pairs)}" if pairs else path
        assert not problems, "; ".join(problems) + f"\n  on {persona} {method} {target:.500} form={form!r:.300}"

    # The sweep. First the moderation forms' `next` (where to go back to), posted by the owner
    # who passes their checks, before anything else may take her rights away (a POST to
    # /leave/, say).
    for route in all_routes:
        if route.real and "/moderation/" in route.path:
            for value in NEXT_VALUES:
                try:
                    check("alice", "POST", route.path, [], [("next", value)])
                except AssertionError as failure:
                    tally.failures.append(f"[sweep] {failure!s:.2000}")
    # Then each path parameter's hostile values, and each query parameter a view reads with
    # each hostile value alone.
    for route in all_routes:
        if not route.real:
            for persona in ("anonymous", "bob"):
                try:
                    check(persona, "GET", route.path, [], None)
                except AssertionError as failure:
                    tally.failures.append(f"[path] {failure!s:.2000}")
            continue
        for name in READS.get(route.name or "", []):
            for value in s.HOSTILE_PARAMS:
                pairs = [(name, value)] + ([("q", "hello")] if route.name == "search" and name != "q" else [])
                # Who gets past the view's checks to the parameter: a visitor to the log-in
                # page, the owner to the moderation page, a member elsewhere.
                for persona in {"login": ["anonymous"], "room-moderation": ["alice"]}.get(route.name, ["bob"]):
                    try:
                        check(persona, "GET", route.path, pairs, None)
                    except AssertionError as failure:
                        tally.failures.append(f"[sweep] {failure!s:.2000}")
    swept = time.monotonic() - started

    # Hypothesis: every route, every persona, GET and POST.
    for route in [r for r in all_routes if r.real]:
        scale = 0.25 if route.path.startswith("/admin/") else 1.0

        try:
            fuzzer(route, scale, list(personas), check)()
        except Exception as failure:
            tally.failures.append(f"[hypothesis {route.path}] {describe(failure):.2000}")

    seconds = time.monotonic() - started
    summary = (
        f"HTTP fuzz ({fuzz_settings().max_examples} examples per URL, a quarter for the admin's): "
        f"{sum(r.real for r in all_routes)} URL patterns ({len(all_routes)} paths), "
        f"{tally.requests} requests in {seconds:.1f} s (the sweep {swept:.1f} s); "
        f"statuses {dict(sorted(tally.statuses.items()))}"
    )
    with capsys.disabled():
        print("\n" + summary + "".join(f"\n\nFAILED {failure}" for failure in tally.failures))
    assert not tally.failures, summary + "\n\n" + "\n\n".join(tally.failures)
