"""The ``StrategyContext`` an experiment hands to its strategy."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

import anyio

from nasflow._kernel import INTERRUPTED, Objective, TrialError, TrialRecord, TrialState
from nasflow.engine import Engine, TrialSpec
from nasflow.events import (
    Event,
    StrategyProgress,
    TrialEnded,
    TrialSubmitted,
)
from nasflow.exceptions import BudgetExhausted
from nasflow.experiment._feed import Feed, KnownResult, known_trial_events
from nasflow.experiment._ledger import TrialLedger
from nasflow.space import Sample, SearchSpace, sample_hash
from nasflow.strategy import (
    ForwardsOneShot,
    FrozenTrial,
    OneShotContext,
    StrategyContext,
    TrialHandle,
)

__all__ = ["ExperimentContext", "ExperimentOneShot", "RunPort"]


class RunPort(Protocol):
    """What the context asks of the run it belongs to (``Run`` is one)."""

    async def publish(self, event: Event, *, wait: bool = True) -> None:
        """Publish a trial event (the ledger follows it)."""

    def kill(self, trial_id: int, state: TrialState, reason: str) -> bool:
        """Stop a running trial."""

    def snapshot_due(self) -> None:
        """The strategy moved on: snapshot it at the store's next commit."""


class ExperimentContext(ForwardsOneShot, StrategyContext):
    """A strategy's window on an experiment (see ``StrategyContext``): it reads the
    ``TrialLedger`` and acts through the ``RunPort``; it writes neither. Records go out
    as ``FrozenTrial`` copies; one-shot needs are on ``oneshot``."""

    def __init__(self, run: RunPort, ledger: TrialLedger, *, engine: Engine,
                 clock: Callable[[], float], space: SearchSpace, objective: Objective,
                 model_space: Any, evaluator: Any, directory: Path,
                 feed: Feed | None = None,
                 ray: tuple[str | None, dict[str, float]] | None = None) -> None:
        self._run = run
        self._ledger = ledger
        self._feed = feed if feed is not None else Feed()
        self._engine = engine
        self._clock = clock
        self.space = space
        self.objective = objective
        self.budget = ledger.budget
        self.oneshot = ExperimentOneShot(run, ledger, clock=clock, space=space,
                                         objective=objective,
                                         model_space=model_space, evaluator=evaluator,
                                         directory=directory, ray=ray)
        """What one-shot strategies need besides (``oneshot_context(ctx)``)."""
        # every ended trial, until the strategy takes it (references: a strategy that never
        # reads results costs a pointer per trial)
        self._inbox: deque[TrialRecord] = deque()
        self.taken = 0
        """How many ended trials the strategy has taken (``take_results``/``next_result``);
        snapshots record it, so a resumed strategy is handed the ones it had not seen."""
        self._changed = anyio.Event()  # set whenever a trial ends
        self._waiters: dict[int, anyio.Event] = {}

    # --- fed by the run (synchronously, from its event sink) --------------------------------

    def restore(self, taken: int, unseen: list[TrialRecord]) -> None:
        """After a resume: the strategy had taken ``taken`` results; ``unseen`` ended since."""
        self.taken = taken
        self._inbox.extend(unseen)

    def deliver(self, record: TrialRecord) -> None:
        """A trial ended (for good: not an attempt that runs again)."""
        self._inbox.append(record)
        self._changed.set()
        waiter = self._waiters.pop(record.id, None)
        if waiter is not None:
            waiter.set()

    def capacity_changed(self) -> None:
        """The engine's capacity changed (``exp.update``): a submission waiting for room
        looks again."""
        self._changed.set()

    # --- the contract (records are handed out frozen: the ledger's stay its own) --------

    async def wait_capacity(self) -> None:
        await self._serve_queue()

    async def _serve_queue(self) -> dict[str, int]:
        """Wait for capacity, submitting enqueued samples (``exp.enqueue``) first, while
        the budget allows; ``{hash: trial id}`` of those submitted."""
        started: dict[str, int] = {}
        engine, ledger, feed = self._engine, self._ledger, self._feed
        while True:
            # the one capacity wait of a run: the strategy's submissions, retries, resumed
            # and enqueued trials all come through here. The engine is the authority on
            # capacity (it may change while the run goes on); trials submitted here but not
            # yet held by the engine count too. (Inline: it runs two or three times a trial.)
            await engine.wait_capacity()
            if ledger.inflight >= engine.capacity:
                if self._changed.is_set():
                    self._changed = anyio.Event()
                await self._changed.wait()
                continue
            if not feed.samples or self.budget.exhausted:  # nothing enqueued: most calls
                return started
            queued = feed.next_sample(ledger.seen)
            if queued is None:
                return started
            sample, h = queued
            started[h] = (await self._start(sample, h, origin="enqueued")).id

    async def submit(self, sample: Sample) -> TrialHandle:
        if self.budget.exhausted:
            raise BudgetExhausted(self._why_exhausted())
        sample = self.space.canonicalize(sample)
        h = sample_hash(sample)
        started = await self._serve_queue()
        if h in started:  # the user enqueued it too, and it was just submitted: that trial
            return TrialHandle(self, started[h], sample, h)
        if self.budget.exhausted:
            raise BudgetExhausted(self._why_exhausted())
        return await self._start(sample, h)

    async def _start(self, sample: Sample, h: str, origin: str | None = None) -> TrialHandle:
        trial_id = self._ledger.new_id()
        await self._run.publish(TrialSubmitted(time=self._clock(), trial_id=trial_id,
                                               sample=sample, hash=h, origin=origin))
        try:
            await self._engine.submit(TrialSpec(trial_id, sample))
        except BaseException:
            # never handed to the engine (the search is stopping): do not leave it WAITING,
            # and do not lose it: interrupted, a resume (or an extension) runs it, as it
            # does a trial the stop interrupted -- an enqueued sample is not dropped
            with anyio.CancelScope(shield=True):
                await self._run.publish(TrialEnded(
                    time=self._clock(), trial_id=trial_id, state=TrialState.CANCELED,
                    error=TrialError(INTERRUPTED,
                                     "the search stopped before the trial started"),
                ), wait=False)
            raise
        return TrialHandle(self, trial_id, sample, h)

    def _why_exhausted(self) -> str:
        if self.budget.stopping:
            return "the experiment is stopping"
        return f"max_trials={self.budget.max_trials} trials were submitted"

    def take_results(self) -> list[FrozenTrial]:
        out = [FrozenTrial.of(r) for r in self._inbox]
        self._inbox.clear()
        self.taken += len(out)
        return out

    async def next_result(self) -> FrozenTrial | None:
        while not self._inbox:
            if self._ledger.inflight == 0 and not self._ledger.retries:
                return None
            if self._changed.is_set():
                self._changed = anyio.Event()
            await self._changed.wait()
        self.taken += 1
        return FrozenTrial.of(self._inbox.popleft())

    async def wait_trial(self, trial_id: int) -> FrozenTrial:
        record = self._ledger[trial_id]
        if not record.state.finished:
            waiter = self._waiters.setdefault(trial_id, anyio.Event())
            await waiter.wait()
        return FrozenTrial.of(self._ledger[trial_id])

    def history(self, states: Iterable[TrialState] | None = None) -> list[FrozenTrial]:
        return [FrozenTrial.of(r) for r in self._ledger.history(states)]

    def kill(self, trial_id: int, state: TrialState = TrialState.CANCELED,
             reason: str = "") -> bool:
        return self._run.kill(trial_id, state, reason or "stopped by the strategy")

    def seen(self, sample: Sample) -> bool:
        return self._ledger.seen(sample_hash(self.space.canonicalize(sample)))

    @property
    def distinct_submitted(self) -> int:
        return self._ledger.distinct

    # --- beyond the contract: what the wider, earlier contract had -------------------------

    @property
    def capacity(self) -> int:
        """How many trials may run at once now: the engine's capacity (a manager's grant;
        it may change while the search runs)."""
        return self._engine.capacity

    def running(self) -> list[FrozenTrial]:
        """Trials submitted and not yet ended."""
        return [FrozenTrial.of(r) for r in self._ledger.running()]


class ExperimentOneShot(OneShotContext):
    """What a one-shot strategy needs of the experiment (``oneshot_context(ctx)``)."""

    def __init__(self, run: RunPort, ledger: TrialLedger, *, clock: Callable[[], float],
                 space: SearchSpace, objective: Objective, model_space: Any, evaluator: Any,
                 directory: Path, ray: tuple[str | None, dict[str, float]] | None = None
                 ) -> None:
        self._run = run
        self.ray = ray
        self._ledger = ledger
        self._clock = clock
        self._space = space
        self._objective = objective
        self._directory = directory
        self.model_space = model_space
        self.evaluator = evaluator

    async def record(self, sample: Sample, value: Any, *,
                     intermediates: Iterable[tuple[int, Any]] = ()) -> FrozenTrial:
        sample = self._space.canonicalize(sample)
        primary, normal = self._objective.parse(value)
        parsed = [(step, *self._objective.parse(v)) for step, v in intermediates]
        trial_id = self._ledger.new_id(counted=False)
        known = KnownResult(sample, sample_hash(sample), primary, normal, None)
        for event in known_trial_events(known, trial_id, self._clock(), parsed):
            await self._run.publish(event)
        return FrozenTrial.of(self._ledger[trial_id])

    async def progress(self, step: int | None = None, **values: Any) -> None:
        await self._run.publish(StrategyProgress(time=self._clock(), step=step, values=values))
        self._run.snapshot_due()  # a strategy that reports progress has moved on: record it

    def _checkpoint_path(self, name: str) -> Path:
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"a checkpoint name must be a plain file name, got {name!r}")
        return self._directory / "strategy" / f"{name}.pt"

    async def save_checkpoint(self, name: str, obj: Any) -> None:
        path = self._checkpoint_path(name)

        def save() -> None:
            import torch

            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            torch.save(obj, tmp)
            tmp.replace(path)

        await anyio.to_thread.run_sync(save)
        self._run.snapshot_due()

    async def load_checkpoint(self, name: str) -> Any | None:
        path = self._checkpoint_path(name)

        def load() -> Any | None:
            if not path.is_file():
                return None
            import torch

            return torch.load(path, weights_only=False)

        return await anyio.to_thread.run_sync(load)
