"""Events as JSON-able dicts: what the control channel and the dashboard send."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from nasflow.events import (
    ChangeApplied,
    CheckpointSaved,
    Event,
    ExperimentFinished,
    ExperimentStateChanged,
    FinalMetric,
    IntermediateMetric,
    StrategyProgress,
    TrialEnded,
    TrialStarted,
    TrialSubmitted,
)

__all__ = ["event_to_dict"]

_TYPES: dict[type[Event], str] = {
    TrialSubmitted: "trial_submitted",
    TrialStarted: "trial_started",
    IntermediateMetric: "intermediate",
    CheckpointSaved: "checkpoint",
    FinalMetric: "final",
    TrialEnded: "trial_ended",
    StrategyProgress: "progress",
    ExperimentStateChanged: "experiment_state",
    ExperimentFinished: "experiment_finished",
    ChangeApplied: "change",
}


def _finite(value: Any) -> Any:
    # JSON has no NaN/inf: a diverged metric is sent as null rather than breaking the frame
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


def event_to_dict(event: Event) -> dict[str, Any]:
    """``{"type": <snake name>, "time": ..., <the event's fields>}``; enums by value, a
    trial error as ``{"type", "message", "traceback"}``, non-finite floats as ``None``."""
    out: dict[str, Any] = {"type": _TYPES.get(type(event), type(event).__name__),
                           "time": event.time}
    for field in dataclasses.fields(event):
        name = field.name
        if name == "time":
            continue
        value = getattr(event, name)
        if name == "error":
            value = None if value is None else value.to_dict()
        elif hasattr(value, "value") and isinstance(value.value, str):
            value = value.value  # TrialState / ExperimentState
        out[name] = _finite(value)
    return out
