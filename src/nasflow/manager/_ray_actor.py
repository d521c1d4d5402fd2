"""``WorkerActor``: the Ray actor that holds one nasflow worker process on a Ray node.

The actor is a thin host: it materialises the experiment's setup from Ray's object store
into a file on its node (once per node: actors on one node share it), then starts the
ordinary worker process (``python -m nasflow.worker``) in its own process group, with the
token through an inherited pipe, exactly as the local training service does. The worker
dials the manager's trial channel itself; the actor only reports when it exits and kills
its process group when told to (a trial past its timeout). ``--parent-pid`` ties the
worker to the actor: when Ray kills the actor (or its node's raylet dies), the worker
leaves with it.

An experiment's actors are detached (they outlive a killed experiment process) and named
in the experiment's namespace: a resumed experiment finds them, asks each ``describe()``
(where its worker dials and with which token) and serves that address again, so that
their workers re-attach with the trials they still run. A worker that has exited (its
manager stayed away past ``--reattach-timeout``) leaves its actor nobody to end it: the
actor ends itself ``LINGER`` seconds later.

Imported inside Ray's worker processes: the standard library only at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["LINGER", "WorkerActor"]

LINGER = 30.0
"""Seconds an actor whose worker exited waits for its manager to end it (and read the
exit status) before it ends itself: a detached actor must not outlive its experiment."""


class WorkerActor:
    """One worker process on a Ray node (an async actor: ``kill`` runs while ``wait``
    waits)."""

    def __init__(self) -> None:
        self._process: asyncio.subprocess.Process | None = None
        self._where: dict[str, Any] = {}
        self._reaper: asyncio.Task[None] | None = None

    async def start(self, command: list[str], token: str, log: str,
                    payloads: list[tuple[Any, str, str, int]]) -> dict[str, Any]:
        """Write ``payloads`` (object ref, path, sha256, size) where the worker reads them,
        start the worker with ``command`` (``worker_command``), return where it runs:
        ``{"node_id", "ip", "pid", "gpus"}``."""
        import ray

        await self.stage(payloads)
        context = ray.get_runtime_context()
        node_id = context.get_node_id()
        env = {k: v for k, v in os.environ.items() if k != "NASFLOW_TOKEN"}
        env["NASFLOW_RAY_NODE"] = node_id  # where a trial runs, for the evaluator to see
        out = await asyncio.to_thread(_open_log, log)
        token_in, token_out = os.pipe()
        try:
            os.write(token_out, token.encode())
            os.close(token_out)
            token_out = -1
            self._process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "nasflow.worker", *command,
                "--parent-pid", str(os.getpid()), "--token-fd", str(token_in),
                stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env,
                pass_fds=(token_in,), start_new_session=True,
            )
        finally:
            os.close(out)
            os.close(token_in)
            if token_out != -1:
                os.close(token_out)
        self._where = {"node_id": node_id, "ip": ray.util.get_node_ip_address(),  # type: ignore[no-untyped-call]
                       "pid": self._process.pid, "gpus": env.get("CUDA_VISIBLE_DEVICES")}
        self._where["manager"] = {"url": _option(command, "--url"), "token": token}
        self._reaper = asyncio.get_running_loop().create_task(self._reap())
        return {k: v for k, v in self._where.items() if k != "manager"}

    async def stage(self, payloads: list[tuple[Any, str, str, int]]) -> None:
        """Write ``payloads`` on this node unless present (a resumed experiment's setup,
        before the worker it adopts is sent it)."""
        for ref, path, _sha256, size in payloads:
            if not await asyncio.to_thread(_present, path, size):
                data = await ref  # once per node: Ray keeps the object in its node store
                await asyncio.to_thread(_write, data, path)

    def describe(self) -> dict[str, Any]:
        """What ``start`` returned, plus ``manager``: the trial channel the worker dials
        and the token it presents (for a resumed experiment's manager; Ray's calls stay
        inside the cluster, the trust boundary)."""
        return dict(self._where)

    async def wait(self) -> int:
        """The worker's exit status, once it has exited (its process group is killed
        then: what a trial left behind goes too)."""
        assert self._process is not None
        code = await self._process.wait()
        self.kill()
        return code

    async def until_killed(self) -> None:
        """Never returns: its caller learns the actor is dead when this call fails."""
        await asyncio.Event().wait()

    async def _reap(self) -> None:
        await self.wait()
        await asyncio.sleep(LINGER)  # a grace period for a resume to re-attach, not a poll
        os._exit(0)  # nobody ended this actor: its experiment is gone

    def kill(self) -> None:
        """SIGKILL the worker's process group (a no-op once it is empty)."""
        process = self._process
        if process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)


def worker_command(url: str, session_id: str, reattach_timeout: float) -> list[str]:
    """The worker's options (the actor runs them with its node's Python and adds
    ``--parent-pid`` and ``--token-fd``)."""
    return ["--url", url, "--session", session_id, "--reattach-timeout",
            str(reattach_timeout)]


def _option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def _present(path: str, size: int) -> bool:
    """Whether another actor on this node wrote the setup already (the worker checks its
    SHA-256 before it unpickles anything)."""
    try:
        return os.stat(path).st_size == size
    except OSError:
        return False


def _write(data: bytes, path: str) -> None:
    from nasflow._payload import spill

    target = Path(path)
    name = target.name.removeprefix("setup-").rsplit("-", 1)[0]
    spill(data, target.parent, name)  # atomic: actors racing on one node write it alike


def _open_log(log: str) -> int:
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    return os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
