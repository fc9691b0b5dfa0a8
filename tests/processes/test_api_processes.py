"""The HTTP API and incoming webhooks over real processes: a web process (uvicorn) and a worker."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

import pytest
from django.contrib.auth import get_user_model
from websockets.asyncio.client import connect

from api.services import bot_create, token_create, token_revoke, webhook_create
from messaging.models import Message
from rooms.models import Membership, Room
from rooms.services import direct_open
from tests.conftest import wait_until
from tests.netclient import NetClient, session_key_for

pytestmark = pytest.mark.processes


def call(port: int, method: str, path: str, token: str | None = None, body: object = None) -> tuple[int, dict, object]:
    """(status, JSON body, headers) of one request to the API."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (a local test server)
            raw, status, headers = response.read(), response.status, response.headers
    except urllib.error.HTTPError as error:
        raw, status, headers = error.read(), error.code, error.headers
    return status, (json.loads(raw) if raw else {}), headers


def test_a_token_publishes_and_members_on_sockets_get_it_live_with_the_next_seq(cluster, alice, bob, public_room):
    port = cluster.start_web()
    cluster.start_worker()
    Membership.objects.create(room=public_room, user=bob)
    token = token_create(user=alice, name="ci").secret
    bob_key = session_key_for(bob)

    async def scenario():
        reader = await NetClient.open(port, bob_key)
        await reader.subscribe(public_room.slug)
        await reader.send_message(public_room.slug, "from a browser")
        first = await reader.recv_type("message")
        status, message, _ = await asyncio.to_thread(
            call, port, "POST", f"/api/v1/rooms/{public_room.slug}/messages", token, {"body": "from a program"}
        )
        live = await reader.recv_type("message")
        await reader.close()
        return first, status, message, live

    first, status, message, live = asyncio.run(scenario())
    assert status == 201
    assert message["seq"] == first["seq"] + 1
    assert live["seq"] == message["seq"] and live["body"] == "from a program"
    assert live["author"] == {"id": alice.pk, "username": "alice"}
    assert {k: v for k, v in live.items() if k != "type"} == message
    wait_until(lambda: Message.objects.filter(room=public_room, seq=message["seq"]).exists())


def test_a_retry_with_the_same_idempotency_key_returns_the_same_seq_and_stores_one_message(cluster, alice, public_room):
    port = cluster.start_web()
    cluster.start_worker()
    token = token_create(user=alice, name="ci").secret
    path = f"/api/v1/rooms/{public_room.slug}/messages"
    payload = {"body": "exactly once", "idempotency_key": "order-42"}
    first = call(port, "POST", path, token, payload)
    again = call(port, "POST", path, token, payload)
    other = call(port, "POST", path, token, {"body": "another", "idempotency_key": "order-43"})
    assert (first[0], again[0], other[0]) == (201, 200, 201)
    assert again[1]["seq"] == first[1]["seq"] and again[1]["client_id"] == first[1]["client_id"]
    assert other[1]["seq"] == first[1]["seq"] + 1
    status, page, _ = call(port, "GET", f"{path}?after=0", token)
    assert status == 200
    assert [m["body"] for m in page["messages"]] == ["exactly once", "another"]
    wait_until(lambda: Message.objects.filter(room=public_room).count() == 2)


def test_batch_publish_answers_each_item_and_says_which_failed(cluster, alice, public_room, private_room):
    port = cluster.start_web()
    token = token_create(user=alice, name="ci").secret
    items = [
        {"room": public_room.slug, "body": "one"},
        {"room": "no-such-room", "body": "lost"},
        {"room": private_room.slug, "body": "two"},
        {"room": public_room.slug, "body": "   "},
    ]
    status, answer, _ = call(port, "POST", "/api/v1/messages/batch", token, {"messages": items})
    assert status == 200
    results = answer["results"]
    assert [r["status"] for r in results] == [201, 404, 201, 400]
    assert results[1]["error"]["code"] == "not_found"
    assert results[3]["error"]["code"] == "bad_request"
    assert results[0]["message"]["room"] == public_room.slug and results[2]["message"]["room"] == private_room.slug


def test_a_revoked_or_unknown_token_gets_401_and_an_out_of_scope_one_403(cluster, alice, public_room, private_room):
    port = cluster.start_web()
    revoked = token_create(user=alice, name="old")
    token_revoke(token=revoked.obj)
    reader = token_create(user=alice, name="reader", can_publish=False).secret
    lobby_only = token_create(user=alice, name="lobby", rooms=[public_room]).secret
    path = f"/api/v1/rooms/{public_room.slug}/messages"
    for token in (revoked.secret, "psk_" + "x" * 43, None):
        status, answer, headers = call(port, "POST", path, token, {"body": "hi"})
        assert status == 401 and answer["error"]["code"] == "unauthorized", (token, status, answer)
        assert headers["WWW-Authenticate"].startswith("Bearer")
    status, answer, _ = call(port, "POST", path, reader, {"body": "hi"})
    assert status == 403 and answer["error"]["code"] == "forbidden"
    assert call(port, "GET", path, reader)[0] == 200
    status, answer, _ = call(port, "GET", f"/api/v1/rooms/{private_room.slug}/messages", lobby_only)
    assert status == 403 and answer["error"]["code"] == "forbidden"
    status, answer, _ = call(port, "GET", "/api/v1/rooms", lobby_only)
    assert [r["slug"] for r in answer["rooms"]] == [public_room.slug]


def test_an_outsiders_token_cannot_read_or_post_to_a_private_room_or_a_dm(cluster, alice, bob, private_room):
    port = cluster.start_web()
    carol = get_user_model().objects.create_user("carol", password="x-long-password")
    dm = direct_open(opener=alice, usernames=["bob"])
    outsider = token_create(user=carol, name="nosy").secret
    member = token_create(user=bob, name="bob").secret
    for room in (private_room, dm):
        path = f"/api/v1/rooms/{room.slug}/messages"
        for method, body in (("GET", None), ("POST", {"body": "let me in"})):
            status, answer, _ = call(port, method, path, outsider, body)
            assert status == 404 and answer["error"]["code"] == "not_found", (room.kind, method, status, answer)
        assert call(port, "GET", path, member)[0] == 200
    rooms = [r["slug"] for r in call(port, "GET", "/api/v1/rooms", outsider)[1]["rooms"]]
    assert private_room.slug not in rooms and dm.slug not in rooms
    kinds = {r["slug"]: r["kind"] for r in call(port, "GET", "/api/v1/rooms", member)[1]["rooms"]}
    assert kinds[private_room.slug] == "private" and kinds[dm.slug] == "direct"


def test_an_incoming_webhook_post_appears_in_the_room_as_its_bot(cluster, alice, bob, public_room):
    port = cluster.start_web()
    cluster.start_worker()
    Membership.objects.create(room=public_room, user=bob)
    bot = bot_create(room=public_room, created_by=alice, username="deploys")
    hook = webhook_create(bot=bot, created_by=alice, name="ci")
    bob_key = session_key_for(bob)

    async def scenario():
        reader = await NetClient.open(port, bob_key)
        await reader.subscribe(public_room.slug)
        slack = await asyncio.to_thread(call, port, "POST", f"/api/v1/hooks/{hook.secret}", None, {"text": "deployed"})
        live = await reader.recv_type("message")
        ours = await asyncio.to_thread(call, port, "POST", f"/api/v1/hooks/{hook.secret}", None, {"body": "again"})
        second = await reader.recv_type("message")
        await reader.close()
        return slack, live, ours, second

    slack, live, ours, second = asyncio.run(scenario())
    assert slack[0] == 201 and ours[0] == 201
    assert live["body"] == "deployed" and second["body"] == "again"
    assert live["author"] == {"id": bot.user_id, "username": "deploys", "bot": True}
    assert call(port, "POST", "/api/v1/hooks/whk_nope", None, {"text": "x"})[0] == 404
    status, answer, _ = call(port, "POST", f"/api/v1/hooks/{hook.secret}", None, {"colour": "red"})
    assert status == 400 and answer["error"]["code"] == "bad_request"


def test_a_bots_token_opens_a_socket_its_messages_say_bot_and_its_scopes_hold(cluster, alice, public_room):
    port = cluster.start_web()
    other = Room.objects.create(name="Elsewhere", slug="elsewhere", created_by=alice)
    bot = bot_create(room=public_room, created_by=alice, username="helper")
    reader_token = token_create(user=bot.user, name="reads", can_publish=False, rooms=[public_room]).secret
    writer_token = token_create(user=bot.user, name="writes", rooms=[public_room]).secret

    async def open_with(token):
        return NetClient(
            await connect(f"ws://127.0.0.1:{port}/ws/", additional_headers={"Authorization": f"Bearer {token}"}), port
        )

    async def scenario():
        reader = await open_with(reader_token)
        await reader.subscribe(public_room.slug)
        await reader.send({"type": "subscribe", "room": other.slug, "ref": "x"})
        out_of_scope = await reader.recv_type("error")
        await reader.send_message(public_room.slug, "may I?")
        no_publish = await reader.recv_type("error")
        writer = await open_with(writer_token)
        await writer.subscribe(public_room.slug)
        await writer.send_message(public_room.slug, "beep")
        ack = await writer.recv_type("ack")
        seen = await reader.recv_type("message")
        await reader.close()
        await writer.close()
        return out_of_scope, no_publish, ack, seen

    out_of_scope, no_publish, ack, seen = asyncio.run(scenario())
    assert out_of_scope["code"] == "forbidden" and no_publish["code"] == "forbidden"
    assert seen["seq"] == ack["seq"] and seen["author"] == {"id": bot.user_id, "username": "helper", "bot": True}
    with pytest.raises(Exception, match="403"):
        asyncio.run(open_with("psk_" + "n" * 43))


def test_past_its_rate_limit_a_token_gets_429_with_retry_after(cluster, alice, public_room):
    cluster.env["API_RATE_LIMIT"] = "3/minute"
    port = cluster.start_web()
    token = token_create(user=alice, name="busy").secret
    statuses = [call(port, "GET", "/api/v1/rooms", token)[0] for _ in range(3)]
    status, answer, headers = call(port, "GET", "/api/v1/rooms", token)
    assert statuses == [200, 200, 200]
    assert status == 429 and answer["error"]["code"] == "rate_limited"
    assert 1 <= int(headers["Retry-After"]) <= 60 and answer["error"]["retry_after"] > 0


def test_edit_clap_and_delete_over_the_api_reach_the_members_and_only_the_author_edits(
    cluster, alice, bob, public_room
):
    port = cluster.start_web()
    cluster.start_worker()
    Membership.objects.create(room=public_room, user=bob)
    alice_token, bob_token = token_create(user=alice, name="a").secret, token_create(user=bob, name="b").secret
    bob_key = session_key_for(bob)
    path = f"/api/v1/rooms/{public_room.slug}/messages"

    async def scenario():
        reader = await NetClient.open(port, bob_key)
        await reader.subscribe(public_room.slug)
        _, message, _ = await asyncio.to_thread(call, port, "POST", path, alice_token, {"body": "first draft"})
        seq = message["seq"]
        edited = await asyncio.to_thread(call, port, "PATCH", f"{path}/{seq}", alice_token, {"body": "final"})
        updated = await reader.recv_type("message_updated")
        refused = await asyncio.to_thread(call, port, "PATCH", f"{path}/{seq}", bob_token, {"body": "mine now"})
        clapped = await asyncio.to_thread(call, port, "POST", f"{path}/{seq}/claps", bob_token, {"count": 3})
        deleted = await asyncio.to_thread(call, port, "DELETE", f"{path}/{seq}", alice_token)
        gone = await reader.recv_type("message_deleted")
        await reader.close()
        return seq, edited, updated, refused, clapped, deleted, gone

    seq, edited, updated, refused, clapped, deleted, gone = asyncio.run(scenario())
    assert edited[0] == 200 and edited[1]["body"] == "final" and edited[1]["edited"] is True
    assert updated["seq"] == seq and updated["body"] == "final"
    assert refused[0] == 403 and refused[1]["error"]["code"] == "forbidden"
    assert clapped[0] == 200 and clapped[1]["total"] == 3 and clapped[1]["user_total"] == 3
    assert deleted[0] == 204 and gone["seq"] == seq
    status, page, _ = call(port, "GET", f"{path}?after={seq - 1}", bob_token)
    assert status == 200
    assert page["messages"][0]["deleted"] is True and page["messages"][0]["body"] == ""
