"""The early-stopping scheduler contract: it sees intermediate results as they stream and
answers CONTINUE or STOP; the experiment stops the trial for real (EARLY_STOPPED).

Schedulers work with any strategy and any engine::

    nf.Experiment(space, evaluator, strategy, config, scheduler=nf.strategy.ASHA(...))

Callbacks run synchronously on the event loop, in event order; they must be quick and
must not block. Times are the events' times, so a simulated clock drives them too.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from typing import Any

from nasflow._kernel import Objective, TrialRecord

__all__ = ["Decision", "Scheduler"]


class Decision(enum.StrEnum):
    """What a scheduler wants done with a trial after a result."""

    CONTINUE = "CONTINUE"
    STOP = "STOP"


class Scheduler(ABC):
    """Base of early-stopping schedulers (MedianStop, ASHA, Hyperband, ...)."""

    objective: Objective
    """Set by ``bind``: ``objective.score(metric)`` is larger for better trials."""

    def bind(self, objective: Objective) -> None:
        """Called once by the experiment before the search starts."""
        self.objective = objective

    def on_trial_start(self, trial: TrialRecord) -> None:
        """A trial started (``trial.started_at`` is set)."""

    @abstractmethod
    def on_result(self, trial: TrialRecord, step: int, metric: float, value: Any,
                  time: float) -> Decision:
        """An intermediate result of a running trial; ``metric`` is the primary objective
        as reported (use ``self.objective.score`` to compare)."""

    def on_trial_end(self, trial: TrialRecord) -> None:
        """A trial ended in ``trial.state`` (any final state)."""

    def reason(self, trial: TrialRecord) -> str:
        """Why ``trial`` was stopped (stored with it)."""
        return f"stopped early by {type(self).__name__}"

    def state_dict(self) -> dict[str, Any]:
        """A JSON-able snapshot, for resume."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict``."""
