"""``ManagerCore``: who runs what. Experiments submit, workers run, the core decides.

No sockets here: the server layer (``_server.py``) feeds it protocol effects, an embedded
engine calls it directly, and it answers through ``ExperimentPort``s and worker sessions.
Every decision is made when something happens (a submit, a worker becoming idle, a
trial ending, a timer) -- nothing polls.

What it guarantees:

* each experiment gets a fair share of the workers (``Capacity``, max-min fair), and
  idle workers take the queued trial of the least served experiment;
* a worker event is acked to the worker only once the experiment has made it durable;
* ``trial_timeout`` and cancels are cooperative first (a ``cancel`` to the worker), then
  the worker's process group is killed after ``kill_grace`` seconds;
* a worker that dies ends its trial (FAILED, or the state a stop asked for) and is
  replaced; workers dying again and again before connecting, or while loading a setup,
  fail the experiments instead of looping;
* after a restart, workers and experiments that re-attach are matched up again by their
  ``hello.running``; the experiment drops resent events by ``(origin, origin_seq)``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import anyio

from nasflow._kernel import TrialError, TrialState
from nasflow.manager._pool import LocalPool
from nasflow.manager._spool import SetupSpool
from nasflow.manager._state import (
    ExperimentPort,
    ExperimentRecord,
    Held,
    Phase,
    TrialKey,
    TrialRecord,
    WorkerRecord,
    fair_shares,
)
from nasflow.manager._workers import WorkerFleet
from nasflow.protocol import (
    DEFAULT_LIMITS,
    WORKER_SETUPS,
    Cancel,
    Capacity,
    Concurrency,
    HeldTrial,
    Limits,
    RunTrial,
    SequencedMessage,
    Setup,
    SetupFailed,
    Submit,
    TrialEnded,
    TrialRef,
)

__all__ = ["ManagerCore"]

_log = logging.getLogger("nasflow.manager")


class ManagerCore:
    """The manager's brain; see the module docstring. Its workers are ``fleet``'s."""

    def __init__(
        self,
        *,
        pool: LocalPool | None,
        slots: list[str | None],
        max_trials_per_worker: int | None = None,
        kill_grace: float = 5.0,
        reattach_timeout: float = 60.0,
        adopt_grace: float | None = None,
        limits: Limits = DEFAULT_LIMITS,
        spool_dir: Path | None = None,
        grow: Callable[[int], list[str | None]] | None = None,
    ) -> None:
        self.slots = slots
        """``CUDA_VISIBLE_DEVICES`` per worker slot; its length is the pool's size."""
        self.experiments: dict[str, ExperimentRecord] = {}
        self.served: dict[str, None] = {}
        """Every experiment id that attached since this manager started, in order (kept
        after they leave: the daemon's dashboard lists them)."""
        self.on_attach: list[Callable[[str], None]] = []
        """Called with an experiment's id when it attaches for the first time."""
        self.trials: dict[TrialKey, TrialRecord] = {}
        # an embedded manager's pool grows with its experiment's wishes: ``grow(n)`` plans
        # ``n`` slots the way the first ones were planned (the same GPU assignment)
        self._grow = grow
        self.fleet = WorkerFleet(self, pool=pool, limits=limits, kill_grace=kill_grace)
        """The worker processes and their sessions."""
        self._max_per_worker = max_trials_per_worker
        self._kill_grace = kill_grace
        self._reattach_timeout = reattach_timeout
        # the last resort only: a trial waits for the workers that may still claim it
        # (``fleet.may_reattach``), and a live worker re-attaches within its reattach_timeout
        self._adopt_grace = reattach_timeout if adopt_grace is None else adopt_grace
        self._spool = SetupSpool(spool_dir, limits)
        self._closing = False

    # --- lifecycle ----------------------------------------------------------------------------

    @property
    def closing(self) -> bool:
        """Shutting down or handing over: no new trials, no new workers."""
        return self._closing

    def start(self) -> None:
        """Note the workers an earlier manager left running, start one worker per slot."""
        self.fleet.start(self.slots)

    def check_orphans(self) -> None:
        """End the trials no worker can claim any more: every worker of the earlier
        manager has re-attached (without them) or exited."""
        if self.fleet.may_reattach:
            return
        for trial in [t for t in self.trials.values() if t.phase is Phase.ORPHAN]:
            self._end_orphan(trial, waited=False)

    async def shutdown(self, *, grace: float = 3.0) -> None:
        """Say goodbye to everyone, give workers ``grace`` seconds to leave, kill the rest."""
        self._closing = True
        for exp in list(self.experiments.values()):
            for trial in list(exp.trials.values()):
                trial.cancel_timers()
            if exp.port is not None:
                exp.port.close("the manager is shutting down")
        await self.fleet.shutdown("the manager is shutting down", grace=grace)
        self._spool.close()

    async def hand_over(self, *, grace: float = 3.0) -> int:
        """Leave for a successor on this address (a restart): idle workers are told
        goodbye; busy ones -- a trial running, or events not yet durable -- are left
        running, unacked, so that they re-attach to the next manager like after a crash.
        Returns how many were left. The caller closes the connections and exits without
        stopping the workers' processes."""
        self._closing = True  # no new trials; events still arriving stay unacked
        kept = 0
        leaving = []
        for exp in self.experiments.values():
            for trial in exp.trials.values():
                trial.cancel_timers()  # the successor arms them again when it adopts
        for worker in list(self.fleet.workers.values()):
            if worker.trial is not None or worker.pending or worker.stale is not None:
                kept += 1
                continue
            worker.leave("the manager is restarting; this worker is not needed")
            leaving.append(worker.disconnected)
        with anyio.move_on_after(grace):  # the goodbyes go out before the process exits
            for gone in leaving:
                await gone.wait()
        return kept

    # --- experiments ------------------------------------------------------------------------

    def port_setup(self, port: ExperimentPort, message: Setup,
                   running: Iterable[TrialRef] = ()) -> None:
        """An experiment (re)attached: remember its setup, grant capacity, adopt its trials.

        The grant answers the setup: it lists the trials the manager holds for the
        experiment (``capacity.held``), and their events not yet made durable follow it --
        including those a client that died (a killed experiment process, now resumed)
        never acked.
        """
        exp = self.experiments.get(message.experiment_id)
        moved: list[Held] = []
        if exp is None:
            exp = self.experiments[message.experiment_id] = ExperimentRecord(
                message.experiment_id)
        if exp.id not in self.served:
            self.served[exp.id] = None
            for listener in self.on_attach:
                try:
                    listener(exp.id)
                except Exception:  # an observer (the dashboard) must not fail the attach
                    _log.exception("an on_attach listener failed for experiment %s", exp.id)
        elif exp.port is not None and exp.port is not port:
            moved = exp.port.hand_over(f"another client took over experiment {exp.id}")
        if exp.detach_timer is not None:
            exp.detach_timer.cancel()
            exp.detach_timer = None
        exp.port = port
        try:
            exp.setup, exp.digest = self._spool.for_workers(message)
        except OSError as exc:
            exp.setup, exp.digest = None, ""
            self.fail_experiment(exp, TrialError(
                "PayloadError", f"the manager cannot write the experiment's setup "
                f"({len(message.payload)} bytes) for its workers: {exc}"))
            return
        exp.payload = message.payload
        exp.concurrency = message.concurrency or 1
        exp.devices = message.devices or 1
        exp.trial_timeout = message.trial_timeout
        exp.slots = -1
        pending, exp.held = moved + exp.held, []
        ended = {(m.trial_id, m.attempt) for m, *_ in pending if type(m) is TrialEnded}
        for ref in running:
            if (ref.trial_id, ref.attempt) not in ended:  # else its end is on its way
                self._expect_trial(exp, ref)
        if self.fleet.broken is not None:
            for item in pending:
                port.deliver(*item)
            self.fail_experiment(exp, self.fleet.broken)
            return
        for worker in self.fleet.workers.values():
            if worker.ready and worker.setups.get(exp.id) != exp.digest:
                self.send_setup(worker, exp)
        # the answer first: a resumed experiment decides what to re-attach before it
        # reads the events of those trials
        self._rebalance(answer=exp, held=_held_trials(exp, pending))
        for item in pending:
            port.deliver(*item)
        self.check_orphans()
        self.dispatch()

    def _expect_trial(self, exp: ExperimentRecord, ref: TrialRef) -> None:
        """The experiment says ``ref`` runs: wait for its worker to claim it, as long as a
        worker that could is still coming (``_check_orphans``), ``adopt_grace`` at most."""
        key = (exp.id, ref.trial_id, ref.attempt)
        if key in self.trials:
            return
        trial = TrialRecord(exp, ref.trial_id, ref.attempt, {}, phase=Phase.ORPHAN)
        self.trials[key] = exp.trials[(ref.trial_id, ref.attempt)] = trial
        trial.timers.append(asyncio.get_running_loop().call_later(
            self._adopt_grace, self._end_orphan, trial))

    def _end_orphan(self, trial: TrialRecord, *, waited: bool = True) -> None:
        if trial.phase is not Phase.ORPHAN:
            return
        if waited:
            why = (f"no worker re-attached with trial {trial.trial_id} within "
                   f"{self._adopt_grace:g}s after the manager restarted")
        else:
            why = (f"every worker the earlier manager left running re-attached or exited, "
                   f"and none holds trial {trial.trial_id}")
        self.end(trial, TrialState.FAILED, TrialError(
            "WorkerLost", f"{why}: its worker is gone"))

    def expect(self, exp: ExperimentRecord) -> None:
        """Forget ``exp`` unless it (re)attaches within ``reattach_timeout``."""
        if exp.detach_timer is None and not self._closing:
            exp.detach_timer = asyncio.get_running_loop().call_later(
                self._reattach_timeout, self.detach, exp.id,
                f"it did not re-attach within reattach_timeout={self._reattach_timeout:g}s")

    def port_disconnected(self, experiment_id: str | None) -> None:
        """An experiment's connection dropped (no ``bye``): keep it for a while."""
        exp = self.experiments.get(experiment_id or "")
        if exp is not None:
            self.expect(exp)

    def port_reconnected(self, experiment_id: str | None) -> None:
        exp = self.experiments.get(experiment_id or "")
        if exp is not None and exp.detach_timer is not None:
            exp.detach_timer.cancel()
            exp.detach_timer = None

    def submit(self, port: ExperimentPort, message: Submit) -> None:
        """Queue a trial (a resubmit of a trial the manager already has is ignored)."""
        exp = self._own(port, message.experiment_id)
        if exp is None:
            return
        key = (exp.id, message.trial_id, message.attempt)
        if key in self.trials:
            return
        trial = TrialRecord(exp, message.trial_id, message.attempt, message.sample)
        if exp.failure is not None:
            self.forward(exp, self._ended(trial, TrialState.FAILED, exp.failure), None,
                          None, None)
            return
        self.trials[key] = exp.trials[(trial.trial_id, trial.attempt)] = trial
        exp.queue.append(trial)
        self.dispatch()

    def cancel(self, port: ExperimentPort, message: Cancel) -> None:
        """Stop a trial of the port's experiment."""
        exp = self._own(port, message.experiment_id)
        trial = None if exp is None else exp.trials.get((message.trial_id, message.attempt))
        if trial is not None:
            self._stop(trial, message.state, message.reason)

    def set_concurrency(self, port: ExperimentPort, message: Concurrency) -> None:
        """The experiment wants ``message.concurrency`` trials at once now: grant its
        fair share (an embedded manager first starts the workers it lacks; a daemon's pool
        is its own, so there only the share changes)."""
        exp = self._own(port, message.experiment_id)
        if exp is None:
            return
        exp.concurrency = message.concurrency
        if self._grow is not None:
            wanted = sum(e.concurrency for e in self.experiments.values() if e.attached)
            if wanted > len(self.slots):
                # the first slots are planned alike, so only the new ones are taken
                for gpu in self._grow(wanted)[len(self.slots):]:
                    self.slots.append(gpu)
                    self.fleet.spawn(gpu)
        self._rebalance()
        self.dispatch()

    def detach(self, experiment_id: str, reason: str) -> None:
        """Forget an experiment: it left (``bye``) or did not come back in time."""
        exp = self.experiments.pop(experiment_id, None)
        if exp is None:
            return
        if exp.detach_timer is not None:
            exp.detach_timer.cancel()
        _log.info("experiment %s detached: %s", experiment_id, reason)
        self._spool.drop(experiment_id)
        if exp.port is not None:
            # a client coming back after this must learn it was dropped, not wait forever
            exp.port.close(f"the manager forgot experiment {experiment_id}: {reason}")
        exp.port = None
        exp.queue.clear()
        for trial in list(exp.trials.values()):
            if trial.phase is Phase.RUNNING:
                self._stop(trial, TrialState.CANCELED, f"the experiment left: {reason}")
            else:
                self.finished(trial)
        self._rebalance()
        self.dispatch()

    def _own(self, port: ExperimentPort, experiment_id: str) -> ExperimentRecord | None:
        exp = self.experiments.get(experiment_id)
        if exp is None or exp.port is not port:
            _log.warning("ignored a message about experiment %s from a client that did not "
                         "set it up", experiment_id)
            return None
        return exp

    def fail_experiment(self, exp: ExperimentRecord, error: TrialError,
                         message: SetupFailed | None = None, origin: str | None = None,
                         origin_seq: int | None = None,
                         done: Callable[[], None] | None = None) -> None:
        exp.failure = error
        for trial in list(exp.queue):
            self.end(trial, TrialState.FAILED, error)
        if message is None:
            message = SetupFailed(experiment_id=exp.id, error=error)
        self.forward(exp, message, origin, origin_seq, done)
        self._rebalance()

    # --- scheduling -------------------------------------------------------------------------

    def _rebalance(self, answer: ExperimentRecord | None = None,
                   held: tuple[HeldTrial, ...] = ()) -> None:
        """Grant each experiment its fair share; ``answer``'s grant (it has none yet)
        answers its setup and carries ``held``."""
        exps = sorted((e for e in self.experiments.values() if e.attached and e.failure is None),
                      key=lambda e: e.order)
        shares = fair_shares(self.size(), [e.concurrency for e in exps])
        for exp, share in zip(exps, shares, strict=True):
            if exp.slots != share and exp.port is not None:
                exp.slots = share
                grant = Capacity(slots=share, held=held if exp is answer else None)
                exp.port.deliver(grant, None, None, None)

    def size(self) -> int:
        """The slots to share: the pool's size, or for an elastic pool (a Ray cluster) the
        workers that connected and stay (one running its last trial still holds its
        place), up to the pool's size."""
        if not self.fleet.elastic:
            return len(self.slots)
        held = sum(1 for w in self.fleet.workers.values()
                   if w.ever_ready and (not w.retiring or w.trial is not None))
        return min(held, len(self.slots))

    def rebalance(self) -> None:
        """The slots to share changed (an elastic pool's worker came or went)."""
        self._rebalance()

    def dispatch(self) -> None:
        """Give queued trials to idle workers, least served experiment first. A trial of
        ``devices=N`` needs N idle workers (all the pool has, if it has fewer): it runs on
        one and the others are lent to it until it ends. Until that many are idle, the
        least served experiment's trial waits and so does everyone after it (workers
        stay idle rather than starve a trial that needs several)."""
        if self._closing:
            return
        while True:
            idle = [w for w in self.fleet.workers.values() if w.idle]
            if not idle:
                return
            waiting = [e for e in self.experiments.values()
                       if e.queue and e.attached and e.failure is None]
            if not waiting:
                return
            exp = min(waiting, key=lambda e: (e.running * e.devices / max(e.slots, 1),
                                              e.order))
            need = max(1, min(exp.devices, self.size()))
            if len(idle) < need:
                return
            trial = exp.queue.popleft()
            worker = next((w for w in idle if w.setups.get(exp.id) == exp.digest), idle[0])
            for other in [w for w in idle if w is not worker][:need - 1]:
                other.lent_to = trial
                trial.lent.append(other)
            self._start(worker, trial)

    def _start(self, worker: WorkerRecord, trial: TrialRecord) -> None:
        exp = trial.exp
        if worker.setups.get(exp.id) != exp.digest:
            self.send_setup(worker, exp)
        trial.phase, trial.worker, worker.trial = Phase.RUNNING, worker, trial
        exp.running += 1
        worker.started += 1
        worker.send(RunTrial(experiment_id=exp.id, trial_id=trial.trial_id,
                             attempt=trial.attempt, sample=trial.sample,
                             gpus=_rank_gpus(worker, trial.lent)))
        self.arm_timeout(trial)
        if self._max_per_worker is not None and worker.started >= self._max_per_worker:
            worker.retiring = True
            self.fleet.spawn(worker.gpu)  # warm the successor while the last trial runs

    def arm_timeout(self, trial: TrialRecord) -> None:
        timeout = trial.exp.trial_timeout
        if timeout is not None:
            trial.timers.append(asyncio.get_running_loop().call_later(
                timeout, self._stop, trial, TrialState.TIMEOUT,
                f"the trial ran longer than trial_timeout={timeout:g}s"))

    def send_setup(self, worker: WorkerRecord, exp: ExperimentRecord) -> None:
        assert exp.setup is not None  # only attached experiments get workers
        seq = worker.send(exp.setup)
        # the worker's account (WORKER_SETUPS): this one is its newest, the oldest beyond
        # the bound it drops, and gets again before that experiment's next trial
        worker.setups.pop(exp.id, None)
        worker.setups[exp.id] = exp.digest
        while len(worker.setups) > WORKER_SETUPS:
            del worker.setups[next(iter(worker.setups))]
        worker.setup_seqs[seq] = exp.id

    def _stop(self, trial: TrialRecord, state: TrialState, reason: str) -> None:
        """Stop a trial: at once if queued; else ask its worker, and kill it after a grace."""
        if self.trials.get(trial.key) is not trial:
            return
        if trial.phase is not Phase.RUNNING or trial.worker is None:
            self.end(trial, state, TrialError(_kind(state), reason or state.value))
            return
        if trial.stop is not None:
            return
        trial.stop = (state, reason)
        trial.worker.send(Cancel(experiment_id=trial.exp.id, trial_id=trial.trial_id,
                                 attempt=trial.attempt, state=state, reason=reason))
        trial.timers.append(asyncio.get_running_loop().call_later(
            self._kill_grace, self._kill, trial))

    def _kill(self, trial: TrialRecord) -> None:
        worker = trial.worker
        if self.trials.get(trial.key) is not trial or worker is None:
            return
        _log.info("killing worker %s: trial %s did not stop within %ss",
                  worker.session_id, trial.key, self._kill_grace)
        if worker.process is not None:
            trial.killed = True  # its death is no mystery: WorkerFleet.exited says why
            worker.process.kill()  # its exit ends the trial (WorkerFleet.exited)

    def end(self, trial: TrialRecord, state: TrialState, error: TrialError | None) -> None:
        """End a trial here (the manager decided, not the worker)."""
        self.finished(trial)
        self.forward(trial.exp, self._ended(trial, state, error), None, None, None)

    @staticmethod
    def _ended(trial: TrialRecord, state: TrialState, error: TrialError | None) -> TrialEnded:
        return TrialEnded(experiment_id=trial.exp.id, trial_id=trial.trial_id,
                          attempt=trial.attempt, state=state, error=error, time=time.time())

    def finished(self, trial: TrialRecord) -> None:
        """Forget a trial that ended; its worker is free again."""
        trial.cancel_timers()
        self.trials.pop(trial.key, None)
        exp = trial.exp
        exp.trials.pop((trial.trial_id, trial.attempt), None)
        if trial.phase is Phase.QUEUED:
            try:
                exp.queue.remove(trial)
            except ValueError:
                pass
        if trial.phase is Phase.RUNNING:
            exp.running -= 1
        for other in trial.lent:
            if other.lent_to is trial:
                other.lent_to = None
        lent, trial.lent = bool(trial.lent), []
        worker = trial.worker
        if worker is not None and worker.trial is trial:
            worker.trial = None
            if worker.retiring and worker.pending == 0:
                self.fleet.retire(worker)
            else:
                self.dispatch()
        elif lent:
            self.dispatch()

    def forward(self, exp: ExperimentRecord, message: SequencedMessage, origin: str | None,
                 origin_seq: int | None, done: Callable[[], None] | None) -> None:
        if self._closing:
            return  # experiments were told goodbye; they end their trials themselves
        if exp.port is not None:
            exp.port.deliver(message, origin, origin_seq, done)
        elif exp.id in self.experiments:
            exp.held.append((message, origin, origin_seq, done))  # it has not attached yet
        elif done is not None:
            done()  # it left: nobody will read this


def _held_trials(exp: ExperimentRecord, pending: list[Held]) -> tuple[HeldTrial, ...]:
    """What ``exp``'s new client must hear about: the trials the manager has, and those
    that ended here but whose events (their end among them) it has not acked."""
    held = {key: trial.phase is Phase.QUEUED for key, trial in exp.trials.items()}
    for message, *_ in pending:
        trial_id = getattr(message, "trial_id", None)
        if trial_id is not None:
            held.setdefault((trial_id, message.attempt), False)  # type: ignore[union-attr]
    return tuple(HeldTrial(trial_id=t, attempt=a, queued=q)
                 for (t, a), q in sorted(held.items()))


def _rank_gpus(worker: WorkerRecord, lent: list[WorkerRecord]) -> str | None:
    """The GPUs of a devices=N trial's ranks: its worker's slot first, then the lent
    workers' (each GPU once: slots that share a GPU give it once). ``None`` off GPUs."""
    if not lent or worker.gpu is None:
        return None
    gpus: dict[str, None] = {}
    for w in (worker, *lent):
        for gpu in (w.gpu or "").split(","):
            if gpu.strip():
                gpus[gpu.strip()] = None
    return ",".join(gpus)


def _kind(state: TrialState) -> str:
    return "Timeout" if state is TrialState.TIMEOUT else "Stopped"
