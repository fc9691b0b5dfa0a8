"""``/metrics``: the Prometheus endpoint, served only to whom may read it.

Who may: a client whose address is in ``METRICS_ALLOWED_NETS`` (CIDR list; by default the
loopback addresses), or one that presents ``Authorization: Bearer <METRICS_TOKEN>`` (compared
in constant time). Anyone else gets a 404, as if there were nothing here.

The address is the one the ASGI server gives (``REMOTE_ADDR``, from the scope's client):
``X-Forwarded-For`` is never read here. Behind nginx it counts only because uvicorn
(``--proxy-headers``, from the addresses in ``--forwarded-allow-ips``) put the proxy's
``X-Forwarded-For`` into the scope, and nginx overwrites that header with the real client's
address: a request from outside, through the proxy, is refused unless it carries the token.
A client that talks to uvicorn directly from an untrusted address cannot move itself into
an allowed network with a forged header.

The endpoint is answered by the first middleware, before Django checks the Host header
(Prometheus asks each replica by its own address, which ALLOWED_HOSTS does not list) and
before the HTTPS redirect; the scrape itself runs in a worker thread, off the event loop.

What a scrape reads: with ``PROMETHEUS_MULTIPROC_DIR`` (``make run``, ``make cluster``) the
files of every process of the host, web and worker, added up; without it this process's own
values; and in both cases the figures the collector reads from Redis at that moment
(``messaging.metrics_collector``). The worker, which serves no HTTP, can serve its own values
on a port of its own (``jobs_worker --metrics-port``) where no directory is shared (Docker).
"""

from __future__ import annotations

import functools
import glob
import hmac
import ipaddress
import logging
import os
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseNotFound
from prometheus_client import REGISTRY
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from messaging import metrics
from messaging.metrics_collector import RedisStateCollector

logger = logging.getLogger(__name__)

PATH = "/metrics"


# --- Who may read -------------------------------------------------------------------------


@functools.cache
def _networks(nets: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(net, strict=False) for net in nets)


def allowed_networks() -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return _networks(tuple(settings.METRICS_ALLOWED_NETS))


def address_allowed(client: str | None) -> bool:
    if not client:
        return False
    try:
        address = ipaddress.ip_address(client.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 on a dual-stack socket
    return any(address in network for network in allowed_networks())


def token_allowed(authorization: str | None) -> bool:
    token = settings.METRICS_TOKEN
    if not token or not authorization:
        return False
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(credentials.strip().encode(), token.encode())


def may_read_metrics(client: str | None, authorization: str | None) -> bool:
    """The rule of the endpoint: an allowed address, or the token."""
    return token_allowed(authorization) or address_allowed(client)


# --- What a scrape reads --------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (dead, not yet reaped by its parent) is dead
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def sweep_dead_processes(path: str) -> list[int]:
    """Drop the live gauges (connections, subscriptions, backlog) of processes of this host that
    died (a web process killed without a goodbye): prometheus_client's ``mark_process_dead``,
    for every pid that has such files and no process. Their counters stay in the totals.
    The directory must belong to one host (one pid namespace)."""
    dead = set()
    for name in glob.glob(os.path.join(path, "gauge_live*_*.db")):
        try:
            pid = int(os.path.basename(name).rsplit("_", 1)[1].removesuffix(".db"))
        except ValueError:
            continue
        if pid not in dead and not _alive(pid):
            dead.add(pid)
    for pid in dead:
        mark_process_dead(pid, path)
    return sorted(dead)


class _Collectors:
    def __init__(self, collectors: Iterable) -> None:
        self.collectors = list(collectors)

    def collect(self) -> Iterator[Metric]:
        for collector in self.collectors:
            yield from collector.collect()


def process_collector():
    """This host's processes' values (the multi-process files), or this process's own."""
    path = metrics.multiproc_dir()
    if path is None:
        return REGISTRY
    sweep_dead_processes(path)
    return MultiProcessCollector(None, path=path)


def scrape_collector(*, with_redis: bool = True) -> _Collectors:
    """What a scrape of a web process reads: the processes' values and, by default, Redis's state."""
    collectors = [process_collector()]
    if with_redis:
        collectors.append(RedisStateCollector())
    return _Collectors(collectors)


def exposition(accept: str | None, *, with_redis: bool = True) -> tuple[bytes, str]:
    """The body and content type of a scrape (Prometheus text, or OpenMetrics when asked for)."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(scrape_collector(with_redis=with_redis)), content_type


# --- Serving it -------------------------------------------------------------------------------


def _not_found() -> HttpResponse:
    return HttpResponseNotFound(b"Not Found", content_type="text/plain")


def _metrics_response(request: HttpRequest) -> HttpResponse:
    if request.method not in ("GET", "HEAD"):
        return _not_found()
    if not may_read_metrics(request.META.get("REMOTE_ADDR"), request.headers.get("Authorization")):
        return _not_found()
    body, content_type = exposition(request.headers.get("Accept"))
    response = HttpResponse(body, content_type=content_type)
    response["Cache-Control"] = "no-store"
    return response


class MetricsEndpointMiddleware:
    """Answers ``/metrics`` (see the module's docstring) before any other middleware; passes
    every other request on untouched."""

    async_capable = True
    sync_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest):
        if self.is_async:
            return self._acall(request)
        if request.path_info == PATH:
            return _metrics_response(request)
        return self.get_response(request)

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        if request.path_info == PATH:
            # Reading the files and Redis blocks: in a thread of its own, not the event loop's.
            return await sync_to_async(_metrics_response, thread_sensitive=False)(request)
        return await self.get_response(request)


# --- The worker's own listener (no shared directory: Docker) ---------------------------------


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):
        pass


def worker_metrics_app(environ, start_response):
    """A WSGI app with the endpoint's rule: this process's values (no Redis state: the web
    processes report that)."""
    allowed = may_read_metrics(environ.get("REMOTE_ADDR"), environ.get("HTTP_AUTHORIZATION"))
    if environ.get("PATH_INFO") != PATH or environ.get("REQUEST_METHOD") not in ("GET", "HEAD") or not allowed:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"Not Found"]
    body, content_type = exposition(environ.get("HTTP_ACCEPT"), with_redis=False)
    start_response("200 OK", [("Content-Type", content_type), ("Cache-Control", "no-store")])
    return [body]


def start_worker_listener(port: int, host: str = "0.0.0.0") -> WSGIServer:  # noqa: S104 (inside its container)
    """Serve ``/metrics`` of this process on ``host:port`` from a daemon thread."""
    server = make_server(host, port, worker_metrics_app, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics listener", daemon=True).start()
    logger.info("serving /metrics on %s:%d", host, server.server_port)
    return server
