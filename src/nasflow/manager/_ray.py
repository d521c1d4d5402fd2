"""The Ray training service: the manager's workers, placed as Ray actors on a cluster.

``RayPool`` is the manager's pool (``LocalPool``'s interface) whose workers live on a Ray
cluster: ``spawn`` creates a ``WorkerActor`` with the trial's resources
(``trial_resources``), which starts the ordinary worker process on whichever node Ray
picks; that worker dials the manager's trial channel like a local one (hello, token,
acks, resend, re-attach). The manager does not care where a worker lives: it sees a
worker that connects, runs trials and exits.

Capacity follows the cluster. An actor that does not fit waits in Ray's queue (which is
the demand an autoscaler acts on) and the manager grants a slot only once its worker has
connected (``elastic``): capacity is the workers the cluster holds, up to
``concurrency``. A node that leaves takes its actors with it; each is replaced by a new
actor that waits for room.

How a worker ended, as the manager hears it (``on_exit``): its process exited (the
description says how), its actor died (``WorkerLost``), or its node died (``NodeLost``).
Ray tells the pool by failing the actor's pending ``wait`` call: nothing here polls.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nasflow.manager._pool import LocalPool, WorkerProcess, _describe
from nasflow.manager._ray_actor import WorkerActor, worker_command

__all__ = ["RayPool", "RayWorkers", "connect", "node_payload_path", "place_setup",
           "ray_options"]

_log = logging.getLogger("nasflow.manager.ray")


@dataclass(frozen=True)
class RayWorkers:
    """Where and how the manager's workers run on Ray."""

    resources: Mapping[str, float] = field(default_factory=lambda: {"CPU": 1.0})
    """What one worker (one trial at a time) asks Ray for."""
    payloads: tuple[tuple[Any, str, str, int], ...] = ()
    """Setups every actor writes on its node before its worker starts: ``(object ref,
    path, sha256, size)``."""


def ray_options(resources: Mapping[str, float]) -> dict[str, Any]:
    """``resources`` (Ray's names) as ``.options()`` arguments of an actor."""
    rest = dict(resources)
    options: dict[str, Any] = {"num_cpus": rest.pop("CPU", 0.0),
                               "num_gpus": rest.pop("GPU", 0.0)}
    if "memory" in rest:
        options["memory"] = rest.pop("memory")
    if rest:
        options["resources"] = rest
    return options


def node_payload_path(experiment_id: str, sha256: str) -> Path:
    """Where each node keeps an experiment's setup (the same path on every node)."""
    from nasflow._payload import file_safe

    return (Path(tempfile.gettempdir()) / "nasflow-ray"
            / f"setup-{file_safe(experiment_id)}-{sha256[:16]}.pkl")


def connect(address: str | None, resources: Mapping[str, float]) -> bool:
    """Connect this process to Ray (unless it is already); True if it started Ray here and
    must shut it down. Blocking: run it in a thread.

    ``ConfigError`` if no node of the cluster could ever hold one trial's ``resources``
    and nothing can add one (a local Ray, which has no autoscaler)."""
    import ray
    from nasflow.exceptions import ConfigError

    owned = False
    if not ray.is_initialized():
        try:
            ray.init(address=address, logging_level=logging.WARNING,
                     configure_logging=False)
        except ConnectionError as exc:
            raise ConfigError("ray_address", address,
                              f"the address of a running Ray cluster ({exc}); start one "
                              "with `ray start --head`, or use None for a local Ray") from exc
        owned = True
    if address is None:
        nodes = [n["Resources"] for n in ray.nodes() if n["Alive"]]  # type: ignore[no-untyped-call]
        if not any(all(n.get(k, 0.0) >= v for k, v in resources.items()) for n in nodes):
            if owned:
                ray.shutdown()
            raise ConfigError(
                "trial_resources", dict(resources),
                f"what one node of this Ray can hold; its nodes have {nodes}. Ask for "
                "less, or attach to a cluster that has such nodes (ray_address=...)")
    return owned


def place_setup(payload: bytes, experiment_id: str) -> tuple[str, str, tuple[Any, str, str, int]]:
    """Put an experiment's setup in Ray's object store, once: ``(path, sha256, entry)``
    where ``path`` is where every node's actors write it (see ``RayWorkers.payloads``)."""
    import hashlib

    import ray

    sha = hashlib.sha256(payload).hexdigest()
    path = str(node_payload_path(experiment_id, sha))
    return path, sha, (ray.put(payload), path, sha, len(payload))


class RayWorker(WorkerProcess):
    """A worker whose process runs under a Ray actor (``pid`` is on the actor's node)."""

    def __init__(self, session_id: str, log: Path) -> None:
        super().__init__(session_id, None, log)
        self.cause = "WorkerLost"  # its node leaving makes it NodeLost
        self.actor: Any = None
        """The ``WorkerActor`` handle."""
        self.node_id: str | None = None
        """The Ray node it runs on, once placed."""
        self.ip: str | None = None

    def kill(self) -> None:
        if self.description is None and self.actor is not None:
            self.actor.kill.remote()  # the actor kills the worker's process group

    def __repr__(self) -> str:
        return f"<RayWorker {self.session_id} node={self.node_id} pid={self.pid}>"


class RayPool(LocalPool):
    """Starts and watches workers as Ray actors; see the module docstring."""

    elastic = True
    """Capacity is the workers that connected, not the pool's size."""

    def __init__(self, workers: RayWorkers, *, token: str, reattach_timeout: float,
                 log_dir: Path, on_exit: Callable[[WorkerProcess], Awaitable[None]]) -> None:
        super().__init__(token=token, reattach_timeout=reattach_timeout, log_dir=log_dir,
                         parent_pid=None, on_exit=on_exit)
        import ray

        self._workers = workers
        self._actor_class = ray.remote(WorkerActor).options(
            max_concurrency=4, **ray_options(workers.resources))

    def spawn(self, session_id: str, gpu: str | None) -> WorkerProcess:
        if self._tg is None:
            raise RuntimeError("RayPool.bind() was not called")
        proc = RayWorker(session_id, self.log_dir / f"{session_id}.log")
        proc.actor = self._actor_class.remote()
        self._add(proc)
        self._tg.start_soon(self._run, proc)
        return proc

    def adopt(self, session_id: str, pid: int) -> WorkerProcess | None:
        return None  # an embedded manager's actors end with their experiment

    def earlier_workers(self) -> dict[str, int] | None:
        return {}

    def closing(self) -> None:
        # actors still waiting for room would never hear the goodbye: end them now
        for proc in list(self.processes.values()):
            if isinstance(proc, RayWorker) and proc.node_id is None:
                self._end_actor(proc)

    def kill_all(self) -> None:
        for proc in list(self.processes.values()):
            proc.kill()
            if isinstance(proc, RayWorker):
                self._end_actor(proc)

    @staticmethod
    def _end_actor(proc: RayWorker) -> None:
        import ray

        try:
            ray.kill(proc.actor, no_restart=True)
        except Exception as exc:
            _log.debug("ray.kill(%s): %s", proc, exc)

    async def _run(self, proc: WorkerProcess) -> None:
        from ray.exceptions import RayActorError, RayError

        assert isinstance(proc, RayWorker)
        command = worker_command(self._url, proc.session_id, self._reattach_timeout)
        try:
            where = await proc.actor.start.remote(command, self._token, str(proc.log),
                                                  list(self._workers.payloads))
            proc.node_id, proc.ip, proc.pid = where["node_id"], where["ip"], where["pid"]
            proc.gpu = where["gpus"]
            returncode = await proc.actor.wait.remote()
            proc.description = f"on node {proc.ip} {_describe(returncode)}"
        except RayActorError as exc:
            lost = _node_died(exc, proc.node_id)
            proc.cause = "NodeLost" if lost else "WorkerLost"
            where = f"on node {proc.ip} ({proc.node_id})" if proc.node_id else "unplaced"
            proc.description = (f"{where} was lost with its Ray actor: "
                                + ("the node left the cluster" if lost
                                   else "the actor died") + f" ({_last_line(exc)})")
        except RayError as exc:
            proc.description = f"could not be started on Ray: {_last_line(exc)}"
        finally:
            self._end_actor(proc)
            self._remove(proc)
        await self._on_exit(proc)


def _node_died(exc: BaseException, node_id: str | None) -> bool:
    """Whether ``exc`` (an actor's death) came from its node dying."""
    if "node has died" in str(exc) or "node was terminated" in str(exc):
        return True
    if node_id is None:
        return False
    import ray

    try:
        return not any(n["NodeID"] == node_id and n["Alive"] for n in ray.nodes())  # type: ignore[no-untyped-call]
    except Exception:
        return False


def _last_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[-1].strip() if text else type(exc).__name__
