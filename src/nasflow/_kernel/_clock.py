"""The clock that stamps events: wall time in a real run, simulated time in a simulation.

Every timestamp of one run comes from one ``Clock`` so that a record's ``submitted_at``,
``started_at`` and ``ended_at`` are comparable (``nasflow.testing.FakeClock`` is one).
"""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "WallClock"]


@runtime_checkable
class Clock(Protocol):
    """Anything with ``now()``: seconds, on a scale shared by every stamp of one run."""

    def now(self) -> float:
        """The current time in seconds."""
        ...


class WallClock:
    """Seconds since the epoch (``time.time``): what records store and exports show."""

    __slots__ = ()

    # ``time.time`` itself (no Python frame): every event of a run is stamped with it
    now = staticmethod(time.time)
    """The current wall time."""

    def __repr__(self) -> str:
        return "WallClock()"
