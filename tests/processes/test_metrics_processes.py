# ruff: noqa: F811 (the fixtures imported below are parameters of the tests)
"""/metrics on real processes: two uvicorn web processes and an rq worker sharing one
PROMETHEUS_MULTIPROC_DIR add up to exact totals in one scrape of either; a web process
that dies stops counting its connections; X-Forwarded-For counts only from a proxy
uvicorn trusts."""

from __future__ import annotations

import asyncio
import signal
import urllib.error
import urllib.request
from collections import defaultdict

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pubsub_site.cluster import procfile_commands, signal_tree
from rooms.services import room_create
from tests.conftest import wait_until
from tests.faults.fixtures import make_cluster  # noqa: F401 (fixture)
from tests.faults.kit import base_env, make_users, start_webs, wait_for_workers
from tests.netclient import NetClient, session_key_for

pytestmark = pytest.mark.processes

TOKEN = "a-long-enough-metrics-token-0123456789"


def fetch(port: int, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (our own server)
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, ""
    except (urllib.error.URLError, OSError):
        return 0, ""  # nothing listens (yet)


class Scrape:
    """One scrape, summed by sample name and labels."""

    def __init__(self, port: int) -> None:
        status, text = fetch(port)
        assert status == 200, status
        self.values: dict[tuple[str, tuple], float] = defaultdict(float)
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                self.values[(sample.name, tuple(sorted(sample.labels.items())))] += sample.value

    def __call__(self, name: str, **labels: str) -> float:
        wanted = set(labels.items())
        return sum(v for (n, ls), v in self.values.items() if n == name and wanted <= set(ls))


def test_two_web_processes_and_the_worker_count_into_one_scrape(make_cluster, alice, tmp_path):
    shared = tmp_path / "prometheus"
    shared.mkdir()
    cluster = make_cluster(base_env(PROMETHEUS_MULTIPROC_DIR=str(shared)))
    first, second = start_webs(cluster, 2)
    cluster.start_worker()
    wait_for_workers(base_env()["REDIS_URL"], 1)
    room = room_create(creator=alice, name="Counted")
    users = make_users(4)
    keys = [session_key_for(user) for user in users]
    per_client = 10
    sends = per_client * len(users)

    async def scrape(port: int) -> Scrape:
        return await asyncio.to_thread(Scrape, port)

    async def scenario():
        clients = [
            await NetClient.open(port, key) for key, port in zip(keys, [first, first, second, second], strict=True)
        ]
        for client in clients:
            await client.subscribe(room.slug)
        opened = await scrape(first)
        assert opened("pubsub_ws_connections") == 4
        assert opened("pubsub_ws_subscriptions") == 4
        assert opened("pubsub_ws_handshakes_total", outcome="accepted") == 4

        async def talk(client: NetClient, name: str) -> None:
            for i in range(per_client):
                await client.send_message(room.slug, f"{name} {i}")
                await client.recv_type("ack")

        await asyncio.gather(*(talk(c, f"client {n}") for n, c in enumerate(clients)))
        for client in clients:
            await client.collect(lambda c: len(c.of_type("message")) >= sends)
        assert all(len(c.of_type("message")) == sends for c in clients)

        # Every copy is counted by then (a fan-out counts a message before it writes it).
        counted = await scrape(second)
        assert counted("pubsub_messages_sent_total") == sends
        assert counted("pubsub_messages_delivered_total") == sends * len(clients)
        assert counted("pubsub_ws_frames_received_total", type="send") == sends
        assert counted("pubsub_ws_frames_received_total", type="subscribe") == 4
        assert counted("pubsub_ws_handshakes_total", outcome="accepted") == 4
        assert counted("pubsub_ws_errors_sent_total") == 0
        assert counted("pubsub_ws_connections") == 4
        # One observation per fan-out batch, in each of the two processes; never one per copy.
        batches = counted("pubsub_delivery_latency_seconds_count")
        assert 2 <= batches <= 2 * sends
        assert counted("pubsub_delivery_latency_seconds_bucket", le="+Inf") == batches
        assert counted("pubsub_delivery_latency_seconds_sum") > 0

        # The worker's counts are in the same scrape; Redis's state is read at scrape time.
        for _ in range(300):
            persisted = await scrape(first)
            if persisted("pubsub_persisted_messages_total") >= sends and not persisted(
                "pubsub_persist_backlog_messages"
            ):
                break
            await asyncio.sleep(0.1)
        assert persisted("pubsub_persisted_messages_total") == sends
        assert persisted("pubsub_persist_backlog_messages") == 0
        assert persisted("pubsub_persist_lag_seconds") == 0
        assert persisted("pubsub_jobs_total", outcome="failed") == 0
        assert persisted("pubsub_rq_workers", queue="default") == 1
        assert persisted("pubsub_rq_workers", queue="previews") == 1
        assert persisted("pubsub_rq_workers", queue="webhooks") == 1
        assert persisted("pubsub_collector_up") == 4  # rooms/0, jobs/default, jobs/previews and jobs/webhooks

        # Two sockets leave the first process; the second process dies with its two open.
        await clients[0].close()
        await clients[1].close()
        for _ in range(100):
            if (await scrape(second))("pubsub_ws_connections") == 2:
                break
            await asyncio.sleep(0.1)
        doomed = cluster.webs[second]
        signal_tree(doomed, signal.SIGKILL)  # not through the cluster: the scrape must notice alone
        await asyncio.to_thread(doomed.wait, 30)
        return await scrape(first)

    after = asyncio.run(scenario())
    assert after("pubsub_ws_connections") == 0
    assert after("pubsub_ws_subscriptions") == 0
    assert after("pubsub_messages_sent_total") == sends  # a dead process's counts stay in the totals
    assert after("pubsub_messages_delivered_total") == sends * len(users)
    assert after("pubsub_ws_handshakes_total", outcome="accepted") == 4


@pytest.mark.parametrize("trusted", [True, False])
def test_uvicorn_puts_the_forwarded_address_in_only_from_a_proxy_it_trusts(make_cluster, trusted):
    """The allowed network is 10.0.0.0/8 and the test talks to uvicorn from 127.0.0.1, as nginx
    does. When uvicorn trusts 127.0.0.1 as a proxy (its default; the Docker image trusts its
    network), X-Forwarded-For becomes the client's address: a client from outside is refused,
    one from inside passes. When it does not trust the peer, the header is ignored."""
    cluster = make_cluster(base_env(METRICS_ALLOWED_NETS="10.0.0.0/8", METRICS_TOKEN=TOKEN))
    trust = "127.0.0.1" if trusted else "192.0.2.1"
    cluster.web_command = procfile_commands()["web"] + f" --proxy-headers --forwarded-allow-ips {trust}"
    port = cluster.start_web()

    from_inside = fetch(port, {"X-Forwarded-For": "10.1.2.3"})[0]
    from_outside = fetch(port, {"X-Forwarded-For": "203.0.113.9"})[0]
    outside_with_token = fetch(port, {"X-Forwarded-For": "203.0.113.9", "Authorization": f"Bearer {TOKEN}"})[0]
    direct = fetch(port)[0]

    if trusted:
        assert (from_inside, from_outside) == (200, 404)
    else:
        assert (from_inside, from_outside) == (404, 404)  # the peer, 127.0.0.1, is not in 10.0.0.0/8
    assert outside_with_token == 200
    assert direct == 404


def test_the_worker_serves_its_own_metrics_where_no_directory_is_shared(make_cluster, alice):
    """Docker: one process per container, no PROMETHEUS_MULTIPROC_DIR; the worker listens itself."""
    from pubsub_site.cluster import free_port

    port = free_port()
    cluster = make_cluster(base_env(METRICS_WORKER_PORT=str(port)))
    cluster.start_worker()
    wait_until(lambda: fetch(port)[0] == 200, timeout=30)
    _, text = fetch(port)
    assert "# TYPE pubsub_persisted_messages_total counter" in text
    assert "process_resident_memory_bytes" in text  # a process of its own: the process collector too
    assert "pubsub_persist_backlog_messages" not in text  # Redis's state: the web processes serve it
    request = urllib.request.Request(f"http://127.0.0.1:{port}/other")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)  # noqa: S310 (our own server)
    assert refused.value.code == 404


def test_a_client_that_stops_reading_is_counted_as_cut_off(make_cluster, alice):
    """The cut-off of tests/faults/test_slow_client.py, counted: a 1011 close and a cut-off,
    and the connection no longer open."""
    from tests.faults.test_slow_client import BODY, open_non_reader

    shared_env = base_env(WS_SEND_BACKLOG_MAX_BYTES=str(256 * 1024))
    cluster = make_cluster(shared_env)
    (port,) = start_webs(cluster, 1)
    room = room_create(creator=alice, name="Firehose")
    sender_key, reader_key = (session_key_for(u) for u in make_users(2))

    async def scenario() -> Scrape:
        sender = await NetClient.open(port, sender_key)
        await sender.subscribe(room.slug)
        slow = await open_non_reader(port, reader_key, room.slug)
        for i in range(400):  # 16 KB each: 6 MiB, past the kernel's buffers and the bound
            await sender.send_message(room.slug, f"{i} {BODY}")
            await sender.recv_type("ack")
            sender.frames.clear()
        for _ in range(100):
            scrape = await asyncio.to_thread(Scrape, port)
            if scrape("pubsub_ws_connections") == 1:
                break
            await asyncio.sleep(0.1)
        slow.transport.abort()
        await sender.close()
        return scrape

    scrape = asyncio.run(scenario())
    assert scrape("pubsub_ws_cutoffs_total") == 1
    assert scrape("pubsub_ws_server_closes_total", code="1011") == 1
    assert scrape("pubsub_ws_connections") == 1  # the sender
    assert scrape("pubsub_messages_delivered_total") >= 400  # the sender's own copies at least
