"""The ``StrategyContext`` an experiment hands to its strategy."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from nasflow._types import TrialError, TrialRecord, TrialState
from nasflow.engine import TrialSpec
from nasflow.events import (
    FinalMetric,
    IntermediateMetric,
    StrategyProgress,
    TrialEnded,
    TrialStarted,
    TrialSubmitted,
)
from nasflow.exceptions import BudgetExhausted
from nasflow.space import Sample, sample_hash
from nasflow.strategy import StrategyContext, TrialHandle

if TYPE_CHECKING:
    from nasflow.experiment import Experiment

__all__ = ["ExperimentContext"]


class ExperimentContext(StrategyContext):
    """A strategy's window on an experiment (see ``StrategyContext``)."""

    def __init__(self, exp: Experiment) -> None:
        self._exp = exp
        self.space = exp.search_space
        self.objective = exp.objective
        self.budget = exp._budget
        self.model_space = exp.space
        self.evaluator = exp.evaluator
        # every ended trial, until the strategy takes it (references: a strategy that never
        # reads results costs a pointer per trial)
        self._inbox: deque[TrialRecord] = deque()
        self.taken = 0
        """How many ended trials the strategy has taken (``take_results``/``next_result``);
        snapshots record it, so a resumed strategy is handed the ones it had not seen."""
        self._changed = anyio.Event()  # set whenever a trial ends
        self._waiters: dict[int, anyio.Event] = {}

    # --- fed by the experiment (event sinks, synchronous) ---------------------------------

    def _restore(self, taken: int, unseen: list[TrialRecord]) -> None:
        """After a resume: the strategy had taken ``taken`` results; ``unseen`` ended since."""
        self.taken = taken
        self._inbox.extend(unseen)

    def _ended(self, record: TrialRecord) -> None:
        self._inbox.append(record)
        self._changed.set()
        waiter = self._waiters.pop(record.id, None)
        if waiter is not None:
            waiter.set()

    # --- the contract ---------------------------------------------------------------------

    @property
    def capacity(self) -> int:
        engine = self._exp._engine  # the one authority on capacity, once it runs
        return engine.capacity if engine is not None else self._exp._capacity

    async def wait_capacity(self) -> None:
        exp = self._exp
        while True:
            engine = exp._engine
            if engine is not None:
                await engine.wait_capacity()
            # trials submitted here but not yet held by the engine count too
            if exp._inflight < self.capacity:
                return
            if self._changed.is_set():
                self._changed = anyio.Event()
            await self._changed.wait()

    async def submit(self, sample: Sample) -> TrialHandle:
        exp = self._exp
        if self.budget.exhausted:
            raise BudgetExhausted(self._why_exhausted())
        sample = self.space.canonicalize(sample)
        await self.wait_capacity()
        if self.budget.exhausted:
            raise BudgetExhausted(self._why_exhausted())
        trial_id = exp._next_id
        exp._next_id += 1
        h = sample_hash(sample)
        self.budget.submitted += 1
        await exp._publish(TrialSubmitted(time=exp._clock(), trial_id=trial_id, sample=sample,
                                          hash=h))
        try:
            await exp._engine_submit(TrialSpec(trial_id, sample))
        except BaseException:
            # never handed to the engine (the search is stopping): do not leave it WAITING
            with anyio.CancelScope(shield=True):
                await exp._publish(TrialEnded(
                    time=exp._clock(), trial_id=trial_id, state=TrialState.CANCELED,
                    error=TrialError("Cancelled", "the search stopped before the trial started"),
                ), wait=False)
            raise
        return TrialHandle(self, trial_id, sample, h)

    def _why_exhausted(self) -> str:
        if self.budget.stopping:
            return "the experiment is stopping"
        return f"max_trials={self.budget.max_trials} trials were submitted"

    def take_results(self) -> list[TrialRecord]:
        out = list(self._inbox)
        self._inbox.clear()
        self.taken += len(out)
        return out

    async def next_result(self) -> TrialRecord | None:
        while not self._inbox:
            if self._exp._inflight == 0 and not self._exp._retries:
                return None
            if self._changed.is_set():
                self._changed = anyio.Event()
            await self._changed.wait()
        self.taken += 1
        return self._inbox.popleft()

    async def wait_trial(self, trial_id: int) -> TrialRecord:
        record = self._exp._records[trial_id]
        if not record.state.finished:
            waiter = self._waiters.setdefault(trial_id, anyio.Event())
            await waiter.wait()
        return self._exp._records[trial_id]

    def history(self, states: Iterable[TrialState] | None = None) -> list[TrialRecord]:
        wanted = set(states) if states is not None else None
        return [
            r for r in self._exp._records.values()
            if r.state.finished and (wanted is None or r.state in wanted)
        ]

    def running(self) -> list[TrialRecord]:
        return [r for r in self._exp._records.values() if not r.state.finished]

    def kill(self, trial_id: int, state: TrialState = TrialState.CANCELED,
             reason: str = "") -> bool:
        return self._exp._kill(trial_id, state, reason or "stopped by the strategy")

    def seen(self, sample: Sample) -> bool:
        return sample_hash(self.space.canonicalize(sample)) in self._exp._hashes

    @property
    def distinct_submitted(self) -> int:
        return len(self._exp._hashes)

    # --- strategies that evaluate on their own ----------------------------------------------

    async def record(self, sample: Sample, value: Any, *,
                     intermediates: Iterable[tuple[int, Any]] = ()) -> TrialRecord:
        exp = self._exp
        sample = self.space.canonicalize(sample)
        primary, normal = self.objective.parse(value)
        parsed = [(step, *self.objective.parse(v)) for step, v in intermediates]
        trial_id = exp._next_id
        exp._next_id += 1
        now = exp._clock()
        await exp._publish(TrialSubmitted(time=now, trial_id=trial_id, sample=sample,
                                          hash=sample_hash(sample)))
        await exp._publish(TrialStarted(time=now, trial_id=trial_id))
        for step, metric, v in parsed:
            await exp._publish(IntermediateMetric(time=now, trial_id=trial_id, step=step,
                                                  value=v, metric=metric))
        await exp._publish(FinalMetric(time=now, trial_id=trial_id, value=normal,
                                       metric=primary))
        await exp._publish(TrialEnded(time=now, trial_id=trial_id, state=TrialState.SUCCEEDED))
        return exp._records[trial_id]

    async def progress(self, step: int | None = None, **values: Any) -> None:
        await self._exp._publish(StrategyProgress(time=self._exp._clock(), step=step,
                                                   values=values))
        self._snapshot_due()  # a strategy that reports progress has moved on: record it

    def _snapshot_due(self) -> None:
        if self._exp._store is not None:
            self._exp._store.snapshot_due()

    def _checkpoint_path(self, name: str) -> Path:
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"a checkpoint name must be a plain file name, got {name!r}")
        return self._exp.directory / "strategy" / f"{name}.pt"

    async def save_checkpoint(self, name: str, obj: Any) -> None:
        path = self._checkpoint_path(name)

        def save() -> None:
            import torch

            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            torch.save(obj, tmp)
            tmp.replace(path)

        await anyio.to_thread.run_sync(save)
        self._snapshot_due()

    async def load_checkpoint(self, name: str) -> Any | None:
        path = self._checkpoint_path(name)

        def load() -> Any | None:
            if not path.is_file():
                return None
            import torch

            return torch.load(path, weights_only=False)

        return await anyio.to_thread.run_sync(load)
