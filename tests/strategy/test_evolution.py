"""RegularizedEvolution: aging population, only successes join, arguments checked."""

from __future__ import annotations

from typing import Any

import pytest

import nasflow as nf
from nasflow.strategy import RegularizedEvolution
from nasflow.testing import SimulatedEngine
from nasflow.testing._strategy_contract import conditional_space, conditional_table


def failing_table(sample: dict[str, Any]) -> tuple[list[float], float]:
    if sample["op0"] == "pool":
        raise RuntimeError("this one does not train")
    return conditional_table(sample)


async def test_failed_trials_do_not_join_the_population_and_the_oldest_dies() -> None:
    strategy = RegularizedEvolution(population_size=8, sample_size=3, seed=0)
    exp = SimulatedEngine.experiment(conditional_space(), strategy, failing_table,
                                     nf.ExperimentConfig(max_trials=60, concurrency=2,
                                                         store=False))
    await exp.run()
    assert exp.trials([nf.TrialState.FAILED])  # some did fail
    population = strategy.state_dict()["population"]
    assert len(population) == 8
    assert all(sample["op0"] != "pool" for sample, _ in population)
    # aging: the members are the 8 latest successful results it took, in the order they
    # ended (the last few trials ended after the strategy had stopped taking results)
    ended = [t.sample for t in sorted(exp.trials([nf.TrialState.SUCCEEDED]),
                                      key=lambda t: (t.ended_at, t.id))]
    first = ended.index(population[0][0])
    assert [s for s, _ in population] == ended[first:first + 8]
    assert first + 8 >= len(ended) - 2


async def test_first_population_size_trials_are_random_then_children_of_members() -> None:
    strategy = RegularizedEvolution(population_size=10, sample_size=4, seed=1)
    exp = SimulatedEngine.experiment(conditional_space(), strategy, conditional_table,
                                     nf.ExperimentConfig(max_trials=40, concurrency=1,
                                                         store=False))
    await exp.run()
    trials = exp.trials()
    for t in trials[10:]:  # each child is one mutation away from an earlier trial
        assert any(_one_step(t.sample, p.sample) for p in trials[: t.id])


def _one_step(a: dict[str, Any], b: dict[str, Any]) -> bool:
    changed = {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}
    return len(changed - {"op1", "op2"}) == 1 or (len(changed) == 1)


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="sample_size"):
        RegularizedEvolution(population_size=5, sample_size=6)
    with pytest.raises(ValueError, match="population_size"):
        RegularizedEvolution(population_size=0)
    with pytest.raises(ValueError, match="mutation_prob"):
        RegularizedEvolution(mutation_prob=1.5)
