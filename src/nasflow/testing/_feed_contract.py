"""The part of the strategy contract about what a user feeds a search: samples given to
``exp.enqueue`` and results given to ``exp.add_results`` (or ``warm_start``) reach the
strategy like its own trials; it never proposes them again, and one that learns is drawn
toward a perfect one. ``StrategyContract`` includes it."""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio

from nasflow._kernel import ExperimentState
from nasflow.space import Categorical, Sample, SearchSpace, sample_hash

if TYPE_CHECKING:
    from nasflow.experiment import Experiment
    from nasflow.strategy import Strategy

__all__ = ["FeedContract"]

_TARGET = (1, 3, 0, 2)
_SPACE = {f"x{i}": Categorical(list(range(5)), label=f"x{i}") for i in range(4)}
_FED = 10
"""Random results every feeding test gives (the perfect one comes on top of them)."""
_PROPOSALS = 15
"""The strategy's own proposals whose losses are compared."""


def _loss(sample: Sample) -> float:
    return float(sum((sample[f"x{i}"] - t) ** 2 for i, t in enumerate(_TARGET)))


def _table(sample: Sample) -> tuple[list[float], float]:
    return [_loss(sample)], 1.0 + sample["x0"] % 2


def _fed_samples(seed: int, perfect: bool) -> list[Sample]:
    """``_FED`` random samples (none perfect), then the perfect one if asked."""
    rng, space = random.Random(1000 + seed), SearchSpace(_SPACE)
    out: list[Sample] = []
    while len(out) < _FED:
        s = space.random(rng=rng)
        if _loss(s) > 0 and s not in out:
            out.append(s)
    if perfect:
        out.append({f"x{i}": t for i, t in enumerate(_TARGET)})
    return out


class FeedContract:
    """Tests every strategy runs about enqueued and added results."""

    learns: bool
    learns_from_given = True
    """Whether results the strategy did not propose move it (Optuna's NSGA-II picks
    parents among its own generations only, so a given result cannot); if not, only the
    test that it never proposes them again runs."""
    make_strategy: Callable[[int], Strategy]
    experiment: Callable[..., Experiment]

    async def test_never_proposes_enqueued_or_added_samples_again(self) -> None:
        from nasflow.testing._strategy_contract import small_table, tiny_space

        space = tiny_space()
        grid = list(space.grid())
        exp = self.experiment(space, self.make_strategy(7), small_table)
        exp.add_results([{"sample": s, "metric": small_table(s)[0][-1]} for s in grid[:2]])
        exp.enqueue(grid[2:4])
        with anyio.fail_after(60):
            await exp.run()
        assert exp.state is ExperimentState.DONE, exp.end_reason
        trials = exp.trials()
        assert sorted(t.hash for t in trials) == sorted(sample_hash(s) for s in grid)
        assert [t.origin for t in trials[:4]] == ["added", "added", "enqueued", "enqueued"]

    async def test_learns_from_an_added_perfect_result(self) -> None:
        await self._drawn_toward_the_perfect_one("add_results")

    async def test_learns_from_an_enqueued_perfect_sample(self) -> None:
        await self._drawn_toward_the_perfect_one("enqueue")

    async def _drawn_toward_the_perfect_one(self, how: str) -> None:
        """Fed random results and the perfect one, the strategy's next proposals are
        better (lower mean loss; median of 3 seeds) than when fed the random ones only."""
        if not (self.learns and self.learns_from_given):
            import pytest

            pytest.skip("the strategy does not learn from results it did not propose")

        async def mean_loss(seed: int, perfect: bool) -> float:
            exp = self.experiment(_SPACE, self.make_strategy(seed), _table,
                                  objective="minimize", max_trials=_FED + 1 + _PROPOSALS)
            fed = _fed_samples(seed, perfect)
            if how == "enqueue":
                exp.enqueue(fed)
            else:
                exp.add_results([{"sample": s, "metric": _loss(s)} for s in fed])
            await exp.run()
            own = [t for t in exp.trials() if t.origin is None][:_PROPOSALS]
            return statistics.mean(_loss(t.sample) for t in own)

        seeds = range(3)
        fed = [await mean_loss(s, True) for s in seeds]
        unfed = [await mean_loss(s, False) for s in seeds]
        assert statistics.median(fed) < statistics.median(unfed), (fed, unfed)
