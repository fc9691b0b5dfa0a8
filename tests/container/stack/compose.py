"""The compose project: docker-compose.yml and the test's override on an engine (Stack), its
containers as the engine sees them (Container), and the files a stack is made of (the env
file, the override, a self-signed certificate) with new_stack, which writes them."""

from __future__ import annotations

import json
import re
import resource
import secrets
import shlex
import ssl
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.container.stack.common import ROOT, free_port, required_tool, tail
from tests.container.stack.engine import Engine
from tests.container.stack.network import free_subnet, subnet_settings

PROJECT = "pubsubct"
IMAGE = "pubsub-container-test:latest"
NOFILE_WANTED = 131072  # the most a service of docker-compose.yml asks for (proxy)
# The password of every Redis, replica and Sentinel of the test's stacks (REDIS_PASSWORD);
# the site's URLs carry it. redis-cli in the containers reads it from REDISCLI_AUTH.
REDIS_PASSWORD = secrets.token_hex(16)


@dataclass
class Container:
    id: str
    name: str
    service: str
    status: str  # running, exited...
    health: str | None  # healthy, unhealthy, starting; None without a health check
    exit_code: int
    ip: str


@dataclass
class Stack:
    engine: Engine
    workdir: Path
    http_port: int
    https_port: int
    cert: Path
    env_file: Path
    override: Path
    project: str = PROJECT
    profiles: tuple[str, ...] = ()  # docker-compose --profile ...
    logs: list[str] = field(default_factory=list)

    @property
    def origin(self) -> str:
        return f"https://localhost:{self.https_port}"

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))

    def compose(
        self, *args: str, timeout: float = 300, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess:
        """docker-compose on docker-compose.yml and the test's override, with only the
        engine's variables from this process's environment (the suite's DATABASE_URL and
        REDIS_URL must not reach the interpolation) and the test's env file."""
        result = subprocess.run(
            self.compose_command(*args),
            cwd=ROOT,
            env=self.compose_env(),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            pytest.fail(
                f"docker-compose {' '.join(args)} failed ({result.returncode}):\n"
                f"{tail(result.stdout, 30)}\n{tail(result.stderr)}"
            )
        return result

    def compose_command(self, *args: str) -> list[str]:
        """The docker-compose command line of this project (run it in ROOT, with compose_env())."""
        return [
            required_tool("docker-compose", "docker-compose"),
            "--project-name", self.project,
            *(option for profile in self.profiles for option in ("--profile", profile)),
            "--env-file", str(self.env_file),
            "-f", str(ROOT / "docker-compose.yml"),
            "-f", str(self.override),
            *args,
        ]  # fmt: skip

    def compose_env(self) -> dict[str, str]:
        return self.engine.env(COMPOSE_DOCKER_CLI_BUILD="0", COMPOSE_HTTP_TIMEOUT="300")

    def run_as_operator(self, script: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """A shell script as docs/deploy.md writes them (sh -e, in ROOT), where `docker compose`
        is this project's docker-compose (1.29: the same subcommands) and `docker` the engine's
        client."""
        prelude = (
            "docker() {\n"
            '  if [ "$1" = compose ]; then shift; ' + shlex.join(self.compose_command()) + ' "$@"\n'
            "  else " + shlex.quote(self.engine.docker) + ' "$@"; fi\n'
            "}\n"
        )
        return subprocess.run(
            ["sh", "-e", "-c", prelude + script],
            cwd=ROOT,
            env=self.compose_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    @contextmanager
    def events_of(self, service: str, *events: str) -> Iterator[list[dict]]:
        """The engine's ``events`` (kill, die...) of this project's ``service`` containers
        while the block runs, streamed (docker events); the list is filled when it ends."""
        seen: list[dict] = []
        watcher = subprocess.Popen(
            [
                self.engine.docker, "events", "--format", "{{json .}}", "--since", f"{time.time():.3f}",
                "--filter", "type=container",
                "--filter", f"label=com.docker.compose.project={self.project}",
                "--filter", f"label=com.docker.compose.service={service}",
                *(option for event in events for option in ("--filter", f"event={event}")),
            ],
            env=self.engine.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )  # fmt: skip
        try:
            yield seen
        finally:
            time.sleep(1)  # the stream's last events
            watcher.terminate()
            out, _ = watcher.communicate(timeout=30)
            for line in out.splitlines():
                event = json.loads(line)
                attributes = event.get("Actor", {}).get("Attributes", {})
                if attributes.get("com.docker.compose.service") == service and event.get("status") in events:
                    seen.append(event)

    def containers(self) -> list[Container]:
        ids = self.engine.run(
            "ps", "-aq", "--no-trunc", "--filter", f"label=com.docker.compose.project={self.project}"
        ).stdout.split()
        if not ids:
            return []
        found = []
        for info in json.loads(self.engine.run("inspect", *ids).stdout):
            state = info["State"]
            networks = info["NetworkSettings"]["Networks"] or {}
            found.append(
                Container(
                    id=info["Id"],
                    name=info["Name"].lstrip("/"),
                    service=info["Config"]["Labels"].get("com.docker.compose.service", ""),
                    status=state["Status"],
                    health=(state.get("Health") or {}).get("Status"),
                    exit_code=state["ExitCode"],
                    ip=next((n["IPAddress"] for n in networks.values() if n.get("IPAddress")), ""),
                )
            )
        return found

    def of(self, service: str) -> list[Container]:
        return sorted((c for c in self.containers() if c.service == service), key=lambda c: c.name)

    def wait_healthy(self, replicas: dict[str, int], timeout: float = 300) -> list[Container]:
        """Until each long-running service has its number of containers running and healthy,
        and migrate has exited 0. Fails at once when a container exits with an error."""
        deadline = time.monotonic() + timeout
        while True:
            containers = self.containers()
            problems = []
            for service, count in replicas.items():
                mine = [c for c in containers if c.service == service]
                good = [c for c in mine if c.status == "running" and c.health == "healthy"]
                if len(good) != count:
                    problems.append(f"{service}: {[(c.name, c.status, c.health) for c in mine]}")
                for c in mine:
                    if c.status == "exited" and c.exit_code != 0:
                        pytest.fail(f"{c.name} exited with {c.exit_code}:\n{self.logs_of(service)}")
            migrate = [c for c in containers if c.service == "migrate"]
            if not (migrate and all(c.status == "exited" and c.exit_code == 0 for c in migrate)):
                problems.append(f"migrate: {[(c.name, c.status, c.exit_code) for c in migrate]}")
                for c in migrate:
                    if c.status == "exited" and c.exit_code != 0:
                        pytest.fail(f"migrate exited with {c.exit_code}:\n{self.logs_of('migrate')}")
            if not problems:
                return containers
            if time.monotonic() > deadline:
                pytest.fail(f"not healthy within {timeout} s:\n" + "\n".join(problems))
            time.sleep(1)

    def logs_of(self, *services: str, lines: int = 80) -> str:
        result = self.compose("logs", "--no-color", *services, check=False, timeout=120)
        return tail(result.stdout + result.stderr, lines)

    def psql(self, sql: str, **variables: object) -> list[list[str]]:
        """Rows of a query run by psql in the postgres container; `:'name'` in the query is
        a quoted literal of variables[name] (psql's own interpolation)."""
        settings = [arg for name, value in variables.items() for arg in ("-v", f"{name}={value}")]
        result = self.compose(
            "exec", "-T", "postgres", "psql", "-U", "pubsub", "-d", "pubsub",
            "-v", "ON_ERROR_STOP=1", *settings, "-AtF", "|", "-f", "-",
            input=sql,
        )  # fmt: skip
        return [line.split("|") for line in result.stdout.splitlines() if line]

    def redis_cli(self, *args: str, service: str = "redis") -> str:
        return self.compose("exec", "-T", service, "redis-cli", "--raw", *args).stdout.strip()

    def env_of(self, container: Container) -> dict[str, str]:
        """The environment a container was started with (docker inspect)."""
        lines = json.loads(self.engine.run("inspect", "--format", "{{json .Config.Env}}", container.id).stdout)
        return dict(line.split("=", 1) for line in lines)

    def upstreams(self, probes: list[str], timeout: float = 20) -> dict[str, str]:
        """probe -> the web container address nginx sent the request to, read from the
        proxy's access log (its `upstream=` field; deploy/nginx.conf). Requests carry their
        probe in the query string; a WebSocket's line is written when it closes."""
        pattern = re.compile(r'"GET \S*[?&]probe=([\w-]+)\S* HTTP/[\d.]+" \d{3} .*? upstream=(.*?) rt=')
        deadline = time.monotonic() + timeout
        while True:
            seen = {}
            for match in pattern.finditer(self.compose("logs", "--no-color", "proxy", timeout=60).stdout):
                # After a retry nginx lists every address it tried: the last one served.
                seen[match.group(1)] = match.group(2).split(", ")[-1].rsplit(":", 1)[0]
            if all(p in seen for p in probes) or time.monotonic() > deadline:
                return {p: seen[p] for p in probes if p in seen}
            time.sleep(0.5)


def make_certificate(directory: Path) -> Path:
    """A self-signed certificate for localhost, where nginx.conf reads Let's Encrypt's."""
    live = directory / "live" / "pubsub"
    live.mkdir(parents=True)
    subprocess.run(
        [
            required_tool("openssl", "openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes",
            "-days", "2", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout", str(live / "privkey.pem"), "-out", str(live / "fullchain.pem"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return live / "fullchain.pem"


def write_project_files(
    stack_dir: Path, http_port: int, https_port: int, project: str = PROJECT, settings: dict[str, str] | None = None
) -> tuple[Path, Path, Path]:
    """The env file (what .env holds in production, with ``settings`` added or changed), the
    override and the certificate."""
    cert = make_certificate(stack_dir / "letsencrypt")
    (stack_dir / "certbot").mkdir()
    password = secrets.token_urlsafe(24)
    env_file = stack_dir / "env"
    values = {
        "COMPOSE_PROJECT_NAME": project,
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "localhost",
        "CSRF_TRUSTED_ORIGINS": f"https://localhost:{https_port}",
        "POSTGRES_PASSWORD": password,
        "DATABASE_URL": f"postgres://pubsub:{password}@postgres:5432/pubsub",
        "REDIS_PASSWORD": REDIS_PASSWORD,
        "REDIS_URL": f"redis://pubsub:{REDIS_PASSWORD}@redis:6379/0",
        "PUBSUB_IMAGE": IMAGE,
        "HTTP_PORT": f"127.0.0.1:{http_port}",
        "HTTPS_PORT": f"127.0.0.1:{https_port}",
        "S3_ACCESS_KEY": "stack" + secrets.token_hex(6),
        "S3_SECRET_KEY": secrets.token_urlsafe(24),
        **subnet_settings(free_subnet()),
        **(settings or {}),
    }
    env_file.write_text("".join(f"{name}={value}\n" for name, value in values.items()))
    services: dict[str, dict] = {
        # The engine has no NAT (Engine.start): pip reaches PyPI over the host's network.
        "web": {"build": {"network": "host"}},
        "seaweedfs": {"build": {"network": "host"}},
        "proxy": {
            "volumes": [
                f"{stack_dir / 'letsencrypt'}:/etc/letsencrypt:ro",
                f"{stack_dir / 'certbot'}:/var/www/certbot:ro",
            ]
        },
    }
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < NOFILE_WANTED:
        for name in ("proxy", "web", "worker", "migrate"):
            services.setdefault(name, {})["ulimits"] = {"nofile": {"soft": hard, "hard": hard}}
    override = stack_dir / "docker-compose.test.yml"
    override.write_text(json.dumps({"services": services}, indent=2))  # JSON is YAML
    return env_file, override, cert


def new_stack(
    engine: Engine,
    name: str,
    project: str = PROJECT,
    profiles: tuple[str, ...] = (),
    settings: dict[str, str] | None = None,
) -> Stack:
    """A compose project on ``engine`` (its files under the engine's directory ``name``, its
    own free ports), not started."""
    stack_dir = engine.base / name
    stack_dir.mkdir()
    http_port, https_port = free_port(), free_port()
    env_file, override, cert = write_project_files(stack_dir, http_port, https_port, project, settings)
    return Stack(engine, stack_dir, http_port, https_port, cert, env_file, override, project, profiles)
