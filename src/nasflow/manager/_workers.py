"""``WorkerFleet``: the manager's workers come, connect, report, die and retire.

An object the core owns (``ManagerCore.fleet``), so that ``_core.py`` stays about
experiments and scheduling. What touches trials or experiments goes back to the core
through ``Scheduler``, the few things the fleet asks of it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Iterable
from typing import Protocol

import anyio

from nasflow._kernel import TrialError, TrialState
from nasflow.manager._pool import LocalPool, WorkerProcess, tail
from nasflow.manager._state import (
    ExperimentRecord,
    Phase,
    TrialKey,
    TrialRecord,
    WorkerRecord,
)
from nasflow.protocol import (
    Acked,
    Cancel,
    Connected,
    Deliver,
    Effect,
    Limits,
    Role,
    SequencedMessage,
    ServerSession,
    SetupFailed,
    TrialEnded,
    TrialRef,
    new_session_id,
)

__all__ = ["Scheduler", "WorkerFleet"]

_log = logging.getLogger("nasflow.manager")

_MAX_START_FAILURES = 3  # workers dying before they connect: the pool itself is broken
_MAX_SETUP_DEATHS = 3  # workers dying while loading one experiment's setup
_RETIRE_GRACE = 5.0  # seconds a retired worker gets to leave before it is killed


class Scheduler(Protocol):
    """What the fleet asks of the manager's core (``ManagerCore`` is one)."""

    experiments: dict[str, ExperimentRecord]
    trials: dict[TrialKey, TrialRecord]

    @property
    def closing(self) -> bool:
        """The manager is shutting down or handing over: no new workers, no new trials."""

    def dispatch(self) -> None:
        """Give queued trials to idle workers."""

    def send_setup(self, worker: WorkerRecord, exp: ExperimentRecord) -> None:
        """Send ``exp``'s setup to ``worker``."""

    def forward(self, exp: ExperimentRecord, message: SequencedMessage, origin: str | None,
                origin_seq: int | None, done: Callable[[], None] | None) -> None:
        """Hand a worker's event on to its experiment; ``done`` acks it to the worker."""

    def fail_experiment(self, exp: ExperimentRecord, error: TrialError,
                        message: SetupFailed | None = None, origin: str | None = None,
                        origin_seq: int | None = None,
                        done: Callable[[], None] | None = None) -> None:
        """``exp`` cannot run trials any more (its setup does not load, the pool broke)."""

    def end(self, trial: TrialRecord, state: TrialState, error: TrialError | None) -> None:
        """End ``trial`` here (the manager decided, not the worker)."""

    def finished(self, trial: TrialRecord) -> None:
        """Forget a trial that ended; its worker is free again."""

    def expect(self, exp: ExperimentRecord) -> None:
        """Forget ``exp`` unless it (re)attaches in time."""

    def arm_timeout(self, trial: TrialRecord) -> None:
        """Start ``trial``'s ``trial_timeout`` clock."""

    def check_orphans(self) -> None:
        """End the trials no worker can claim any more."""

    def rebalance(self) -> None:
        """The slots to share changed (an elastic pool's worker came or went)."""


class WorkerFleet:
    """The manager's worker processes and their sessions; see the module docstring.

    ``pool`` starts the processes (``None``: workers only connect, as in tests);
    ``core`` is told what the workers' lives mean for trials and experiments."""

    def __init__(self, core: Scheduler, *, pool: LocalPool | None, limits: Limits,
                 kill_grace: float) -> None:
        self._core = core
        self._pool = pool
        self.elastic = pool is not None and pool.elastic
        """Capacity is the workers that connected (a Ray cluster), not the pool's size."""
        self._limits = limits
        self._kill_grace = kill_grace
        self.workers: dict[str, WorkerRecord] = {}
        """Every worker this manager started or adopted and has not seen exit, by session."""
        self.broken: TrialError | None = None
        """Why the pool cannot start workers (they die before connecting, again and again)."""
        self._start_failures = 0
        self._awaited: dict[str, int] | None = {}
        """Workers an earlier manager started that may re-attach here and have not yet:
        session id -> pid (``None``: unknown, then only ``adopt_grace`` ends orphans)."""
        self.earlier_settled = asyncio.Event()
        """Set once every worker an earlier manager started (that this one knows of) has
        re-attached, with the trials it holds, or exited."""

    @property
    def may_reattach(self) -> bool:
        """Whether a worker an earlier manager left running may still re-attach here (and
        claim a trial)."""
        return self._awaited is None or bool(self._awaited)

    def start(self, slots: list[str | None]) -> None:
        """Note the workers an earlier manager left running, start one worker per slot."""
        if self._pool is not None:
            self._awaited = self._pool.earlier_workers()
            for session_id, pid in (self._awaited or {}).items():
                self._pool.on_gone(pid, functools.partial(self._earlier_gone, session_id))
        if self._awaited is not None and not self._awaited:
            self.earlier_settled.set()
        for gpu in slots:
            self.spawn(gpu)

    def _earlier_gone(self, session_id: str) -> None:
        """An earlier manager's worker exited, or re-attached and claimed what it holds."""
        if self._awaited is not None and self._awaited.pop(session_id, None) is not None:
            if not self._awaited:
                self.earlier_settled.set()
            self._core.check_orphans()

    async def shutdown(self, reason: str, *, grace: float) -> None:
        """Say goodbye to every worker, give them ``grace`` seconds to leave, kill the rest."""
        for worker in list(self.workers.values()):
            worker.leave(reason)
        if self._pool is not None:
            self._pool.closing()
            with anyio.move_on_after(grace):
                await self._pool.all_gone.wait()
            self._pool.kill_all()
            # and reap them: a killed worker whose wait is then cancelled (the server
            # cancels the pool's tasks next) would be left a zombie, its Popen unclosed
            with anyio.move_on_after(grace):
                await self._pool.all_gone.wait()

    def spawn(self, gpu: str | None) -> None:
        """Start a worker for ``gpu`` (unless the manager closes or the pool is broken)."""
        if self._pool is None or self._core.closing or self.broken is not None:
            return
        session_id = new_session_id("worker")
        session = ServerSession(Role.WORKER, peer_session=session_id, limits=self._limits)
        worker = WorkerRecord(session_id, session, gpu)
        self.workers[session_id] = worker
        worker.process = self._pool.spawn(session_id, gpu)

    def for_session(self, session_id: str, pid: int | None) -> WorkerRecord | None:
        """The record of a connecting worker; adopts one an earlier manager started."""
        worker = self.workers.get(session_id)
        if worker is not None or self._core.closing:
            return worker
        process = None
        if self._pool is not None and pid is not None:
            process = self._pool.adopt(session_id, pid)
        if process is None:
            return None  # nobody we can control: refuse rather than run trials blind
        session = ServerSession(Role.WORKER, peer_session=session_id, limits=self._limits)
        worker = WorkerRecord(session_id, session, process.gpu, process)
        # this manager started a full pool of its own: the adopted worker finishes what it
        # runs and leaves
        worker.retiring = True
        self.workers[session_id] = worker
        _log.info("adopted worker %s (pid %s) from an earlier manager", session_id, pid)
        return worker

    def connected(self, worker: WorkerRecord, wake: Callable[[], None]) -> None:
        """A connection now drives ``worker``'s session (``wake`` makes it send)."""
        worker.wake, worker.connected = wake, True
        worker.disconnected.clear()

    def disconnected(self, worker: WorkerRecord) -> None:
        """``worker``'s connection closed (its session is kept: it may come back)."""
        worker.wake = _noop
        worker.connected = worker.ready = False
        worker.disconnected.set()

    def effects(self, worker: WorkerRecord, effects: list[Effect]) -> None:
        """Act on what a worker's session produced for one frame."""
        for effect in effects:
            if isinstance(effect, Deliver):
                self._worker_event(worker, effect)
            elif isinstance(effect, Acked):
                for seq in [s for s in worker.setup_seqs if s <= effect.seq]:
                    del worker.setup_seqs[seq]
            elif isinstance(effect, Connected):
                # a worker back on the same session (a dropped connection) is known here
                # already: its hello's trials (the ended ones among them, whose events this
                # manager had) are claims only for a manager that lost its memory
                self._worker_ready(worker, () if effect.resumed else effect.running)
            elif isinstance(effect, Exception):
                _log.warning("worker %s: %s", worker.session_id, effect)

    def _worker_ready(self, worker: WorkerRecord, running: Iterable[TrialRef]) -> None:
        worker.ready = worker.ever_ready = True
        self._start_failures = 0
        for ref in running:
            self._claim(worker, ref)
        self._earlier_gone(worker.session_id)
        if self.elastic:
            self._core.rebalance()  # one more worker: capacity grows
        if worker.retiring and worker.trial is None and worker.pending == 0:
            self.retire(worker)
            return
        core = self._core
        for exp in core.experiments.values():
            if exp.attached and exp.failure is None and worker.setups.get(exp.id) != exp.digest:
                core.send_setup(worker, exp)  # eagerly: a broken setup fails at once
        core.dispatch()

    def _claim(self, worker: WorkerRecord, ref: TrialRef) -> None:
        """A re-attaching worker still runs ``ref``: bind them again."""
        core = self._core
        key = (ref.experiment_id, ref.trial_id, ref.attempt)
        trial = core.trials.get(key)
        if trial is not None and trial.worker is worker:
            return
        if trial is not None and trial.phase is Phase.RUNNING:
            # the trial was given to another worker meanwhile: this copy is stale
            worker.stale = TrialRecord(trial.exp, ref.trial_id, ref.attempt, {})
            worker.send(Cancel(experiment_id=ref.experiment_id, trial_id=ref.trial_id,
                               attempt=ref.attempt, state=TrialState.CANCELED,
                               reason="another worker runs this trial now"))
            return
        if trial is None:
            exp = core.experiments.get(ref.experiment_id)
            if exp is None:
                exp = core.experiments[ref.experiment_id] = ExperimentRecord(ref.experiment_id)
                core.expect(exp)
            trial = TrialRecord(exp, ref.trial_id, ref.attempt, {})
            core.trials[key] = exp.trials[(ref.trial_id, ref.attempt)] = trial
        elif trial.phase is Phase.QUEUED:
            trial.exp.queue.remove(trial)
        trial.cancel_timers()
        trial.phase, trial.worker, worker.trial = Phase.RUNNING, worker, trial
        trial.exp.running += 1
        worker.started += 1
        core.arm_timeout(trial)

    def _worker_event(self, worker: WorkerRecord, delivery: Deliver) -> None:
        core = self._core
        message = delivery.message
        worker.pending += 1
        done = functools.partial(self._ack_worker, worker, delivery)
        if isinstance(message, SetupFailed):
            exp = core.experiments.get(message.experiment_id)
            if exp is not None and exp.failure is None:
                core.fail_experiment(exp, message.error, message, worker.session_id,
                                      delivery.seq, done)
            else:
                done()
            return
        key = (message.experiment_id, message.trial_id, message.attempt)  # type: ignore[union-attr]
        trial = core.trials.get(key)
        stale = worker.stale
        if trial is None or trial.worker is not worker:
            # a trial this manager already ended (killed, lost, cancelled) or gave elsewhere
            if stale is not None and isinstance(message, TrialEnded) and stale.key == key:
                worker.stale = None
                core.dispatch()
            done()
            return
        if isinstance(message, TrialEnded):
            core.finished(trial)
        core.forward(trial.exp, message, worker.session_id, delivery.seq, done)

    def _ack_worker(self, worker: WorkerRecord, delivery: Deliver) -> None:
        worker.session.ack(delivery)
        worker.pending -= 1
        if worker.retiring and worker.trial is None and worker.pending == 0:
            self.retire(worker)  # every event of its last trial is durable now
        worker.wake()

    def retire(self, worker: WorkerRecord) -> None:
        """Tell a worker that ran its last trial to leave (it exits on ``bye``)."""
        worker.leave(f"recycled after {worker.started} trial(s)")
        process = worker.process
        if process is not None:
            asyncio.get_running_loop().call_later(_RETIRE_GRACE, process.kill)

    async def exited(self, process: WorkerProcess) -> None:
        """The pool saw a worker process end: its trial ends too; replace the worker."""
        core = self._core
        worker = self.workers.get(process.session_id)
        if worker is None:
            return
        # let the connection deliver what the process wrote before it died
        with anyio.move_on_after(2):
            await worker.disconnected.wait()
        self.workers.pop(process.session_id, None)
        why = process.description or "exited"
        if not worker.ever_ready and not core.closing:
            self._start_failures += 1
            if self._start_failures >= _MAX_START_FAILURES:
                self._break_pool(why, process)
        for exp_id in set(worker.setup_seqs.values()):
            exp = core.experiments.get(exp_id)
            if exp is not None and exp.failure is None:
                exp.setup_deaths += 1
                if exp.setup_deaths >= _MAX_SETUP_DEATHS:
                    core.fail_experiment(exp, TrialError(
                        "WorkerDied", f"{exp.setup_deaths} worker processes died while loading "
                        f"this experiment's space and evaluator; the last one {why}"))
        if worker.lent_to is not None:  # its replacement is not lent: the trial goes on
            worker.lent_to.lent.remove(worker)
            worker.lent_to = None
        trial = worker.trial
        if trial is not None and core.trials.get(trial.key) is trial:
            state, error = self._death_outcome(trial, process, why)
            core.end(trial, state, error)
        if not worker.retiring and not core.closing:
            self.spawn(worker.gpu)
        if self.elastic:
            core.rebalance()  # one worker less (its replacement counts once it connects)

    def _death_outcome(self, trial: TrialRecord, process: WorkerProcess,
                       why: str) -> tuple[TrialState, TrialError]:
        what = f"the worker process (pid {process.pid}) {why}"
        if trial.stop is not None:
            state, reason = trial.stop
            kind = "Timeout" if state is TrialState.TIMEOUT else "Stopped"
            if trial.killed:
                # not "by the OOM killer, by the manager, or by someone else": we know
                what = (f"the manager killed its worker process (pid {process.pid}) and "
                        "the worker's process group with SIGKILL")
                if state is TrialState.TIMEOUT:
                    what += " for the trial's timeout"
            return state, TrialError(kind, f"{reason} (it did not stop within kill_grace="
                                           f"{self._kill_grace:g}s, so {what})")
        return TrialState.FAILED, TrialError(
            process.cause, f"{what} while running trial {trial.trial_id}")

    def _break_pool(self, why: str, process: WorkerProcess) -> None:
        core = self._core
        log = tail(process.log)
        self.broken = TrialError(
            "WorkerStartError",
            f"{_MAX_START_FAILURES} worker processes in a row ended before connecting to the "
            f"manager; the last one {why}. Its output ({process.log}):\n{log}",
        )
        for exp in list(core.experiments.values()):
            if exp.failure is None:
                core.fail_experiment(exp, self.broken)


def _noop() -> None:
    return None
