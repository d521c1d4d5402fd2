"""A run's progress folded from its events: one model for every view of a running search.

``nasflow run``'s table (``cli/_progress.py``) and the notebook display
(``experiment/_notebook.py``) both show the same things (trials by state, the running
ones with their last reported value, the best so far, how many came from earlier runs of
a resumed experiment); they differ only in how they draw them. ``RunProgress.apply`` is
the one place an event changes those numbers. Pure: no I/O, no clock, no event loop.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from nasflow._kernel import TrialRecord, TrialState
from nasflow.events import (
    Event,
    ExperimentFinished,
    FinalMetric,
    IntermediateMetric,
    TrialEnded,
    TrialStarted,
    TrialSubmitted,
)

__all__ = ["ProgressRow", "RunProgress"]


class ProgressRow:
    """One trial as a progress view knows it."""

    __slots__ = ("ended", "error", "id", "last", "metric", "metrics", "sample", "started",
                 "state", "step")

    def __init__(self, trial_id: int, sample: dict[str, Any]) -> None:
        self.id = trial_id
        self.sample = sample
        self.state = TrialState.WAITING
        self.step: int | None = None
        """The last reported step (``None``: nothing reported yet)."""
        self.last: float | None = None
        """The primary value reported at ``step``."""
        self.metric: float | None = None
        self.metrics: Any = None
        self.started: float | None = None
        self.ended: float | None = None
        self.error = ""


class RunProgress:
    """Trials by id, the best so far and the end of the run, from events in order."""

    def __init__(self, *, maximize: bool = True, history: Iterable[TrialRecord] = ()) -> None:
        self.maximize = maximize
        self.rows: dict[int, ProgressRow] = {}
        self.best: ProgressRow | None = None
        self.finished: ExperimentFinished | None = None
        self.earlier = 0
        """Trials of a resumed experiment's earlier runs that had finished (counted in
        ``done``)."""
        for record in history:
            row = ProgressRow(record.id, record.sample)
            row.state, row.metric, row.metrics = record.state, record.metric, record.metrics
            self.earlier += record.state.finished
            self.rows[record.id] = row
            self._consider(row)

    def apply(self, ev: Event) -> ProgressRow | None:
        """Fold ``ev`` in; returns the trial it changed (``None`` for other events)."""
        if isinstance(ev, TrialSubmitted):
            old = self.rows.get(ev.trial_id)
            if old is not None and old.state.finished:
                self.earlier -= 1  # an interrupted trial of an earlier run, run again
            row = self.rows[ev.trial_id] = ProgressRow(ev.trial_id, ev.sample)
            return row
        if isinstance(ev, ExperimentFinished):
            self.finished = ev
            return None
        found = self.rows.get(getattr(ev, "trial_id", -1))
        if found is None:
            return None
        if isinstance(ev, TrialStarted):
            found.state, found.started = TrialState.RUNNING, ev.time
        elif isinstance(ev, IntermediateMetric):
            found.step, found.last = ev.step, ev.metric
        elif isinstance(ev, FinalMetric):
            found.metric, found.metrics = ev.metric, ev.value
        elif isinstance(ev, TrialEnded):
            found.state, found.ended = ev.state, ev.time
            found.error = str(ev.error) if ev.error else ""
            self._consider(found)
        return found

    # --- what views show -------------------------------------------------------------------

    @property
    def done(self) -> int:
        """Trials that reached a final state (those of earlier runs included)."""
        return sum(r.state.finished for r in self.rows.values())

    @property
    def running(self) -> list[ProgressRow]:
        """The running trials, by id."""
        return [r for r in self.rows.values() if r.state is TrialState.RUNNING]

    def counts(self) -> dict[TrialState, int]:
        """How many trials are in each state (states with none left out)."""
        counts: dict[TrialState, int] = {}
        for r in self.rows.values():
            counts[r.state] = counts.get(r.state, 0) + 1
        return counts

    def ranked(self) -> list[ProgressRow]:
        """The succeeded trials with a metric, best first (ties: the lower id)."""
        ok = [r for r in self.rows.values()
              if r.state is TrialState.SUCCEEDED and r.metric is not None]
        sign = -1.0 if self.maximize else 1.0
        return sorted(ok, key=lambda r: (sign * (r.metric or 0.0), r.id))

    def _consider(self, row: ProgressRow) -> None:
        if row.state is not TrialState.SUCCEEDED or row.metric is None:
            return
        best = self.best
        if best is None or best.metric is None or (
                row.metric > best.metric if self.maximize else row.metric < best.metric):
            self.best = row
