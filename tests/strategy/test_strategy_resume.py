"""Each learning strategy through a real stop and ``Experiment.restore`` (store on): the
resumed search goes on from the snapshot, runs the interrupted trials again, and never
submits a sample twice."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import pytest

import nasflow as nf
from nasflow.events import TrialEnded
from nasflow.strategy import Strategy
from nasflow.testing import SimulatedEngine
from nasflow.testing._strategy_contract import conditional_space, conditional_table

STRATEGIES: dict[str, Callable[[], Strategy]] = {
    "evolution": lambda: nf.strategy.RegularizedEvolution(population_size=8, sample_size=3,
                                                          seed=0),
    "tpe": lambda: nf.strategy.TPE(seed=0),
    "rl": lambda: nf.strategy.PolicyBasedRL(seed=0, hidden_size=16),
    "local": lambda: nf.strategy.LocalSearch(seed=0, initial=4),
}


@pytest.mark.parametrize("name", sorted(STRATEGIES))
async def test_stop_restore_and_finish(name: str) -> None:
    exp = SimulatedEngine.experiment(conditional_space(), STRATEGIES[name](),
                                     conditional_table,
                                     nf.ExperimentConfig(max_trials=30, concurrency=3))
    events = exp.events(TrialEnded)
    async with anyio.create_task_group() as tg:
        tg.start_soon(exp.run)
        seen = 0
        async for _ in events:
            seen += 1
            if seen == 12:
                break
        await exp.stop("pause")
    assert exp.state is nf.ExperimentState.STOPPED
    before = {t.id: t for t in exp.trials()}

    again = nf.Experiment.restore(exp.id)
    assert type(again.strategy) is type(exp.strategy)
    loaded: list[dict[str, Any]] = []
    load = again.strategy.load_state_dict
    again.strategy.load_state_dict = lambda state: (loaded.append(state), load(state))[-1]
    SimulatedEngine.attach(again, conditional_table)
    await again.run()
    assert loaded and loaded[0], "the resumed strategy did not go on from a snapshot"
    assert again.state is nf.ExperimentState.DONE, again.end_reason
    trials = again.trials()
    assert [t.id for t in trials] == list(range(30))
    assert len({t.hash for t in trials}) == 30  # no sample twice, across the stop
    assert all(t.state is nf.TrialState.SUCCEEDED for t in trials)
    for t in trials:  # completed trials are kept, interrupted ones ran again
        if t.id in before and before[t.id].state is nf.TrialState.SUCCEEDED:
            assert t.attempt == before[t.id].attempt
