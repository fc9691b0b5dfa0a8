"""Who may read /metrics: an address in METRICS_ALLOWED_NETS, or the bearer token; anyone else
gets a 404. The address is the one the server gives: X-Forwarded-For counts only when uvicorn,
trusting the proxy it came from, put it there (against a real uvicorn:
tests/processes/test_metrics_processes.py)."""

from __future__ import annotations

import pytest

from pubsub_site.metrics_http import address_allowed, may_read_metrics, token_allowed
from pubsub_site.tests.deploy.test_settings import run_manage

TOKEN = "a-long-enough-metrics-token-0123456789"


@pytest.fixture
def metrics_settings(settings):
    settings.METRICS_ALLOWED_NETS = ["127.0.0.1/32", "::1/128"]
    settings.METRICS_TOKEN = TOKEN
    return settings


def scrape(client, **extra):
    return client.get("/metrics", **extra)


def looks_like_metrics(response) -> bool:
    body = response.content.decode()
    return response.status_code == 200 and "# TYPE pubsub_ws_connections gauge" in body


# --- The rule ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("client", "allowed"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),  # IPv4 on a dual-stack socket
        ("127.0.0.2", False),
        ("203.0.113.9", False),
        ("10.1.2.3", False),
        ("", False),
        (None, False),
        ("not-an-address", False),
        ("unix:/run/uvicorn.sock", False),
    ],
)
def test_only_addresses_in_the_allowed_networks_pass(metrics_settings, client, allowed):
    assert address_allowed(client) is allowed


def test_the_allowed_networks_come_from_the_setting(metrics_settings):
    metrics_settings.METRICS_ALLOWED_NETS = ["10.0.0.0/8", "fd00::/8"]
    assert address_allowed("10.200.0.7")
    assert address_allowed("fd00::42")
    assert not address_allowed("127.0.0.1")


@pytest.mark.parametrize(
    ("header", "allowed"),
    [
        (f"Bearer {TOKEN}", True),
        (f"bearer {TOKEN}", True),
        (f"Bearer {TOKEN}x", False),
        (f"Bearer {TOKEN[:-1]}", False),
        (f"Basic {TOKEN}", False),
        (TOKEN, False),
        ("Bearer ", False),
        ("", False),
        (None, False),
    ],
)
def test_the_token_must_be_presented_whole_as_a_bearer_token(metrics_settings, header, allowed):
    assert token_allowed(header) is allowed


def test_no_token_is_accepted_when_none_is_configured(metrics_settings):
    metrics_settings.METRICS_TOKEN = ""
    assert not token_allowed("Bearer ")
    assert not token_allowed("Bearer x")
    assert may_read_metrics("127.0.0.1", None)


# --- The endpoint through Django ---------------------------------------------------------------


def test_an_allowed_address_reads_the_metrics(metrics_settings, client):
    response = scrape(client, REMOTE_ADDR="127.0.0.1")
    assert looks_like_metrics(response)
    assert response["Content-Type"].startswith("text/plain")
    assert response["Cache-Control"] == "no-store"


def test_anyone_else_gets_a_404_that_says_nothing(metrics_settings, client):
    response = scrape(client, REMOTE_ADDR="203.0.113.9")
    assert response.status_code == 404
    assert b"pubsub" not in response.content


def test_the_token_opens_it_from_anywhere_a_wrong_one_does_not(metrics_settings, client):
    assert looks_like_metrics(scrape(client, REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION=f"Bearer {TOKEN}"))
    response = scrape(client, REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION="Bearer guessed-wrong-token-000000")
    assert response.status_code == 404


def test_a_forwarded_for_header_is_not_read_by_the_app(metrics_settings, client):
    """Only the server's address counts: a client cannot claim a loopback address, and a
    loopback client is not refused for what its header says."""
    claimed = scrape(client, REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR="127.0.0.1", HTTP_X_REAL_IP="127.0.0.1")
    assert claimed.status_code == 404
    assert looks_like_metrics(scrape(client, REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.9"))


def test_only_get_and_head(metrics_settings, client):
    assert client.head("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200
    assert client.post("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 404


def test_it_answers_whatever_the_host_and_without_the_https_redirect(metrics_settings, client):
    """Prometheus asks each replica by its own address, which ALLOWED_HOSTS does not list, over
    plain HTTP on the private network."""
    metrics_settings.SECURE_SSL_REDIRECT = True
    response = scrape(client, REMOTE_ADDR="127.0.0.1", HTTP_HOST="10.0.3.7:8000")
    assert looks_like_metrics(response)
    assert client.get("/healthz", HTTP_HOST="10.0.3.7:8000").status_code == 400  # the rest of the site checks


def test_openmetrics_when_asked_for(metrics_settings, client):
    response = scrape(client, REMOTE_ADDR="127.0.0.1", HTTP_ACCEPT="application/openmetrics-text; version=1.0.0")
    assert response["Content-Type"].startswith("application/openmetrics-text")
    assert response.content.decode().rstrip().endswith("# EOF")


async def test_the_async_path_answers_the_same(metrics_settings, async_client):
    """(The async test client always comes from 127.0.0.1.)"""
    assert (await async_client.get("/metrics")).status_code == 200
    metrics_settings.METRICS_ALLOWED_NETS = ["10.0.0.0/8"]
    assert (await async_client.get("/metrics")).status_code == 404
    assert (await async_client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})).status_code == 200


def test_the_settings_refuse_a_bad_network_or_a_short_token():
    bad_net = run_manage("check", METRICS_ALLOWED_NETS="10.0.0.0/8,nonsense")
    assert bad_net.returncode != 0
    assert "METRICS_ALLOWED_NETS: 'nonsense' is not a network" in bad_net.stderr
    short = run_manage("check", METRICS_TOKEN="short")
    assert short.returncode != 0
    assert "METRICS_TOKEN must be at least 16 characters" in short.stderr
