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
from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio
from anyio.abc import TaskGroup

from nasflow._kernel import ExperimentState, Objective, TrialRecord, TrialState
from nasflow._results import Results
from nasflow.config import ExperimentConfig
from nasflow.engine import Engine, EngineSetup, import_manager_modules
from nasflow.evaluator import Evaluator, FunctionalEvaluator
from nasflow.events import Event, EventHub, EventStream
from nasflow.exceptions import ChangeRefusedError, ConfigError, NasflowError
from nasflow.experiment._changes import ChangeDesk, RunChanges, check_update, describe_update
from nasflow.experiment._feed import FEED_OPS, Feed
from nasflow.experiment._ledger import TrialLedger
from nasflow.experiment._notebook import NotebookProgress, in_kernel
from nasflow.experiment._ownership import take_ownership
from nasflow.experiment._policy import TrialPolicy
from nasflow.experiment._resume import (
    ResumePlan,
    check_space,
    load_for_resume,
    warm_start_results,
)
from nasflow.experiment._run import Run, unwrap
from nasflow.experiment._setup import RunSetup, StopSwitch
from nasflow.integrations.tensorboard import TensorBoardSink
from nasflow.space import as_search_space
from nasflow.store import (
    ExperimentLock,
    ExperimentStore,
    experiment_dir,
    new_experiment_id,
    valid_id,
)
from nasflow.strategy import Budget, Scheduler, Strategy

__all__ = ["Experiment"]

_log = logging.getLogger("nasflow.experiment")


class _Keep:
    """A ``restore`` argument not given: the stored value stays."""

    def __repr__(self) -> str:
        return "<as stored>"


_KEEP = _Keep()


class Experiment(Results):
    """A search: ``Experiment(space, evaluator, strategy, config)``; ``await exp.run()``.

    ``space`` is a ``nasflow.nn.ModelSpace`` (each trial gets a frozen ``torch.nn.Module``)
    or a torch-free dict of choices / ``SearchSpace`` (each trial gets ``model=None`` and
    reads ``trial.sample``). ``evaluator`` is an ``Evaluator`` or a plain function
    ``fn(model, trial)``. ``scheduler`` stops trials early (``nf.strategy.ASHA``, ...);
    ``engine`` replaces the configured training service (a function of an
    ``EngineSetup``, e.g. a ``nasflow.testing.SimulatedEngine``). ``warm_start`` (an
    experiment id or directory, or several) gives the strategy the results of those
    experiments' succeeded trials before it proposes anything, as ``add_results`` does
    (stored with origin ``"imported"``, not run, not counted toward ``max_trials``).
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
        warm_start: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | None = None,
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

        self._budget = Budget(self.config.max_trials, None)
        self._ledger = TrialLedger(self._budget, self._trial_folder)  # the trial table
        self._stop = StopSwitch(self._budget)
        self._hub = EventHub()
        # the first sink: the trial table follows every event (a run's own follower, that
        # the policy follows too, takes its place while the run goes on)
        self._hub.add_sink(self._ledger.apply)
        self._tensorboard: TensorBoardSink | None = None
        if self.config.tensorboard:
            self._tensorboard = TensorBoardSink(self._trial_directory)
            self._hub.add_sink(self._tensorboard)
        self._feed = Feed()  # what enqueue/add_results gave, until the run takes it
        self._given: list[tuple[str, Any]] = []  # ... and to record when the store opens
        self._run: Run | None = None  # the run going on (or the last one)
        self._plan: ResumePlan | None = None  # set by restore()
        self._lock: ExperimentLock | None = None  # held while this object runs the experiment
        self._finished = anyio.Event()
        self._tg: TaskGroup | None = None
        self._changes = ChangeDesk()  # the one path of every runtime change (_changes.py)
        self._changes.register("update", self._change_update)
        self._changes.register("kill", self._change_kill)
        for op in FEED_OPS:
            self._changes.register(op, self._desk_feed(op))
        if self.config.store:
            self.directory = experiment_dir(self.id, self.config.home)
            """The experiment's directory (its store, saved objects and trial folders)."""
        else:
            # no store: trial folders go to a temporary directory, created on first use
            # and removed with the experiment object
            self.directory = Path(tempfile.gettempdir()) / f"nasflow-{self.id}-{os.getpid()}"
            weakref.finalize(self, shutil.rmtree, self.directory, ignore_errors=True)
        if warm_start is not None:
            sources = ([warm_start] if isinstance(warm_start, str | os.PathLike)
                       else list(warm_start))
            for source in sources:
                self._feed.add(warm_start_results(source, self.search_space, self.objective,
                                                  self.config.home),
                               self._ledger.seen)

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
        # one run at a time, atomically (two resumes racing): see _ownership.py
        self._lock = take_ownership(
            self.id, self.directory, store=self.config.store,
            restored_meta=self._plan.meta if self._plan is not None else None)
        self.state = ExperimentState.RUNNING
        cfg = self.config
        run = self._run = Run(
            RunSetup(id=self.id, name=self.name, directory=self.directory, config=cfg,
                     space=self.space, search_space=self.search_space,
                     evaluator=self.evaluator, strategy=self.strategy,
                     scheduler=self.scheduler, objective=self.objective,
                     engine_factory=self.engine_factory,
                     trial_directory=self._trial_directory),
            ledger=self._ledger, hub=self._hub,
            policy=TrialPolicy(self.objective, self.scheduler, experiment_id=self.id,
                               retry=cfg.retry, retry_on=tuple(cfg.retry_on),
                               penalty=cfg.penalty,
                               max_identical_failures=cfg.max_identical_failures,
                               target_metric=cfg.target_metric),
            stop=self._stop, halt=self._halt, on_stop=self.stop, status=self._status,
            settled=self._settled, finished=self._finished, closed=self._release_lock,
            tensorboard=self._tensorboard, plan=self._plan, changes=self._changes,
            feed=self._feed, given=self._given,
        )
        self._hub.replace_sink(self._ledger.apply, run.follow)  # an Experiment runs once
        try:
            await run.run()
        finally:
            self._release_lock()  # _finish() gave it up already, unless _run() never began
            self._finished.set()

    def _release_lock(self) -> None:
        """Give up the experiment's lock (``_ownership.py``), once its store is closed."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _settled(self, state: ExperimentState, reason: str) -> None:
        self.state, self.end_reason = state, reason

    @property
    def _store(self) -> ExperimentStore | None:
        """The open store of the run going on (tests flush it), or ``None``."""
        return self._run.store if self._run is not None else None

    def _status(self) -> dict[str, Any]:
        return {"id": self.id, "state": self.state.value, "trials": len(self._ledger),
                "running": self._ledger.inflight, "best": self._best_metric()}

    # --- events ---------------------------------------------------------------------------


    def events(self, *types: type[Event], buffer: int | None = None) -> EventStream:
        """Every event from now on (only ``types`` if given), as an async iterator that
        ends after ``ExperimentFinished``. Subscribe before ``run()`` to see everything.
        A subscriber that falls ``buffer`` events behind makes the search wait for it."""
        return self._hub.subscribe(*types, buffer=buffer or self.config.event_buffer)

    # --- control --------------------------------------------------------------------------

    def _halt(self, state: ExperimentState, reason: str) -> None:
        if self._stop.request is None:
            self.end_reason = reason
        self._stop(state, reason)

    def _kill(self, trial_id: int, state: TrialState, reason: str) -> bool:
        return self._run is not None and self._run.kill(trial_id, state, reason)

    def enqueue(self, samples: Mapping[str, Any] | Iterable[Mapping[str, Any]]
                ) -> list[dict[str, Any]]:
        """Evaluate these samples (one dict or several) before the strategy's next
        proposals, like Optuna's ``enqueue_trial`` or NNI's customised trial; before
        ``run()`` or while it runs. Each counts toward ``max_trials`` and ends up in the
        strategy's results like its own trials (``origin`` ``"enqueued"``).

        Every sample is checked first: one that does not fit the space raises
        ``SampleValidationError`` naming it, its label and value, and none is queued.
        Samples already in the history (or queued) are dropped, like a repeated
        proposal. Returns the samples queued (canonical form).
        """
        return self._give("enqueue", samples)

    def add_results(self, results: Mapping[str, Any] | Iterable[Mapping[str, Any]]
                    ) -> list[dict[str, Any]]:
        """Known results the strategy learns from without running them, like Optuna's
        ``add_trial``: each ``{"sample": {...}, "metric": value}`` (``value`` as the
        evaluator would return it; a dict with every objective when there are several)
        is stored as a trial that ended SUCCEEDED, with origin ``"added"``, the next id,
        and not counted toward ``max_trials``; before ``run()`` or while it runs.

        Every result is checked first: a sample that does not fit the space raises
        ``SampleValidationError`` naming the label and value, a bad metric
        ``MetricError``, and none is added. Results whose samples are in the history
        already are dropped. Returns the samples added.
        """
        return [e["sample"] for e in self._give("add_results", results)]

    def _give(self, op: str, entries: Any) -> list[dict[str, Any]]:
        """Check and queue; keep what was queued in the store (``changes``), so that a
        resume after ``kill -9`` takes what had not run yet."""
        result = self._feed_change(op, entries)
        if self._run is not None and self.state is ExperimentState.RUNNING \
                and result["entries"]:
            # the desk's path is async (it waits for the commit); this call is not
            self._run.record_given(op, result["entries"], result)
        return list(result["entries"])

    def _feed_change(self, op: str, entries: Any) -> dict[str, Any]:
        """``enqueue``/``add_results``, checked and queued; recorded when the store opens
        if the run has not begun."""
        self._check_open(op)
        run = self._run
        if run is not None and self.state is ExperimentState.RUNNING:
            return run.give(op, entries)
        queued = self._feed.give(op, entries, self.search_space, self.objective,
                                 self._ledger.seen)
        if queued:
            self._given.append((op, queued))
        return {"queued": len(queued), "entries": queued, "message": f"{len(queued)} queued"}

    def _desk_feed(self, op: str) -> Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]:
        """The ``ChangeDesk`` handler of ``op`` (``nasflow enqueue``/``import`` while it
        runs, through the control endpoint): ``{"entries": [...]}``."""
        async def change(args: dict[str, Any]) -> dict[str, Any]:
            try:
                return self._feed_change(op, args.get("entries"))
            except NasflowError as exc:
                raise ChangeRefusedError(op, args, str(exc)) from exc
        return change

    def _check_open(self, op: str) -> None:
        if self.state not in (ExperimentState.CREATED, ExperimentState.RUNNING):
            raise NasflowError(
                f"experiment {self.id} has ended ({self.state.value}); to {op} there, "
                f"continue it: exp = nf.Experiment.restore({self.id!r}, max_trials=...)")

    async def update(self, **fields: Any) -> dict[str, Any]:
        """Change ``concurrency``, ``max_trials`` and/or ``max_duration`` (``None``: no
        limit) while the experiment runs, e.g. ``await exp.update(concurrency=8)``.

        Takes effect at once: more concurrency starts trials now (the engine spawns
        runners or workers, or asks its manager for a bigger share), less lets running
        trials finish and starts none until below the limit. Recorded in the store (``nasflow
        show`` lists it) and kept by a resume. ``ChangeRefusedError`` (nothing changed) for an
        unknown field, ``concurrency < 1``, or a budget below what already ran. Returns
        ``{"changed": {field: [old, new]}, "message": ...}``. The same change as ``nasflow
        update ID --concurrency 8``."""
        return await self._changes.apply("update", fields, source="api")

    async def kill_trial(self, trial_id: int, *, reason: str | None = None) -> dict[str, Any]:
        """End one running trial: it ends CANCELED with ``reason`` (default "killed by the
        user"), is never retried nor run again on resume, and the search goes on. A trial
        that has already ended is left as it is (``{"killed": False, "message": ...}``);
        an unknown id raises ``ChangeRefusedError``. The same change as ``nasflow trial kill ID
        N`` and the dashboard's kill button."""
        args: dict[str, Any] = {"trial": trial_id}
        if reason is not None:
            args["reason"] = reason
        return await self._changes.apply("kill", args, source="api")

    async def _change_update(self, args: dict[str, Any]) -> dict[str, Any]:
        run = self._running("update", args)
        if run is None:  # not started yet: the run starts with the new config
            old = self.config
            self.config = check_update(args, config=old, submitted=self._budget.submitted,
                                       elapsed=0.0)
            self._budget.max_trials = self.config.max_trials
            return describe_update(old, self.config)
        result = await RunChanges(run).update(args)
        self.config = run.config
        return result

    async def _change_kill(self, args: dict[str, Any]) -> dict[str, Any]:
        run = self._running("kill", args)
        if run is None:
            raise ChangeRefusedError("kill", args, f"experiment {self.id} has not started; no "
                                "trial runs")
        return await RunChanges(run).kill(args)

    def _running(self, op: str, args: dict[str, Any]) -> Run | None:
        """The run a change applies to; ``None`` before the first; refused after it."""
        if self.state is ExperimentState.CREATED:
            return None
        run = self._run
        if self.state is not ExperimentState.RUNNING or run is None or self._stop.request:
            raise ChangeRefusedError(op, args, f"experiment {self.id} is not running "
                                f"({self.state.value}{', stopping' if self._stop.request else ''})"
                                "; resume it to change it (nasflow resume ID)")
        return run

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
            _copy(r) for r in self._ledger if wanted is None or r.state in wanted
        ]

    def _space_for_instances(self) -> Any:
        return self.space

    def _best_metric(self) -> float | None:
        best = self.best()
        return None if best is None else best.metric

    # --- files ----------------------------------------------------------------------------

    def _trial_directory(self, trial_id: int) -> Path:
        return Path(self._trial_folder(trial_id))

    def _trial_folder(self, trial_id: int) -> str:
        # as the ledger's records keep it, once per trial: a string, since pathlib's two
        # joins cost as much as a quarter of what B1 spends in the ledger
        return f"{self.directory}{os.sep}trials{os.sep}{trial_id}"

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
        max_trials: int | _Keep | None = _KEEP,
        max_duration: float | str | _Keep | None = _KEEP,
        concurrency: int | _Keep = _KEEP,
    ) -> Experiment:
        """An experiment rebuilt from its directory, ready to ``run()`` on from where it
        stopped (subscribe to ``events()`` first if you like).

        The space, evaluator, strategy and scheduler are unpickled from the directory
        unless given. A given ``config`` must equal the stored one but for ``home``,
        ``token`` and the budget and concurrency fields (``max_trials``, ``max_duration``,
        ``concurrency``, which may also be given on their own, e.g. ``max_trials=300`` to
        continue a DONE experiment), and a given space must have the same labels and
        domains: a difference raises ``ResumeError`` listing it, never a silent continue
        (so does a ``max_trials`` below the trials already run). After the run, every
        completed trial is kept once and never re-run; trials in flight when it stopped
        are re-attached (manager workers still running them) or run again under their own
        id (``attempt`` + 1); new trial ids continue after the last one; the strategy goes
        on from its last snapshot plus the trials that ended after it.
        """
        budget = {k: v for k, v in (("max_trials", max_trials), ("max_duration", max_duration),
                                    ("concurrency", concurrency)) if not isinstance(v, _Keep)}
        r = load_for_resume(id_or_path, space=space, evaluator=evaluator,
                            strategy=strategy, config=config, scheduler=scheduler, home=home,
                            budget=budget)
        exp = cls(r.space, r.evaluator, r.strategy, r.config, name=r.name, id=r.id,
                  scheduler=r.scheduler)
        check_space(r.plan, exp.search_space)
        exp.directory = r.directory
        exp._plan = r.plan
        exp._refeed(r.plan)
        return exp

    def _refeed(self, plan: ResumePlan) -> None:
        """Queue again what was enqueued and added before (what ran or was added since
        is dropped when the run takes it, once the ledger holds the stored trials)."""
        never: Callable[[str], bool] = lambda h: False  # noqa: E731
        for op, entries in plan.fed:
            try:
                self._feed.give(op, entries, self.search_space, self.objective, never)
            except NasflowError as exc:  # a space or objective given anew refuses them
                _log.warning("experiment %s: what was fed with %s before is not taken "
                             "again: %s", self.id, op, exc)

    @classmethod
    async def resume(cls, id_or_path: str | os.PathLike[str], **kwargs: Any) -> Experiment:
        """``restore(id_or_path, **kwargs)`` and run it to its end; returns it."""
        exp = cls.restore(id_or_path, **kwargs)
        await exp.run()
        return exp

    def __repr__(self) -> str:
        return (f"Experiment(id={self.id!r}, state={self.state.value}, "
                f"trials={len(self._ledger)})")


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


def _flip(direction: str) -> str:
    return "minimize" if direction == "maximize" else "maximize"


def _copy(record: TrialRecord) -> TrialRecord:
    return TrialRecord(
        id=record.id, sample=dict(record.sample), hash=record.hash, state=record.state,
        metric=record.metric, metrics=record.metrics, submitted_at=record.submitted_at,
        started_at=record.started_at, ended_at=record.ended_at, error=record.error,
        attempt=record.attempt, directory=record.directory, origin=record.origin,
    )
