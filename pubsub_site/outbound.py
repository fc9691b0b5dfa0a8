"""Outbound HTTP on behalf of users (link previews, webhooks): the one way the site fetches a
URL somebody else chose, safe from server-side request forgery.

What it guarantees:

- Only ``http`` and ``https``; no user name or password in the URL; none of the ports the
  Fetch standard calls "bad" (SMTP, IRC, ...: https://fetch.spec.whatwg.org/#port-blocking).
- The host is resolved once, and the request is refused (``OutboundRefused``) if ANY of its
  addresses is private, loopback, link-local, multicast, reserved, unspecified, shared
  (100.64/10) or otherwise not global, including such an IPv4 address inside an IPv6 one
  (IPv4-mapped, 6to4, Teredo, NAT64), unless the address lies in one of the networks of the
  setting ``OUTBOUND_ALLOWED_NETWORKS`` (empty by default; tests allow their local server).
- The connection goes to the very address that was checked (no second DNS lookup, so no DNS
  rebinding between the check and the connect); the ``Host`` header, TLS SNI and the
  certificate's check still name the host of the URL.
- Redirects are followed by hand, at most ``max_redirects`` (more is an ``OutboundError``),
  and every hop is checked again as above.
- ``timeout`` bounds the whole call: resolving, connecting, every redirect and reading.
- ``content_types`` (media types, e.g. ``{"text/html"}``) is checked on the final response's
  ``Content-Type`` before any of its body is read; the body is read up to ``max_bytes``, past
  which it is an ``OutboundError`` (a ``Content-Length`` over it is refused before reading).
- Compressed bodies are not asked for (``Accept-Encoding: identity``) and a response that is
  compressed anyway is an ``OutboundError``: nothing is inflated, so no decompression bomb.
- Every request says who it is with ``User-Agent`` (the site's name and address).

It is synchronous and blocking: call it from rq jobs, never on the event loop.
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import socket
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import urllib3
from django.conf import settings
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.util import Timeout

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

# https://fetch.spec.whatwg.org/#bad-port: ports browsers never fetch, because a request
# there can speak to a mail, news, IRC... server.
BAD_PORTS = frozenset(
    {
        0, 1, 7, 9, 11, 13, 15, 17, 19, 20, 21, 22, 23, 25, 37, 42, 43, 53, 69, 77, 79, 87, 95, 101, 102,
        103, 104, 109, 110, 111, 113, 115, 117, 119, 123, 135, 137, 139, 143, 161, 179, 389, 427, 465, 512,
        513, 514, 515, 526, 530, 531, 532, 540, 548, 554, 556, 563, 587, 601, 636, 989, 990, 993, 995, 1719,
        1720, 1723, 2049, 3659, 4045, 4190, 5060, 5061, 6000, 6566, 6665, 6666, 6667, 6668, 6669, 6679,
        6697, 10080,
    }
)  # fmt: skip

# Headers that carry the caller's credentials: not sent on to another origin after a redirect.
_CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_CHUNK = 64 * 1024


class OutboundRefused(Exception):
    """The URL, or an address its host resolves to, is not one the site may fetch."""


class OutboundError(Exception):
    """The fetch failed: network error, timeout, too large, unwanted content type, too many redirects."""


class _Headers(dict):
    """A read-only view of response headers, looked up whatever their case."""

    def __init__(self, items):
        super().__init__((key.lower(), value) for key, value in items)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())

    def get(self, key: str, default=None):
        return super().get(key.lower(), default)


@dataclass(frozen=True)
class OutboundResponse:
    status: int
    headers: Mapping[str, str] = field(repr=False)  # case-insensitive
    body: bytes = field(repr=False)
    url: str  # the final URL, after redirects


def user_agent() -> str:
    return f"pubsub/1.0 (+{settings.SITE_URL})"


def outbound_allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(net, strict=False) for net in settings.OUTBOUND_ALLOWED_NETWORKS]


def address_is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True for an address on the public Internet, with any IPv4 address inside an IPv6 one checked too."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = [ip.ipv4_mapped, ip.sixtofour]
        if ip.teredo:
            embedded.extend(ip.teredo)
        if ip in _NAT64:
            embedded.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if any(v4 is not None and not address_is_public(v4) for v4 in embedded):
            return False
        if ip.ipv4_mapped is not None:
            return True  # the mapped address is the one reached, and it is public
    return not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    )


def address_fetchable(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return address_is_public(ip) or any(ip in net for net in outbound_allowed_networks() if net.version == ip.version)


@dataclass(frozen=True)
class _Target:
    scheme: str
    host: str  # IDNA-encoded, lower case, no brackets
    port: int
    path: str  # path and query, as sent on the request line
    host_header: str


def _parse(url: str) -> _Target:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise OutboundRefused(f"not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in {"http", "https"}:
        raise OutboundRefused(f"only http and https URLs are fetched, not {scheme or 'a relative URL'!r}")
    if parts.username is not None or parts.password is not None:
        raise OutboundRefused("URLs with a user name or password are not fetched")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise OutboundRefused("the URL has no host")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        try:
            host = host.encode("idna").decode("ascii").lower()
        except UnicodeError:
            raise OutboundRefused(f"{host!r} is not a valid host name") from None
    default_port = 443 if scheme == "https" else 80
    port = port if port is not None else default_port
    if port in BAD_PORTS:
        raise OutboundRefused(f"port {port} is not fetched")
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    bracketed = f"[{host}]" if ":" in host else host
    host_header = bracketed if port == default_port else f"{bracketed}:{port}"
    return _Target(scheme=scheme, host=host, port=port, path=path, host_header=host_header)


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise OutboundError("timed out")
    return left


def _resolve_checked(target: _Target, deadline: float) -> str:
    """The address to connect to, once every address the host resolves to is allowed."""
    # getaddrinfo has no timeout of its own: it runs on a thread of its own, waited for no
    # longer than what is left of the call's timeout (a thread per call, not a shared pool,
    # so that a forked worker inherits no pool whose threads did not survive the fork).
    resolver = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbound-dns")
    try:
        future = resolver.submit(socket.getaddrinfo, target.host, target.port, type=socket.SOCK_STREAM)
        infos = future.result(timeout=_remaining(deadline))
    except concurrent.futures.TimeoutError:
        raise OutboundError(f"timed out resolving {target.host}") from None
    except (OSError, UnicodeError) as exc:
        raise OutboundError(f"cannot resolve {target.host}: {exc}") from None
    finally:
        resolver.shutdown(wait=False)
    addresses = []
    for _family, _type, _proto, _canonname, sockaddr in infos:
        ip = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
        if not address_fetchable(ip):
            raise OutboundRefused(f"{target.host} resolves to {ip}, which is not a public address")
        addresses.append(str(ip))
    if not addresses:
        raise OutboundError(f"{target.host} has no address")
    return addresses[0]


def _pool(target: _Target, address: str, timeout: float) -> urllib3.HTTPConnectionPool:
    pool_timeout = Timeout(connect=timeout, read=timeout)
    if target.scheme == "https":
        return urllib3.HTTPSConnectionPool(
            address,
            target.port,
            timeout=pool_timeout,
            retries=False,
            maxsize=1,
            cert_reqs="CERT_REQUIRED",
            server_hostname=target.host,  # SNI names the host, not the address
            assert_hostname=target.host,  # and the certificate must be the host's
        )
    return urllib3.HTTPConnectionPool(address, target.port, timeout=pool_timeout, retries=False, maxsize=1)


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _read_body(response: urllib3.BaseHTTPResponse, max_bytes: int, deadline: float) -> bytes:
    declared = response.headers.get("Content-Length")
    if declared is not None and declared.strip().isdigit() and int(declared) > max_bytes:
        raise OutboundError(f"the response is larger than {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        sock = getattr(response.connection, "sock", None)
        if sock is not None:
            sock.settimeout(_remaining(deadline))  # each read waits only for what is left
        chunk = response.read1(_CHUNK)
        if not chunk:
            break
        size += len(chunk)
        if size > max_bytes:
            raise OutboundError(f"the response is larger than {max_bytes} bytes")
        chunks.append(chunk)
        _remaining(deadline)
    return b"".join(chunks)


def fetch(
    url: str,
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = 5.0,
    max_bytes: int = 1_000_000,
    max_redirects: int = 3,
    content_types: Collection[str] | None = None,
) -> OutboundResponse:
    """Fetch ``url`` under the rules of this module's docstring.

    Raises ``OutboundRefused`` for a URL or address the site may not fetch (also when a
    redirect leads there), ``OutboundError`` for anything else that goes wrong. Any status
    that is not a followed redirect is returned, 4xx and 5xx included.
    """
    deadline = time.monotonic() + timeout
    wanted_types = {t.lower() for t in content_types} if content_types is not None else None
    request_headers = {"User-Agent": user_agent(), "Accept-Encoding": "identity", **(headers or {})}
    current_url = url
    origin = None
    for hop in range(max_redirects + 1):
        target = _parse(current_url)
        if origin is not None and (target.scheme, target.host, target.port) != origin:
            request_headers = {k: v for k, v in request_headers.items() if k.lower() not in _CREDENTIAL_HEADERS}
        origin = (target.scheme, target.host, target.port)
        address = _resolve_checked(target, deadline)
        pool = _pool(target, address, _remaining(deadline))
        try:
            response = pool.urlopen(
                method,
                target.path,
                body=body,
                headers={**request_headers, "Host": target.host_header},
                redirect=False,
                retries=False,
                preload_content=False,
                decode_content=False,
                assert_same_host=False,
                timeout=Timeout(connect=_remaining(deadline), read=_remaining(deadline)),
            )
        except (Urllib3Error, OSError) as exc:
            pool.close()
            raise OutboundError(f"{target.host}: {exc}") from None
        try:
            location = response.headers.get("Location")
            if response.status in REDIRECT_STATUSES and location:
                if hop == max_redirects:
                    raise OutboundError(f"more than {max_redirects} redirects")
                current_url = urljoin(current_url, location)
                # As browsers do: 303 turns anything but HEAD into a GET, 301 and 302 turn a POST into one.
                if (response.status == 303 and method.upper() != "HEAD") or (
                    response.status in {301, 302} and method.upper() == "POST"
                ):
                    method, body = "GET", None
                continue
            if wanted_types is not None and _media_type(response.headers.get("Content-Type")) not in wanted_types:
                raise OutboundError(f"unwanted content type {response.headers.get('Content-Type')!r}")
            encoding = _media_type(response.headers.get("Content-Encoding"))
            if encoding not in {"", "identity"}:
                raise OutboundError(f"unrequested content encoding {encoding!r}")
            try:
                content = _read_body(response, max_bytes, deadline)
            except (Urllib3Error, OSError) as exc:
                raise OutboundError(f"{target.host}: {exc}") from None
            return OutboundResponse(
                status=response.status,
                headers=_Headers(response.headers.items()),
                body=content,
                url=current_url,
            )
        finally:
            response.release_conn()
            pool.close()
    raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover


def url_check(url: str, *, timeout: float = 5.0) -> None:
    """The checks ``fetch`` makes before it connects, without connecting: for a URL kept to be
    fetched later (a webhook's, when it is registered). Raises as ``fetch`` does. What the host
    resolves to may change by then: ``fetch`` checks again every time."""
    _resolve_checked(_parse(url), time.monotonic() + timeout)
