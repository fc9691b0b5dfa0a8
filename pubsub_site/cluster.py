"""Run the production shape on one machine: N web processes on consecutive ports and
M workers, from the Procfile's commands, against the configured PostgreSQL and Redis.

    python -m pubsub_site.cluster --web 3 --workers 2 --port 8000   (what `make cluster` runs)

Unlike honcho, a process that dies is left dead and the others go on: the fault
tests kill processes on purpose and start new ones. Tests drive the ``Cluster``
class directly.

Rolling restart (a deploy without dropping anyone): ``kill -HUP <runner pid>`` (``make
cluster-restart``; the pid is in ``var/cluster/runner.pid``) restarts the web processes one
at a time: SIGTERM (the process drains its sockets, messaging.realtime.drain), wait for it to
exit, start it again on its port, wait until it answers /healthz, then the next one. Tests
call ``Cluster.rolling_restart``.

Metrics: the processes share PROMETHEUS_MULTIPROC_DIR (``var/cluster/prometheus``, emptied
at start, unless the variable is set), so a scrape of any web port counts them all; a
process this runner stops or kills has its live gauges removed (``mark_process_dead``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.error import URLError
from urllib.request import urlopen

ROOT = Path(__file__).resolve().parent.parent
# How long a process may take to stop after SIGTERM before it is killed: a web process drains
# its sockets (WS_DRAIN_SECONDS, 5, and up to 2 s for the last closes), lingers
# (WS_DRAIN_LINGER_SECONDS: 0 here by default, 6 in compose) then waits for what runs
# (--timeout-graceful-shutdown, 10), as compose's stop_grace_period (25 s) allows.
STOP_TIMEOUT = 25.0
# How long a restarted web process may take to answer /healthz (a busy machine is slow to load Django).
START_TIMEOUT = 90.0


def procfile_commands(path: Path = ROOT / "Procfile") -> dict[str, str]:
    commands = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, command = line.split(":", 1)
            commands[name.strip()] = command.strip()
    return commands


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urlopen(url, timeout=1) as response:  # noqa: S310 (our own http://127.0.0.1 URL)
                if response.status == 200:
                    return
        except (URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout} s")
        time.sleep(0.1)


def descendants(pid: int) -> list[int]:
    """The processes ``pid`` started, and theirs, from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # The command name (field 2) may hold spaces; the parent pid follows its ")".
            children.setdefault(int(stat.read_text().rsplit(")", 1)[1].split()[1]), []).append(int(stat.parent.name))
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def signal_tree(process: subprocess.Popen, sig: int) -> None:
    """Send ``sig`` to the process and every process it started: rq's work horse puts
    itself in a process group of its own, so a group signal would miss it. A container
    stop or a machine failure takes the horse with the worker; so does this."""
    for pid in [*descendants(process.pid), process.pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


@dataclass
class Cluster:
    env: dict[str, str] = field(default_factory=dict)
    log_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="pubsub-cluster-")))
    web_command: str | None = None
    webs: dict[int, subprocess.Popen] = field(default_factory=dict)  # port -> process
    workers: list[subprocess.Popen] = field(default_factory=list)

    def _environment(self, **extra: str) -> dict[str, str]:
        venv_bin = str(Path(sys.executable).parent)
        env = {**os.environ, **self.env, **extra}
        env["PATH"] = f"{venv_bin}:{env.get('PATH', '')}"
        env.setdefault("DJANGO_SETTINGS_MODULE", "pubsub_site.settings")
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    def _spawn(self, name: str, command: str, **extra: str) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 (owned by the child)
        expanded = os.path.expandvars(command) if "PORT" not in extra else command.replace("$PORT", extra["PORT"])
        return subprocess.Popen(
            shlex.split(expanded),
            cwd=ROOT,
            env=self._environment(**extra),
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def start_web(self, port: int | None = None, *, wait: bool = True, timeout: float = 30) -> int:
        port = port or free_port()
        command = self.web_command or procfile_commands()["web"]
        self.webs[port] = self._spawn(f"web-{port}", command, PORT=str(port))
        if wait:
            wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=timeout)
        return port

    def start_worker(self) -> subprocess.Popen:
        process = self._spawn(f"worker-{len(self.workers) + 1}", procfile_commands()["worker"])
        self.workers.append(process)
        return process

    def metrics_dir(self) -> str | None:
        return self.env.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None

    def _gone(self, process: subprocess.Popen) -> None:
        """A process is dead: its open connections and the like no longer count (its counters do)."""
        path = self.metrics_dir()
        if path is not None and Path(path).is_dir():
            from prometheus_client.multiprocess import mark_process_dead  # noqa: PLC0415 (only with a metrics directory: the runner itself makes no metrics)

            mark_process_dead(process.pid, path)

    def kill_web(self, port: int, sig: int = signal.SIGKILL) -> None:
        process = self.webs.pop(port)
        signal_tree(process, sig)
        process.wait(timeout=30)
        self._gone(process)

    def kill_worker(self, process: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
        """Signal the worker and its children (a work horse, when the worker class forks)."""
        signal_tree(process, sig)
        process.wait(timeout=30)
        self._gone(process)
        self.workers.remove(process)

    def restart_web(self, port: int, *, timeout: float = STOP_TIMEOUT) -> tuple[float, float]:
        """SIGTERM the web process on ``port`` (it drains its sockets and exits), then start
        it again there and wait until it answers. Returns (seconds until it had exited,
        seconds until the new one answered), both from the SIGTERM."""
        process = self.webs.pop(port)
        started = time.monotonic()
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            signal_tree(process, signal.SIGKILL)
            process.wait()
        self._gone(process)
        stopped = time.monotonic() - started
        self.start_web(port, timeout=START_TIMEOUT)
        return stopped, time.monotonic() - started

    def rolling_restart(self) -> list[tuple[float, float]]:
        """Restart the web processes one at a time (``restart_web``), each once the one
        before answers again; returns what ``restart_web`` returned for each."""
        return [self.restart_web(port) for port in self.ports]

    @property
    def ports(self) -> list[int]:
        return sorted(self.webs)

    def stop(self, *, graceful: bool = True) -> None:
        """SIGTERM everything and wait (STOP_TIMEOUT at most each), or with ``graceful=False``
        SIGKILL everything at once (a test that is over needs no drain)."""
        for process in [*self.webs.values(), *self.workers]:
            if process.poll() is None:
                if graceful:
                    process.terminate()
                else:
                    signal_tree(process, signal.SIGKILL)
        for process in [*self.webs.values(), *self.workers]:
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                signal_tree(process, signal.SIGKILL)
                process.wait()
            self._gone(process)
        self.webs.clear()
        self.workers.clear()

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}" for p in sorted(self.log_dir.glob("*.log"))
        )

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--web", type=int, default=3, help="web processes (default 3)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--port", type=int, default=8000, help="first web port (default 8000)")
    parser.add_argument(
        "--log-dir", type=Path, default=ROOT / "var" / "cluster", help="logs and runner.pid (default var/cluster)"
    )
    args = parser.parse_args()
    metrics_dir = Path(os.environ.get("PROMETHEUS_MULTIPROC_DIR") or args.log_dir / "prometheus")
    metrics_dir.mkdir(parents=True, exist_ok=True)
    for stale in metrics_dir.glob("*.db"):  # emptied before the processes start, as prometheus_client asks
        stale.unlink()
    cluster = Cluster(env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}, log_dir=args.log_dir)
    cluster.log_dir.mkdir(parents=True, exist_ok=True)
    try:
        for i in range(args.web):
            cluster.start_web(args.port + i)
        for _ in range(args.workers):
            cluster.start_worker()
        print(f"{args.web} web processes: " + ", ".join(f"http://127.0.0.1:{p}/" for p in cluster.ports))
        print(f"{args.workers} workers; logs in {cluster.log_dir}. Ctrl-C stops them all.")
        print(f"Metrics of them all: http://127.0.0.1:{cluster.ports[0]}/metrics (any one port; not each)")
        pid_file = cluster.log_dir / "runner.pid"
        pid_file.write_text(f"{os.getpid()}\n")
        print(f"Rolling restart of the web processes: kill -HUP {os.getpid()} (make cluster-restart)")
        # Handlers that note the signal, not a blocked mask and sigwait: the processes a
        # rolling restart starts would inherit the mask, and never hear their own SIGTERM.
        received: list[int] = []
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, lambda sig, frame: received.append(sig))
        while True:
            while not received:
                time.sleep(0.2)
            if received.pop(0) != signal.SIGHUP:
                break
            print("Rolling restart: the web processes one at a time...", flush=True)
            for port in cluster.ports:
                stopped, back = cluster.restart_web(port)
                print(f"  {port}: drained and stopped in {stopped:.1f} s, back after {back:.1f} s", flush=True)
            print("Rolling restart done.", flush=True)
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
