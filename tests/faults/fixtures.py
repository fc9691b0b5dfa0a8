"""Fixtures for the fault and scale-out tests: clusters, Redis servers and proxies a test
builds itself, all stopped at the end (and the processes' logs printed when it failed)."""

from __future__ import annotations

import pytest

from pubsub_site.cluster import Cluster
from tests.faults.kit import RedisServer, Sentinels, TcpProxy


@pytest.fixture
def make_cluster(transactional_db, request):
    clusters: list[Cluster] = []

    def make(env: dict[str, str]) -> Cluster:
        cluster = Cluster(env=env)
        clusters.append(cluster)
        return cluster

    yield make
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    for cluster in clusters:
        cluster.stop(graceful=False)  # the test is over: no need to drain
        if failed:
            print(cluster.logs())


@pytest.fixture
def make_redis():
    servers: list[RedisServer] = []

    def make(**options) -> RedisServer:
        server = RedisServer(**options).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def make_proxy():
    proxies: list[TcpProxy] = []

    def make(target: int) -> TcpProxy:
        proxy = TcpProxy(target).start()
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.close()


@pytest.fixture
def make_sentinels():
    groups: list[Sentinels] = []

    def make(master_port: int, **options) -> Sentinels:
        group = Sentinels(master_port, **options)
        groups.append(group)
        return group.start()

    yield make
    for group in groups:
        group.stop()
