"""pubsub_site.outbound against real HTTP servers on this machine (http.server in threads): what
it refuses (schemes, ports, non-public addresses, also after a redirect), what it allows with
OUTBOUND_ALLOWED_NETWORKS, and the bounds it keeps (time, size, content type, redirects)."""

from __future__ import annotations

import http.server
import ipaddress
import socket
import ssl
import subprocess
import threading
import time
from contextlib import contextmanager
from urllib.parse import parse_qs, urlsplit

import pytest

from pubsub_site import outbound
from pubsub_site.outbound import OutboundError, OutboundRefused, address_is_public, fetch


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep the test output quiet
        pass

    def _send(self, status, body=b"", content_type="text/html; charset=utf-8", extra=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.server.seen.append((self.command, self.path, dict(self.headers.items()), b""))
        self._route()

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.server.seen.append((self.command, self.path, dict(self.headers.items()), self.rfile.read(length)))
        self._route()

    def _route(self):
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if parts.path == "/page":
            self._send(200, b"<title>Hello</title>", extra=[("X-Custom", "yes")])
        elif parts.path == "/json":
            self._send(200, b'{"a": 1}', content_type="application/json")
        elif parts.path == "/redirect":
            self._send(int(query.get("status", "302")), extra=[("Location", query["to"])])
        elif parts.path == "/loop":
            self._send(302, extra=[("Location", "/loop")])
        elif parts.path == "/big":
            self._send(200, b"x" * int(query["size"]))
        elif parts.path == "/stream":  # no Content-Length: the size is only known by reading
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Connection", "close")
            self.end_headers()
            for _ in range(int(query["chunks"])):
                self.wfile.write(b"y" * 1024)
            self.close_connection = True
        elif parts.path == "/slow":
            time.sleep(float(query["seconds"]))
            self._send(200, b"late")
        elif parts.path == "/drip":  # a byte at a time, forever: only the total timeout stops it
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", "100000")
            self.end_headers()
            try:
                for _ in range(100000):
                    self.wfile.write(b"z")
                    self.wfile.flush()
                    time.sleep(0.05)
            except OSError:
                pass
        elif parts.path == "/gzip":
            self._send(200, b"\x1f\x8b...", extra=[("Content-Encoding", "gzip")])
        else:
            self._send(404, b"nope")


@contextmanager
def serving(host="127.0.0.1", tls_context=None):
    server = http.server.ThreadingHTTPServer((host, 0), Handler)
    server.daemon_threads = True
    server.seen = []
    server.handle_error = lambda request, client_address: None  # a refused TLS handshake is expected
    if tls_context is not None:
        server.socket = tls_context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def base(server, host=None) -> str:
    addr, port = server.server_address[:2]
    return f"http://{host or addr}:{port}"


@pytest.fixture
def local(settings):
    """A server on 127.0.0.1, and the setting that lets the site reach it (and only it)."""
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    with serving() as server:
        yield server


# --- What is refused --------------------------------------------------------------------------


def test_a_loopback_server_is_refused_by_default(settings):
    settings.OUTBOUND_ALLOWED_NETWORKS = []
    with serving() as server:
        with pytest.raises(OutboundRefused, match="not a public address"):
            fetch(f"{base(server)}/page")
        assert server.seen == []


def test_a_host_name_that_resolves_to_a_private_address_is_refused(settings):
    settings.OUTBOUND_ALLOWED_NETWORKS = []
    with serving() as server:
        with pytest.raises(OutboundRefused, match="localhost resolves to"):
            fetch(f"{base(server, host='localhost')}/page")
        assert server.seen == []


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/file",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "gopher://example.com/",
        "//example.com/relative",
        "http:///no-host",
        "http://user:secret@example.com/",
        "http://example.com:25/",  # SMTP: a bad port in the Fetch standard
        "http://example.com:99999/",
    ],
)
def test_it_refuses_urls_it_must_not_fetch_before_any_lookup(url, monkeypatch):
    def no_lookup(*args, **kwargs):
        raise AssertionError("resolved a URL that should have been refused first")

    monkeypatch.setattr(outbound.socket, "getaddrinfo", no_lookup)
    with pytest.raises(OutboundRefused):
        fetch(url)


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # cloud metadata
        ("100.64.0.1", False),  # shared address space (carrier NAT)
        ("0.0.0.0", False),  # noqa: S104 (an address to classify, not one to bind)
        ("224.0.0.1", False),
        ("240.0.0.1", False),
        ("255.255.255.255", False),
        ("::1", False),
        ("::", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("ff02::1", False),
        ("::ffff:127.0.0.1", False),  # IPv4-mapped loopback
        ("::ffff:10.0.0.1", False),
        ("::ffff:8.8.8.8", True),
        ("2002:7f00:1::", False),  # 6to4 of 127.0.0.1
        ("2002:a9fe:a9fe::", False),  # 6to4 of 169.254.169.254
        ("64:ff9b::a00:1", False),  # NAT64 of 10.0.0.1
        ("2001:0:4136:e378:8000:63bf:f5ff:fffe", False),  # Teredo whose client is 10.0.0.1
    ],
)
def test_only_public_addresses_are_public(address, public):
    assert address_is_public(ipaddress.ip_address(address)) is public


def test_a_redirect_to_a_private_address_is_refused(local):
    # 127.0.0.2 is loopback too, reachable on Linux, and outside the allowed 127.0.0.1/32.
    with serving(host="127.0.0.2") as other:
        target = f"{base(other)}/page"
        with pytest.raises(OutboundRefused, match=r"127\.0\.0\.2"):
            fetch(f"{base(local)}/redirect?to={target}")
        assert other.seen == []
        assert [path for _, path, _, _ in local.seen] == [f"/redirect?to={target}"]


def test_a_redirect_to_another_scheme_is_refused(local):
    with pytest.raises(OutboundRefused, match="only http and https"):
        fetch(f"{base(local)}/redirect?to=file:///etc/passwd")


# --- What is allowed, and how ------------------------------------------------------------------


def test_the_allowed_networks_setting_lets_a_local_server_be_fetched(local):
    response = fetch(f"{base(local)}/page")
    assert response.status == 200
    assert response.body == b"<title>Hello</title>"
    assert response.headers["x-custom"] == "yes"
    assert response.headers["X-CUSTOM"] == "yes"
    assert response.headers.get("Content-Type") == "text/html; charset=utf-8"
    assert response.url == f"{base(local)}/page"
    _, _, headers, _ = local.seen[0]
    assert headers["User-Agent"].startswith("pubsub/")
    assert headers["Host"] == base(local).removeprefix("http://")


def test_an_error_status_is_returned_not_raised(local):
    response = fetch(f"{base(local)}/missing")
    assert response.status == 404
    assert response.body == b"nope"


def test_redirects_are_followed_and_the_final_url_reported(local):
    response = fetch(f"{base(local)}/redirect?to=/redirect%3Fto%3D/page")
    assert response.status == 200
    assert response.url == f"{base(local)}/page"


def test_more_redirects_than_allowed_is_an_error(local):
    with pytest.raises(OutboundError, match="more than 3 redirects"):
        fetch(f"{base(local)}/loop")
    assert len(local.seen) == 4
    with pytest.raises(OutboundError, match="more than 0 redirects"):
        fetch(f"{base(local)}/redirect?to=/page", max_redirects=0)


def test_a_303_turns_a_post_into_a_get_and_credentials_do_not_follow_to_another_origin(local):
    with serving() as other:
        target = f"{base(other)}/page"
        response = fetch(
            f"{base(local)}/redirect?status=303&to={target}",
            method="POST",
            body=b"payload",
            headers={"Authorization": "Bearer secret", "X-Signature": "abc"},
        )
        assert response.status == 200
        method, _, headers, body = local.seen[0]
        assert (method, body, headers["Authorization"]) == ("POST", b"payload", "Bearer secret")
        method, _, headers, body = other.seen[0]
        assert (method, body) == ("GET", b"")
        assert "Authorization" not in headers
        assert headers["X-Signature"] == "abc"


def test_a_307_keeps_the_method_and_body(local):
    response = fetch(f"{base(local)}/redirect?status=307&to=/page", method="POST", body=b"again")
    assert response.status == 200
    assert [(m, b) for m, _, _, b in local.seen] == [("POST", b"again"), ("POST", b"again")]


def test_it_connects_to_the_address_it_checked_keeping_the_host_name(local, monkeypatch):
    # "preview.test" exists only in this resolver, which answers once; a second lookup (a
    # rebinding window) would fail the test, and the request must still name the host.
    lookups = []
    real_getaddrinfo = socket.getaddrinfo

    def resolver(host, port, *args, **kwargs):
        try:
            ipaddress.ip_address(host)
        except ValueError:
            pass
        else:  # an address needs no lookup (urllib3 passes the pinned one through getaddrinfo)
            return real_getaddrinfo(host, port, *args, **kwargs)
        lookups.append(host)
        if host == "preview.test" and len(lookups) == 1:
            return real_getaddrinfo("127.0.0.1", port, *args, **kwargs)
        raise socket.gaierror(f"unexpected lookup of {host}")

    monkeypatch.setattr(outbound.socket, "getaddrinfo", resolver)
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    port = local.server_address[1]
    response = fetch(f"http://preview.test:{port}/page")
    assert response.body == b"<title>Hello</title>"
    assert lookups == ["preview.test"]
    assert local.seen[0][2]["Host"] == f"preview.test:{port}"


# --- The bounds ---------------------------------------------------------------------------------


def test_a_body_past_the_size_cap_is_an_error(local):
    assert len(fetch(f"{base(local)}/big?size=1000", max_bytes=1000).body) == 1000
    with pytest.raises(OutboundError, match="larger than 1000 bytes"):
        fetch(f"{base(local)}/big?size=1001", max_bytes=1000)


def test_a_body_without_a_length_is_cut_at_the_size_cap(local):
    assert len(fetch(f"{base(local)}/stream?chunks=4", max_bytes=4096).body) == 4096
    with pytest.raises(OutboundError, match="larger than 4096 bytes"):
        fetch(f"{base(local)}/stream?chunks=200", max_bytes=4096)


def test_a_slow_server_times_out(local):
    started = time.monotonic()
    with pytest.raises(OutboundError):
        fetch(f"{base(local)}/slow?seconds=3", timeout=0.5)
    assert time.monotonic() - started < 1.5


def test_the_timeout_bounds_the_whole_read_not_each_chunk(local):
    started = time.monotonic()
    with pytest.raises(OutboundError, match="timed out"):
        fetch(f"{base(local)}/drip", timeout=0.6)
    assert time.monotonic() - started < 1.5


def test_an_unwanted_content_type_is_an_error(local):
    with pytest.raises(OutboundError, match="unwanted content type 'application/json'"):
        fetch(f"{base(local)}/json", content_types={"text/html"})
    assert fetch(f"{base(local)}/page", content_types={"text/html"}).status == 200
    assert fetch(f"{base(local)}/json").body == b'{"a": 1}'


def test_a_compressed_body_it_did_not_ask_for_is_an_error(local):
    with pytest.raises(OutboundError, match="unrequested content encoding 'gzip'"):
        fetch(f"{base(local)}/gzip")
    assert local.seen[0][2]["Accept-Encoding"] == "identity"


def test_an_unreachable_port_is_an_error_not_a_crash(settings):
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: the connection is refused
        with pytest.raises(OutboundError):
            fetch(f"http://127.0.0.1:{port}/")


# --- TLS to a pinned address ---------------------------------------------------------------------


@pytest.fixture
def certificate(tmp_path):
    """A self-signed certificate for preview.test, trusted as the only CA (SSL_CERT_FILE)."""

    def make(name):
        key, cert = tmp_path / f"{name}.key", tmp_path / f"{name}.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={name}",
             "-addext", f"subjectAltName=DNS:{name}", "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True,
        )  # fmt: skip
        return key, cert

    return make


def test_https_to_the_pinned_address_checks_the_certificate_for_the_host_name(local, certificate, monkeypatch):
    key, cert = certificate("preview.test")
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    real_getaddrinfo = socket.getaddrinfo

    def resolver(host, port, *args, **kwargs):
        assert host in {"preview.test", "other.test", "127.0.0.1"}
        return real_getaddrinfo("127.0.0.1", port, *args, **kwargs)

    monkeypatch.setattr(outbound.socket, "getaddrinfo", resolver)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    with serving(tls_context=context) as server:
        port = server.server_address[1]
        response = fetch(f"https://preview.test:{port}/page")
        assert response.body == b"<title>Hello</title>"
        assert server.seen[0][2]["Host"] == f"preview.test:{port}"
        # The same server, reached under a name its certificate does not carry.
        with pytest.raises(OutboundError):
            fetch(f"https://other.test:{port}/page")
