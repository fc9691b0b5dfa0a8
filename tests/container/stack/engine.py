"""A Docker engine of the test's own: dockerd with its own data root (a tmpfs when it can),
exec root, pid file and socket, started, used through its client and stopped by its pid."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.container.stack.common import docker_cli, required_tool, tail, timed

# A cap, not a reservation: a tmpfs takes memory only for what it holds (about 3 GiB).
DATA_ROOT_TMPFS_SIZE = "12g"


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
