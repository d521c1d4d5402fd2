"""``ManagerEngine``: trials run on a trial manager's warm worker processes.

With ``manager=None`` the engine starts an embedded ``TrialManager`` in its
``__aenter__`` (a per-experiment token, loopback, a free port, ``concurrency`` workers)
and talks to it directly, in memory: the trial events workers send are decoded once, in
the manager, and handed over as objects. With a ``ws://`` URL it attaches to a running
``nasflow manager`` daemon over the tuner channel, re-attaching if the connection drops;
a daemon's hosted experiment (``local_manager``) talks to its daemon's core in memory too.

The engine owes its experiment what every engine does (``nasflow.testing.EngineContract``):
``submit`` waits for the capacity the manager grants (its fair share), events flow to
``publish`` in order, and each is acked back (so the worker forgets it) only after
``publish`` returned -- and after ``setup.flush()``, once per batch, if the experiment's
``EngineSetup`` offers such a durability barrier (the events that come meanwhile are
published while the store commits; they wait for the next barrier). A ``metrics`` message
(many steps of one trial) is published as one event per step. A worker's event that
reaches it twice (a restarted manager forwards what the worker resent) is dropped by
``(origin, origin_seq)``. What the engine does with the manager's messages is a
``ManagerEvents`` object it owns (``_manager_events.py``).

A resumed experiment re-attaches to the trials a daemon kept running after its process
died (``reattach``): the manager answers the new process's ``setup`` with the trials it
still holds for the experiment (``capacity.held``), followed by their events that the dead
process never acked; the engine holds those events back until ``reattach`` has said which
trials are still wanted, adopts those (same id, same attempt) and cancels the others.

If the experiment's setup cannot be loaded by a worker, or the manager is gone for good,
every trial in flight ends FAILED with that error, ``submit`` raises it, and so does
leaving the ``async with`` block: the experiment fails with the cause, once.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup

from nasflow._kernel import TrialState
from nasflow.engine._base import Engine, EngineSetup, Stop, TrialSpec
from nasflow.engine._links import Link, LocalLink
from nasflow.engine._manager_events import Done, Flight, ManagerEvents
from nasflow.exceptions import (
    ConfigError,
    ManagerGoneError,
    WorkerSetupError,
)
from nasflow.protocol import (
    DEFAULT_LIMITS,
    Cancel,
    Concurrency,
    Limits,
    Setup,
    Submit,
    TrialRef,
)

if TYPE_CHECKING:
    from nasflow.manager import RayWorkers, TrialManager

__all__ = ["ManagerEngine", "ManagerGoneError", "WorkerSetupError"]


def import_manager_modules() -> None:
    """Import what a run over a trial manager needs (websockets' client and server,
    cloudpickle, the manager): an import on a running event loop holds it, ~30 ms for
    these, so an experiment does it when it is created."""
    import cloudpickle  # noqa: F401



def _earlier_manager(workers: RayWorkers) -> dict[str, Any]:
    """``host``, ``port`` and ``token`` of the manager an earlier process of this
    experiment ran, from its actors (their workers re-dial that address with that token);
    empty if there are none."""
    from urllib.parse import urlsplit

    for earlier in workers.earlier:
        manager = earlier.where["manager"]
        url = urlsplit(manager["url"])
        return {"host": url.hostname, "port": url.port, "token": manager["token"]}
    return {}


class ManagerEngine(Engine):
    """Runs trials on a trial manager's workers; see the module docstring.

    ``manager``/``token``: a daemon's URL and token (``None``: an embedded manager).
    The embedded manager's pool: ``workers`` (default: ``setup.concurrency``), ``gpus``
    and ``trials_per_gpu`` (``CUDA_VISIBLE_DEVICES`` per worker), ``max_trials_per_worker``
    (recycling), ``kill_grace`` (seconds a stopped trial gets before its process group is
    killed), ``log_dir`` (the workers' own output). ``reattach_timeout``: how long the
    manager (and its workers) may be away before the run fails. ``local_manager``: the
    ``TrialManager`` at ``manager`` when it serves in this process (a daemon hosting the
    experiment): its core is then called in memory, like an embedded one's, and an error
    it raises is logged and the link starts again, as a dropped connection would.
    """

    def __init__(
        self,
        setup: EngineSetup,
        *,
        manager: str | None = None,
        token: str | None = None,
        workers: int | None = None,
        gpus: tuple[int, ...] | list[int] | None = None,
        trials_per_gpu: int = 1,
        max_trials_per_worker: int | None = None,
        kill_grace: float = 5.0,
        reattach_timeout: float = 60.0,
        connect_timeout: float = 10.0,
        log_dir: str | Path | None = None,
        limits: Limits = DEFAULT_LIMITS,
        ray: bool = False,
        ray_address: str | None = None,
        trial_resources: Mapping[str, float] | None = None,
        local_manager: TrialManager | None = None,
    ) -> None:
        super().__init__(setup)
        self._set_capacity(0)  # until the manager grants some
        # the base's table of running trials (its entries are ``Flight``s), shared
        self._events = ManagerEvents(setup, self._entries, ended=self._ended,
                                     set_capacity=self._set_capacity, failed=self._failed)
        """What the engine does with what its manager sends."""
        self._url = manager
        self._token = token
        self._pool = dict(workers=workers or setup.concurrency, gpus=gpus,
                          trials_per_gpu=trials_per_gpu,
                          max_trials_per_worker=max_trials_per_worker, kill_grace=kill_grace,
                          reattach_timeout=reattach_timeout, log_dir=log_dir, limits=limits)
        self._reattach_timeout = reattach_timeout
        self._connect_timeout = connect_timeout
        self._limits = limits
        self._manager: TrialManager | None = None
        self._local = local_manager
        """A manager that serves in this process (a daemon's hosted experiment): its core
        is called in memory, with no loopback socket in between, and an error it raises is
        isolated as a dropped connection would be (``LocalLink``)."""
        self._link: Link | None = None
        self._setup_message: Setup | None = None
        self._ray = (ray_address, dict(trial_resources or {"CPU": 1.0})) if ray else None
        self._ray_owned = False

    # --- lifecycle ----------------------------------------------------------------------------

    def _check_options(self) -> None:
        if self._url is None or self._local is not None:
            return
        if not self._token:
            raise ConfigError("token", None, "the token the manager printed (or set the "
                                             "NASFLOW_TOKEN variable) when manager= is set")
        # the daemon owns its worker pool: pool options here would be silently ignored
        for name, default in (("gpus", None), ("max_trials_per_worker", None),
                              ("trials_per_gpu", 1)):
            if self._pool[name] != default:
                raise ConfigError(
                    name, self._pool[name],
                    f"{default!r} when manager= is set: the daemon's own options "
                    f"(nasflow manager --{name.replace('_', '-')}) decide that",
                )

    async def __aenter__(self) -> ManagerEngine:
        await super().__aenter__()
        return self

    async def _open(self, tg: TaskGroup) -> None:
        from nasflow._payload import pack

        self._check_options()  # here, not in __init__: the experiment cleans up after us
        s = self.setup
        payload = await anyio.to_thread.run_sync(
            pack, s.space, s.evaluator, s.objective, s.trial_directory)
        self._setup_message = await self._setup_for(payload)
        tg.start_soon(self._events.consume, tg)
        if self._local is not None:
            self._link = LocalLink(self._local.core, s.experiment_id, receive=self._receive,
                                   gone=self._gone, restarted=self._manager_restarted)
        elif self._url is None:
            from nasflow.manager import TrialManager

            pool: dict[str, Any] = dict(self._pool)
            if self._ray is not None:
                pool["ray"] = await self._ray_workers(payload)
                pool.update(_earlier_manager(pool["ray"]))
            manager = TrialManager(embedded=True, **pool)
            try:
                await tg.start(manager.serve)
            except OSError:
                if "port" not in pool:
                    raise
                # the earlier address is taken: its workers cannot re-attach, and their
                # trials run again (a fresh address; the earlier actors are ended)
                from nasflow.manager import end_earlier

                del pool["host"], pool["port"], pool["token"]
                end_earlier(pool["ray"].earlier)
                pool["ray"] = dataclasses.replace(pool["ray"], earlier=())
                manager = TrialManager(embedded=True, **pool)
                await tg.start(manager.serve)
            if pool.get("ray") is not None and pool["ray"].earlier:
                # a resume: the trials an earlier process's actors still run come back
                # with their workers; answer the setup (which lists them) only then
                with anyio.move_on_after(self._reattach_timeout):
                    await manager.core.fleet.earlier_settled.wait()
            self._manager = manager
            self._link = LocalLink(manager.core, s.experiment_id, receive=self._receive,
                                   gone=self._gone)
        else:
            from nasflow.manager import TunerLink

            link = TunerLink(
                self._url, self._token or "", receive=self._receive,
                running=self._running_refs, restarted=self._manager_restarted,
                gone=self._gone, connect_timeout=self._connect_timeout,
                reattach_timeout=self._reattach_timeout, limits=self._limits,
            )
            self._link = link
            tg.start_soon(self._guard, link.run)
        self._link.send(self._setup_message)
        try:
            with anyio.fail_after(self._connect_timeout + 30):
                await self._events.granted.wait()
        except TimeoutError as exc:
            raise ManagerGoneError(
                f"the manager at {self._url} accepted the connection but granted no "
                "capacity; check its log") from exc
        self._raise_failure()

    async def _ray_workers(self, payload: bytes) -> RayWorkers:
        """Connect to Ray, put the setup in its object store once, and tell the workers
        to read it from their node (the actors write it there): not through a frame."""
        from nasflow.manager import (
            RayWorkers,
            connect,
            find_earlier,
            namespace_of,
            place_setup,
        )

        assert self._ray is not None and self._setup_message is not None
        address, resources = self._ray
        self._ray_owned = await anyio.to_thread.run_sync(connect, address, resources)
        path, sha, entry = await anyio.to_thread.run_sync(
            place_setup, payload, self.setup.experiment_id)
        self._setup_message = dataclasses.replace(
            self._setup_message, payload=b"", payload_file=path, payload_sha256=sha,
            payload_size=len(payload))
        namespace = namespace_of(self.setup.experiment_id)
        earlier = await anyio.to_thread.run_sync(find_earlier, namespace, (entry,))
        return RayWorkers(resources=resources, payloads=(entry,), namespace=namespace,
                          earlier=earlier)

    async def _release(self) -> None:
        if self._ray_owned:
            import ray

            self._ray_owned = False
            await anyio.to_thread.run_sync(ray.shutdown)

    def _devices(self) -> int | None:
        """What ``setup.devices`` says: the slots one trial takes (``None``: one)."""
        return self._weight if self._weight > 1 else None

    async def _setup_for(self, payload: bytes) -> Setup:
        """The ``setup`` message for ``payload``; ``PayloadError`` past the size limit.

        An embedded manager gets the bytes in memory (it hands large ones to its workers as
        a file); a daemon gets one that does not fit a frame as a file in this experiment's
        directory (the daemon and its workers run on this machine, as this user).
        """
        from nasflow._payload import PayloadError, spill
        from nasflow.manager import fits_inline

        s, limits = self.setup, self._limits
        if len(payload) > limits.max_payload_size:
            raise PayloadError(
                f"the space and evaluator pickle to {len(payload) / 2**20:.1f} MiB, over the "
                f"limit of {limits.max_payload_size / 2**20:.1f} MiB (max_payload_size). "
                "Load large data inside evaluate() (from a file or a cached loader) instead "
                "of holding it in the evaluator, or raise "
                "ExperimentConfig(max_payload_size=...)."
            )
        if self._url is None or self._local is not None or fits_inline(len(payload), limits):
            return Setup(experiment_id=s.experiment_id, payload=payload,
                         concurrency=s.concurrency, trial_timeout=s.trial_timeout,
                         devices=self._devices())
        log_dir = self._pool["log_dir"]
        where = (Path(log_dir) if isinstance(log_dir, (str, Path))
                 else s.trial_directory(0).parent)
        spilled = await anyio.to_thread.run_sync(
            spill, payload, where / "setups", s.experiment_id)
        return Setup(experiment_id=s.experiment_id, payload_file=str(spilled.path),
                     payload_sha256=spilled.sha256, payload_size=spilled.size,
                     concurrency=s.concurrency, trial_timeout=s.trial_timeout,
                     devices=self._devices())

    async def _drain(self, exc: BaseException | None) -> None:
        self._closed = True
        with anyio.CancelScope(shield=True):
            if self._link is not None:
                with anyio.move_on_after(5):
                    await self._link.detach("the experiment ended")
            setup = self._setup_message
            if setup is not None and setup.payload_file is not None:
                # the file this experiment wrote for the daemon's workers (see _setup_for)
                await anyio.Path(setup.payload_file).unlink(missing_ok=True)
            if self._manager is not None:
                # let its workers leave on their own before anything is cancelled
                self._manager.stop()
                await self._manager.stopped.wait()
        # the base then cancels the task group (the consumer, the link)

    async def _guard(self, run: Callable[[], Any]) -> None:
        """Run the link; turn its failure into the engine's (the run then fails with it)."""
        from nasflow.manager import ManagerConnectionError

        try:
            await run()
        except ManagerConnectionError as exc:
            self._events.put(exc, None, None, None)

    def _gone(self, reason: str) -> None:
        if not self._closed:
            self._receive(ManagerGoneError(f"the manager said goodbye: {reason}"), None, None,
                          None)

    # --- the contract -------------------------------------------------------------------------

    async def _before_capacity(self, spec: TrialSpec) -> None:
        if self._link is None:
            raise RuntimeError("the engine is closed")
        if not self._events.settled.is_set():
            self._settle(())  # no reattach came first: nothing the manager held is ours
        doomed = self._events.doomed.get((spec.id, spec.attempt))
        if doomed is not None:
            # the manager still runs an attempt under this key that we did not take (a
            # trial the dead process submitted but never recorded); it would ignore ours
            await doomed.wait()
            self._raise_failure()

    def _accept(self, spec: TrialSpec) -> Flight:
        assert self._link is not None
        self._link.send(self._submit_message(spec))
        return Flight(spec)

    def _submit_message(self, spec: TrialSpec) -> Submit:
        return Submit(experiment_id=self.setup.experiment_id, trial_id=spec.id,
                      attempt=spec.attempt, sample=spec.sample)

    def _stop_trial(self, entry: Flight, stop: Stop) -> bool:
        if entry.cancel is None and self._link is not None:
            # the wire knows only the state and the reason; the error's type is this side's
            entry.cancel, entry.error_type = (stop.state, stop.reason), stop.error_type
            self._link.send(self._cancel_message(entry))
        return True

    def _resize(self, concurrency: int) -> None:
        # the manager decides: its answer is a new capacity grant (an embedded manager
        # starts the workers it lacks first); a restarted manager gets it with the setup
        if self._setup_message is not None:
            self._setup_message = dataclasses.replace(self._setup_message,
                                                      concurrency=concurrency)
        if self._link is not None:
            self._link.send(Concurrency(experiment_id=self.setup.experiment_id,
                                        concurrency=concurrency))
        if concurrency < self._capacity:
            # a lower limit holds at once: no trial starts on the old grant meanwhile (the
            # manager's answer can only confirm it)
            self._set_capacity(concurrency)

    def _cancel_message(self, flight: Flight) -> Cancel:
        state, reason = flight.cancel or (TrialState.CANCELED, "")
        return Cancel(experiment_id=self.setup.experiment_id, trial_id=flight.spec.id,
                      attempt=flight.spec.attempt, state=state, reason=reason)

    async def reattach(self, specs: list[TrialSpec]) -> set[int]:
        """Take over those of ``specs`` whose attempt the manager still holds (running,
        queued, or ended with events this experiment has not stored yet): they become this
        engine's trials, with their events, as if submitted here. Held trials not in
        ``specs`` (or of another attempt) are cancelled. Call it once, before ``submit``."""
        self._raise_failure()
        return self._settle(specs)

    def _settle(self, specs: Iterable[TrialSpec]) -> set[int]:
        """Decide, once, about the trials the manager held when we set up."""
        events = self._events
        if events.settled.is_set():
            return set()
        events.settled.set()  # the consumer goes on with the held trials' events
        held, events.held = events.held or (), None
        wanted = {spec.id: spec for spec in specs}
        taken: set[int] = set()
        for trial in held:
            spec = wanted.get(trial.trial_id)
            if (spec is not None and spec.attempt == trial.attempt
                    and spec.id not in self._entries):
                self._entries[spec.id] = Flight(spec, started=not trial.queued)
                taken.add(spec.id)
            elif self._link is not None:
                events.doomed[(trial.trial_id, trial.attempt)] = asyncio.Event()
                self._link.send(Cancel(
                    experiment_id=self.setup.experiment_id, trial_id=trial.trial_id,
                    attempt=trial.attempt, state=TrialState.CANCELED,
                    reason="the resumed experiment does not continue this attempt"))
        if taken:
            self._idle.clear()
        return taken

    # --- from the manager ---------------------------------------------------------------------

    def _receive(self, message: Any, origin: str | None, origin_seq: int | None,
                 done: Done | None) -> None:
        """Queue a message from the manager; ``done`` acks it once published."""
        self._events.put(message, origin, origin_seq, done)

    def _running_refs(self) -> list[TrialRef]:
        """Trials a worker has started, for a manager that restarted (``hello.running``)."""
        exp = self.setup.experiment_id
        return [TrialRef(experiment_id=exp, trial_id=f.spec.id, attempt=f.spec.attempt)
                for f in self._entries.values() if f.started]

    def _manager_restarted(self) -> None:
        """A new manager incarnation knows nothing: set up again, resubmit what has not
        started (what has is claimed by its worker), repeat pending cancels."""
        assert self._link is not None and self._setup_message is not None
        self._link.send(self._setup_message)
        for flight in self._entries.values():
            if not flight.started:
                self._link.send(self._submit_message(flight.spec))
            if flight.cancel is not None:
                self._link.send(self._cancel_message(flight))
