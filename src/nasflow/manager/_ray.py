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

An experiment's actors (``RayWorkers.namespace`` set: the embedded manager's) are
detached and named by their worker's session in the namespace ``nasflow-<experiment>``,
so that they outlive an experiment process killed with ``kill -9``. Its resume finds them
(``find_earlier``), serves their manager's address again with their token, and adopts the
workers that re-attach with their trials (``earlier_workers``/``adopt``), as a restarted
daemon adopts its local workers. Every actor the pool started or found is killed, and
awaited until Ray says it is dead, before the pool says all are gone: nothing is left in
the namespace when the experiment ends.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from nasflow.manager._pool import LocalPool, WorkerProcess, _describe
from nasflow.manager._ray_actor import WorkerActor, worker_command

__all__ = ["Earlier", "RayPool", "RayWorkers", "connect", "end_earlier", "find_earlier",
           "namespace_of", "node_payload_path", "place_setup", "ray_options"]

_log = logging.getLogger("nasflow.manager.ray")


@dataclass(frozen=True)
class RayWorkers:
    """Where and how the manager's workers run on Ray."""

    resources: Mapping[str, float] = field(default_factory=lambda: {"CPU": 1.0})
    """What one worker (one trial at a time) asks Ray for."""
    payloads: tuple[tuple[Any, str, str, int], ...] = ()
    """Setups every actor writes on its node before its worker starts: ``(object ref,
    path, sha256, size)``."""
    namespace: str | None = None
    """The Ray namespace of an experiment's detached, named actors (``None``: a daemon's
    actors, owned by its process)."""
    earlier: tuple[Earlier, ...] = ()
    """Actors an earlier process of this experiment left running (``find_earlier``)."""


@dataclass(frozen=True)
class Earlier:
    """An actor a killed experiment process left running, found again by name."""

    session_id: str
    actor: Any
    where: Mapping[str, Any]
    """Its ``WorkerActor.describe()``: ``node_id``, ``ip``, ``pid``, ``gpus``,
    ``manager`` (``url``, ``token``)."""


def namespace_of(experiment_id: str) -> str:
    """The Ray namespace holding an experiment's actors."""
    return f"nasflow-{experiment_id}"


def find_earlier(namespace: str,
                 payloads: tuple[tuple[Any, str, str, int], ...]) -> tuple[Earlier, ...]:
    """The live actors in ``namespace`` (an earlier process of the experiment started
    them), each told to write ``payloads`` (this process's setup) on its node; those
    that do not answer are killed. Blocking: run it in a thread."""
    import ray

    found: list[Earlier] = []
    entries: list[Any] = ray.util.list_named_actors(all_namespaces=True)
    for entry in entries:
        if entry["namespace"] != namespace:
            continue
        try:
            actor = ray.get_actor(entry["name"], namespace=namespace)
        except ValueError:
            continue  # it died meanwhile
        try:
            where: dict[str, Any] = ray.get(actor.describe.remote(), timeout=30)  # type: ignore[assignment]
            ray.get(actor.stage.remote(list(payloads)), timeout=120)
        except Exception as exc:
            _log.info("an earlier actor %s does not answer (%s): killed", entry["name"], exc)
            _kill(actor)
            continue
        if not where:
            _kill(actor)  # never started a worker
            continue
        found.append(Earlier(entry["name"], actor, where))
    return tuple(found)


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
        detached = ({} if workers.namespace is None
                    else {"lifetime": "detached", "namespace": workers.namespace})
        self._actor_class = ray.remote(WorkerActor)
        self._options = dict(max_concurrency=8, **detached,
                             **ray_options(workers.resources))
        self._earlier = {e.session_id: e for e in workers.earlier}
        """Earlier actors not adopted (yet): ended once their worker exits."""

    def spawn(self, session_id: str, gpu: str | None) -> WorkerProcess:
        if self._tg is None:
            raise RuntimeError("RayPool.bind() was not called")
        proc = RayWorker(session_id, self.log_dir / f"{session_id}.log")
        named = {} if self._workers.namespace is None else {"name": session_id}
        proc.actor = self._actor_class.options(**self._options, **named).remote()
        self._add(proc)
        self._tg.start_soon(self._run, proc)
        return proc

    def adopt(self, session_id: str, pid: int) -> WorkerProcess | None:
        earlier = self._earlier.pop(session_id, None)
        if self._tg is None or earlier is None:
            return None  # not an actor of this experiment: refused
        proc = RayWorker(session_id, self.log_dir / f"{session_id}.log")
        proc.actor, proc.adopted = earlier.actor, True
        self._placed(proc, earlier.where)
        self._add(proc)
        self._tg.start_soon(self._run, proc)
        return proc

    def earlier_workers(self) -> dict[str, int] | None:
        return {e.session_id: int(e.where["pid"]) for e in self._earlier.values()}

    def on_gone(self, pid: int, callback: Callable[[], None]) -> None:
        # an earlier actor's worker runs on a Ray node, maybe not this machine's
        if self._tg is None:
            raise RuntimeError("RayPool.bind() was not called")
        earlier = next(e for e in self._earlier.values() if e.where["pid"] == pid)
        self._tg.start_soon(self._await_earlier, earlier, callback)

    async def _await_earlier(self, earlier: Earlier, callback: Callable[[], None]) -> None:
        from ray.exceptions import RayError

        with contextlib.suppress(RayError):
            await earlier.actor.wait.remote()
        callback()
        if self._earlier.pop(earlier.session_id, None) is not None:
            await _end(earlier.actor)  # it exited without re-attaching: nobody adopts it

    def closing(self) -> None:
        # actors still waiting for room would never hear the goodbye: end them now
        for proc in list(self.processes.values()):
            if isinstance(proc, RayWorker) and proc.node_id is None:
                _kill(proc.actor)

    def kill_all(self) -> None:
        for proc in list(self.processes.values()):
            proc.kill()
            if isinstance(proc, RayWorker):
                _kill(proc.actor)
        for earlier in self._earlier.values():
            _kill(earlier.actor)

    @staticmethod
    def _placed(proc: RayWorker, where: Mapping[str, Any]) -> None:
        proc.node_id, proc.ip, proc.pid = where["node_id"], where["ip"], where["pid"]
        proc.gpu = where["gpus"]

    async def _run(self, proc: WorkerProcess) -> None:
        from ray.exceptions import RayActorError, RayError

        assert isinstance(proc, RayWorker)
        command = worker_command(self._url, proc.session_id, self._reattach_timeout)
        try:
            if not proc.adopted:
                self._placed(proc, await proc.actor.start.remote(
                    command, self._token, str(proc.log), list(self._workers.payloads)))
            returncode = await proc.actor.wait.remote()
            if returncode < 0:
                # killed by a signal: by Ray, if its node is going (the actor then dies
                # too, and this call fails with that), else by someone on a live node
                with anyio.move_on_after(60):
                    await proc.actor.describe.remote()
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
            with anyio.CancelScope(shield=True):
                await _end(proc.actor)
            self._remove(proc)
        await self._on_exit(proc)


def end_earlier(earlier: tuple[Earlier, ...]) -> None:
    """Kill actors an earlier process left (their workers cannot re-attach here)."""
    for e in earlier:
        _kill(e.actor)


def _kill(actor: Any) -> None:
    import ray

    try:
        ray.kill(actor, no_restart=True)
    except Exception as exc:
        _log.debug("ray.kill(%s): %s", actor, exc)


async def _end(actor: Any) -> None:
    """Kill ``actor`` and wait (10 s at most) until Ray has it dead, its name released."""
    from ray.exceptions import RayError

    dead = actor.until_killed.remote()
    _kill(actor)
    with anyio.move_on_after(10), contextlib.suppress(RayError):
        await dead


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
