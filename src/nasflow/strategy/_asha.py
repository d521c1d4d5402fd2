"""``ASHA`` and ``MOASHA``: asynchronous successive halving, the stopping variant.

Rungs sit at ``grace_period * reduction_factor**k`` (below ``max_t``), counted in
reported steps or in seconds since the trial started. The first result of a trial at or
past a rung is recorded there, and the trial goes on only if it ranks in the top
``1/reduction_factor`` of every result recorded at that rung so far (its own included);
otherwise it is stopped. Nothing waits for a rung to fill up, so workers never idle
(Li et al., "A System for Massively Parallel Hyperparameter Tuning", MLSys 2020).

``MOASHA`` ranks a rung's results by non-dominated sorting over every objective (front,
then crowding distance, then who was recorded first), the rule Syne Tune's MOASHA uses;
Ray's and Optuna's successive halving take a single metric.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_left, bisect_right, insort
from collections.abc import Mapping
from typing import Any

from nasflow._kernel import TrialRecord, crowding_distance, nondominated_sort
from nasflow.strategy._scheduler import Decision, Scheduler

__all__ = ["ASHA", "MOASHA", "crowding_distance", "nondominated_sort"]

_ATTRS = ("step", "time")
_Score = float | tuple[float, ...]


class _Rung:
    """The results recorded at one rung of one bracket."""

    __slots__ = ("level", "ordered", "scores")

    def __init__(self, level: float) -> None:
        self.level = level
        """Where the rung is (steps or seconds)."""
        self.scores: dict[int, _Score] = {}
        """trial id -> its score (or score vector) here, in the order they were recorded."""
        self.ordered: list[float] = []
        """Single-objective scores, ascending (a rank is one bisection away)."""


class ASHA(Scheduler):
    """Asynchronous successive halving: stop trials that fall behind at a rung.

    ``max_t`` is the full budget (what the evaluator trains for): rungs are placed at
    ``grace_period * reduction_factor**k < max_t``. ``time_attr="step"`` counts steps
    done: ``trial.report(value, step=s)`` (steps from 0, as ``trial.report`` numbers them
    and ``Classification`` reports epochs) stands for ``s + 1`` steps, so with
    ``grace_period=1`` the first rung is the first report; ``"time"`` counts seconds
    since the trial started, from
    the events' times (simulated ones on a ``SimulatedEngine``). ASHA never stops a trial
    for reaching ``max_t``: it ends when its evaluator returns.

    A trial whose result reaches a rung is ranked against every result recorded there so
    far, its own included (n of them, larger score first, ties in its favour); it goes on
    only if its rank is at most ``max(1, floor(n / reduction_factor))``. The first trial
    at a rung always goes on. The result recorded is the one reported at that moment, not
    the best so far. A report that jumps past several rungs is recorded at each.

    ``brackets > 1`` runs several ASHA brackets side by side, bracket ``b`` starting its
    rungs at ``grace_period * reduction_factor**b``; trials are dealt to brackets in turn
    as they start (``seed=None``), or drawn at random per trial id (``seed=int``).
    ``multi_objective=True`` (or ``MOASHA``) ranks by non-dominated sorting.
    """

    def __init__(
        self,
        max_t: float,
        grace_period: float = 1,
        reduction_factor: float = 3,
        *,
        time_attr: str = "step",
        brackets: int = 1,
        multi_objective: bool = False,
        seed: int | None = None,
    ) -> None:
        if time_attr not in _ATTRS:
            raise ValueError(f"time_attr must be one of {_ATTRS}, got {time_attr!r}")
        for name, value in (("max_t", max_t), ("grace_period", grace_period)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if not grace_period < max_t:
            raise ValueError(
                f"grace_period={grace_period!r} must be below max_t={max_t!r}; otherwise "
                "there is no rung and nothing is ever stopped"
            )
        if (isinstance(reduction_factor, bool) or not isinstance(reduction_factor, (int, float))
                or not reduction_factor > 1):
            raise ValueError(f"reduction_factor must be a number > 1, got {reduction_factor!r}")
        if isinstance(brackets, bool) or not isinstance(brackets, int) or brackets < 1:
            raise ValueError(f"brackets must be an int >= 1, got {brackets!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed must be an int or None, got {seed!r}")
        self.max_t = max_t
        """The full budget, in ``time_attr`` units."""
        self.grace_period = grace_period
        """The first rung (of the first bracket)."""
        self.reduction_factor = reduction_factor
        """η: a rung keeps the top 1/η; rungs are η apart."""
        self.time_attr = time_attr
        """``"step"`` (reported steps) or ``"time"`` (seconds since the trial started)."""
        self.multi_objective = multi_objective
        """Whether rungs rank by non-dominated sorting over every objective."""
        self.seed = seed
        """``None``: trials are dealt to brackets in turn; else drawn per trial id."""
        self._brackets = [[_Rung(level) for level in self._levels(b)] for b in range(brackets)]
        self._bracket_of: dict[int, int] = {}
        self._dealt = [0] * brackets
        self._why: dict[int, str] = {}

    @property
    def brackets(self) -> int:
        """How many brackets trials are dealt to."""
        return len(self._brackets)

    def rungs(self, bracket: int = 0) -> list[float]:
        """The rung levels of ``bracket``, ascending."""
        return [r.level for r in self._brackets[bracket]]

    def recorded(self, bracket: int = 0) -> list[dict[int, Any]]:
        """Per rung of ``bracket``: ``{trial id: score}`` recorded there (larger is better;
        a tuple per trial for multi-objective rungs)."""
        return [dict(r.scores) for r in self._brackets[bracket]]

    def bracket_of(self, trial_id: int) -> int | None:
        """The bracket ``trial_id`` was dealt to, if it started."""
        return self._bracket_of.get(trial_id)

    def _levels(self, bracket: int) -> list[float]:
        eta, k = self.reduction_factor, bracket
        levels: list[float] = []
        while True:
            level = self.grace_period * eta**k
            if isinstance(self.grace_period, int) and isinstance(eta, int):
                level = int(level)
            if not level < self.max_t:
                return levels
            levels.append(level)
            k += 1

    def _weights(self) -> list[float]:
        """How often each bracket gets a trial, relative to the others."""
        return [1.0] * len(self._brackets)

    # --- the contract -----------------------------------------------------------------------

    def on_trial_start(self, trial: TrialRecord) -> None:
        if trial.id in self._bracket_of:
            # a retry (or a resumed trial) starts from scratch: its old records go
            for rung in self._brackets[self._bracket_of[trial.id]]:
                self._forget(rung, trial.id)
            return
        self._deal(trial.id)

    def on_result(self, trial: TrialRecord, step: int, metric: float, value: Any,
                  time: float) -> Decision:
        bracket = self._bracket_of.get(trial.id)
        if bracket is None:  # a trial that started before this scheduler saw it
            bracket = self._deal(trial.id)
        if self.time_attr == "step":
            resource: float = step + 1  # steps count from 0: the report at step s ends s+1
        else:
            started = trial.started_at if trial.started_at is not None else time
            resource = time - started
        score: _Score | None = None
        for rung in self._brackets[bracket]:
            if rung.level > resource:
                break
            if trial.id in rung.scores:
                continue
            if score is None:
                score = self._score(metric, value)
            position = self._record(rung, trial.id, score)
            keep = self._keep(len(rung.scores))
            if position >= keep:
                self._why[trial.id] = self._explain(rung, position, keep, metric)
                return Decision.STOP
        return Decision.CONTINUE

    def reason(self, trial: TrialRecord) -> str:
        return self._why.pop(trial.id, f"stopped early by {type(self).__name__}")

    # --- ranking ----------------------------------------------------------------------------

    def _score(self, metric: float, value: Any) -> _Score:
        objective = self.objective
        if not self.multi_objective:
            return objective.score(metric)
        if isinstance(value, Mapping) and all(n in value for n in objective.directions):
            return tuple(
                (1.0 if d == "maximize" else -1.0) * float(value[n])
                for n, d in objective.directions.items()
            )
        return (objective.score(metric),)

    def _keep(self, n: int) -> int:
        return max(1, math.floor(n / self.reduction_factor))

    def _record(self, rung: _Rung, trial_id: int, score: _Score) -> int:
        """Record ``score`` at ``rung``; the trial's place there (0: the best; past the
        top ``1/η`` it may stop counting)."""
        rung.scores[trial_id] = score
        if isinstance(score, tuple):
            keep = self._keep(len(rung.scores))
            vectors = [s for s in rung.scores.values() if isinstance(s, tuple)]
            return _position(vectors, len(vectors) - 1, keep)
        insort(rung.ordered, score)
        return len(rung.ordered) - bisect_right(rung.ordered, score)  # how many are better

    def _forget(self, rung: _Rung, trial_id: int) -> None:
        score = rung.scores.pop(trial_id, None)
        if isinstance(score, float):
            del rung.ordered[bisect_left(rung.ordered, score)]

    def _explain(self, rung: _Rung, position: int, keep: int, metric: float) -> str:
        n, eta = len(rung.scores), self.reduction_factor
        where = (f"{type(self).__name__}: at the rung of {rung.level:g} "
                 f"{'steps' if self.time_attr == 'step' else 'seconds'}")
        if self.multi_objective:
            return (f"{where}, its results are not among the best {keep} of the {n} "
                    f"recorded there by non-dominated sorting (the top 1/{eta:g} go on)")
        return (f"{where}, its {self.objective.primary} {metric:g} ranks {position + 1} of "
                f"the {n} recorded there; only the best {keep} (1/{eta:g}) go on")

    # --- brackets ---------------------------------------------------------------------------

    def _deal(self, trial_id: int) -> int:
        weights = self._weights()
        if self.seed is not None:
            rng = random.Random(f"{self.seed}:{trial_id}")
            bracket = rng.choices(range(len(weights)), weights)[0]
        else:  # the bracket furthest behind its share; the first such on ties
            bracket = min(range(len(weights)), key=lambda b: (self._dealt[b] / weights[b], b))
        self._bracket_of[trial_id] = bracket
        self._dealt[bracket] += 1
        return bracket

    # --- state ------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": type(self).__name__,
            "levels": [self.rungs(b) for b in range(self.brackets)],
            "rungs": [[[[tid, list(s) if isinstance(s, tuple) else s]
                        for tid, s in rung.scores.items()] for rung in bracket]
                      for bracket in self._brackets],
            "bracket_of": [[tid, b] for tid, b in self._bracket_of.items()],
            "dealt": list(self._dealt),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        levels = [self.rungs(b) for b in range(self.brackets)]
        if state.get("levels") != levels:
            raise ValueError(
                f"this {type(self).__name__} state has the rungs {state.get('levels')}, but "
                f"the scheduler has {levels}: resume with the same max_t, grace_period, "
                "reduction_factor and brackets"
            )
        for bracket, saved in zip(self._brackets, state["rungs"], strict=True):
            for rung, pairs in zip(bracket, saved, strict=True):
                rung.scores = {int(tid): tuple(s) if isinstance(s, list) else float(s)
                               for tid, s in pairs}
                rung.ordered = sorted(s for s in rung.scores.values() if isinstance(s, float))
        self._bracket_of = {int(tid): int(b) for tid, b in state["bracket_of"]}
        self._dealt = [int(n) for n in state["dealt"]]
        self._why.clear()

    def __repr__(self) -> str:
        extra = f", brackets={self.brackets}" if self.brackets > 1 else ""
        if self.multi_objective and type(self) is ASHA:
            extra += ", multi_objective=True"
        return (f"{type(self).__name__}(max_t={self.max_t!r}, grace_period="
                f"{self.grace_period!r}, reduction_factor={self.reduction_factor!r}, "
                f"time_attr={self.time_attr!r}{extra})")


class MOASHA(ASHA):
    """ASHA for several objectives: a rung ranks results by non-dominated sorting.

    Every objective of the experiment counts (its intermediate reports must hold them
    all, as its final one does). A rung orders its results by Pareto front, then by
    crowding distance within a front (NSGA-II; the extremes first), then by who was
    recorded first; the top ``max(1, floor(n / reduction_factor))`` go on.
    """

    def __init__(
        self,
        max_t: float,
        grace_period: float = 1,
        reduction_factor: float = 3,
        *,
        time_attr: str = "step",
        brackets: int = 1,
        seed: int | None = None,
    ) -> None:
        super().__init__(max_t, grace_period, reduction_factor, time_attr=time_attr,
                         brackets=brackets, multi_objective=True, seed=seed)


def _position(points: list[tuple[float, ...]], x: int, keep: int) -> int:
    """Where point ``x`` comes in the MOASHA order (0 = best); ``keep`` or more once it is
    known to be past the first ``keep``."""
    before = 0
    for front in nondominated_sort(points):
        if x in front:
            crowd = crowding_distance(points, front)
            ranked = sorted(front, key=lambda i: (-crowd[i], i))
            return before + ranked.index(x)
        before += len(front)
        if before >= keep:
            return before
    raise AssertionError("the point is on no front")  # pragma: no cover
