"""``Experiment``: wires a space, an evaluator and a strategy to an engine, a store and
an event hub, and runs the search as a coroutine.

Life of a run::

    CREATED -> RUNNING -> DONE      the strategy finished, or a budget/target was reached
                       -> STOPPED   exp.stop(), or the awaiting task was cancelled
                       -> FAILED    the strategy (or the store) raised

Whatever ends a run, no trial is left WAITING or RUNNING: running trials end CANCELED,
the store is flushed, and ``ExperimentFinished`` is the last event.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio
from anyio.abc import TaskGroup

from nasflow._context import ExperimentContext
from nasflow._objective import Objective
from nasflow._results import Results
from nasflow._types import ExperimentState, TrialError, TrialRecord, TrialState
from nasflow._version import __version__
from nasflow.config import ExperimentConfig
from nasflow.engine import Engine, EngineSetup, InProcessEngine, TrialSpec
from nasflow.evaluator import Evaluator, FunctionalEvaluator
from nasflow.events import (
    Event,
    EventHub,
    EventStream,
    ExperimentFinished,
    ExperimentStateChanged,
    FinalMetric,
    IntermediateMetric,
    TrialEnded,
    TrialStarted,
    TrialSubmitted,
)
from nasflow.exceptions import (
    BudgetExhausted,
    ConfigError,
    NasflowError,
    StoreError,
    StrategyError,
)
from nasflow.space import as_search_space
from nasflow.store import DB_NAME, ExperimentStore, experiment_dir, new_experiment_id, valid_id
from nasflow.strategy import Budget, Decision, Scheduler, Strategy

__all__ = ["Experiment"]

_log = logging.getLogger("nasflow.experiment")


class Experiment(Results):
    """A search: ``Experiment(space, evaluator, strategy, config)``; ``await exp.run()``.

    ``space`` is a ``nasflow.nn.ModelSpace`` (each trial gets a frozen ``torch.nn.Module``)
    or a torch-free dict of choices / ``SearchSpace`` (each trial gets ``model=None`` and
    reads ``trial.sample``). ``evaluator`` is an ``Evaluator`` or a plain function
    ``fn(model, trial)``.
    """

    def __init__(
        self,
        space: Any,
        evaluator: Evaluator | Callable[..., Any],
        strategy: Strategy,
        config: ExperimentConfig | None = None,
        *,
        name: str | None = None,
        id: str | None = None,
        scheduler: Scheduler | None = None,
    ) -> None:
        self.config = config if config is not None else ExperimentConfig()
        """The configuration."""
        if not isinstance(self.config, ExperimentConfig):
            raise ConfigError("config", config, "an nf.ExperimentConfig (or None)")
        self.space = space
        """The space as given (a model space, a dict or a ``SearchSpace``)."""
        self.search_space = as_search_space(space)
        """The torch-free ``SearchSpace`` behind it."""
        if not isinstance(evaluator, Evaluator):
            if not callable(evaluator):
                raise TypeError(
                    f"evaluator must be an nf.Evaluator or a function, got {evaluator!r}"
                )
            evaluator = FunctionalEvaluator(evaluator)
        self.evaluator: Evaluator = evaluator
        """The evaluator."""
        if getattr(evaluator, "requires_model", False) and not getattr(
            space, "is_model_space", False
        ):
            raise TypeError(
                f"{type(evaluator).__name__} trains a model, but the space is torch-free "
                f"({type(space).__name__}): use a nasflow.nn.ModelSpace, or a "
                "FunctionalEvaluator that builds the model from trial.sample"
            )
        if not isinstance(strategy, Strategy):
            raise TypeError(
                f"strategy must be an nf.strategy.Strategy (e.g. nf.strategy.Random()), "
                f"got {strategy!r}"
            )
        self.strategy = strategy
        """The search strategy."""
        self.id = valid_id(id) if id is not None else new_experiment_id()
        """The experiment id (a directory name under ``NASFLOW_HOME/experiments``)."""
        self.name = name or self.id
        """A human-readable name."""
        self.objective = self._objective()
        """The objective (metric names and directions)."""
        if scheduler is not None and not isinstance(scheduler, Scheduler):
            raise TypeError(
                f"scheduler must be an nf.strategy.Scheduler (e.g. nf.strategy.ASHA()), "
                f"got {scheduler!r}"
            )
        self.scheduler = scheduler
        """The early-stopping scheduler, or ``None``."""
        if scheduler is not None:
            scheduler.bind(self.objective)
        self.state = ExperimentState.CREATED
        """Where the experiment is in its life."""
        self.end_reason = ""
        """Why the last run ended."""

        self._records: dict[int, TrialRecord] = {}
        self._hashes: dict[str, int] = {}
        self._next_id = 0
        self._inflight = 0
        self._capacity = self.config.concurrency
        self._budget = Budget(self.config.max_trials, None)
        self._hub = EventHub()
        self._hub.add_sink(self._apply)
        self._store: ExperimentStore | None = None
        self._engine: Engine | None = None
        self._ctx: ExperimentContext | None = None
        self._search_scope: anyio.CancelScope | None = None
        self._halt_request: tuple[ExperimentState, str] | None = None
        self._finished = anyio.Event()
        self._tg: TaskGroup | None = None
        self._tmpdir: str | None = None
        if self.config.store:
            self.directory = experiment_dir(self.id, self.config.home)
        else:
            self._tmpdir = tempfile.mkdtemp(prefix=f"nasflow-{self.id}-")
            self.directory = Path(self._tmpdir)

    def _objective(self) -> Objective:
        configured = self.config.directions
        preferred = self.evaluator.default_objective
        if configured is None:
            if preferred is None:
                return Objective({"default": "maximize"})
            return Objective({"default": preferred} if isinstance(preferred, str) else preferred)
        if isinstance(preferred, str) and configured == {"default": _flip(preferred)}:
            raise ConfigError(
                "objective", self.config.objective,
                f"{preferred!r}: {type(self.evaluator).__name__} reports a metric to "
                f"{preferred} (leave objective unset to use it)",
            )
        return Objective(configured)

    # --- running --------------------------------------------------------------------------

    async def run(self) -> None:
        """Run the search to its end. Cancelling the awaiting task stops it cleanly
        (running trials CANCELED, the store consistent) and re-raises the cancellation.
        Raises ``StrategyError`` if the strategy fails (finished trials are kept)."""
        if self.state is not ExperimentState.CREATED:
            raise NasflowError(
                f"experiment {self.id} already ran (state {self.state.value}); create a new "
                "Experiment to search again"
            )
        if self.config.store and (self.directory / DB_NAME).exists():
            raise NasflowError(
                f"an experiment with id {self.id!r} already exists in {self.directory}; "
                "choose another id (or none, for a fresh one), or resume that experiment"
            )
        self.state = ExperimentState.RUNNING
        try:
            await self._run()
        finally:
            self._finished.set()

    async def _run(self) -> None:
        cfg = self.config
        failure: BaseException | None = None  # raised by the strategy
        internal: BaseException | None = None  # raised by anything else (e.g. the store)
        finished_normally = False
        try:
            if cfg.store:
                store = ExperimentStore(self.directory / DB_NAME)
                await store.open(self._meta())
                self._store = store
                self._hub.add_sink(store.put)
                await anyio.to_thread.run_sync(self._save_space)
            engine = self._make_engine()
            await self._publish(ExperimentStateChanged(time=time.time(),
                                                       state=ExperimentState.RUNNING))
            deadline = math.inf
            if cfg.max_duration is not None:
                deadline = anyio.current_time() + cfg.max_duration
                self._budget.deadline = deadline
            self._ctx = ExperimentContext(self)
            async with engine:
                self._engine = engine
                with anyio.CancelScope(deadline=deadline) as search:
                    self._search_scope = search
                    if self._halt_request is not None:
                        search.cancel()
                    failure = await self._run_strategy(self._ctx)
                    await engine.wait_idle()
                if search.cancelled_caught and self._halt_request is None:
                    self._halt(ExperimentState.DONE, f"max_duration={cfg.max_duration}s reached")
                if self._halt_request is not None:
                    self._budget.stopping = True
                    for trial_id in engine.running:
                        engine.cancel(trial_id, TrialState.CANCELED, self._halt_request[1])
                    await engine.wait_idle()
            finished_normally = True
        except BaseException as exc:
            inner = _unwrap(exc)
            if isinstance(inner, anyio.get_cancelled_exc_class()):
                raise
            internal = inner
        finally:
            await self._finish(failure or internal, normal=finished_normally)
        if internal is not None:
            raise internal
        if failure is not None:
            raise StrategyError(
                f"the strategy {self.strategy!r} raised {failure!r}; the experiment failed "
                f"after {len(self._records)} trials (all kept in {self.directory})"
            ) from failure

    async def _run_strategy(self, ctx: ExperimentContext) -> BaseException | None:
        try:
            await self.strategy.run(ctx)
        except BudgetExhausted:
            self.end_reason = self.end_reason or "max_trials reached"
        except Exception as exc:
            self._halt(ExperimentState.FAILED, f"the strategy raised {exc!r}")
            return exc
        else:
            if self._budget.exhausted and self._budget.max_trials is not None:
                self.end_reason = self.end_reason or "max_trials reached"
            else:
                self.end_reason = self.end_reason or "the strategy finished"
        return None

    async def _finish(self, failure: BaseException | None, *, normal: bool) -> None:
        with anyio.CancelScope(shield=True):
            now = time.time()
            # nothing stays WAITING or RUNNING
            for record in list(self._records.values()):
                if not record.state.finished:
                    await self._publish(TrialEnded(
                        time=now, trial_id=record.id, state=TrialState.CANCELED,
                        error=TrialError("Cancelled", "the experiment ended"),
                    ), wait=False)
            if failure is not None:
                state = ExperimentState.FAILED
                reason = self._halt_request[1] if self._halt_request else repr(failure)
            elif self._halt_request is not None:
                state, reason = self._halt_request
            elif normal:
                state, reason = ExperimentState.DONE, self.end_reason or "done"
            else:
                state, reason = ExperimentState.STOPPED, "the run was cancelled"
            self.state, self.end_reason = state, reason
            # a normal end waits for slow subscribers like any event; a cancelled one cannot
            for ev in (ExperimentStateChanged(time=now, state=state),
                       ExperimentFinished(time=now, state=state, reason=reason)):
                await self._publish(ev, wait=normal)
            self._hub.close()
            if self._store is not None:
                self._store.set_meta(state=state.value, ended_at=now, end_reason=reason,
                                     trials=len(self._records), best=self._best_metric())
                try:
                    await self._store.close()
                except StoreError:
                    _log.exception("closing the store of experiment %s failed", self.id)

    def _make_engine(self) -> Engine:
        cfg = self.config
        if cfg.training_service != "inprocess":
            raise ConfigError(
                "training_service", cfg.training_service,
                "'inprocess' (the 'local' and 'ray' services come with the trial manager)",
            )
        setup = EngineSetup(
            space=self.space,
            evaluator=self.evaluator,
            objective=self.objective,
            publish=self._publish,
            trial_directory=self._trial_directory,
            experiment_id=self.id,
            concurrency=cfg.concurrency,
            trial_timeout=cfg.trial_timeout,  # type: ignore[arg-type]
        )
        return InProcessEngine(setup)

    async def _engine_submit(self, spec: TrialSpec) -> None:
        assert self._engine is not None
        await self._engine.submit(spec)

    # --- events ---------------------------------------------------------------------------

    async def _publish(self, event: Event, *, wait: bool = True) -> None:
        if wait:
            await self._hub.publish(event)
            store = self._store
            if store is not None and store.backlogged:
                await store.wait_room()
        else:
            self._hub.publish_nowait(event)

    def _apply(self, event: Event) -> None:
        """The trial table follows the events (a sink: runs before any subscriber)."""
        if isinstance(event, TrialSubmitted):
            self._records[event.trial_id] = TrialRecord(
                id=event.trial_id, sample=event.sample, hash=event.hash,
                submitted_at=event.time, attempt=event.attempt,
            )
            self._hashes.setdefault(event.hash, event.trial_id)
            self._inflight += 1
            return
        if isinstance(event, IntermediateMetric):
            if self.scheduler is not None:
                record = self._records[event.trial_id]
                if record.state is TrialState.RUNNING and self.scheduler.on_result(
                    record, event.step, event.metric, event.value, event.time
                ) is Decision.STOP:
                    self._kill(record.id, TrialState.EARLY_STOPPED,
                               self.scheduler.reason(record))
        elif isinstance(event, TrialStarted):
            record = self._records[event.trial_id]
            record.state = TrialState.RUNNING
            record.started_at = event.time
            if self.scheduler is not None:
                self.scheduler.on_trial_start(record)
        elif isinstance(event, FinalMetric):
            record = self._records[event.trial_id]
            record.metric, record.metrics = event.metric, event.value
        elif isinstance(event, TrialEnded):
            record = self._records[event.trial_id]
            if record.state.finished:
                return
            record.state, record.ended_at, record.error = event.state, event.time, event.error
            self._inflight -= 1
            if self.scheduler is not None:
                self.scheduler.on_trial_end(record)
            if self._ctx is not None:
                self._ctx._ended(record)
            target = self.config.target_metric
            if (target is not None and record.state is TrialState.SUCCEEDED
                    and record.metric is not None
                    and self.objective.reached(record.metric, target)):
                self._halt(ExperimentState.DONE,
                           f"trial {record.id} reached target_metric={target}")

    def events(self, *types: type[Event], buffer: int | None = None) -> EventStream:
        """Every event from now on (only ``types`` if given), as an async iterator that
        ends after ``ExperimentFinished``. Subscribe before ``run()`` to see everything.
        A subscriber that falls ``buffer`` events behind makes the search wait for it."""
        return self._hub.subscribe(*types, buffer=buffer or self.config.event_buffer)

    # --- control --------------------------------------------------------------------------

    def _halt(self, state: ExperimentState, reason: str) -> None:
        if self._halt_request is None:
            self._halt_request = (state, reason)
            self.end_reason = reason
        self._budget.stopping = True
        if self._search_scope is not None:
            self._search_scope.cancel()

    def _kill(self, trial_id: int, state: TrialState, reason: str) -> bool:
        return self._engine is not None and self._engine.cancel(trial_id, state, reason)

    async def stop(self, reason: str = "stopped by the user") -> None:
        """Stop the search: no new trials, running ones CANCELED; returns when done."""
        self._halt(ExperimentState.STOPPED, reason)
        if self.state is ExperimentState.RUNNING:
            await self._finished.wait()

    async def wait(self) -> None:
        """Wait until the run (started with ``async with exp:``) has ended."""
        await self._finished.wait()

    async def __aenter__(self) -> Experiment:
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        tg.start_soon(self.run)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._tg is not None
        if exc is not None:
            self._halt(ExperimentState.STOPPED, f"the enclosing block raised {exc!r}")
        try:
            return await self._tg.__aexit__(exc_type, exc, tb)
        except BaseExceptionGroup as group:
            raise _unwrap(group) from None

    # --- results --------------------------------------------------------------------------

    def trials(self, states: Iterable[TrialState | str] | None = None) -> list[TrialRecord]:
        wanted = None if states is None else {TrialState(s) for s in states}
        return [
            _copy(r) for r in self._records.values() if wanted is None or r.state in wanted
        ]

    def _space_for_instances(self) -> Any:
        return self.space

    def _best_metric(self) -> float | None:
        best = self.best()
        return None if best is None else best.metric

    # --- files ----------------------------------------------------------------------------

    def _trial_directory(self, trial_id: int) -> Path:
        return self.directory / "trials" / str(trial_id)

    def _meta(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "state": ExperimentState.RUNNING.value,
            "created_at": time.time(),
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "config": self.config.to_dict(),
            "objective": self.objective.directions,
            "labels": self.search_space.labels,
            "strategy": repr(self.strategy),
            "evaluator": repr(self.evaluator),
            "nasflow_version": __version__,
        }

    def _save_space(self) -> None:
        """Pickle the space so that another process can rebuild ``instance`` exports."""
        import cloudpickle

        try:
            data = cloudpickle.dumps(self.space)
        except Exception as exc:
            (self.directory / "space.error").write_text(f"{exc!r}\n")
            _log.warning("the space of experiment %s cannot be pickled (%r); "
                         "load_experiment() will need it passed in", self.id, exc)
            return
        tmp = self.directory / "space.pkl.tmp"
        tmp.write_bytes(data)
        tmp.replace(self.directory / "space.pkl")

    def __repr__(self) -> str:
        return (f"Experiment(id={self.id!r}, state={self.state.value}, "
                f"trials={len(self._records)})")


def _flip(direction: str) -> str:
    return "minimize" if direction == "maximize" else "maximize"


def _copy(record: TrialRecord) -> TrialRecord:
    return TrialRecord(
        id=record.id, sample=dict(record.sample), hash=record.hash, state=record.state,
        metric=record.metric, metrics=record.metrics, submitted_at=record.submitted_at,
        started_at=record.started_at, ended_at=record.ended_at, error=record.error,
        attempt=record.attempt, directory=record.directory,
    )


def _unwrap(exc: BaseException) -> BaseException:
    """The single interesting exception inside (nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc
