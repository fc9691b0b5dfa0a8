"""Redis of the test's own: a redis-server on 127.0.0.1 (a primary or a replica, killed,
shut down and restarted at will) and Redis Sentinels watching it, to fail over."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from pubsub_site.cluster import free_port


class RedisServer:
    """A redis-server of the test's own on 127.0.0.1, in a directory that outlives restarts;
    with ``replicaof`` (a port on 127.0.0.1), a replica of that server (set it before a
    restart to make a server come back as another's replica)."""

    def __init__(
        self,
        *,
        appendonly: bool = True,
        appendfsync: str = "everysec",
        port: int | None = None,
        replicaof: int | None = None,
    ):
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="pubsub-redis-"))
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.replicaof = replicaof
        self.process: subprocess.Popen | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, db=db, socket_timeout=5)

    def start(self, *, via: list[str] | None = None, env: dict[str, str] | None = None) -> RedisServer:
        """Start redis-server, or ``via`` a launcher that takes redis-server's arguments
        (deploy/redis-ha/redis-start.sh), with ``env`` added to the environment."""
        command = [
            *(via or ["redis-server"]),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.dir),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", self.appendfsync,
            "--logfile", str(self.dir / "redis.log"),
            "--maxclients", "20000",
            # A replica (re)joining gets its copy at once: by default a primary waits 5 s for
            # more replicas to share the transfer, and sends that wait for a replica with it.
            "--repl-diskless-sync-delay", "0",
        ]  # fmt: skip
        if self.replicaof is not None:
            command += ["--replicaof", "127.0.0.1", str(self.replicaof)]
        self.process = subprocess.Popen(
            command, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                if self.client().ping():
                    # Loading the AOF answers LOADING; wait until it is done.
                    self.client().dbsize()
                    return self
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"redis-server on {self.port} did not start: {self.log()[-2000:]}")
            time.sleep(0.05)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        assert self.process is not None
        self.process.send_signal(sig)
        self.process.wait(timeout=30)

    def shutdown(self) -> None:
        """SHUTDOWN: Redis writes and syncs the AOF, then exits."""
        with contextlib.suppress(redis.ConnectionError):
            self.client().shutdown()
        assert self.process is not None
        self.process.wait(timeout=30)

    def restart(self, how: str) -> None:
        {"shutdown": self.shutdown, "sigterm": lambda: self.kill(signal.SIGTERM), "sigkill": self.kill}[how]()
        self.start()

    def log(self) -> str:
        path = self.dir / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Sentinels:
    """Redis Sentinels of the test's own on 127.0.0.1 (``redis-server --sentinel``), watching
    the primary on ``master_port`` under ``name``: they agree it is down after
    ``down_after_ms`` without an answer (``quorum`` of them), then promote a replica."""

    def __init__(
        self,
        master_port: int,
        *,
        count: int = 3,
        name: str = "pubsub",
        quorum: int = 2,
        down_after_ms: int = 2000,
        failover_timeout_ms: int = 4000,
    ):
        self.master_port = master_port
        self.name = name
        self.quorum = quorum
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.ports = [free_port() for _ in range(count)]
        self.dirs = [Path(tempfile.mkdtemp(prefix="pubsub-sentinel-")) for _ in range(count)]
        self.processes: list[subprocess.Popen] = []

    def url(self, db: int = 0) -> str:
        """The Sentinel service as the site's settings take it (pubsub_site.redis.urls)."""
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.ports)
        return f"redis+sentinel://{hosts}/{self.name}/{db}"

    def client(self, index: int = 0) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.ports[index], socket_timeout=2, decode_responses=True)

    def start(self, *, ready_timeout: float = 30, wait: bool = True) -> Sentinels:
        for port, directory in zip(self.ports, self.dirs, strict=True):
            config = directory / "sentinel.conf"  # Sentinel rewrites it: a file of its own
            config.write_text(
                f"bind 127.0.0.1\nport {port}\ndir {directory}\nlogfile {directory / 'sentinel.log'}\n"
                f"sentinel monitor {self.name} 127.0.0.1 {self.master_port} {self.quorum}\n"
                f"sentinel down-after-milliseconds {self.name} {self.down_after_ms}\n"
                f"sentinel failover-timeout {self.name} {self.failover_timeout_ms}\n"
                f"sentinel parallel-syncs {self.name} 1\n"
            )
            self.processes.append(
                subprocess.Popen(
                    ["redis-server", str(config), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
            )
        if wait:
            self.wait_ready(ready_timeout)
        return self

    def wait_ready(self, timeout: float = 30) -> None:
        """Until every Sentinel knows the others and sees a replica it could promote (a
        failover needs both: the quorum's votes, and a replica in touch with the primary)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if all(self._ready(i) for i in range(len(self.ports))):
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the Sentinels were not ready within {timeout} s: {self.log()[-2000:]}")
            time.sleep(0.1)

    def _ready(self, index: int) -> bool:
        client = self.client(index)
        master = client.sentinel_master(self.name)
        replicas = client.sentinel_slaves(self.name)
        return master["num-other-sentinels"] >= len(self.ports) - 1 and any(
            r.get("master-link-status") == "ok" and not r.get("is_sdown") for r in replicas
        )

    def master_port_now(self) -> int | None:
        """The primary's port as the first Sentinel that answers names it."""
        for index in range(len(self.ports)):
            try:
                address = self.client(index).sentinel_get_master_addr_by_name(self.name)
            except redis.RedisError:
                continue
            if address:
                return int(address[1])
        return None

    def wait_for_promotion(self, old_port: int, timeout: float = 30) -> int:
        """The port of the replica the Sentinels promoted instead of ``old_port``."""
        deadline = time.monotonic() + timeout
        while True:
            port = self.master_port_now()
            if port is not None and port != old_port:
                return port
            if time.monotonic() > deadline:
                raise TimeoutError(f"no failover from {old_port} within {timeout} s: {self.log()[-3000:]}")
            time.sleep(0.05)

    def log(self) -> str:
        return "\n".join(
            f"--- sentinel {port}\n" + (d / "sentinel.log").read_text(errors="replace")[-1500:]
            for port, d in zip(self.ports, self.dirs, strict=True)
            if (d / "sentinel.log").exists()
        )

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
        for directory in self.dirs:
            shutil.rmtree(directory, ignore_errors=True)

    def __enter__(self) -> Sentinels:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
