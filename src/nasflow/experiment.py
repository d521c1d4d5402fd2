"""``Experiment``: wires a space, an evaluator and a strategy to an engine, a store and
an event hub, and runs the search as a coroutine.

Life of a run::

    CREATED -> RUNNING -> DONE      the strategy finished, or a budget/target was reached
                       -> STOPPED   exp.stop(), a signal, or the awaiting task was cancelled
                       -> FAILED    the strategy (or the store) raised

Whatever ends a run, no trial is left WAITING or RUNNING: running trials end CANCELED,
the store is flushed, and ``ExperimentFinished`` is the last event. Trials cut off by a
stop (error type ``Interrupted``), and trials in flight when a process died, run again
under their own ids when the experiment is resumed (``Experiment.resume``).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import warnings
import weakref
from collections import deque
from collections.abc import Callable, Coroutine, Generator, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio
from anyio.abc import TaskGroup

from nasflow._context import ExperimentContext
from nasflow._notebook import NotebookProgress, in_kernel
from nasflow._objective import Objective
from nasflow._results import Results
from nasflow._resume import (
    Replay,
    ResumePlan,
    restore_experiment,
)
from nasflow._run_loop import RunMixin, unwrap
from nasflow._types import ExperimentState, TrialRecord, TrialState
from nasflow.config import ExperimentConfig
from nasflow.engine import Engine, EngineSetup, InProcessEngine, ManagerEngine, TrialSpec
from nasflow.engine._manager import import_manager_modules
from nasflow.evaluator import Evaluator, FunctionalEvaluator
from nasflow.events import (
    Event,
    EventHub,
    EventStream,
    FinalMetric,
    IntermediateMetric,
    TrialEnded,
    TrialStarted,
    TrialSubmitted,
)
from nasflow.exceptions import (
    ConfigError,
    NasflowError,
    RepeatedFailureError,
)
from nasflow.integrations.tensorboard import TensorBoardSink
from nasflow.protocol import Limits
from nasflow.space import as_search_space
from nasflow.store import (
    DB_NAME,
    ExperimentStore,
    experiment_dir,
    new_experiment_id,
    valid_id,
)
from nasflow.strategy import Budget, Decision, Scheduler, Strategy

__all__ = ["Experiment"]

_log = logging.getLogger("nasflow.experiment")


class Experiment(RunMixin, Results):
    """A search: ``Experiment(space, evaluator, strategy, config)``; ``await exp.run()``.

    ``space`` is a ``nasflow.nn.ModelSpace`` (each trial gets a frozen ``torch.nn.Module``)
    or a torch-free dict of choices / ``SearchSpace`` (each trial gets ``model=None`` and
    reads ``trial.sample``). ``evaluator`` is an ``Evaluator`` or a plain function
    ``fn(model, trial)``. ``scheduler`` stops trials early (``nf.strategy.ASHA``, ...);
    ``engine`` replaces the configured training service (a function of an
    ``EngineSetup``, e.g. a ``nasflow.testing.SimulatedEngine``).
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
        engine: Callable[[EngineSetup], Engine] | None = None,
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
        self.engine_factory = engine
        """Builds the engine from an ``EngineSetup`` instead of the configured training
        service (e.g. ``nasflow.testing.SimulatedEngine``); ``None`` for the default."""
        if scheduler is not None:
            scheduler.bind(self.objective)
        if engine is None and (self.config.training_service != "inprocess"
                               or self.config.manager is not None):
            import_manager_modules()  # here, not on the event loop once it runs
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
        self._tensorboard: TensorBoardSink | None = None
        if self.config.tensorboard:
            self._tensorboard = TensorBoardSink(self._trial_directory)
            self._hub.add_sink(self._tensorboard)
        self._store: ExperimentStore | None = None
        self._engine: Engine | None = None
        self._ctx: ExperimentContext | None = None
        self._search_scope: anyio.CancelScope | None = None
        self._halt_request: tuple[ExperimentState, str] | None = None
        self._plan: ResumePlan | None = None  # set by restore()
        self._replay: Replay | None = None  # metrics a re-attached trial sends again
        self._retries: deque[TrialRecord] = deque()  # failed attempts to run again
        self._retry_wakeup = anyio.Event()
        self._retry_settled = anyio.Event()
        self._attempt0: dict[int, int] = {}  # the attempt retries count from (resumed trials)
        self._finished = anyio.Event()
        # the errors of the first trials to end, while they all failed alike
        self._failure_watch: list[tuple[str, str]] | None = []
        self._repeated_failure: RepeatedFailureError | None = None
        self._tg: TaskGroup | None = None
        if self.config.store:
            self.directory = experiment_dir(self.id, self.config.home)
            """The experiment's directory (its store, saved objects and trial folders)."""
        else:
            # no store: trial folders go to a temporary directory, created on first use
            # and removed with the experiment object
            self.directory = Path(tempfile.gettempdir()) / f"nasflow-{self.id}-{os.getpid()}"
            weakref.finalize(self, shutil.rmtree, self.directory, ignore_errors=True)

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

    def run(self, *, progress: bool = True) -> Coroutine[Any, Any, None]:
        """Run the search to its end: ``await exp.run()`` (``nf.run(exp)`` from sync code).
        In a notebook (under an IPython kernel) the cell shows a live display of the
        progress against the budget, the running trials and the best so far, left as a
        final summary; ``progress=False`` turns it off. Elsewhere nothing is printed.
        Cancelling the awaiting task stops it cleanly (running trials CANCELED, the store
        consistent) and re-raises the cancellation. Raises ``StrategyError`` if the
        strategy fails (finished trials are kept).

        A coroutine, as from an ``async def`` (``tg.start_soon(exp.run)`` and
        ``asyncio.run(exp.run())`` work); one dropped without being awaited warns with
        what to write instead, not Python's bare "never awaited"."""
        return _RunCall(self, progress)

    async def _run_shown(self, progress: bool) -> None:
        # the notebook display is a hub sink: it cannot slow the search down or change
        # how the run ends (its exceptions, its cancellation)
        view = None
        if progress and self.state is ExperimentState.CREATED and in_kernel():
            view = NotebookProgress(self)
        try:
            await self._run_to_end()
        finally:
            if view is not None:
                view.close()

    async def _run_to_end(self) -> None:
        if self.state is not ExperimentState.CREATED:
            raise NasflowError(
                f"experiment {self.id} already ran (state {self.state.value}); create a new "
                "Experiment to search again"
            )
        if self._plan is None and self.config.store and (self.directory / DB_NAME).exists():
            raise NasflowError(
                f"an experiment with id {self.id!r} already exists in {self.directory}; "
                "choose another id (or none, for a fresh one), or resume that experiment"
            )
        self.state = ExperimentState.RUNNING
        try:
            await self._run()
        finally:
            self._finished.set()

    def _make_engine(self) -> Engine:
        cfg = self.config
        setup = EngineSetup(
            space=self.space,
            evaluator=self.evaluator,
            objective=self.objective,
            publish=self._publish,
            trial_directory=self._trial_directory,
            experiment_id=self.id,
            concurrency=cfg.concurrency,
            trial_timeout=cfg.trial_timeout,  # type: ignore[arg-type]
            flush=self._store.flush if self._store is not None else None,
        )
        if self.engine_factory is not None:
            return self.engine_factory(setup)
        if cfg.training_service == "inprocess" and cfg.manager is None:
            return InProcessEngine(setup)
        return ManagerEngine(
            setup,
            manager=cfg.manager,
            token=cfg.token or os.environ.get("NASFLOW_TOKEN"),
            gpus=cfg.gpus,  # type: ignore[arg-type]
            trials_per_gpu=cfg.trials_per_gpu,
            max_trials_per_worker=cfg.max_trials_per_worker,
            reattach_timeout=cfg.reattach_timeout,  # type: ignore[arg-type]
            log_dir=self.directory / "workers",
            limits=Limits(max_payload_size=cfg.max_payload_size),
        )

    async def _engine_submit(self, spec: TrialSpec) -> None:
        assert self._engine is not None
        await self._engine.submit(spec)

    # --- events ---------------------------------------------------------------------------

    async def _publish(self, event: Event, *, wait: bool = True) -> None:
        if self._replay is not None and self._replay.stored(event):
            return
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
            # a new trial, or a trial of a resumed experiment submitted again (same id)
            self._records[event.trial_id] = TrialRecord(
                id=event.trial_id, sample=event.sample, hash=event.hash,
                submitted_at=event.time, attempt=event.attempt,
                # as load_experiment gives it (the folder is made when the trial first
                # writes into it)
                directory=str(self._trial_directory(event.trial_id)),
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
            if self._retry_wanted(record):
                return  # run again: the strategy and the scheduler see the last attempt only
            self._penalise(record)
            self._watch_failures(record)
            if self.scheduler is not None:
                self.scheduler.on_trial_end(record)
            if self._ctx is not None:
                self._ctx._ended(record)
            if self._store is not None:
                self._store.snapshot_due()
            target = self.config.target_metric
            if (target is not None and record.state is TrialState.SUCCEEDED
                    and record.metric is not None
                    and self.objective.reached(record.metric, target)):
                self._halt(ExperimentState.DONE,
                           f"trial {record.id} reached target_metric={target}")

    def _retry_wanted(self, record: TrialRecord) -> bool:
        cfg = self.config
        if (record.attempt >= self._attempt0.get(record.id, 0) + cfg.retry
                or record.state.value not in cfg.retry_on or self._budget.stopping):
            return False
        self._retries.append(record)
        self._retry_wakeup.set()
        return True

    def _watch_failures(self, record: TrialRecord) -> None:
        """Stop when the first trials all fail with the same error: the evaluator (or the
        space) is broken, and every further trial would repeat it (NNI's one-argument
        ``fn(model)`` evaluator failed all 20 trials of a search that ended DONE)."""
        limit, watch = self.config.max_identical_failures, self._failure_watch
        if limit is None or watch is None or self._budget.stopping:
            return
        if record.state is not TrialState.FAILED or record.error is None:
            self._failure_watch = None  # a trial got through: failures are the trials'
            return
        watch.append((record.error.type, record.error.message))
        if len(set(watch)) > 1:
            self._failure_watch = None
            return
        if len(watch) < limit:
            return
        self._failure_watch = None
        message = (
            f"the first {limit} trials of experiment {self.id} all FAILED with the same "
            f"error, {record.error}; the experiment stopped instead of repeating it. "
            f"{_SIGNATURE} Fix the cause and start a new experiment (see `nasflow trials "
            f"{self.id} --state FAILED` for the tracebacks), or set "
            "ExperimentConfig(max_identical_failures=None) to run on whatever fails."
        )
        _log.error("%s\nThe first trial's traceback:\n%s", message, record.error.traceback)
        self._repeated_failure = RepeatedFailureError(message, record.error, limit)
        self._halt(ExperimentState.FAILED, message)

    def _penalise(self, record: TrialRecord) -> None:
        if (self.config.penalty is not None and record.metric is None
                and record.state in (TrialState.FAILED, TrialState.TIMEOUT)):
            record.metric = self.config.penalty

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
            raise unwrap(group) from None

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

    # --- resume -----------------------------------------------------------------------------

    @classmethod
    def restore(
        cls,
        id_or_path: str | os.PathLike[str],
        *,
        space: Any = None,
        evaluator: Evaluator | Callable[..., Any] | None = None,
        strategy: Strategy | None = None,
        config: ExperimentConfig | None = None,
        scheduler: Scheduler | None = None,
        home: str | os.PathLike[str] | None = None,
    ) -> Experiment:
        """An experiment rebuilt from its directory, ready to ``run()`` on from where it
        stopped (subscribe to ``events()`` first if you like).

        The space, evaluator, strategy and scheduler are unpickled from the directory
        unless given. A given ``config`` must equal the stored one (but for ``home`` and
        ``token``), and a given space must have the same labels and domains: a difference
        raises ``ResumeError`` listing it, never a silent continue. After the run, every
        completed trial is kept once and never re-run; trials in flight when it stopped
        are re-attached (manager workers still running them) or run again under their own
        id (``attempt`` + 1); new trial ids continue after the last one; the strategy goes
        on from its last snapshot plus the trials that ended after it.
        """
        return restore_experiment(cls, id_or_path, space=space, evaluator=evaluator,
                                  strategy=strategy, config=config, scheduler=scheduler,
                                  home=home)

    @classmethod
    async def resume(cls, id_or_path: str | os.PathLike[str], **kwargs: Any) -> Experiment:
        """``restore(id_or_path, **kwargs)`` and run it to its end; returns it."""
        exp = cls.restore(id_or_path, **kwargs)
        await exp.run()
        return exp

    def __repr__(self) -> str:
        return (f"Experiment(id={self.id!r}, state={self.state.value}, "
                f"trials={len(self._records)})")


class _RunCall(Coroutine[Any, Any, None]):
    """What ``exp.run()`` returns: a coroutine that makes the run's coroutine only once it
    is first awaited, so one that never is can say how to run (``exp.run()`` written as
    a statement in sync code, the NNI habit, otherwise only gets Python's bare warning)."""

    __slots__ = ("_closed", "_coro", "_exp", "_progress")

    def __init__(self, exp: Experiment, progress: bool = True) -> None:
        self._exp = exp
        self._progress = progress
        self._coro: Coroutine[Any, Any, None] | None = None
        self._closed = False

    def _inner(self) -> Coroutine[Any, Any, None]:
        if self._coro is None:
            self._coro = self._exp._run_shown(self._progress)
        return self._coro

    def send(self, value: Any) -> Any:
        return self._inner().send(value)

    def throw(self, *args: Any) -> Any:
        return self._inner().throw(*args)

    def close(self) -> None:
        self._closed = True
        if self._coro is not None:
            self._coro.close()

    def __await__(self) -> Generator[Any, None, None]:
        return self._inner().__await__()

    def __del__(self) -> None:
        if self._coro is None and not self._closed:
            warnings.warn(
                f"exp.run() of experiment {self._exp.id} was never awaited, so nothing ran: "
                "exp.run() is a coroutine. From sync code use nf.run(exp); in async code "
                "(a notebook cell, an async def) use await exp.run()",
                RuntimeWarning, stacklevel=2,
            )


_SIGNATURE = (
    "An evaluator is called as `fn(model, trial)` (def or async def; NNI's one-argument "
    "`fn(model)` gets a TypeError), or is an nf.Evaluator whose "
    "`evaluate(self, model, trial)` returns the metric or reports it with "
    "trial.report(value, step=...)."
)


def _flip(direction: str) -> str:
    return "minimize" if direction == "maximize" else "maximize"


def _copy(record: TrialRecord) -> TrialRecord:
    return TrialRecord(
        id=record.id, sample=dict(record.sample), hash=record.hash, state=record.state,
        metric=record.metric, metrics=record.metrics, submitted_at=record.submitted_at,
        started_at=record.started_at, ended_at=record.ended_at, error=record.error,
        attempt=record.attempt, directory=record.directory,
    )
