"""Every view of the site, reached with hostile query parameters (huge, negative, non-numeric,
unicode digits, control characters, empty, repeated), answers a 4xx or its normal page: never
a 500 (issue 20, defect 11).

The views are found by walking the URL conf, so a new view is swept without being listed
here; the parameters each view reads are found by watching which ones it asks the request
for (``QueryDict``) when given every parameter the code base reads anywhere. Django's admin
and django-rq's pages (theirs, under /admin/) are left out; the site's own page there
(live status) is in. Path integers (``<int:seq>``) get huge values too, by GET and by POST.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.http import QueryDict
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils.datastructures import MultiValueDict

from rooms.models import Membership, Report, Room

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[3]
HOSTILE = [
    "9999999999999999999.1",  # the search cursor that overflowed
    "9" * 40 + "." + "9" * 40,
    "-9223372036854775809",
    "9223372036854775808",
    "0",
    "1e309",
    "abc",
    "１２",  # fullwidth digits
    "²",  # a digit to str.isdigit, not to int()
    "٣٤",  # Arabic-Indic digits
    ".",
    "\u202e\x00%",
    "💥" * 50,
    "x" * 5000,
    "",
]
THIRD_PARTY = ("admin:", "django_rq", "rq_")


def parameter_names() -> set[str]:
    """Every query parameter the code base reads by name, and Django's `next` and `page`."""
    names = {"next", "page"}
    for path in ROOT.glob("*/**/*.py"):
        if ".venv" in path.parts or "tests" in path.parts:
            continue
        names.update(re.findall(r"GET(?:\.get|\.getlist)?[(\[]\s*[\"'](\w+)", path.read_text(errors="replace")))
    return names


def site_patterns(resolver: URLResolver | None = None, prefix: str = "", namespace: str = ""):
    """(route, pattern, full name) for every view of the URL conf."""
    resolver = resolver or get_resolver()
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from site_patterns(entry, prefix + str(entry.pattern), inner)
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern), entry, f"{namespace}{entry.name or ''}"


@pytest.fixture
def world(alice, bob, charlie):
    from messaging.models import Message

    alice.is_staff = alice.is_superuser = True
    alice.save()
    room = Room.objects.create(name="Sweep", slug="sweep", created_by=alice)
    Membership.objects.create(room=room, user=alice, role=Membership.Role.OWNER)
    Membership.objects.create(room=room, user=bob)
    Message.objects.create(room=room, seq=1, author=bob, body="hello", client_id=uuid.uuid4())
    report = Report.objects.create(room=room, seq=1, reporter=alice, reason="spam")
    # A password-reset or address-verification link's parts: made up, as an attacker's are.
    return {
        "slug": room.slug,
        "seq": 1,
        "report_id": report.pk,
        "user_id": bob.pk,
        "uidb64": "Mg",
        "token": "c0ffee-beef",
        "path": "avatars/none.jpg",  # under /media/
        # The API's (api/urls.py): a webhook's secret, a token, a bot, a webhook that do not exist.
        "secret": "whk_nope",
        "token_id": 1,
        "bot_user_id": bob.pk,
        "hook_id": 1,
        "endpoint_id": 1,  # an outgoing webhook (outgoing_webhooks/urls.py)
        # An attachment that does not exist (attachments/urls.py), and a file name.
        "attachment_id": uuid.UUID(int=1),
        "name": "photo.png",
    }


def paths(world) -> list[tuple[str, str, str]]:
    """(name, path with ordinary values, path template with {int} for its integers)."""
    found = []
    for route, _pattern, name in site_patterns():
        if name.startswith(THIRD_PARTY) or route.startswith("admin/rq/"):
            continue
        if route.startswith("admin/") and "live-status" not in route:
            continue
        if route.startswith("^"):  # a re_path: its named groups take the world's values
            route = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"<\1>", route).strip("^$")
        template = re.sub(r"<int:(\w+)>", "{int}", route)
        ordinary = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(world[m.group(1)]), route)
        template = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(world[m.group(1)]), template)
        found.append((name, "/" + ordinary, "/" + template))
    return found


@pytest.fixture
def reads(monkeypatch):
    """The query parameter names the views ask the request for."""
    seen: set[str] = set()

    def watch(method):
        def watched(self, key, *args, **kwargs):
            seen.add(key)
            return method(self, key, *args, **kwargs)

        return watched

    # `get` and `getlist` only: iterating over the query (a template's urlencode) reads every
    # key through __getitem__ without the view using any.
    for name in ("get", "getlist"):
        monkeypatch.setattr(QueryDict, name, watch(getattr(MultiValueDict, name)), raising=False)
    return seen


def test_the_sweep_covers_every_view_of_the_site(world):
    names = {name for name, _, _ in paths(world)}
    assert {"search", "room-messages", "room-detail", "notifications", "room-claps", "login", "healthz"} <= names
    assert "admin-live-status" in names
    assert len(names) >= 30


def test_no_view_answers_500_to_hostile_query_parameters(world, reads, settings):
    """Each value as the parameter's value, after another (a repeated key: `get` returns the
    last), and before another (what `getlist` reads first)."""
    settings.RATE_LIMITS = {scope: "100000/second" for scope in settings.RATE_LIMITS}  # a 429 would hide a 500
    client = Client(raise_request_exception=False)
    client.force_login(get_user_model().objects.get(username="alice"))
    candidates = parameter_names()
    failures = []
    for name, path, _ in paths(world):
        reads.clear()
        client.get(path, {key: "1" for key in candidates} | {"q": "hello"})
        read = sorted(reads & candidates)
        for key in read:
            for value in HOSTILE:
                # With a search term (a view may read its other parameters only with one).
                for query in ({"q": "hello", key: ["1", value]}, {"q": "hello", key: [value, "1"]}):
                    response = client.get(path, query)
                    if response.status_code >= 500:
                        failures.append(f"{name} GET {path} {query!r:.80}: {response.status_code}")
    assert not failures, "\n".join(failures)


def test_no_view_answers_500_to_huge_integers_in_its_path(world, settings):
    settings.RATE_LIMITS = {scope: "100000/second" for scope in settings.RATE_LIMITS}
    client = Client(raise_request_exception=False)
    client.force_login(get_user_model().objects.get(username="alice"))
    failures = []
    for name, _, template in paths(world):
        if "{int}" not in template:
            continue
        for number in ("9" * 30, "9223372036854775808", "0"):
            path = template.replace("{int}", number)
            for method in (client.get, client.post):
                status = method(path).status_code
                if status >= 500:
                    failures.append(f"{name} {method.__name__.upper()} {path}: {status}")
    assert not failures, "\n".join(failures)


def test_the_search_cursor_that_overflowed_answers_the_first_page(client, alice):
    """/search/?before=9999999999999999999.1 was a 500 (a timedelta past what a datetime holds);
    a cursor that cannot be one starts from the newest result, as any malformed cursor does."""
    client.force_login(alice)
    for before in ("9999999999999999999.1", "1.99999999999999999999", "1.9223372036854775808", "²."):
        response = client.get("/search/", {"q": "hello", "before": before})
        assert response.status_code == 200, before
