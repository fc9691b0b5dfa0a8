"""The production compose stack, for real: a Docker engine of the test's own, the stand-in
base images (deploy/test-images), the project's image from its Dockerfile, and
docker-compose.yml run with a small override (test certificate, published ports).

Nothing here is mocked: nginx, the web replicas, the worker, Redis and PostgreSQL run in
containers from docker-compose.yml. What the override changes, and why:
- the proxy mounts a self-signed certificate made for the test where nginx.conf expects
  Let's Encrypt's, and publishes on free ports of 127.0.0.1 (HTTP_PORT / HTTPS_PORT);
- `ulimits: nofile` is lowered to this process's hard limit when that is below the
  most the compose file asks for, 131072 (a sandbox may forbid raising it: runc then refuses to
  start the container).
And the env file moves each stack's network to a subnet of its own (free_subnet): CI may run
another engine's stacks on the same host at the same time.
"""

from __future__ import annotations

import asyncio
import fcntl
import ipaddress
import json
import os
import random
import re
import resource
import secrets
import shlex
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.cookiejar import CookieJar
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidMessage, InvalidStatus

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "pubsubct"
IMAGE = "pubsub-container-test:latest"
NOFILE_WANTED = 131072  # the most a service of docker-compose.yml asks for (proxy)
# The password of every Redis, replica and Sentinel of the test's stacks (REDIS_PASSWORD);
# the site's URLs carry it. redis-cli in the containers reads it from REDISCLI_AUTH.
REDIS_PASSWORD = secrets.token_hex(16)
# A cap, not a reservation: a tmpfs takes memory only for what it holds (about 3 GiB).
DATA_ROOT_TMPFS_SIZE = "12g"

# What took how long, printed at the end of the run (tests/container/conftest.py).
TIMINGS: list[tuple[str, float]] = []
# WebSocket handshakes that were refused and tried again (printed there too).
REFUSED_HANDSHAKES: list[str] = []


class timed:
    def __init__(self, what: str):
        self.what = what

    def __enter__(self) -> timed:
        self.started = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        TIMINGS.append((self.what, time.monotonic() - self.started))


def wait_for(predicate, timeout: float, what: str, interval: float = 0.5):
    """``predicate()``'s first true value, asked every ``interval`` s; the test fails after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s (last: {value!r})")
        time.sleep(interval)


def tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# Each stack's compose network: a /24 of SUBNET_POOL (free_subnet).
SUBNET_POOL = ipaddress.IPv4Network("172.30.0.0/16")
COMPOSE_DEFAULT_SUBNET = ipaddress.IPv4Network("172.30.57.0/24")  # docker-compose.yml's PUBSUB_SUBNET
SUBNET_LOCKS = Path("/tmp/pubsub-container-subnets")
HELD_SUBNETS: list = []  # the lock files of this process's subnets, open until it exits


def host_routes() -> list[ipaddress.IPv4Network]:
    """The networks the host routes (its main table, default route left out): every
    interface's, every Docker engine's bridge networks included."""
    routes = []
    for line in Path("/proc/net/route").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[7], 16) == 0:
            continue  # the default route
        destination, mask = (socket.inet_ntoa(struct.pack("<L", int(fields[i], 16))) for i in (1, 7))
        routes.append(ipaddress.IPv4Network(f"{destination}/{mask}", strict=False))
    return routes


def free_subnet() -> ipaddress.IPv4Network:
    """A /24 for a stack's compose network that no other Docker engine on this host has or
    will take while this process runs. Every engine's bridge networks are routes of the
    host's one network namespace: two with one subnet, and docker-proxy's connections to the
    proxy's address go to whichever bridge the kernel finds first, another engine's
    perhaps (CI may run its container tests beside a developer's). So: never
    docker-compose.yml's default (what any checkout's stack may take), none the host routes
    now, and one that no other process of this code holds (a lock file, kept until this
    process exits)."""
    SUBNET_LOCKS.mkdir(exist_ok=True)
    routed = host_routes()
    candidates = [
        net
        for net in SUBNET_POOL.subnets(new_prefix=24)
        if net != COMPOSE_DEFAULT_SUBNET and not any(net.overlaps(route) for route in routed)
    ]
    random.shuffle(candidates)
    for net in candidates:
        lock = open(SUBNET_LOCKS / f"{net.network_address}.lock", "w")  # noqa: SIM115 (held until exit)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        HELD_SUBNETS.append(lock)
        return net
    pytest.fail(f"no /24 of {SUBNET_POOL} is free on this host (routes: {routed})")


def subnet_settings(net: ipaddress.IPv4Network) -> dict[str, str]:
    """docker-compose.yml's variables that put the project's network on ``net`` (its layout:
    the proxy at .10, the other containers in the upper half)."""
    proxy = str(net.network_address + 10)
    return {
        "PUBSUB_SUBNET": str(net),
        "PUBSUB_DYNAMIC_RANGE": f"{net.network_address + 128}/25",
        "PROXY_ADDRESS": proxy,
        "FORWARDED_ALLOW_IPS": proxy,
    }


def docker_cli() -> str:
    """The client of the engine that is started (Debian's docker.io), else any on PATH."""
    for candidate in ("/usr/bin/docker", shutil.which("docker")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail("the docker client is missing: apt-get install docker.io (scripts/test-deps.sh installs it)")


def required_tool(name: str, package: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found is None:
        pytest.fail(f"{name} is missing: apt-get install {package} (scripts/test-deps.sh installs it)")
    return found


# --- the engine -----------------------------------------------------------------------


class Engine:
    """dockerd with its own data root, exec root, pid file and socket; stopped by its pid."""

    def __init__(self) -> None:
        # A short path: the socket's must fit in sun_path (108 bytes).
        self.base = Path(tempfile.mkdtemp(prefix="pubsub-ct-", dir="/tmp"))
        self.socket = self.base / "docker.sock"
        self.host = f"unix://{self.socket}"
        self.log_path = self.base / "dockerd.log"
        self.data_root = self.base / "data"
        self.process: subprocess.Popen | None = None
        self.docker = docker_cli()
        self.notes: list[str] = []

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/root"),
            "DOCKER_HOST": self.host,
            "DOCKER_BUILDKIT": "0",
            **extra,
        }

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def start(self, timeout: float = 90) -> None:
        if os.geteuid() != 0:
            pytest.fail("the container test starts dockerd, which needs root (CI runs as root)")
        dockerd = required_tool("dockerd", "docker.io")
        # Images and containers in memory: removing a few GB of layers from a disk mounted
        # with `discard` took up to two minutes; a tmpfs goes at once. On disk if that fails.
        self.data_root.mkdir()
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={DATA_ROOT_TMPFS_SIZE},mode=0711", "pubsub-ct", str(self.data_root)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if mounted.returncode != 0:
            self.notes.append(f"data root on disk (no tmpfs: {mounted.stderr.strip()})")
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [
                    dockerd,
                    "--data-root", str(self.data_root),
                    "--exec-root", str(self.base / "exec"),
                    "--pidfile", str(self.base / "dockerd.pid"),
                    "-H", self.host,
                    "--storage-driver=overlay2",
                    # Hands off the host's network settings: no iptables rules, no
                    # forwarding, no docker0. Containers talk over compose's own network,
                    # published ports go through docker-proxy, and image builds use the
                    # host's network (DOCKER_BUILD_NETWORK, the override's build.network).
                    "--iptables=false",
                    "--ip-forward=false",
                    "--bridge=none",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"dockerd exited with {self.process.returncode}:\n{tail(self.log())}")
            probe = subprocess.run(
                [self.docker, "version", "--format", "{{.Server.Version}}"],
                env=self.env(),
                capture_output=True,
                text=True,
                timeout=30,
            )
            if probe.returncode == 0:
                return
            if time.monotonic() > deadline:
                pytest.fail(f"dockerd did not answer within {timeout} s:\n{probe.stderr}\n{tail(self.log())}")
            time.sleep(0.5)

    def stop(self) -> None:
        """SIGTERM to dockerd's pid (SIGKILL to its process group after a minute), then its
        directories go, left-over mounts first."""
        if self.process is not None and self.process.poll() is None:
            with timed("stop dockerd"):
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    print(f"dockerd did not stop within 60 s; killing it. Its log:\n{tail(self.log())}")
                    os.killpg(self.process.pid, signal.SIGKILL)
                    self.process.wait(timeout=30)
        usage = shutil.disk_usage(self.data_root) if self.data_root.exists() else None
        if usage and os.path.ismount(self.data_root):
            self.notes.append(f"data root (tmpfs) held {usage.used / 2**30:.1f} GiB at the end")
        with timed("remove the engine's data root"):
            # A dockerd that stopped cleanly unmounted its layers; one that was killed may not have.
            mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
            for mount in sorted((m for m in mounts if m.startswith(str(self.base))), key=len, reverse=True):
                subprocess.run(["umount", "-l", mount], capture_output=True, timeout=30)
            shutil.rmtree(self.base, ignore_errors=True)

    def run(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([self.docker, *args], env=self.env(), capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            pytest.fail(f"docker {' '.join(args)} failed ({result.returncode}):\n{tail(result.stderr)}")
        return result


# --- the compose project -----------------------------------------------------------------


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


# --- clients -------------------------------------------------------------------------------


class Browser:
    """HTTPS through the proxy with a cookie jar: what a browser does for sign-up and pages."""

    def __init__(self, stack: Stack):
        self.stack = stack
        self.jar = CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=stack.ssl_context()),
            urllib.request.HTTPCookieProcessor(self.jar),
        )

    def cookie(self, name: str) -> str | None:
        return next((c.value for c in self.jar if c.name == name), None)

    def request(self, path: str, data: dict | None = None, headers: dict | None = None) -> tuple[int, str, str]:
        """(status, final URL, body), following redirects."""
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        # Always https://localhost:<port>, the proxy: no other scheme or host.
        request = urllib.request.Request(self.stack.origin + path, data=body, headers=headers or {})  # noqa: S310
        try:
            with self.opener.open(request, timeout=30) as response:
                return response.status, response.geturl(), response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.geturl(), error.read().decode(errors="replace")

    def get(self, path: str) -> tuple[int, str, str]:
        return self.request(path)

    def post_form(self, path: str, fields: dict) -> tuple[int, str, str]:
        """GET the form (for the CSRF cookie), then POST it as a browser on this origin does."""
        status, _, body = self.get(path)
        assert status == 200, (path, status, body[:500])
        token = self.cookie("csrftoken")
        assert token, "no CSRF cookie"
        headers = {"Origin": self.stack.origin, "Referer": self.stack.origin + path}
        return self.request(path, {"csrfmiddlewaretoken": token, **fields}, headers)

    def upload(self, room: str, name: str, data: bytes) -> tuple[int, dict]:
        """A file to the room's upload endpoint, as the composer sends it (multipart, the CSRF
        token of a page seen before); (status, JSON answer)."""
        token = self.cookie("csrftoken")
        assert token, "no CSRF cookie: open a form first"
        boundary = "----upload" + secrets.token_hex(8)
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
            + data
            + f"\r\n--{boundary}--\r\n".encode()
        )
        path = f"/rooms/{room}/attachments/"
        headers = {
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "X-CSRFToken": token,
            "Origin": self.stack.origin,
            "Referer": self.stack.origin + f"/rooms/{room}/",
        }
        request = urllib.request.Request(self.stack.origin + path, data=body, headers=headers)  # noqa: S310
        try:
            with self.opener.open(request, timeout=60) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, {"body": error.read().decode(errors="replace")[:2000]}

    def download(self, path: str) -> tuple[int, str, bytes]:
        """(status, final URL, bytes), following redirects (to the presigned URL, via /_s3/)."""
        request = urllib.request.Request(self.stack.origin + path)  # noqa: S310
        try:
            with self.opener.open(request, timeout=30) as response:
                return response.status, response.geturl(), response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.geturl(), error.read()

    def sign_up(self, username: str, password: str) -> None:
        status, url, body = self.post_form(
            "/accounts/signup/", {"username": username, "password1": password, "password2": password}
        )
        # A new account lands in the default room (DEFAULT_ROOM, Lobby: issue 21).
        assert (status, urllib.parse.urlsplit(url).path) == (200, "/rooms/lobby/"), (status, url, body[:2000])
        assert self.cookie("sessionid"), "signed up but no session cookie"

    def create_room(self, name: str) -> str:
        status, url, body = self.post_form("/rooms/new/", {"name": name, "visibility": "public"})
        path = urllib.parse.urlsplit(url).path
        assert status == 200 and path.startswith("/rooms/"), (status, url, body[:2000])
        return path.rstrip("/").rsplit("/", 1)[1]

    def history(self, slug: str) -> list[dict]:
        status, _, body = self.get(f"/rooms/{slug}/messages/?after=0&limit=200")
        assert status == 200, (status, body[:500])
        return json.loads(body)["messages"]


class Socket:
    """One WebSocket through the proxy (wss), speaking docs/protocol.md."""

    def __init__(self, ws: ClientConnection):
        self.ws = ws
        self.frames: list[dict] = []

    @classmethod
    async def open(cls, stack: Stack, browser: Browser, probe: str, room: str, attempts: int = 6) -> Socket:
        """Connect and subscribe to ``room`` as the site's client does (static/js/socket.js):
        a refused handshake, or a connection closed before it is subscribed (1013, Try Again
        Later, while the server's Redis is coming back), is tried again after a growing
        pause. Each such retry is recorded (REFUSED_HANDSHAKES)."""
        for attempt in range(1, attempts + 1):
            ws = None
            try:
                ws = await connect(
                    f"wss://localhost:{stack.https_port}/ws/?probe={probe}",
                    ssl=stack.ssl_context(),
                    additional_headers={"Cookie": f"sessionid={browser.cookie('sessionid')}"},
                    origin=stack.origin,
                    open_timeout=20,
                )
                socket = cls(ws)
                await socket.subscribe(room)
                return socket
            except (InvalidStatus, InvalidMessage, ConnectionClosed, OSError) as error:
                REFUSED_HANDSHAKES.append(f"{probe}, attempt {attempt}: {error}")
                if ws is not None:
                    await ws.close()
                if attempt == attempts:
                    raise
                await asyncio.sleep(0.5 * 2 ** (attempt - 1))
        raise AssertionError("unreachable")

    async def send(self, frame: dict) -> None:
        await self.ws.send(json.dumps(frame))

    async def expect(self, predicate, timeout: float = 15) -> dict:
        """The first frame (already received or still to come) for which predicate holds."""
        for frame in self.frames:
            if predicate(frame):
                return frame
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"no such frame within {timeout} s; got {self.frames[-10:]}")
            frame = json.loads(await asyncio.wait_for(self.ws.recv(), remaining))
            self.frames.append(frame)
            if frame.get("type") == "error":
                raise AssertionError(f"error frame: {frame}")
            if predicate(frame):
                return frame

    async def subscribe(self, room: str) -> dict:
        await self.send({"type": "subscribe", "room": room, "since": None})
        return await self.expect(lambda f: f["type"] == "subscribed" and f["room"] == room)

    async def post(self, room: str, body: str) -> dict:
        """Send a message; its ack."""
        client_id = str(uuid.uuid4())
        await self.send({"type": "send", "room": room, "body": body, "client_id": client_id})
        return await self.expect(lambda f: f["type"] == "ack" and f["client_id"] == client_id)

    async def clap(self, room: str, seq: int, count: int) -> None:
        await self.send({"type": "clap", "room": room, "seq": seq, "count": count})

    async def close(self) -> None:
        await self.ws.close()


def off_loop(coroutine_function, *args):
    """Run a coroutine on an event loop of its own in another thread, whatever the state of
    this thread's loop (a test package before may have left one marked as running)."""
    result: dict = {}

    def target() -> None:
        try:
            result["value"] = asyncio.run(coroutine_function(*args))
        except BaseException as error:
            result["error"] = error

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]
