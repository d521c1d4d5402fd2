"""One run of an experiment: open the store, start the control endpoint, run the engine
and the strategy under the budget, and always finish cleanly.

``Run`` owns what exists only while a run goes on -- the task groups, the engine, the
store and its writer, the control endpoint, the strategy's context, the trials it
submits besides the strategy's (``TrialSources``, ``_sources.py``: resumed, retried, fed)
-- and it is given, explicitly, what outlives it: the ``RunSetup`` (what the experiment
is; ``_setup.py`` builds the engine and the store's metadata from it), the
``TrialLedger`` (the trial table), the ``EventHub``, the ``TrialPolicy`` and the
``StopSwitch``. It never sees the ``Experiment``; the facade makes one ``Run`` per
``run()``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from nasflow._control import ControlServer
from nasflow._kernel import INTERRUPTED, ExperimentState, TrialError, TrialState
from nasflow._persist import encode_snapshot, save_objects
from nasflow.engine import Engine
from nasflow.events import (
    ChangeApplied,
    Event,
    EventHub,
    ExperimentFinished,
    ExperimentStateChanged,
    IntermediateMetric,
    TrialEnded,
    TrialStarted,
)
from nasflow.exceptions import BudgetExhausted, RepeatedFailureError, StoreError, StrategyError
from nasflow.experiment._changes import ChangeDesk, deadline_after
from nasflow.experiment._context import ExperimentContext
from nasflow.experiment._endpoint import control_ops
from nasflow.experiment._feed import Feed
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
from nasflow.experiment._resume import ResumePlan, restore_state
from nasflow.experiment._setup import RunSetup, StopSwitch, make_engine, store_meta
from nasflow.experiment._sources import TrialSources
from nasflow.integrations.tensorboard import TensorBoardSink
from nasflow.store import DB_NAME, ExperimentStore

__all__ = ["Run", "unwrap"]

_log = logging.getLogger("nasflow.experiment")


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
        self.sources = TrialSources(self)
        """The resumed, retried and fed trials (and the replay filter of a resume)."""

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
        await store.open(store_meta(setup, self._plan))
        self.store = store
        self.hub.add_sink(store.put)
        store.snapshot_with(self._snapshot)
        for op, entries in self._given:
            self.record_given(op, entries, {"message": f"{len(entries)} queued"})
        self._given.clear()
        objects = {"space": setup.space, "evaluator": setup.evaluator,
                   "strategy": setup.strategy, "scheduler": setup.scheduler}
        await anyio.to_thread.run_sync(save_objects, setup.directory, objects)

    async def _search(self) -> BaseException | None:
        """The engine, the re-queued trials of a resume, the strategy, the budget."""
        setup, cfg = self.setup, self.config
        engine = make_engine(setup, cfg, publish=self.publish,
                             flush=self.store.flush if self.store is not None else None)
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
            ray=((cfg.ray_address, dict(cfg.trial_resources or {"CPU": 1.0}))
                 if cfg.training_service == "ray" else None),
        )
        if self._plan is not None:
            taken, unseen = restore_state(self._plan, self.ledger, setup.strategy,
                                          setup.scheduler, cfg.penalty)
            ctx.restore(taken, unseen)
        self.feed.listener = self.sources.fed
        failure = None
        async with engine:
            self.engine = engine
            with anyio.CancelScope(deadline=deadline) as search:
                self._search_scope = search
                self._stop.guard(search)
                # known results first: the strategy learns from them before it proposes
                await self.sources.add_known()
                if self._plan is not None:
                    await self.sources.requeue(self._plan, engine)
                async with anyio.create_task_group() as helpers:
                    helpers.start_soon(self.sources.retry_failures, engine)
                    helpers.start_soon(self.sources.follow_feed, ctx)
                    failure = await self._run_strategy(ctx)
                    if failure is None:
                        await ctx.wait_capacity()  # what was enqueued runs all the same
                    await self.sources.drain(engine)
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
        replay = self.sources.replay
        if replay is not None and replay.stored(event):
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
            self.sources.retry(action.record)
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
