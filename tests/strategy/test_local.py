"""LocalSearch: climbs one-label neighbourhoods, restarts from local optima."""

from __future__ import annotations

from typing import Any

import pytest

import nasflow as nf
from nasflow.strategy import LocalSearch
from nasflow.testing import SimulatedEngine

SPACE = {f"x{i}": nf.Categorical(list(range(6))) for i in range(3)}


def _changed(a: dict[str, Any], b: dict[str, Any]) -> int:
    return sum(a[k] != b[k] for k in a)


def bowl(sample: dict[str, Any]) -> tuple[list[float], float]:
    return [-float(sum((v - 4) ** 2 for v in sample.values()))], 1.0


async def test_after_the_random_start_each_trial_neighbours_an_earlier_one() -> None:
    strategy = LocalSearch(seed=0, initial=5)
    exp = SimulatedEngine.experiment(SPACE, strategy, bowl,
                                     nf.ExperimentConfig(max_trials=60, store=False))
    await exp.run()
    trials = exp.trials()
    for t in trials[5:]:
        assert any(_changed(t.sample, p.sample) == 1 for p in trials[: t.id]), t.sample
    assert max(t.metric for t in trials) == 0.0  # the bottom of the bowl


def two_peaks(sample: dict[str, Any]) -> tuple[list[float], float]:
    # a local optimum at all-0 next to the global one at all-5
    x = list(sample.values())
    return [max(-sum(x), -3.0 * sum(5 - v for v in x) + 10.0)], 1.0


async def test_local_optima_lead_to_random_restarts() -> None:
    strategy = LocalSearch(seed=3, initial=1)
    exp = SimulatedEngine.experiment(SPACE, strategy, two_peaks,
                                     nf.ExperimentConfig(max_trials=150, concurrency=3,
                                                         store=False))
    await exp.run()
    assert strategy.restarts >= 1
    assert len({t.hash for t in exp.trials()}) == 150


async def test_it_minimises_when_asked() -> None:
    strategy = LocalSearch(seed=1, initial=3)
    exp = SimulatedEngine.experiment(SPACE, strategy, bowl,
                                     nf.ExperimentConfig(max_trials=60, objective="minimize",
                                                         store=False))
    await exp.run()
    worst = min(bowl(s)[0][0] for s in nf.SearchSpace(SPACE).grid())
    assert min(t.metric for t in exp.trials()) == worst  # the rim, under minimize


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="initial"):
        LocalSearch(initial=0)
