"""Objectives: which metric(s) count, in which direction, and turning reports into numbers."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from nasflow.exceptions import MetricError

__all__ = ["Objective", "to_number"]


def to_number(value: Any, *, what: str = "metric") -> float:
    """``value`` as a finite float; ``MetricError`` saying why not otherwise.

    Accepts ints, floats, numpy scalars and one-element tensors (anything with ``.item()``).
    """
    if value is None or isinstance(value, (bool, str, bytes)):
        raise MetricError(f"{what} must be a finite number, got {value!r}")
    item = getattr(value, "item", None)
    if item is not None and not isinstance(value, (int, float)):
        try:
            value = item()
        except (TypeError, ValueError, RuntimeError, OverflowError) as exc:
            raise MetricError(f"{what} must be a single number, got {value!r}") from exc
    try:
        number = float(value)
    except OverflowError:
        # an int past float's range (10**400): a MetricError of this trial, not a crash
        raise MetricError(
            f"{what} must fit a float (at most about 1.8e308), got {_show(value)}"
        ) from None
    except (TypeError, ValueError):
        raise MetricError(f"{what} must be a finite number, got {_show(value)}") from None
    if not math.isfinite(number):
        raise MetricError(f"{what} must be a finite number, got {number!r}")
    return number


def _show(value: Any) -> str:
    """A short repr: a huge int has thousands of digits (past 4300, repr itself raises)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 256:
        return f"an integer of {value.bit_length()} bits"
    text = repr(value)
    return text if len(text) <= 200 else text[:200] + "..."


class Objective:
    """The metrics an experiment optimises, the first being the primary one.

    ``Objective({"default": "maximize"})`` is a single float metric; with other names the
    evaluator reports a dict holding them (a bare float is taken as the primary metric).
    """

    __slots__ = ("directions", "primary", "sign")

    def __init__(self, directions: Mapping[str, str]) -> None:
        if not directions:
            raise ValueError("an objective needs at least one metric")
        self.directions = dict(directions)
        """``{metric name: "maximize" | "minimize"}``, primary first."""
        self.primary = next(iter(self.directions))
        """The name of the primary metric."""
        self.sign = 1.0 if self.directions[self.primary] == "maximize" else -1.0
        """``+1`` when larger is better for the primary metric, else ``-1``."""

    @property
    def direction(self) -> str:
        """The primary metric's direction."""
        return self.directions[self.primary]

    @property
    def multi(self) -> bool:
        """Whether several metrics are optimised together."""
        return len(self.directions) > 1

    def parse(self, value: Any) -> tuple[float, float | dict[str, float]]:
        """``(primary, normalised value)`` of a reported metric; ``MetricError`` if unusable."""
        if isinstance(value, Mapping):
            normal: dict[str, float] = {}
            for k, v in value.items():
                if not isinstance(k, str):
                    raise MetricError(f"metric names must be strings, got {k!r}")
                normal[k] = to_number(v, what=f"metric {k!r}")
            missing = [name for name in self.directions if name not in normal]
            if missing:
                raise MetricError(
                    f"the reported metric dict {sorted(normal)} lacks {missing}; the "
                    f"experiment's objective is {self.directions}. Report those keys, or "
                    "set ExperimentConfig(objective={name: 'maximize' | 'minimize'}) to the "
                    "keys you report."
                )
            return normal[self.primary], normal
        if self.multi:
            raise MetricError(
                f"this experiment optimises {list(self.directions)}; report a dict with "
                f"those keys, not {value!r}"
            )
        number = to_number(value)
        return number, number

    def score(self, primary: float) -> float:
        """The primary value turned so that larger is always better."""
        return self.sign * primary

    def reached(self, primary: float, target: float) -> bool:
        """Whether ``primary`` is at least as good as ``target``."""
        return self.score(primary) >= self.score(target)

    def __repr__(self) -> str:
        return f"Objective({self.directions})"
