"""Calls of a Lua script made together go to Redis in one pipeline (messaging.store.script_batch),
each caller getting what a lone call would have given it."""

import asyncio

import pytest
from redis.exceptions import ResponseError

from messaging.store.lua import LuaScript
from messaging.store.script_batch import run_batched

pytestmark = pytest.mark.usefixtures("async_cleanup")

# INCR the key and return the count with the caller's argument; refuse "bad" with an error reply.
COUNT = LuaScript(
    """
    if ARGV[1] == 'bad' then return redis.error_reply('refused ' .. ARGV[1]) end
    return {redis.call('INCR', KEYS[1]), ARGV[1]}
    """
)


def _client():
    from pubsub_site.redis.client import get_async_redis

    return get_async_redis(1)


def _connections(client) -> int:
    pool = client.connection_pool
    return len(pool._available_connections) + len(pool._in_use_connections)


async def test_calls_made_together_share_one_connection_and_run_in_the_order_they_were_made():
    client = _client()
    replies = await asyncio.gather(*(run_batched(client, COUNT, ["n"], [str(i)]) for i in range(50)))
    assert replies == [[i + 1, str(i).encode()] for i in range(50)]
    assert _connections(client) == 1  # fifty lone calls at once would have opened fifty


async def test_a_command_error_reaches_its_caller_only():
    client = _client()
    replies = await asyncio.gather(
        run_batched(client, COUNT, ["n"], ["a"]),
        run_batched(client, COUNT, ["n"], ["bad"]),
        run_batched(client, COUNT, ["n"], ["c"]),
        return_exceptions=True,
    )
    assert replies[0] == [1, b"a"]
    assert isinstance(replies[1], ResponseError) and "refused bad" in str(replies[1])
    assert replies[2] == [2, b"c"]


async def test_a_server_that_lost_its_scripts_gets_them_again_and_every_call_is_made_once():
    client = _client()
    assert await run_batched(client, COUNT, ["n"], ["first"]) == [1, b"first"]
    await client.script_flush()
    replies = await asyncio.gather(*(run_batched(client, COUNT, ["n"], [str(i)]) for i in range(3)))
    assert replies == [[2, b"0"], [3, b"1"], [4, b"2"]]
    assert int(await client.get("n")) == 4


async def test_a_caller_cancelled_while_it_waits_does_not_stop_the_others():
    client = _client()
    gone = asyncio.ensure_future(run_batched(client, COUNT, ["n"], ["gone"]))
    stays = asyncio.ensure_future(run_batched(client, COUNT, ["n"], ["stays"]))
    await asyncio.sleep(0)
    gone.cancel()
    assert await stays == [2, b"stays"]  # the cancelled call had been written before it
    assert gone.cancelled()


async def test_a_failed_connection_reaches_every_caller_of_the_batch():
    import redis.asyncio as aioredis
    from redis.exceptions import ConnectionError as RedisConnectionError

    client = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)  # nothing listens there
    try:
        replies = await asyncio.gather(
            *(run_batched(client, COUNT, ["n"], [str(i)]) for i in range(3)), return_exceptions=True
        )
        assert all(isinstance(r, RedisConnectionError) for r in replies)
    finally:
        await client.aclose()
