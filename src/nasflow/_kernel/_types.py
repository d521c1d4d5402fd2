"""Trial and experiment states, and the trial record every export is made of."""

from __future__ import annotations

import enum
import traceback as _tb
from dataclasses import dataclass
from typing import Any

__all__ = [
    "INTERRUPTED",
    "KILLED",
    "KNOWN_ORIGINS",
    "ORIGINS",
    "ExperimentState",
    "TrialError",
    "TrialRecord",
    "TrialState",
]

INTERRUPTED = "Interrupted"
"""``TrialError.type`` of a trial cut off because its experiment stopped (Ctrl-C, ``stop()``,
a cancelled run): such a trial is run again, under the same id, when the experiment is
resumed. Trials cancelled on their merits (a strategy, a scheduler, a reached target) are
not."""

ORIGINS = ("enqueued", "added", "imported")
"""``TrialRecord.origin`` of a trial its strategy did not propose: a sample given to
``exp.enqueue`` (run like any trial), a known result given to ``exp.add_results`` (stored,
never run), or one of another experiment's results taken by ``warm_start`` (stored, never
run). ``None`` is a trial the strategy proposed. Added and imported trials do not count
toward ``max_trials`` (as Optuna's ``add_trial`` does not count toward ``n_trials``);
enqueued ones do."""

KNOWN_ORIGINS = ("added", "imported")
"""The origins of trials that were stored with a known result and never ran."""
KILLED = "Killed"
"""``TrialError.type`` of a trial the user ended (``exp.kill_trial``, ``nasflow trial kill``,
the dashboard): it ends CANCELED for good -- never retried, never run again on resume."""


class TrialState(enum.StrEnum):
    """``WAITING -> RUNNING -> SUCCEEDED | FAILED | CANCELED | EARLY_STOPPED | TIMEOUT``."""

    WAITING = "WAITING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"
    EARLY_STOPPED = "EARLY_STOPPED"
    TIMEOUT = "TIMEOUT"

    @property
    def finished(self) -> bool:
        """Whether the trial has ended (any state but WAITING and RUNNING)."""
        return self not in (TrialState.WAITING, TrialState.RUNNING)

    def __str__(self) -> str:
        return self.value


class ExperimentState(enum.StrEnum):
    """The life of an experiment. CRASHED is only ever *read*: a RUNNING experiment whose
    owning process is gone."""

    CREATED = "CREATED"
    RUNNING = "RUNNING"
    DONE = "DONE"
    STOPPED = "STOPPED"
    FAILED = "FAILED"
    CRASHED = "CRASHED"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class TrialError:
    """Why a trial did not succeed: the exception's type, message and traceback."""

    type: str
    message: str
    traceback: str = ""

    @classmethod
    def from_exception(cls, exc: BaseException) -> TrialError:
        """Capture an exception (with its traceback) as plain strings."""
        message = str(exc)
        if not message and isinstance(exc, MemoryError):
            message = "the trial ran out of memory (MemoryError)"
        return cls(
            type=type(exc).__qualname__,
            message=message,
            traceback="".join(_tb.format_exception(type(exc), exc, exc.__traceback__)),
        )

    def to_dict(self) -> dict[str, str]:
        return {"type": self.type, "message": self.message, "traceback": self.traceback}

    def __str__(self) -> str:
        return f"{self.type}: {self.message}"


class RecordView:
    """What a trial's record and a frozen copy of it (``nasflow.strategy.FrozenTrial``)
    compute alike from their fields."""

    __slots__ = ()
    id: int
    sample: dict[str, Any]
    hash: str
    state: TrialState
    metric: float | None
    metrics: Any
    submitted_at: float | None
    started_at: float | None
    ended_at: float | None
    error: TrialError | None
    attempt: int
    directory: str | None
    origin: str | None

    @property
    def duration(self) -> float | None:
        """Seconds from start to end, when both are known."""
        if self.started_at is None or self.ended_at is None:
            return None
        return self.ended_at - self.started_at

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (state as its name, error as a dict)."""
        return {
            "id": self.id,
            "sample": self.sample,
            "hash": self.hash,
            "state": self.state.value,
            "metric": self.metric,
            "metrics": self.metrics,
            "submitted_at": self.submitted_at,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "error": self.error.to_dict() if self.error else None,
            "attempt": self.attempt,
            "directory": self.directory,
            "origin": self.origin,
        }


@dataclass(slots=True)
class TrialRecord(RecordView):
    """One trial as the experiment knows it. Exports hand out copies; do not mutate.

    ``metric`` is the primary objective of the final result, ``metrics`` the final result
    as the evaluator gave it (a float or a dict). ``origin`` is ``None`` for a trial the
    strategy proposed, else one of ``ORIGINS`` (enqueued, added, imported).
    """

    id: int
    sample: dict[str, Any]
    hash: str
    state: TrialState = TrialState.WAITING
    metric: float | None = None
    metrics: Any = None
    submitted_at: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    error: TrialError | None = None
    attempt: int = 0
    directory: str | None = None
    origin: str | None = None
