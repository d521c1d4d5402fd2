"""``WorkerActor``: the Ray actor that holds one nasflow worker process on a Ray node.

The actor is a thin host: it materialises the experiment's setup from Ray's object store
into a file on its node (once per node: actors on one node share it), then starts the
ordinary worker process (``python -m nasflow.worker``) in its own process group, with the
token through an inherited pipe, exactly as the local training service does. The worker
dials the manager's trial channel itself; the actor only reports when it exits and kills
its process group when told to (a trial past its timeout). ``--parent-pid`` ties the
worker to the actor: when Ray kills the actor (or its node's raylet dies), the worker
leaves with it.

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

__all__ = ["WorkerActor"]


class WorkerActor:
    """One worker process on a Ray node (an async actor: ``kill`` runs while ``wait``
    waits)."""

    def __init__(self) -> None:
        self._process: asyncio.subprocess.Process | None = None

    async def start(self, command: list[str], token: str, log: str,
                    payloads: list[tuple[Any, str, str, int]]) -> dict[str, Any]:
        """Write ``payloads`` (object ref, path, sha256, size) where the worker reads them,
        start the worker with ``command`` (``worker_command``), return where it runs:
        ``{"node_id", "ip", "pid", "gpus"}``."""
        import ray

        for ref, path, _sha256, size in payloads:
            if not await asyncio.to_thread(_present, path, size):
                data = await ref  # once per node: Ray keeps the object in its node store
                await asyncio.to_thread(_write, data, path)
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
        return {"node_id": node_id, "ip": ray.util.get_node_ip_address(),  # type: ignore[no-untyped-call]
                "pid": self._process.pid, "gpus": env.get("CUDA_VISIBLE_DEVICES")}

    async def wait(self) -> int:
        """The worker's exit status, once it has exited (its process group is killed
        then: what a trial left behind goes too)."""
        assert self._process is not None
        code = await self._process.wait()
        self.kill()
        return code

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
