"""One run of an experiment: open the store, start the control endpoint, run the engine
and the strategy under the budget, and always finish cleanly.

``Run`` owns what exists only while a run goes on -- the task groups, the engine, the
store and its writer, the control endpoint, the strategy's context, the retry loop, the
replay filter of a resume -- and it is given, explicitly, what outlives it: the
``RunSetup`` (what the experiment is), the ``TrialLedger`` (the trial table), the
``EventHub``, the ``TrialPolicy`` and the ``StopSwitch``. It never sees the
``Experiment``; the facade makes one ``Run`` per ``run()``.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from nasflow._control import ControlServer
from nasflow._kernel import INTERRUPTED, KILLED, ExperimentState, Objective, TrialError, TrialState
from nasflow._persist import encode_snapshot, process_start_time, save_objects
from nasflow._version import __version__
from nasflow.config import ExperimentConfig
from nasflow.engine import Engine, EngineSetup, InProcessEngine, ManagerEngine, TrialSpec
from nasflow.events import (
    ChangeApplied,
    Event,
    EventHub,
    ExperimentFinished,
    ExperimentStateChanged,
    IntermediateMetric,
    TrialEnded,
    TrialStarted,
    TrialSubmitted,
)
from nasflow.exceptions import BudgetExhausted, RepeatedFailureError, StoreError, StrategyError
from nasflow.experiment._changes import ChangeDesk, deadline_after
from nasflow.experiment._context import ExperimentContext
from nasflow.experiment._endpoint import control_ops
from nasflow.experiment._feed import Feed, known_trial_events
from nasflow.experiment._ledger import TrialLedger
from nasflow.experiment._policy import (
    Action,
    Deliver,
    Halt,
    Kill,
    Penalise,
    Retry,
    SnapshotDue,
    TrialPolicy,
)
from nasflow.experiment._resume import Replay, ResumePlan, restore_state, space_signature
from nasflow.integrations.tensorboard import TensorBoardSink
from nasflow.protocol import Limits
from nasflow.space import SearchSpace
from nasflow.store import DB_NAME, ExperimentStore
from nasflow.strategy import Budget, Scheduler, Strategy

__all__ = ["Run", "RunSetup", "StopSwitch", "unwrap"]

_log = logging.getLogger("nasflow.experiment")


@dataclass(frozen=True)
class RunSetup:
    """What the experiment is: everything a run reads and never changes."""

    id: str
    name: str
    directory: Path
    config: ExperimentConfig
    space: Any
    search_space: SearchSpace
    evaluator: Any
    strategy: Strategy
    scheduler: Scheduler | None
    objective: Objective
    engine_factory: Callable[[EngineSetup], Engine] | None
    trial_directory: Callable[[int], Path]


class StopSwitch:
    """The first request to end the search (``stop()``, a target, a deadline, a failure),
    and the cancel scope it ends. May be thrown before the run starts."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.request: tuple[ExperimentState, str] | None = None
        """The first request: the state to end in and why."""
        self._scope: anyio.CancelScope | None = None

    def __call__(self, state: ExperimentState, reason: str) -> bool:
        """Ask the search to end; whether this was the first request."""
        first = self.request is None
        if first:
            self.request = (state, reason)
        self.budget.stopping = True
        if self._scope is not None:
            self._scope.cancel()
        return first

    def guard(self, scope: anyio.CancelScope) -> None:
        """Cancel ``scope`` on a request (at once, if one came already)."""
        self._scope = scope
        if self.request is not None:
            scope.cancel()


class Run:
    """One run of an experiment (see the module docstring)."""

    def __init__(self, setup: RunSetup, *, ledger: TrialLedger, hub: EventHub,
                 policy: TrialPolicy, stop: StopSwitch,
                 halt: Callable[[ExperimentState, str], None],
                 on_stop: Callable[[str], Awaitable[None]],
                 status: Callable[[], dict[str, Any]],
                 settled: Callable[[ExperimentState, str], None],
                 finished: anyio.Event,
                 closed: Callable[[], None] = lambda: None,
                 tensorboard: TensorBoardSink | None = None,
                 plan: ResumePlan | None = None,
                 changes: ChangeDesk | None = None, feed: Feed | None = None,
                 given: list[tuple[str, Any]] | None = None) -> None:
        self.setup = setup
        self.config = setup.config
        """The config as it is now: ``setup.config`` with the runtime updates applied."""
        self.ledger = ledger
        self.hub = hub
        self.policy = policy
        self.budget = ledger.budget
        self._stop = stop
        self._halt = halt  # the facade's: records the reason, then throws the switch
        self._on_stop = on_stop  # the control endpoint's `stop`
        self._status = status
        self._settled = settled  # the run's end state and reason, before the last events
        self._finished = finished  # set once everything is saved
        self._closed = closed  # the store is closed: the facade gives up its lock
        self._tensorboard = tensorboard
        self._plan = plan
        self.feed = feed if feed is not None else Feed()
        """What the user enqueued and added (``exp.enqueue``, ``exp.add_results``)."""
        self._given = given if given is not None else []  # fed before the store opened
        self._fed_samples = anyio.Event()
        self._fed_results = anyio.Event()
        self._changes = changes if changes is not None else ChangeDesk()
        self._started = math.inf  # anyio.current_time() when the search began
        self._search_scope: anyio.CancelScope | None = None  # its deadline: max_duration
        self.store: ExperimentStore | None = None
        """The store (and its writer), open while the run goes on."""
        self.engine: Engine | None = None
        """The engine, while the search goes on."""
        self.ctx: ExperimentContext | None = None
        """The strategy's context."""
        self.clock: Callable[[], float] = time.time
        """What stamps this run's events: the engine's clock once there is one (a
        simulated engine's is fake); the store's own metadata stays wall time."""
        self.end_reason = ""
        self.repeated_failure: RepeatedFailureError | None = None
        self._replay: Replay | None = None  # metrics a re-attached trial sends again
        self._retry_wakeup = anyio.Event()
        self._retry_settled = anyio.Event()

    # --- the run ------------------------------------------------------------------------

    async def run(self) -> None:
        """The whole run; raises what ``Experiment.run`` raises."""
        setup, cfg = self.setup, self.setup.config
        failure: BaseException | None = None  # raised by the strategy
        internal: BaseException | None = None  # raised by anything else (e.g. the store)
        finished_normally = False
        control: ControlServer | None = None
        async with anyio.create_task_group() as services:
            try:
                if cfg.store:
                    await self._open_store()
                    control = ControlServer(setup.directory, control_ops(
                        self.hub, self._changes, on_stop=self._on_stop, status=self._status))
                    await services.start(control.serve)
                self._changes.record_with(self._record_change)  # changes are recorded now
                failure = await self._search()
                finished_normally = True
            except BaseException as exc:
                inner = unwrap(exc)
                if isinstance(inner, anyio.get_cancelled_exc_class()):
                    raise
                internal = inner
            finally:
                self._changes.record_with(None)  # changes from now on find it not running
                await self._finish(failure or internal, normal=finished_normally)
                # the control endpoint outlives the run's end: `nasflow stop --wait` gets
                # its answer once everything is saved
                if control is not None:
                    with anyio.CancelScope(shield=True):
                        await control.drain()
                services.cancel_scope.cancel()
        if internal is not None:
            raise internal
        if failure is None and self.repeated_failure is not None:
            raise self.repeated_failure
        if failure is not None:
            raise StrategyError(
                f"the strategy {setup.strategy!r} raised {failure!r}; the experiment failed "
                f"after {len(self.ledger)} trials (all kept in {setup.directory})"
            ) from failure

    async def _open_store(self) -> None:
        setup = self.setup
        store = ExperimentStore(setup.directory / DB_NAME)
        await store.open(self._meta())
        self.store = store
        self.hub.add_sink(store.put)
        store.snapshot_with(self._snapshot)
        for op, entries in self._given:
            self.record_given(op, entries, {"message": f"{len(entries)} queued"})
        self._given.clear()
        objects = {"space": setup.space, "evaluator": setup.evaluator,
                   "strategy": setup.strategy, "scheduler": setup.scheduler}
        await anyio.to_thread.run_sync(save_objects, setup.directory, objects)

    def _make_engine(self) -> Engine:
        setup, cfg = self.setup, self.config
        engine_setup = EngineSetup(
            space=setup.space,
            evaluator=setup.evaluator,
            objective=setup.objective,
            publish=self.publish,
            trial_directory=setup.trial_directory,
            experiment_id=setup.id,
            concurrency=cfg.concurrency,
            trial_timeout=cfg.trial_timeout,  # type: ignore[arg-type]
            flush=self.store.flush if self.store is not None else None,
        )
        if setup.engine_factory is not None:
            return setup.engine_factory(engine_setup)
        if cfg.training_service == "inprocess" and cfg.manager is None:
            return InProcessEngine(engine_setup)
        return ManagerEngine(
            engine_setup,
            manager=cfg.manager,
            token=cfg.token or os.environ.get("NASFLOW_TOKEN"),
            gpus=cfg.gpus,  # type: ignore[arg-type]
            trials_per_gpu=cfg.trials_per_gpu,
            max_trials_per_worker=cfg.max_trials_per_worker,
            reattach_timeout=cfg.reattach_timeout,  # type: ignore[arg-type]
            log_dir=setup.directory / "workers",
            limits=Limits(max_payload_size=cfg.max_payload_size),
            ray=cfg.training_service == "ray",
            ray_address=cfg.ray_address,
            trial_resources=cfg.trial_resources,
        )

    async def _search(self) -> BaseException | None:
        """The engine, the re-queued trials of a resume, the strategy, the budget."""
        setup, cfg = self.setup, self.config
        engine = self._make_engine()
        self.clock = engine.clock.now  # one clock stamps every event: the engine's
        await self.publish(ExperimentStateChanged(time=self.clock(),
                                                  state=ExperimentState.RUNNING))
        self._started = anyio.current_time()
        deadline = deadline_after(self._started, None if cfg.max_duration is None
                                  else float(cfg.max_duration))  # seconds by now
        if cfg.max_duration is not None:
            self.budget.deadline = deadline
        ctx = self.ctx = ExperimentContext(
            self, self.ledger, engine=engine, clock=self.clock, space=setup.search_space,
            objective=setup.objective, model_space=setup.space, evaluator=setup.evaluator,
            directory=setup.directory, feed=self.feed,
        )
        if self._plan is not None:
            taken, unseen = restore_state(self._plan, self.ledger, setup.strategy,
                                          setup.scheduler, cfg.penalty)
            ctx.restore(taken, unseen)
        self.feed.listener = self._fed
        failure = None
        async with engine:
            self.engine = engine
            with anyio.CancelScope(deadline=deadline) as search:
                self._search_scope = search
                self._stop.guard(search)
                # known results first: the strategy learns from them before it proposes
                await self._add_known()
                if self._plan is not None:
                    await self._requeue(self._plan, engine)
                async with anyio.create_task_group() as helpers:
                    helpers.start_soon(self._retry_failures, engine)
                    helpers.start_soon(self._follow_feed, ctx)
                    failure = await self._run_strategy(ctx)
                    if failure is None:
                        await ctx.wait_capacity()  # what was enqueued runs all the same
                    await self._drain(engine)
                    helpers.cancel_scope.cancel()
            self._search_scope = None
            if search.cancelled_caught and self._stop.request is None:
                self._halt(ExperimentState.DONE,
                           f"max_duration={self.config.max_duration}s reached")
            if self._stop.request is not None:
                state, reason = self._stop.request
                self.budget.stopping = True
                # a stop (or a strategy failure) interrupts trials: a resume runs them again
                interrupted = state is not ExperimentState.DONE
                for trial_id in engine.running:
                    engine.cancel(trial_id, TrialState.CANCELED, reason, interrupted=interrupted)
                await engine.wait_idle()
        return failure

    async def wait_capacity(self) -> None:
        """Wait until one more trial may start: every submission (the strategy's, a
        retry's, a resumed trial's) waits here, and nowhere else."""
        assert self.ctx is not None
        await self.ctx.wait_capacity()

    async def _requeue(self, plan: ResumePlan, engine: Engine) -> None:
        """Trials in flight when the experiment stopped: re-attach those still running (a
        manager's workers), run the others again under the same id (attempt + 1)."""
        if not plan.pending:
            return
        # a trial the user killed stays killed: its end may not have reached the store
        # before the process died (kill -9 after the change was committed)
        now = self.clock()
        for record in plan.pending:
            if record.id in plan.killed and not record.state.finished:
                await self.publish(TrialEnded(
                    time=now, trial_id=record.id, state=TrialState.CANCELED,
                    error=TrialError(KILLED, plan.killed[record.id])))
        pending = [r for r in plan.pending if r.id not in plan.killed]
        specs = [TrialSpec(r.id, r.sample, r.attempt) for r in pending]
        if plan.stored:
            # before reattach: the engine may publish a re-attached trial's events at once
            self._replay = Replay(dict(plan.stored))
        attached = await engine.reattach(specs)
        if self._replay is not None:
            self._replay.keep(attached)
            if not self._replay:
                self._replay = None
        again = [r for r in pending if r.id not in attached]
        for record in again:
            if not record.state.finished:  # the process died under it: record that first
                await self.publish(TrialEnded(
                    time=now, trial_id=record.id, state=TrialState.CANCELED,
                    error=TrialError(INTERRUPTED, "the process running the experiment ended"),
                ))
        for record in again:
            await self.wait_capacity()
            attempt = record.attempt + 1
            self.ledger.rerun_from(record.id, attempt)  # retries count from here
            await self.publish(TrialSubmitted(time=self.clock(), trial_id=record.id,
                                              sample=record.sample, hash=record.hash,
                                              attempt=attempt, origin=record.origin))
            await engine.submit(TrialSpec(record.id, record.sample, attempt))

    def _fed(self) -> None:
        """Something was enqueued or added while the run goes on."""
        self._fed_samples.set()
        self._fed_results.set()

    async def _add_known(self) -> None:
        """Store the queued known results as trials that ended SUCCEEDED (not counted
        toward ``max_trials``); the strategy takes them like any ended trial."""
        for result in self.feed.take_results():
            if self.ledger.seen(result.hash):
                continue
            trial_id = self.ledger.new_id(counted=False)
            for event in known_trial_events(result, trial_id, self.clock()):
                await self.publish(event)

    async def _follow_feed(self, ctx: ExperimentContext) -> None:
        """Take what is enqueued or added while the strategy runs (or waits on a result):
        known results at once, enqueued samples as capacity allows."""
        async def results() -> None:
            while True:
                await self._fed_results.wait()
                self._fed_results = anyio.Event()
                await self._add_known()

        async def samples() -> None:
            while True:
                await self._fed_samples.wait()
                self._fed_samples = anyio.Event()
                await ctx.wait_capacity()  # submits what is queued, as capacity allows

        async with anyio.create_task_group() as tg:
            tg.start_soon(results)
            tg.start_soon(samples)

    async def _retry_failures(self, engine: Engine) -> None:
        """Run failed attempts again (``ExperimentConfig.retry``), as capacity allows."""
        while True:
            while (record := self.ledger.next_retry()) is None:
                await self._retry_wakeup.wait()
                self._retry_wakeup = anyio.Event()
            await self.wait_capacity()
            attempt = record.attempt + 1
            _log.info("trial %d ended %s (%s); running it again (attempt %d)", record.id,
                      record.state.value, record.error, attempt)
            await self.publish(TrialSubmitted(time=self.clock(), trial_id=record.id,
                                              sample=record.sample, hash=record.hash,
                                              attempt=attempt, origin=record.origin))
            await engine.submit(TrialSpec(record.id, record.sample, attempt))
            self.ledger.retry_submitted()
            self._retry_settled.set()

    async def _drain(self, engine: Engine) -> None:
        """Wait for every running trial, and for every retry they cause."""
        while True:
            await engine.wait_idle()
            if not self.ledger.retries:
                return
            self._retry_settled = anyio.Event()
            await self._retry_settled.wait()

    async def _run_strategy(self, ctx: ExperimentContext) -> BaseException | None:
        try:
            await self.setup.strategy.run(ctx)
        except BudgetExhausted:
            self.end_reason = "max_trials reached"
        except Exception as exc:
            self._halt(ExperimentState.FAILED, f"the strategy raised {exc!r}")
            return exc
        else:
            if self.budget.exhausted and self.budget.max_trials is not None:
                self.end_reason = "max_trials reached"
            else:
                self.end_reason = "the strategy finished"
        return None

    async def _finish(self, failure: BaseException | None, *, normal: bool) -> None:
        with anyio.CancelScope(shield=True):
            now = self.clock()
            # nothing stays WAITING or RUNNING
            for record in list(self.ledger):
                if not record.state.finished:
                    await self.publish(TrialEnded(
                        time=now, trial_id=record.id, state=TrialState.CANCELED,
                        error=TrialError(INTERRUPTED, "the experiment ended"),
                    ), wait=False)
            request = self._stop.request
            if failure is not None:
                state = ExperimentState.FAILED
                reason = request[1] if request else repr(failure)
            elif request is not None:
                state, reason = request
            elif normal:
                state, reason = ExperimentState.DONE, self.end_reason or "done"
            else:
                state, reason = ExperimentState.STOPPED, "the run was cancelled"
            self._settled(state, reason)
            # a normal end waits for slow subscribers like any event; a cancelled one cannot
            for ev in (ExperimentStateChanged(time=now, state=state),
                       ExperimentFinished(time=now, state=state, reason=reason)):
                await self.publish(ev, wait=normal)
            self.hub.close()
            if self._tensorboard is not None:  # the scalars are on disk when run() returns
                await anyio.to_thread.run_sync(self._tensorboard.join)
            if self.store is not None:
                self.store.set_meta(state=state.value, ended_at=time.time(), end_reason=reason,
                                    trials=len(self.ledger), best=self._status()["best"])
                try:
                    await self.store.close()
                except StoreError:
                    _log.exception("closing the store of experiment %s failed",
                                   self.setup.id)
            # before wait() returns: `nasflow stop --wait && nasflow resume` must not find
            # the experiment still locked
            self._closed()
            self._finished.set()  # everything is saved: stop() and wait() may return

    # --- events: publish, and follow them with the ledger and the policy --------------------

    async def publish(self, event: Event, *, wait: bool = True) -> None:
        """Publish ``event`` to the hub (its sinks first: the trial table, the store)."""
        if self._replay is not None and self._replay.stored(event):
            return
        if wait:
            await self.hub.publish(event)
            store = self.store
            if store is not None and store.backlogged:
                await store.wait_room()
        else:
            self.hub.publish_nowait(event)

    def follow(self, event: Event) -> None:
        """The trial table and the policy follow each event (a sink: runs before any
        subscriber)."""
        if type(event) is IntermediateMetric:
            # the most frequent event by far; it changes no record, only a scheduler reads it
            if self.policy.scheduler is not None:
                kill = self.policy.result(self.ledger[event.trial_id], event.step,
                                          event.metric, event.value, event.time)
                if kill is not None:
                    self._apply(kill)
            return
        ended = self.ledger.apply(event)
        if ended is not None:
            self._apply_all(self.policy.ended(
                ended, first_attempt=self.ledger.first_attempt(ended.id),
                stopping=self.budget.stopping))
        elif type(event) is TrialStarted and self.policy.scheduler is not None:
            self.policy.started(self.ledger[event.trial_id])

    def _apply_all(self, actions: list[Action]) -> None:
        for action in actions:
            self._apply(action)

    def _apply(self, action: Action) -> None:
        # the two actions of every trial's end first: this runs once per trial
        if isinstance(action, Deliver):
            # the scheduler sees the end (with its penalty) before the strategy does
            self.policy.notify_scheduler(action.record)
            if self.ctx is not None:
                self.ctx.deliver(action.record)
        elif type(action) is SnapshotDue:
            self.snapshot_due()
        elif isinstance(action, Retry):
            self.ledger.queue_retry(action.record)
            self._retry_wakeup.set()
        elif isinstance(action, Penalise):
            self.ledger.penalise(action.record, action.metric)
        elif isinstance(action, Kill):
            self.kill(action.trial_id, action.state, action.reason)
        elif isinstance(action, Halt):
            if action.error is not None:
                _log.error("%s", action.log)
                self.repeated_failure = action.error
            self._halt(action.state, action.reason)

    # --- what the context, the control endpoint and the store ask of the run -------------

    async def submit(self, spec: TrialSpec) -> None:
        """Hand a trial to the engine."""
        assert self.engine is not None
        await self.engine.submit(spec)

    def kill(self, trial_id: int, state: TrialState, reason: str, *, error_type: str = ""
             ) -> bool:
        """Stop a running trial; whether it was running."""
        return self.engine is not None and self.engine.cancel(trial_id, state, reason,
                                                              error_type=error_type)

    def give(self, op: str, entries: Any) -> dict[str, Any]:
        """``enqueue`` / ``add_results`` while the run goes on: checked, queued; the
        change's result (the desk, or the API through ``record_given``, records it)."""
        setup = self.setup
        queued = self.feed.give(op, entries, setup.search_space, setup.objective,
                                self.ledger.seen)
        skipped = len(entries) - len(queued) if isinstance(entries, list) else 0
        return {"queued": len(queued), "entries": queued,
                "message": f"{len(queued)} queued" + (f", {skipped} skipped (evaluated or "
                                                      "queued already)" if skipped else "")}

    def record_given(self, op: str, entries: list[Any], result: dict[str, Any],
                     source: str = "api") -> None:
        """Record a feeding change made without the desk (the synchronous API, which
        cannot await it): the sinks (the store) get it at once, a full subscriber may
        miss it."""
        self.hub.publish_nowait(ChangeApplied(time=self.clock(), op=op,
                                              args={"entries": entries}, source=source,
                                              result=result))

    def snapshot_due(self) -> None:
        """Ask the store to snapshot the strategy at its next commit."""
        if self.store is not None:
            self.store.snapshot_due()

    # --- runtime changes (``_changes.py`` validates and applies them) ------------------------

    def elapsed(self) -> float:
        """Seconds since the search of this run began (0 before)."""
        return max(0.0, anyio.current_time() - self._started)

    def set_max_duration(self, seconds: float | None) -> None:
        """The search ends ``seconds`` after it began (``None``: no time limit)."""
        deadline = deadline_after(self._started, seconds)
        self.budget.deadline = None if seconds is None else deadline
        if self._search_scope is not None:
            self._search_scope.deadline = deadline

    def resize(self, concurrency: int) -> None:
        """Run ``concurrency`` trials at once from now on (the engine decides when)."""
        if self.engine is not None:
            self.engine.resize(concurrency)
        if self.ctx is not None:
            self.ctx.capacity_changed()

    async def _record_change(self, op: str, args: dict[str, Any], source: str,
                             result: dict[str, Any]) -> None:
        """Publish the change (the store keeps it) and return once it is durable."""
        await self.publish(ChangeApplied(time=self.clock(), op=op, args=args, source=source,
                                         result=result))
        if self.store is not None:
            await self.store.flush()

    def _meta(self) -> dict[str, Any]:
        setup = self.setup
        owner = {
            "state": ExperimentState.RUNNING.value,
            "pid": os.getpid(),
            "pid_start": process_start_time(os.getpid()),
            "host": socket.gethostname(),
            "started_at": time.time(),
            "ended_at": None,
        }
        if self._plan is not None:
            # the budget and concurrency may have changed (BUDGET_FIELDS)
            return {**owner, "resumed": int(self._plan.meta.get("resumed", 0)) + 1,
                    "config": setup.config.to_dict()}
        return {
            **owner,
            "id": setup.id,
            "name": setup.name,
            "created_at": owner["started_at"],
            "config": setup.config.to_dict(),
            "objective": setup.objective.directions,
            "labels": setup.search_space.labels,
            "space": space_signature(setup.search_space),
            "strategy": repr(setup.strategy),
            "evaluator": repr(setup.evaluator),
            "scheduler": None if setup.scheduler is None else repr(setup.scheduler),
            "nasflow_version": __version__,
        }

    def _snapshot(self) -> bytes:
        """The strategy's (and scheduler's) state, and how many ended trials it has taken;
        called by the store at a commit, so it matches exactly the events committed."""
        ctx, setup = self.ctx, self.setup
        return encode_snapshot({
            "version": 1,
            "taken": ctx.taken if ctx is not None else 0,
            "strategy": setup.strategy.state_dict(),
            "scheduler": None if setup.scheduler is None else setup.scheduler.state_dict(),
        })


def unwrap(exc: BaseException) -> BaseException:
    """The single interesting exception inside (nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc
