"""The worker side of ``ManagerCore``: workers come, connect, report, die and retire.

A mixin, so that ``_core.py`` stays about experiments and scheduling; it uses the core's
records and its scheduling methods (declared below for type checkers).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

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

__all__ = ["WorkerSide"]

_log = logging.getLogger("nasflow.manager")

_MAX_START_FAILURES = 3  # workers dying before they connect: the pool itself is broken
_MAX_SETUP_DEATHS = 3  # workers dying while loading one experiment's setup
_RETIRE_GRACE = 5.0  # seconds a retired worker gets to leave before it is killed


class WorkerSide:
    """Worker lifecycle and worker events (mixed into ``ManagerCore``)."""

    workers: dict[str, WorkerRecord]
    experiments: dict[str, ExperimentRecord]
    trials: dict[TrialKey, TrialRecord]
    _pool: LocalPool | None
    _limits: Limits
    _closing: bool
    _broken: TrialError | None
    _start_failures: int
    _kill_grace: float
    _elastic: bool

    if TYPE_CHECKING:
        def _dispatch(self) -> None: ...
        def _send_setup(self, worker: WorkerRecord, exp: ExperimentRecord) -> None: ...
        def _send(self, worker: WorkerRecord, message: SequencedMessage) -> None: ...
        def _forward(self, exp: ExperimentRecord, message: SequencedMessage,
                     origin: str | None, origin_seq: int | None,
                     done: Callable[[], None] | None) -> None: ...
        def _fail_experiment(self, exp: ExperimentRecord, error: TrialError,
                             message: SetupFailed | None = None, origin: str | None = None,
                             origin_seq: int | None = None,
                             done: Callable[[], None] | None = None) -> None: ...
        def _end(self, trial: TrialRecord, state: TrialState,
                 error: TrialError | None) -> None: ...
        def _finished(self, trial: TrialRecord) -> None: ...
        def _expect(self, exp: ExperimentRecord) -> None: ...
        def _arm_timeout(self, trial: TrialRecord) -> None: ...
        def _reattached(self, session_id: str) -> None: ...
        def _rebalance(self) -> None: ...

    def _spawn(self, gpu: str | None) -> None:
        if self._pool is None or self._closing or self._broken is not None:
            return
        session_id = new_session_id("worker")
        session = ServerSession(Role.WORKER, peer_session=session_id, limits=self._limits)
        worker = WorkerRecord(session_id, session, gpu)
        self.workers[session_id] = worker
        worker.process = self._pool.spawn(session_id, gpu)

    def worker_for(self, session_id: str, pid: int | None) -> WorkerRecord | None:
        """The record of a connecting worker; adopts one an earlier manager started."""
        worker = self.workers.get(session_id)
        if worker is not None or self._closing:
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

    def worker_connected(self, worker: WorkerRecord, wake: Callable[[], None]) -> None:
        worker.wake, worker.connected = wake, True
        worker.disconnected.clear()

    def worker_disconnected(self, worker: WorkerRecord) -> None:
        worker.wake = _noop
        worker.connected = worker.ready = False
        worker.disconnected.set()

    def worker_effects(self, worker: WorkerRecord, effects: list[Effect]) -> None:
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
        self._reattached(worker.session_id)
        if self._elastic:
            self._rebalance()
        if worker.retiring and worker.trial is None and worker.pending == 0:
            self._retire(worker)
            return
        for exp in self.experiments.values():
            if exp.attached and exp.failure is None and worker.setups.get(exp.id) != exp.digest:
                self._send_setup(worker, exp)  # eagerly: a broken setup fails at once
        self._dispatch()

    def _claim(self, worker: WorkerRecord, ref: TrialRef) -> None:
        """A re-attaching worker still runs ``ref``: bind them again."""
        key = (ref.experiment_id, ref.trial_id, ref.attempt)
        trial = self.trials.get(key)
        if trial is not None and trial.worker is worker:
            return
        if trial is not None and trial.phase is Phase.RUNNING:
            # the trial was given to another worker meanwhile: this copy is stale
            worker.stale = TrialRecord(trial.exp, ref.trial_id, ref.attempt, {})
            self._send(worker, Cancel(experiment_id=ref.experiment_id, trial_id=ref.trial_id,
                                      attempt=ref.attempt, state=TrialState.CANCELED,
                                      reason="another worker runs this trial now"))
            return
        if trial is None:
            exp = self.experiments.get(ref.experiment_id)
            if exp is None:
                exp = self.experiments[ref.experiment_id] = ExperimentRecord(ref.experiment_id)
                self._expect(exp)
            trial = TrialRecord(exp, ref.trial_id, ref.attempt, {})
            self.trials[key] = exp.trials[(ref.trial_id, ref.attempt)] = trial
        elif trial.phase is Phase.QUEUED:
            trial.exp.queue.remove(trial)
        trial.cancel_timers()
        trial.phase, trial.worker, worker.trial = Phase.RUNNING, worker, trial
        trial.exp.running += 1
        worker.started += 1
        self._arm_timeout(trial)

    def _worker_event(self, worker: WorkerRecord, delivery: Deliver) -> None:
        message = delivery.message
        worker.pending += 1
        done = functools.partial(self._ack_worker, worker, delivery)
        if isinstance(message, SetupFailed):
            exp = self.experiments.get(message.experiment_id)
            if exp is not None and exp.failure is None:
                self._fail_experiment(exp, message.error, message, worker.session_id,
                                      delivery.seq, done)
            else:
                done()
            return
        key = (message.experiment_id, message.trial_id, message.attempt)  # type: ignore[union-attr]
        trial = self.trials.get(key)
        stale = worker.stale
        if trial is None or trial.worker is not worker:
            # a trial this manager already ended (killed, lost, cancelled) or gave elsewhere
            if stale is not None and isinstance(message, TrialEnded) and stale.key == key:
                worker.stale = None
                self._dispatch()
            done()
            return
        if isinstance(message, TrialEnded):
            self._finished(trial)
        self._forward(trial.exp, message, worker.session_id, delivery.seq, done)

    def _ack_worker(self, worker: WorkerRecord, delivery: Deliver) -> None:
        worker.session.ack(delivery)
        worker.pending -= 1
        if worker.retiring and worker.trial is None and worker.pending == 0:
            self._retire(worker)  # every event of its last trial is durable now
        worker.wake()

    def _retire(self, worker: WorkerRecord) -> None:
        """Tell a worker that ran its last trial to leave (it exits on ``bye``)."""
        worker.session.close(f"recycled after {worker.started} trial(s)")
        process = worker.process
        if process is not None:
            asyncio.get_running_loop().call_later(_RETIRE_GRACE, process.kill)

    async def worker_exited(self, process: WorkerProcess) -> None:
        """The pool saw a worker process end: its trial ends too; replace the worker."""
        worker = self.workers.get(process.session_id)
        if worker is None:
            return
        # let the connection deliver what the process wrote before it died
        with anyio.move_on_after(2):
            await worker.disconnected.wait()
        self.workers.pop(process.session_id, None)
        why = process.description or "exited"
        if not worker.ever_ready and not self._closing:
            self._start_failures += 1
            if self._start_failures >= _MAX_START_FAILURES:
                self._break_pool(why, process)
        for exp_id in set(worker.setup_seqs.values()):
            exp = self.experiments.get(exp_id)
            if exp is not None and exp.failure is None:
                exp.setup_deaths += 1
                if exp.setup_deaths >= _MAX_SETUP_DEATHS:
                    self._fail_experiment(exp, TrialError(
                        "WorkerDied", f"{exp.setup_deaths} worker processes died while loading "
                        f"this experiment's space and evaluator; the last one {why}"))
        trial = worker.trial
        if trial is not None and self.trials.get(trial.key) is trial:
            state, error = self._death_outcome(trial, process, why)
            self._end(trial, state, error)
        if not worker.retiring and not self._closing:
            self._spawn(worker.gpu)
        if self._elastic:
            self._rebalance()

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
        log = tail(process.log)
        self._broken = TrialError(
            "WorkerStartError",
            f"{_MAX_START_FAILURES} worker processes in a row ended before connecting to the "
            f"manager; the last one {why}. Its output ({process.log}):\n{log}",
        )
        for exp in list(self.experiments.values()):
            if exp.failure is None:
                self._fail_experiment(exp, self._broken)


def _noop() -> None:
    return None
