"""Helpers for feeding schedulers by hand: trial records and a bound objective."""

from __future__ import annotations

from typing import Any

from nasflow._kernel import Objective, TrialRecord, TrialState
from nasflow.strategy import Decision, MedianStop, Scheduler


def record(trial_id: int, started_at: float = 0.0) -> TrialRecord:
    """A RUNNING trial record, as the experiment hands it to a scheduler."""
    return TrialRecord(id=trial_id, sample={"id": trial_id}, hash=f"h{trial_id}",
                       state=TrialState.RUNNING, started_at=started_at)


class Feeder:
    """Drives a scheduler the way the experiment does: start, results, end."""

    def __init__(self, scheduler: Scheduler, directions: dict[str, str] | None = None) -> None:
        self.scheduler = scheduler
        self.objective = Objective(directions or {"default": "maximize"})
        scheduler.bind(self.objective)
        self.trials: dict[int, TrialRecord] = {}

    def start(self, trial_id: int, at: float = 0.0) -> TrialRecord:
        trial = self.trials[trial_id] = record(trial_id, at)
        self.scheduler.on_trial_start(trial)
        return trial

    def result(self, trial_id: int, step: int, value: Any, time: float = 0.0) -> Decision:
        primary, normal = self.objective.parse(value)
        # ASHA-family tests speak in steps *done* (1 after the first epoch) while reports
        # count from 0; MedianStop tests give the reported step itself
        reported = step if isinstance(self.scheduler, MedianStop) else step - 1
        return self.scheduler.on_result(self.trials[trial_id], reported, primary, normal, time)

    def end(self, trial_id: int, state: TrialState = TrialState.SUCCEEDED) -> None:
        self.trials[trial_id].state = state
        self.scheduler.on_trial_end(self.trials[trial_id])
