"""``MedianStop``: the median stopping rule of Google Vizier, Ray Tune and Optuna."""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from typing import Any

from nasflow._kernel import TrialRecord
from nasflow.strategy._scheduler import Decision, Scheduler

__all__ = ["MedianStop"]


class _Curve:
    """One trial's results: steps (strictly increasing) and running sums of scores."""

    __slots__ = ("best", "placed", "scores", "steps", "sums")

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.scores: list[float] = []
        self.sums: list[float] = []
        self.best = float("-inf")
        self.placed: dict[int, float] = {}
        """step -> the running average it contributes to that step's median."""

    def add(self, step: int, score: float) -> None:
        """Append a result (``step`` larger than any before)."""
        self.steps.append(step)
        self.scores.append(score)
        self.sums.append(score + self.sums[-1] if self.sums else score)
        self.best = max(self.best, score)

    def average_at(self, step: int) -> float | None:
        """The mean of the scores reported at steps <= ``step`` (``None``: none yet)."""
        n = bisect_right(self.steps, step)
        return None if n == 0 else self.sums[n - 1] / n


class MedianStop(Scheduler):
    """Stop a trial whose best result so far is worse than the median trial's average.

    When trial ``i`` reports at step ``s`` (``s >= grace_steps``), take every *other*
    trial ``j`` that has reported at step ``s`` or later, running or ended (stopped ones
    included), and its running average ``avg_j(s)``: the mean of ``j``'s results at steps
    ``<= s``. If there are at least ``min_trials`` of them and ``i``'s best result at steps
    ``<= s`` is strictly worse than their median, ``i`` is stopped. Results compare on the
    primary objective, whichever its direction.

    This is Ray Tune's ``MedianStoppingRule`` counted in steps rather than seconds, and
    close to Optuna's ``MedianPruner`` (which compares against completed trials' values at
    the same step, not their running averages). A report whose step is not larger than
    the trial's previous one is ignored.
    """

    def __init__(self, grace_steps: int = 0, min_trials: int = 3) -> None:
        if isinstance(grace_steps, bool) or not isinstance(grace_steps, int) or grace_steps < 0:
            raise ValueError(f"grace_steps must be an int >= 0, got {grace_steps!r}")
        if isinstance(min_trials, bool) or not isinstance(min_trials, int) or min_trials < 1:
            raise ValueError(f"min_trials must be an int >= 1, got {min_trials!r}")
        self.grace_steps = grace_steps
        """No trial is stopped at a step below this."""
        self.min_trials = min_trials
        """How many other trials must have reached a step before it can stop anyone."""
        self._curves: dict[int, _Curve] = {}
        # step -> sorted running averages at that step of the trials that reached it; a
        # trial's average at s is final once it reports past s, so each is inserted once
        self._at: dict[int, list[float]] = {}
        self._steps: list[int] = []  # the keys of _at, sorted
        self._why: dict[int, str] = {}

    # --- the contract -----------------------------------------------------------------------

    def on_trial_start(self, trial: TrialRecord) -> None:
        curve = self._curves.pop(trial.id, None)
        if curve is not None:  # a retry starts from scratch: take its averages back
            for step, avg in curve.placed.items():
                averages = self._at[step]
                del averages[bisect_left(averages, avg)]

    def on_result(self, trial: TrialRecord, step: int, metric: float, value: Any,
                  time: float) -> Decision:
        curve = self._curves.get(trial.id)
        if curve is None:
            curve = self._curves[trial.id] = _Curve()
        if curve.steps and step <= curve.steps[-1]:
            return Decision.CONTINUE
        score = self.objective.score(metric)
        previous = curve.steps[-1] if curve.steps else None
        curve.add(step, score)
        others = self._averages(step, trial.id)  # before this trial joins them
        decision = Decision.CONTINUE
        if step >= self.grace_steps and len(others) >= self.min_trials:
            median = _median(others)
            if curve.best < median:
                decision = Decision.STOP
                sign = self.objective.sign
                self._why[trial.id] = (
                    f"MedianStop: at step {step} its best {self.objective.primary} "
                    f"{sign * curve.best:g} is worse than the median {sign * median:g} of "
                    f"the running averages of {len(others)} other trials")
        self._place(trial.id, curve, previous, step)
        return decision

    def reason(self, trial: TrialRecord) -> str:
        return self._why.pop(trial.id, "stopped early by MedianStop")

    # --- medians per step -------------------------------------------------------------------

    def _averages(self, step: int, trial_id: int) -> list[float]:
        """The sorted averages at ``step`` of the trials that reached it (built when the
        step is first asked about; ``trial_id`` has not reached it yet)."""
        averages = self._at.get(step)
        if averages is None:
            averages = []
            for tid, curve in self._curves.items():
                if tid != trial_id and curve.steps[-1] >= step:
                    avg = curve.average_at(step)
                    if avg is not None:
                        averages.append(avg)
                        curve.placed[step] = avg
            averages.sort()
            self._at[step] = averages
            insort(self._steps, step)
        return averages

    def _place(self, trial_id: int, curve: _Curve, previous: int | None, step: int) -> None:
        """The trial reached ``step``: its averages join the steps it has now passed."""
        lo = 0 if previous is None else bisect_right(self._steps, previous)
        for s in self._steps[lo:bisect_right(self._steps, step)]:
            avg = curve.average_at(s)
            if avg is not None:
                insort(self._at[s], avg)
                curve.placed[s] = avg

    # --- state ------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Each trial's ``[step, score]`` results; the medians are rebuilt from them."""
        return {
            "kind": "MedianStop",
            "curves": [[tid, [[s, v] for s, v in zip(c.steps, c.scores, strict=True)]]
                       for tid, c in self._curves.items()],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._curves.clear()
        self._at.clear()
        self._steps.clear()
        self._why.clear()
        for tid, pairs in state["curves"]:
            curve = _Curve()
            for step, score in pairs:
                curve.add(int(step), float(score))
            self._curves[int(tid)] = curve
        # every step someone reported at gets its sorted averages, as on_result left them
        for step in sorted({s for c in self._curves.values() for s in c.steps}):
            self._averages(step, -1)

    def __repr__(self) -> str:
        return f"MedianStop(grace_steps={self.grace_steps}, min_trials={self.min_trials})"


def _median(ordered: list[float]) -> float:
    n = len(ordered)
    mid = n // 2
    return ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2
