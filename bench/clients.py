"""The load-generator processes a run drives (``ClientPool``): each a spawned process with its own
uvloop (``bench.loadgen``; ``bench.scaleload`` for ``python -m bench.scale``), told what to do
over a pipe, one command to all at once, and answering with its counts; an error in one is
an error of the call.
"""

from __future__ import annotations

import multiprocessing

from bench.loadgen import client_main


class ClientPool:
    """``count`` load-generator processes, each with its own uvloop (``target``: their entry point)."""

    def __init__(self, count: int, target=client_main):
        ctx = multiprocessing.get_context("spawn")
        self.pipes = []
        self.processes = []
        for _ in range(count):
            parent, child = ctx.Pipe()
            process = ctx.Process(target=target, args=(child,), daemon=True)
            process.start()
            self.pipes.append(parent)
            self.processes.append(process)

    def __len__(self) -> int:
        return len(self.pipes)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def call(self, command: str, kwargs: list[dict], timeout: float = 600) -> list[dict]:
        for pipe, args in zip(self.pipes, kwargs, strict=True):
            pipe.send((command, args))
        replies = []
        for pipe in self.pipes:
            if not pipe.poll(timeout):
                raise TimeoutError(f"client did not answer {command} within {timeout} s")
            reply = pipe.recv()
            if isinstance(reply, dict) and "error" in reply:
                raise RuntimeError(f"client failed on {command}: {reply['error']}")
            replies.append(reply)
        return replies

    def each(self, command: str, timeout: float = 600, **kwargs) -> list[dict]:
        return self.call(command, [kwargs] * len(self.pipes), timeout)

    def close(self) -> None:
        for pipe in self.pipes:
            try:
                pipe.send(("exit", {}))
                pipe.poll(10) and pipe.recv()
            except (OSError, EOFError):
                pass
        for process in self.processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()

    def __enter__(self) -> ClientPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
