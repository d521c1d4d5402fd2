"""The ``StrategyContext`` an experiment hands to its strategy."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING

import anyio

from nasflow._types import TrialError, TrialRecord, TrialState
from nasflow.engine import TrialSpec
from nasflow.events import TrialEnded, TrialSubmitted
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
        self._inbox: deque[TrialRecord] = deque()
        self._inbox_on = False  # filled only once the strategy reads results
        self._changed = anyio.Event()  # set whenever a trial ends
        self._waiters: dict[int, anyio.Event] = {}

    # --- fed by the experiment (event sinks, synchronous) ---------------------------------

    def _ended(self, record: TrialRecord) -> None:
        if self._inbox_on:
            self._inbox.append(record)
        self._changed.set()
        waiter = self._waiters.pop(record.id, None)
        if waiter is not None:
            waiter.set()

    # --- the contract ---------------------------------------------------------------------

    @property
    def capacity(self) -> int:
        return self._exp._capacity

    async def wait_capacity(self) -> None:
        exp = self._exp
        while exp._inflight >= exp._capacity:
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
        await exp._publish(TrialSubmitted(time=time.time(), trial_id=trial_id, sample=sample,
                                          hash=h))
        try:
            await exp._engine_submit(TrialSpec(trial_id, sample))
        except BaseException:
            # never handed to the engine (the search is stopping): do not leave it WAITING
            with anyio.CancelScope(shield=True):
                await exp._publish(TrialEnded(
                    time=time.time(), trial_id=trial_id, state=TrialState.CANCELED,
                    error=TrialError("Cancelled", "the search stopped before the trial started"),
                ), wait=False)
            raise
        return TrialHandle(self, trial_id, sample, h)

    def _why_exhausted(self) -> str:
        if self.budget.stopping:
            return "the experiment is stopping"
        return f"max_trials={self.budget.max_trials} trials were submitted"

    def take_results(self) -> list[TrialRecord]:
        self._inbox_on = True
        out = list(self._inbox)
        self._inbox.clear()
        return out

    async def next_result(self) -> TrialRecord | None:
        self._inbox_on = True
        while not self._inbox:
            if self._exp._inflight == 0:
                return None
            if self._changed.is_set():
                self._changed = anyio.Event()
            await self._changed.wait()
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
