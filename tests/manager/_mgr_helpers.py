"""Helpers of the manager tests: engines over real sockets, process checks, a daemon."""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import psutil
from anyio.abc import Process
from anyio.streams.text import TextReceiveStream

from nasflow._kernel import Objective
from nasflow.engine import EngineSetup, ManagerEngine
from nasflow.evaluator import FunctionalEvaluator
from nasflow.events import Event, IntermediateMetric
from nasflow.space import Categorical, SearchSpace
from nasflow.testing import EngineHarness


class Harness(EngineHarness):
    """An ``EngineHarness`` that can also wait for the first event matching a test."""

    def __init__(self) -> None:
        super().__init__()
        self._waiters: list[tuple[Callable[[Event], bool], anyio.Event]] = []

    async def publish(self, event: Event, *, wait: bool = True) -> None:
        await super().publish(event, wait=wait)
        for predicate, arrived in self._waiters:
            if predicate(event):
                arrived.set()

    async def first(self, predicate: Callable[[Event], bool]) -> Event:
        """The first event (published so far, or later) for which ``predicate`` holds."""
        arrived = anyio.Event()
        self._waiters.append((predicate, arrived))
        try:
            if not any(predicate(e) for e in self.events):
                await arrived.wait()
        finally:
            self._waiters.remove((predicate, arrived))
        return next(e for e in self.events if predicate(e))

    async def metric(self, trial_id: int) -> IntermediateMetric:
        """The first intermediate metric of ``trial_id``."""
        event = await self.first(
            lambda e: isinstance(e, IntermediateMetric) and e.trial_id == trial_id)
        assert isinstance(event, IntermediateMetric)
        return event


def setup_for(fn: Callable[..., Any], harness: EngineHarness, root: Path, *,
              concurrency: int = 1, trial_timeout: float | None = None,
              experiment_id: str = "exp-test") -> EngineSetup:
    """An ``EngineSetup`` whose events land in ``harness`` and trial folders under ``root``."""
    return EngineSetup(
        space=SearchSpace({"x": Categorical([1, 2, 3, 4])}),
        evaluator=FunctionalEvaluator(fn), objective=Objective({"default": "maximize"}),
        publish=harness.publish, trial_directory=lambda i: root / "trials" / str(i),
        experiment_id=experiment_id, concurrency=concurrency, trial_timeout=trial_timeout,
    )


@asynccontextmanager
async def embedded(fn: Callable[..., Any], root: Path, **options: Any
                   ) -> AsyncIterator[tuple[ManagerEngine, Harness]]:
    """A ``ManagerEngine`` over an embedded manager with local workers."""
    harness = Harness()
    concurrency = options.pop("concurrency", 1)
    timeout = options.pop("trial_timeout", None)
    setup = setup_for(fn, harness, root, concurrency=concurrency, trial_timeout=timeout)
    async with ManagerEngine(setup, **options) as engine:
        yield engine, harness


async def wait_exited(pid: int) -> None:
    """Return once process ``pid`` has ended (a pidfd: no polling)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        await anyio.wait_readable(fd)
    finally:
        os.close(fd)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its parent does not count)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def group_alive(pgid: int) -> list[int]:
    """Live processes of process group ``pgid``."""
    out = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(proc.pid) == pgid and alive(proc.pid):
                out.append(proc.pid)
        except (ProcessLookupError, PermissionError):
            continue
    return out


def free_port() -> int:
    """A port that was free a moment ago (for a daemon that must come back on it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Daemon:
    """A ``python -m nasflow.manager`` subprocess and the lines it printed."""

    def __init__(self, process: Process, url: str) -> None:
        self.process = process
        self.url = url

    def kill(self) -> None:
        """SIGKILL the daemon alone (its workers live in their own process groups)."""
        self.process.send_signal(signal.SIGKILL)


@asynccontextmanager
async def daemon(port: int, token: str, *args: str) -> AsyncIterator[Daemon]:
    """Start ``nasflow manager`` on ``port``; yields once it printed its URL."""
    command = [sys.executable, "-m", "nasflow.manager", "--port", str(port), f"--token={token}",
               *args]
    process = await anyio.open_process(command, stderr=None)
    assert process.stdout is not None
    try:
        url = ""
        lines = TextReceiveStream(process.stdout)
        buffer = ""
        with anyio.fail_after(30):
            async for chunk in lines:
                buffer += chunk
                if "url: " in buffer and buffer.endswith("\n"):
                    url = buffer.split("url: ", 1)[1].split()[0]
                    break
        yield Daemon(process, url)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            with anyio.move_on_after(10):
                await process.wait()
        if process.returncode is None:
            process.kill()
        await process.aclose()
