# ruff: noqa: F811 (the fixtures imported below are parameters of the tests)
"""The web command the image ships, run for real: uvicorn refuses an oversized WebSocket frame
from its header (1009) before buffering its payload, and believes X-Forwarded-For only from
the proxy the compose file names, so a peer elsewhere can neither read /metrics nor move the
address the sign-up limit counts (issue 20, defects 5 and 7).

The command is the Dockerfile's CMD (its host and port changed to 127.0.0.1 and a free
port), with the FORWARDED_ALLOW_IPS the compose file gives web, and the test talks to it
from 127.0.0.1: an address that is not the proxy's.
"""

from __future__ import annotations

import json
import re
import socket
import struct
import urllib.error
import urllib.request
from http.cookiejar import CookieJar
from urllib.parse import urlencode

import pytest
from django.conf import settings

from pubsub_site.tests.deploy.files import compose_config, dockerfile_instructions
from tests.faults.fixtures import make_cluster  # noqa: F401 (fixture)
from tests.faults.kit import base_env
from tests.netclient import session_key_for

pytestmark = pytest.mark.processes

FRAME_MAX_BYTES = settings.WS_FRAME_MAX_BYTES


def image_web_command() -> str:
    """The Dockerfile's CMD, listening on 127.0.0.1:$PORT instead of 0.0.0.0:8000."""
    runtime = dockerfile_instructions()
    command = json.loads([arguments for keyword, arguments in runtime if keyword == "CMD"][-1])
    line = " ".join(command)
    assert "--host 0.0.0.0 --port 8000" in line
    return line.replace("--host 0.0.0.0 --port 8000", "--host 127.0.0.1 --port $PORT")


def image_env() -> dict[str, str]:
    """The ENV of the Dockerfile's runtime stage that uvicorn reads, then web's compose environment."""
    env: dict[str, str] = {}
    for keyword, arguments in dockerfile_instructions():
        if keyword == "ENV":
            env.update(re.findall(r"(FORWARDED_ALLOW_IPS)=(\S+)", arguments))
    web = compose_config(("docker-compose.yml",))["services"]["web"]["environment"]
    if "FORWARDED_ALLOW_IPS" in web:
        env["FORWARDED_ALLOW_IPS"] = web["FORWARDED_ALLOW_IPS"]
    return env


def start_image_web(make_cluster, **env: str) -> int:
    cluster = make_cluster(base_env(**image_env(), **env))
    cluster.web_command = image_web_command()
    return cluster.start_web()


def open_websocket(port: int, session_key: str) -> socket.socket:
    """A handshake by hand, so that the test can then write a frame's header alone."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(
        (
            "GET /ws/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            f"Origin: http://127.0.0.1\r\nCookie: sessionid={session_key}\r\n\r\n"
        ).encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = sock.recv(4096)
        assert chunk, response
        response += chunk
    assert response.startswith(b"HTTP/1.1 101"), response
    return sock


def read_close_code(sock: socket.socket) -> int:
    """The code of the close frame the server sends (skipping any frame before it)."""
    buffer = b""
    while True:
        while len(buffer) < 2:
            chunk = sock.recv(65536)
            if not chunk:
                raise AssertionError("the connection ended without a close frame")
            buffer += chunk
        opcode, length = buffer[0] & 0x0F, buffer[1] & 0x7F
        header = 2 + {126: 2, 127: 8}.get(length, 0)
        while len(buffer) < header:
            buffer += sock.recv(65536)
        if length == 126:
            length = struct.unpack("!H", buffer[2:4])[0]
        elif length == 127:
            length = struct.unpack("!Q", buffer[2:10])[0]
        while len(buffer) < header + length:
            buffer += sock.recv(65536)
        payload, buffer = buffer[header : header + length], buffer[header + length :]
        if opcode == 0x8:
            return struct.unpack("!H", payload[:2])[0]


def test_the_image_refuses_an_oversized_frame_from_its_header_before_its_payload(make_cluster, bob):
    """A frame that announces 8 MiB and sends only its first bytes: with uvicorn's default
    (16 MiB) the server waits for, and buffers, the rest; with --ws-max-size at the consumer's
    limit it closes with 1009 at once, from the header. (Only a few bytes follow the header:
    a server that closes a socket with unread data makes the kernel reset the connection, and
    the client may then never read the close frame: tests/faults/test_hostile_frames.py.)"""
    port = start_image_web(make_cluster)
    sock = open_websocket(port, session_key_for(bob))
    announced = 8 * 1024 * 1024
    mask = b"\x01\x02\x03\x04"
    sock.sendall(bytes([0x81, 0x80 | 127]) + struct.pack("!Q", announced) + mask + b"x" * 16)
    try:
        assert read_close_code(sock) == 1009
    except TimeoutError:
        pytest.fail("no close: the server is waiting for the rest of the 8 MiB frame, buffering it")
    finally:
        sock.close()


def test_a_frame_at_the_limit_is_still_taken_by_the_image(make_cluster, bob):
    """--ws-max-size refuses nothing the consumer takes: a frame of exactly FRAME_MAX_BYTES
    reaches the consumer, which answers it (bad JSON), and the socket stays open."""
    port = start_image_web(make_cluster)
    sock = open_websocket(port, session_key_for(bob))
    payload = b" " * FRAME_MAX_BYTES  # blank: not JSON, answered with an error frame
    mask = b"\x00\x00\x00\x00"
    sock.sendall(bytes([0x81, 0x80 | 127]) + struct.pack("!Q", len(payload)) + mask + payload)
    first = sock.recv(2)
    sock.close()
    assert first[0] & 0x0F == 0x1, first  # a text frame (the error), not a close


def fetch(url: str, headers: dict[str, str], data: bytes | None = None, opener=None) -> int:
    request = urllib.request.Request(url, headers=headers, data=data)  # noqa: S310 (our own server)
    try:
        with (opener or urllib.request.build_opener()).open(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_the_image_ignores_a_forged_x_forwarded_for_from_a_peer_that_is_not_the_proxy(make_cluster):
    """/metrics is open to 10.0.0.0/8; the test, at 127.0.0.1, claims to be 10.1.2.3."""
    port = start_image_web(make_cluster, METRICS_ALLOWED_NETS="10.0.0.0/8")
    assert fetch(f"http://127.0.0.1:{port}/metrics", {"X-Forwarded-For": "10.1.2.3"}) == 404
    assert fetch(f"http://127.0.0.1:{port}/metrics", {"X-Forwarded-For": "127.0.0.1"}) == 404


def test_a_forged_x_forwarded_for_does_not_move_the_address_the_sign_up_limit_counts(make_cluster):
    port = start_image_web(make_cluster, RATE_LIMIT_SIGNUP="2/hour")
    base = f"http://127.0.0.1:{port}"
    jar = CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    statuses = []
    for attempt in range(3):
        page = opener.open(f"{base}/accounts/signup/", timeout=10).read().decode()
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        form = {
            "csrfmiddlewaretoken": token,
            "username": f"newcomer{attempt}",
            "password1": "a-long-new-passphrase-77",
            "password2": "a-long-new-passphrase-77",
        }
        headers = {"X-Forwarded-For": f"198.51.100.{attempt + 1}", "Referer": f"{base}/accounts/signup/"}
        statuses.append(fetch(f"{base}/accounts/signup/", headers, urlencode(form).encode(), opener))
        jar.clear()  # each sign-up signs in: start the next one signed out
    assert statuses[2] == 429, statuses


def test_the_compose_file_trusts_only_the_proxys_own_address():
    services = compose_config(("docker-compose.yml",))["services"]
    trusted = services["web"]["environment"]["FORWARDED_ALLOW_IPS"]
    assert trusted not in {"*", ""} and "," not in trusted
    proxy_networks = services["proxy"]["networks"]
    assert [net["ipv4_address"] for net in proxy_networks.values()] == [trusted]
