"""deploy/nginx.conf, read with a small parser (pubsub_site.tests.deploy.files): every
directive known with the right number of arguments, the balancing over the web replicas,
WebSockets, attachments, metrics, and the plain HTTP server."""

from __future__ import annotations

import pytest

from pubsub_site.tests.deploy.files import find, nginx_parse, nginx_tokens

# The directives deploy/nginx.conf uses, with how many arguments nginx accepts
# (minimum, maximum; None: any number). A missing ';' glues two statements into
# one with too many arguments; a directive not listed here fails the test until
# it is added (with its arity from nginx's documentation).
NGINX_ARITY: dict[str, tuple[int, int | None]] = {
    "worker_processes": (1, 1),
    "worker_rlimit_nofile": (1, 1),
    "events": (0, 0),
    "worker_connections": (1, 1),
    "http": (0, 0),
    "include": (1, 1),
    "default_type": (1, 1),
    "server_tokens": (1, 1),
    "access_log": (1, None),
    "log_format": (2, None),
    "error_log": (1, 2),
    "resolver": (1, None),
    "resolver_timeout": (1, 1),
    "upstream": (1, 1),
    "zone": (1, 2),
    "least_conn": (0, 0),
    "keepalive": (1, 1),
    "map": (2, 2),
    "client_max_body_size": (1, 1),
    "server": (0, None),  # a block in http, `server address [parameters]` in upstream
    "listen": (1, None),
    "server_name": (1, None),
    "location": (1, 2),
    "return": (1, 2),
    "root": (1, 1),
    "http2": (1, 1),
    "ssl_certificate": (1, 1),
    "ssl_certificate_key": (1, 1),
    "ssl_protocols": (1, None),
    "ssl_prefer_server_ciphers": (1, 1),
    "ssl_session_cache": (1, 2),
    "ssl_session_timeout": (1, 1),
    "proxy_http_version": (1, 1),
    "proxy_set_header": (2, 2),
    "proxy_connect_timeout": (1, 1),
    "proxy_pass": (1, 1),
    "proxy_read_timeout": (1, 1),
    "proxy_send_timeout": (1, 1),
    "proxy_buffering": (1, 1),
    "proxy_next_upstream": (1, None),
    "if": (1, None),  # `if ( condition )`: the parentheses are words of their own here
    # Attachments: the internal location of X-Accel-Redirect, the proxied S3.
    "internal": (0, 0),
    "alias": (1, 1),
    "set": (2, 2),
    "rewrite": (2, 3),
    "limit_except": (1, None),
    "deny": (1, 1),
}


def nginx_arity_errors(directives: list, inside: str = "") -> list[str]:
    errors = []
    for name, arguments, children in directives:
        if inside == "map":  # `key value;` pairs, not directives
            if len(arguments) != 1:
                errors.append(f"map entry {name} {arguments}")
            continue
        if name not in NGINX_ARITY:
            errors.append(f"unknown directive {name}")
            continue
        low, high = NGINX_ARITY[name]
        if len(arguments) < low or (high is not None and len(arguments) > high):
            errors.append(f"{name} takes {low}..{high} arguments, not {arguments}")
        if name == "server" and inside == "upstream" and not arguments:
            errors.append("upstream server without an address")
        errors.extend(nginx_arity_errors(children, inside=name))
    return errors


def test_the_nginx_parser_rejects_broken_files():
    with pytest.raises(AssertionError):
        nginx_parse(nginx_tokens("http { server { listen 80 } }"))
    with pytest.raises(AssertionError):
        nginx_parse(nginx_tokens("http { server { listen 80; }"))


def test_every_nginx_directive_is_known_and_has_the_right_number_of_arguments(nginx):
    assert nginx_arity_errors(nginx) == []
    glued = nginx_parse(nginx_tokens("http { proxy_read_timeout 60s\n proxy_send_timeout 60s; }"))
    assert nginx_arity_errors(glued) == [
        "proxy_read_timeout takes 1..1 arguments, not ['60s', 'proxy_send_timeout', '60s']"
    ]


def test_nginx_balances_over_every_web_replica_found_through_docker_dns(nginx):
    (http,) = find(nginx, "http")
    assert find(http[2], "resolver", "127.0.0.11")
    (upstream,) = find(http[2], "upstream", "web")
    assert find(upstream[2], "server", "web:8000", "resolve")
    assert find(upstream[2], "zone")


def test_nginx_upgrades_websockets_on_ws_and_keeps_them_open(nginx):
    (http,) = find(nginx, "http")
    (mapping,) = find(http[2], "map", "$http_upgrade", "$connection_upgrade")
    assert ("default", ["upgrade"], []) in mapping[2]
    (tls,) = [server for server in find(http[2], "server") if find(server[2], "listen", "443")]
    assert find(tls[2], "ssl_certificate")
    assert find(tls[2], "proxy_http_version", "1.1")
    headers = {d[1][0]: d[1][1] for d in find(tls[2], "proxy_set_header")}
    assert headers["Upgrade"] == "$http_upgrade"
    assert headers["Connection"] == "$connection_upgrade"
    assert headers["Host"] == "$host"
    # Django trusts X-Forwarded-Proto (SECURE_PROXY_SSL_HEADER): nginx must set it, not pass it on.
    assert headers["X-Forwarded-Proto"] == "$scheme"
    assert headers["X-Forwarded-For"] == "$remote_addr"
    locations = {d[1][0]: d[2] for d in find(tls[2], "location")}
    assert find(locations["/ws/"], "proxy_pass", "http://web")
    assert find(locations["/"], "proxy_pass", "http://web")
    (read_timeout,) = find(locations["/ws/"], "proxy_read_timeout")
    assert int(read_timeout[1][0].removesuffix("s")) >= 600
    # A location with a proxy_set_header of its own would silently drop all of the server's.
    for path, body in locations.items():
        assert not find(body, "proxy_set_header"), path


def test_nginx_serves_attachments_only_for_the_app_and_through_signed_s3_urls(nginx):
    (http,) = find(nginx, "http")
    (tls,) = [server for server in find(http[2], "server") if find(server[2], "listen", "443")]
    locations = {d[1][-1]: d[2] for d in find(tls[2], "location")}
    # X-Accel-Redirect's location: never reachable by a client's own request.
    assert find(locations["/_attachments/"], "internal")
    assert find(locations["/_attachments/"], "alias", "/srv/attachments/")
    # The compose stack's S3, read-only from outside: the presigned URL's signature decides.
    s3 = locations["/_s3/"]
    assert find(s3, "proxy_pass", "http://$s3") and find(s3, "set", "$s3", "seaweedfs:8333")
    (methods,) = find(s3, "limit_except")
    assert methods[1] == ["GET", "HEAD"] and find(methods[2], "deny", "all")
    # Uploads may be as large as ATTACHMENT_MAX_BYTES (25 MB by default); everything else stays at 1 MB.
    (upload,) = [body for path, body in locations.items() if "attachments" in path and path.startswith("^")]
    (limit,) = find(upload, "client_max_body_size")
    assert int(limit[1][0].removesuffix("m")) * 1024 * 1024 > 25 * 1024 * 1024
    assert find(http[2], "client_max_body_size", "1m")


def test_nginx_lets_metrics_through_only_with_a_bearer_token(nginx):
    """Prometheus scrapes the replicas directly; through the proxy, a request without an
    Authorization header never reaches the app (which checks the token itself)."""
    (http,) = find(nginx, "http")
    (tls,) = [server for server in find(http[2], "server") if find(server[2], "listen", "443")]
    (metrics,) = find(tls[2], "location", "=", "/metrics")
    (guard,) = find(metrics[2], "if")
    assert guard[1] == ["($http_authorization", "!~*", '"^Bearer "', ")"]
    assert find(guard[2], "return", "404")
    assert find(metrics[2], "proxy_pass", "http://web")


def test_nginx_redirects_http_and_answers_its_own_health_check(nginx):
    (http,) = find(nginx, "http")
    (plain,) = [server for server in find(http[2], "server") if find(server[2], "listen", "80")]
    locations = {tuple(d[1]): d[2] for d in find(plain[2], "location")}
    assert find(locations[("=", "/nginx-health")], "return", "200")
    assert find(locations[("/.well-known/acme-challenge/",)], "root")
    assert find(locations[("/",)], "return", "301", "https://$host$request_uri")
