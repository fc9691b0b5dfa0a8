"""The process-wide Redis clients: one pool per server, safe across forks and event loops."""

import asyncio
import os

from pubsub_site.redis.client import get_async_redis, get_redis


def test_the_sync_client_is_one_per_process_and_server():
    assert get_redis() is get_redis()
    assert get_redis().ping()


def test_a_forked_child_gets_fresh_connections_and_the_parent_keeps_its_own():
    client = get_redis()
    client.set("fork-test", "parent")
    parent_client_id = client.client_id()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child, as an rq work horse is
        try:
            # A shared socket would answer with the parent's connection id.
            ok = client.client_id() != parent_client_id and client.set("fork-test", "child")
            os.write(write, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 1) == b"1"
    assert client.get("fork-test") == b"child"
    assert client.client_id() == parent_client_id  # the parent's connection survived the child


def test_each_event_loop_gets_its_own_async_client():
    clients = []

    async def ping():
        client = get_async_redis()
        assert client is get_async_redis()
        assert await client.ping()
        clients.append(client)

    asyncio.run(ping())
    asyncio.run(ping())  # would fail with "attached to a different loop" if the client were shared
    assert clients[0] is not clients[1]
