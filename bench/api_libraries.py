"""Which library serves /api/v1: Django REST framework (+ drf-spectacular) or django-ninja, measured.

    python -m bench.api_libraries [--seconds 8] [--rounds 3] [--connections 16]

One Django project, no database, both libraries mounted side by side and served by one
uvicorn process (uvloop + httptools, as in production); an aiohttp client with keep-alive
connections hammers one endpoint at a time, the two libraries interleaved round by round
so that the shared machine's load hits both alike. The endpoints are the API's two hot
ones with their real shapes: a history GET answering 50 messages through the library's
response schema, and a publish POST validating ``{body, reply_to?, idempotency_key?}``
and answering a message. Both authenticate a Bearer header the same way (a dictionary
lookup) so that what differs is the library: routing, parsing, validation, serialisation,
and how it runs the view (DRF: a sync view, run in Django's thread under ASGI; ninja: an
``async def`` view on the event loop).
"""

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time

MESSAGE = {
    "room": "lobby",
    "seq": 1,
    "rev": 1,
    "author": {"id": 1, "username": "alice", "bot": False},
    "body": "x" * 120,
    "client_id": "8f0c6a5e-1f55-4f3e-9d8f-0c5a5e1f554f",
    "sent_at": "2026-01-01T00:00:00.000000Z",
    "claps": 0,
    "edited": False,
    "deleted": False,
}
PAGE = [dict(MESSAGE, seq=i) for i in range(1, 51)]
TOKEN = "psk_" + "a" * 43


def app():
    """The ASGI application serving both libraries (run in the server process)."""
    import django
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench",  # noqa: S106 (a throwaway process)
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "rest_framework", "ninja"],
        MIDDLEWARE=[],
        DATABASES={},
        REST_FRAMEWORK={
            "DEFAULT_AUTHENTICATION_CLASSES": [],
            "DEFAULT_PERMISSION_CLASSES": [],
            "UNAUTHENTICATED_USER": None,
            "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
            "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
        },
    )
    django.setup()
    from django.core.asgi import get_asgi_application

    return get_asgi_application()


def _urlpatterns():
    from django.urls import path
    from ninja import NinjaAPI, Schema
    from ninja.security import HttpBearer
    from rest_framework import serializers, status
    from rest_framework.authentication import BaseAuthentication
    from rest_framework.exceptions import AuthenticationFailed
    from rest_framework.response import Response
    from rest_framework.views import APIView

    # --- django-ninja ---
    class Bearer(HttpBearer):
        async def authenticate(self, request, token):
            return token if token == TOKEN else None

    class Author(Schema):
        id: int
        username: str
        bot: bool = False

    class Message(Schema):
        room: str
        seq: int
        rev: int
        author: Author
        body: str
        client_id: str
        sent_at: str
        claps: int
        edited: bool
        deleted: bool

    class Page(Schema):
        messages: list[Message]
        has_more: bool

    class Publish(Schema):
        body: str
        reply_to: int | None = None
        idempotency_key: str | None = None

    api = NinjaAPI(auth=Bearer(), urls_namespace="bench-ninja")

    @api.get("/rooms/{slug}/messages", response=Page)
    async def ninja_history(request, slug: str, after: int | None = None, limit: int = 50):
        return {"messages": PAGE, "has_more": False}

    @api.post("/rooms/{slug}/messages", response={201: Message})
    async def ninja_publish(request, slug: str, payload: Publish):
        return 201, dict(MESSAGE, body=payload.body)

    # --- Django REST framework ---
    class DrfBearer(BaseAuthentication):
        def authenticate(self, request):
            header = request.META.get("HTTP_AUTHORIZATION", "")
            if header != f"Bearer {TOKEN}":
                raise AuthenticationFailed("bad token")
            return (None, header)

    class AuthorSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        username = serializers.CharField()
        bot = serializers.BooleanField(default=False)

    class MessageSerializer(serializers.Serializer):
        room = serializers.CharField()
        seq = serializers.IntegerField()
        rev = serializers.IntegerField()
        author = AuthorSerializer()
        body = serializers.CharField()
        client_id = serializers.CharField()
        sent_at = serializers.CharField()
        claps = serializers.IntegerField()
        edited = serializers.BooleanField()
        deleted = serializers.BooleanField()

    class PublishSerializer(serializers.Serializer):
        body = serializers.CharField()
        reply_to = serializers.IntegerField(required=False, allow_null=True)
        idempotency_key = serializers.CharField(required=False, allow_null=True, max_length=64)

    class DrfMessages(APIView):
        authentication_classes = [DrfBearer]

        def get(self, request, slug):
            return Response({"messages": MessageSerializer(PAGE, many=True).data, "has_more": False})

        def post(self, request, slug):
            form = PublishSerializer(data=request.data)
            form.is_valid(raise_exception=True)
            return Response(
                MessageSerializer(dict(MESSAGE, body=form.validated_data["body"])).data, status=status.HTTP_201_CREATED
            )

    return [path("ninja/", api.urls), path("drf/rooms/<slug:slug>/messages", DrfMessages.as_view())]


def __getattr__(name):  # the URLconf's urlpatterns, built once Django is set up
    if name == "urlpatterns":
        patterns = _urlpatterns()
        globals()["urlpatterns"] = patterns
        return patterns
    raise AttributeError(name)


async def _load(url: str, *, method: str, seconds: float, connections: int) -> tuple[float, float]:
    """(requests per second, p99 in ms) of ``connections`` keep-alive clients for ``seconds``."""
    import aiohttp

    headers = {"Authorization": f"Bearer {TOKEN}"}
    payload = b'{"body": "hello from the bench", "idempotency_key": "k"}'
    latencies: list[float] = []
    deadline = time.monotonic() + seconds

    async def client(session):
        while time.monotonic() < deadline:
            started = time.perf_counter()
            if method == "GET":
                async with session.get(url, headers=headers) as response:
                    await response.read()
            else:
                async with session.post(
                    url, data=payload, headers=dict(headers, **{"Content-Type": "application/json"})
                ) as response:
                    await response.read()
            assert response.status in (200, 201), (url, response.status)
            latencies.append(time.perf_counter() - started)

    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.monotonic()
        await asyncio.gather(*(client(session) for _ in range(connections)))
        elapsed = time.monotonic() - started
    latencies.sort()
    return len(latencies) / elapsed, latencies[int(len(latencies) * 0.99)] * 1000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "bench.api_libraries:app",
            "--port",
            str(port),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        env=dict(os.environ, DJANGO_SETTINGS_MODULE=""),
    )
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        base = f"http://127.0.0.1:{port}"
        endpoints = {
            ("ninja", "GET"): f"{base}/ninja/rooms/lobby/messages?limit=50",
            ("drf", "GET"): f"{base}/drf/rooms/lobby/messages?limit=50",
            ("ninja", "POST"): f"{base}/ninja/rooms/lobby/messages",
            ("drf", "POST"): f"{base}/drf/rooms/lobby/messages",
        }
        for (_, method), url in endpoints.items():  # warm up
            asyncio.run(_load(url, method=method, seconds=1, connections=args.connections))
        results: dict[tuple[str, str], list[tuple[float, float]]] = {key: [] for key in endpoints}
        for _ in range(args.rounds):
            for key, url in endpoints.items():
                load = _load(url, method=key[1], seconds=args.seconds, connections=args.connections)
                results[key].append(asyncio.run(load))
        print(f"{'library':<8} {'endpoint':<22} {'req/s (median)':>15} {'p99 ms (median)':>16}  rounds")
        for (library, method), runs in results.items():
            rates = sorted(r for r, _ in runs)
            p99s = sorted(p for _, p in runs)
            name = "history GET (50 msgs)" if method == "GET" else "publish POST"
            print(
                f"{library:<8} {name:<22} {rates[len(rates) // 2]:>15.0f} {p99s[len(p99s) // 2]:>16.1f}  "
                + " ".join(f"{r:.0f}" for r in rates)
            )
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
