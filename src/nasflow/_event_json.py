"""Events as JSON-able dicts: what the control channel and the dashboard send."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from nasflow._kernel import ExperimentState, TrialError, TrialState
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

__all__ = ["event_from_dict", "event_to_dict"]

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


_FIELDS: dict[type[Event], tuple[str, tuple[str, ...]]] = {}
"""Per event type: its name and its fields but ``time`` (``dataclasses.fields`` is slow,
and every event of a hosted experiment comes here)."""


def event_to_dict(event: Event) -> dict[str, Any]:
    """``{"type": <snake name>, "time": ..., <the event's fields>}``; enums by value, a
    trial error as ``{"type", "message", "traceback"}``, non-finite floats as ``None``."""
    cls = type(event)
    known = _FIELDS.get(cls)
    if known is None:
        known = _FIELDS[cls] = (_TYPES.get(cls, cls.__name__), tuple(
            f.name for f in dataclasses.fields(event) if f.name != "time"))
    type_name, names = known
    out: dict[str, Any] = {"type": type_name, "time": event.time}
    # the dashboard converts every event of a running search: plain values (most fields)
    # are taken as they are, without a call per field
    for name in names:
        value = getattr(event, name)
        kind = value.__class__
        if kind is int or kind is str or value is None or kind is bool:
            pass
        elif kind is float:
            if not math.isfinite(value):
                value = None
        elif name == "error":
            value = value.to_dict()
        elif hasattr(value, "value") and isinstance(value.value, str):
            value = value.value  # TrialState / ExperimentState
        else:
            value = _finite(value)
        out[name] = value
    return out


_BY_NAME = {name: cls for cls, name in _TYPES.items()}


def event_from_dict(data: dict[str, Any]) -> Event:
    """The typed event ``event_to_dict`` made ``data`` from (a hosted experiment's events
    reach its clients this way); ``ValueError`` for an unknown type or missing field."""
    cls = _BY_NAME.get(str(data.get("type")))
    if cls is None:
        raise ValueError(f"unknown event type {data.get('type')!r}")
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        if field.name not in data:
            continue  # a default (attempt, error, ...)
        value = data[field.name]
        if field.name == "state":
            value = (ExperimentState if issubclass(
                cls, (ExperimentStateChanged, ExperimentFinished)) else TrialState)(value)
        elif field.name == "error" and value is not None:
            value = TrialError(str(value["type"]), str(value["message"]),
                               str(value.get("traceback", "")))
        values[field.name] = value
    try:
        return cls(**values)
    except TypeError as exc:
        raise ValueError(f"a {data.get('type')} event without {exc}") from exc
