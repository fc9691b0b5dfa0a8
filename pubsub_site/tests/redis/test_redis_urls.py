"""Redis settings: plain URLs as always, Sentinel services (redis+sentinel://...), and a clear
refusal of anything else (pubsub_site.redis.urls, pubsub_site.env)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pubsub_site.redis.urls import (
    RedisUrlError,
    SentinelService,
    channel_layer_host,
    database_of,
    parse_redis_url,
    redact,
    rq_queue_connection,
    split_redis_urls,
)

ROOT = Path(__file__).resolve().parents[3]
FORMS = "write redis://host:port/db or redis+sentinel://host:port,host:port/mastername/db"


@pytest.mark.parametrize(
    ("url", "db"),
    [
        ("redis://127.0.0.1:6379/9", 9),
        ("redis://:secret@redis:6379", 0),
        ("rediss://user:secret@cache.example.com:6380/2", 2),
        ("unix:///run/redis.sock?db=3", 3),
    ],
)
def test_a_plain_url_is_taken_as_it_is(url, db):
    assert parse_redis_url(url) is None
    assert database_of(url) == db
    assert channel_layer_host(url) == url  # channels-redis gets the URL, as before
    assert rq_queue_connection(url) == {"URL": url}  # django-rq too


def test_a_sentinel_url_names_the_sentinels_the_master_and_the_database():
    service = parse_redis_url("redis+sentinel://:s3cret@10.0.1.5:26379,10.0.2.5,[fd00::7]:26380/rooms/4")
    assert service == SentinelService(
        sentinels=(("10.0.1.5", 26379), ("10.0.2.5", 26379), ("fd00::7", 26380)),
        master="rooms",
        db=4,
        password="s3cret",
    )
    assert database_of("redis+sentinel://a:1/m") == 0
    with_options = parse_redis_url("redis+sentinel://u:p@a:1/m/1?sentinel_password=sp&sentinel_username=su")
    assert (with_options.username, with_options.password) == ("u", "p")
    assert with_options.sentinel_kwargs()["password"] == "sp"
    assert with_options.sentinel_kwargs()["username"] == "su"


def test_a_sentinel_url_becomes_the_sentinel_forms_of_channels_redis_and_django_rq():
    url = "redis+sentinel://:pw@s1:26379,s2:26379/pubsub/2"
    host = channel_layer_host(url)
    assert host["sentinels"] == [("s1", 26379), ("s2", 26379)]
    assert host["master_name"] == "pubsub"
    assert (host["db"], host["password"]) == (2, "pw")
    config = rq_queue_connection(url)
    assert config["SENTINELS"] == [("s1", 26379), ("s2", 26379)]
    assert (config["MASTER_NAME"], config["DB"], config["PASSWORD"]) == ("pubsub", 2, "pw")


def test_two_urls_name_one_service_when_sentinels_and_master_agree_whatever_the_order_and_database():
    one = parse_redis_url("redis+sentinel://a:1,b:2/m/0")
    assert one.identity == parse_redis_url("redis+sentinel://b:2,a:1/m/5").identity
    assert one.identity != parse_redis_url("redis+sentinel://a:1,b:2/other/0").identity
    assert one.identity != parse_redis_url("redis+sentinel://a:1,c:2/m/0").identity


def test_a_list_keeps_a_sentinel_url_whole_and_separates_the_urls():
    value = "redis+sentinel://a:1,b:2,c:3/rooms-1/0, redis+sentinel://a:1,b:2,c:3/rooms-2/0,redis://x:6379/1"
    assert split_redis_urls(value) == [
        "redis+sentinel://a:1,b:2,c:3/rooms-1/0",
        "redis+sentinel://a:1,b:2,c:3/rooms-2/0",
        "redis://x:6379/1",
    ]
    assert split_redis_urls("redis://a:1/0,redis://b:1/0") == ["redis://a:1/0", "redis://b:1/0"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("localhost:6379", f"'localhost:6379' is not a Redis URL; {FORMS}."),
        ("http://redis:6379/0", "http://redis:6379/0: unknown scheme 'http'"),
        ("redis://redis:port/0", f"redis://redis:port/0: the port is not a number; {FORMS}."),
        ("redis://redis:6379/zero", "redis://redis:6379/zero: the database 'zero' is not a number >= 0."),
        ("redis+sentinel://a:26379,b:26379", f"no master name after the Sentinels; {FORMS}."),
        ("redis+sentinel:///pubsub/0", f"redis+sentinel:///pubsub/0: no Sentinel host:port; {FORMS}."),
        ("redis+sentinel://a:x/pubsub", "redis+sentinel://a:x/pubsub: 'a:x' is not host:port."),
        ("redis+sentinel://a:1/pubsub/0/1", f"too many parts after the Sentinels; {FORMS}."),
        ("redis+sentinel://a:1/pubsub?timeout=3", "unknown option 'timeout' (known: sentinel_password"),
        ("redis://a:6379,b:6379/0", "is not a Redis URL: a plain URL names one server"),
    ],
)
def test_a_malformed_value_is_refused_with_what_is_wrong(value, message):
    with pytest.raises(RedisUrlError) as refused:
        split_redis_urls(value)
    assert message in str(refused.value)


def test_a_password_is_never_shown_in_a_message():
    assert redact("redis+sentinel://:hunter2@a:1,b:2/m/0") == "redis+sentinel://***@a:1,b:2/m/0"
    with pytest.raises(RedisUrlError) as refused:
        parse_redis_url("redis+sentinel://:hunter2@a:1,b:2/m/x")
    assert "hunter2" not in str(refused.value)


def _settings_of(**env: str) -> subprocess.CompletedProcess:
    """The Redis settings of a process started with ``env`` (as JSON on stdout)."""
    clean = {k: v for k, v in os.environ.items() if k not in {"ROOM_REDIS_URLS", "CHANNEL_REDIS_URLS"}}
    code = (
        "import json, django; django.setup(); from django.conf import settings as s; "
        "print(json.dumps({'rooms': s.ROOM_REDIS_URLS, 'hosts': s.CHANNEL_LAYERS['default']['CONFIG'], "
        "'cache': s.CACHES['default']['LOCATION'], 'rq': s.RQ_QUEUES['default'], "
        "'wait': [s.REDIS_WAIT_REPLICAS, s.REDIS_WAIT_TIMEOUT_MS]}))"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "pubsub_site.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_plain_urls_configure_everything_as_before():
    result = _settings_of(REDIS_URL="redis://127.0.0.1:6379/7")
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout)
    assert got["rooms"] == ["redis://127.0.0.1:6379/7"]
    assert got["hosts"] == {"hosts": ["redis://127.0.0.1:6379/7"], "prefix": "pubsub:layer:7:"}
    assert got["cache"] == ["redis://127.0.0.1:6379/7"]
    assert got["rq"] == {"URL": "redis://127.0.0.1:6379/7", "DEFAULT_TIMEOUT": 300}
    assert got["wait"] == [0, 500]  # no WAIT unless asked


def test_sentinel_urls_configure_rooms_layer_cache_and_queue():
    service = "redis+sentinel://10.0.1.5:26379,10.0.2.5:26379,10.0.3.5:26379/pubsub/3"
    result = _settings_of(
        REDIS_URL=service,
        ROOM_REDIS_URLS=f"{service},redis+sentinel://10.0.1.5:26379,10.0.2.5:26379,10.0.3.5:26379/rooms-2/0",
        REDIS_WAIT_REPLICAS="1",
    )
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout)
    assert len(got["rooms"]) == 2 and got["rooms"][0] == service
    layer_host = got["hosts"]["hosts"][0]
    assert layer_host["master_name"] == "pubsub" and layer_host["db"] == 3
    assert got["hosts"]["prefix"] == "pubsub:layer:3:"
    assert got["cache"] == [service]  # a list: Django would split a string at its commas
    assert got["rq"]["MASTER_NAME"] == "pubsub" and len(got["rq"]["SENTINELS"]) == 3
    assert got["wait"] == [1, 500]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"REDIS_URL": "redis+sentinel://a:1,b:2"}, "REDIS_URL: redis+sentinel://a:1,b:2: no master name"),
        ({"ROOM_REDIS_URLS": "redis://a:1/0,b:2"}, "ROOM_REDIS_URLS: 'b:2' (after 'redis://a:1/0') is not a Redis URL"),
        ({"CHANNEL_REDIS_URLS": "redis+sentinel://a:1/m/x"}, "CHANNEL_REDIS_URLS: redis+sentinel://a:1/m/x: the"),
        ({"REDIS_WAIT_REPLICAS": "-1"}, "REDIS_WAIT_REPLICAS=-1 must be 0 or more."),
        ({"REDIS_WAIT_REPLICAS": "1", "REDIS_WAIT_TIMEOUT_MS": "0"}, "REDIS_WAIT_TIMEOUT_MS must be more than 0"),
    ],
)
def test_a_bad_redis_setting_stops_the_process_with_a_clear_message(env, message):
    result = _settings_of(**env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert message in result.stderr
