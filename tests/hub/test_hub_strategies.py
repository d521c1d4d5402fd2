"""Every strategy runs on the hub spaces it can serve, exports valid samples, and a
strategy that cannot serve a space says why and what to use instead."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

import nasflow as nf
from nasflow import hub
from nasflow.strategy._base import Strategy

from ._small import small_autoformer, small_shufflenet
from .conftest import classification


def _spaces() -> dict[str, Callable[[], Any]]:
    return {
        "NasBench201": lambda: hub.NasBench201(stem_out_channels=4, num_modules_per_stack=1),
        "DARTS": lambda: hub.DARTS(width=4, num_cells=3),
        "PNAS": lambda: hub.PNAS(width=4, num_cells=3),
        "NASNet": lambda: hub.NASNet(width=4, num_cells=3),
        "AmoebaNet": lambda: hub.AmoebaNet(width=4, num_cells=3),
        "ENAS": lambda: hub.ENAS(width=4, num_cells=3),
        "NasBench101": lambda: hub.NasBench101(stem_out_channels=4, num_stacks=1,
                                               num_modules_per_stack=1),
        "ShuffleNetSpace": small_shufflenet,
        "AutoFormer": small_autoformer,
    }


MULTI_TRIAL: dict[str, Callable[[], Strategy]] = {
    "Random": lambda: nf.strategy.Random(seed=0),
    "GridSearch": lambda: nf.strategy.GridSearch(),
    "RegularizedEvolution": lambda: nf.strategy.RegularizedEvolution(
        population_size=2, sample_size=2, seed=0),
    "TPE": lambda: nf.strategy.TPE(seed=0),
    "LocalSearch": lambda: nf.strategy.LocalSearch(seed=0),
    "PolicyBasedRL": lambda: nf.strategy.PolicyBasedRL(seed=0),
}

ONE_SHOT: dict[str, Callable[[], Strategy]] = {
    "DARTS": lambda: nf.strategy.DARTS(arc_learning_rate=0.05),
    "GumbelDARTS": lambda: nf.strategy.GumbelDARTS(arc_learning_rate=0.05),
    "DARTS-per-slot": lambda: nf.strategy.DARTS(arc_learning_rate=0.05, cell_mixing="slot"),
    "ENAS": lambda: nf.strategy.ENAS(ctrl_steps=2),
    "RandomOneShot": lambda: nf.strategy.RandomOneShot(search_trials=2),
}


def _score(model: torch.nn.Module, trial: nf.Trial) -> float:
    # a cheap, architecture-dependent score: the frozen model is real and runs
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 32, 32))
    assert out.shape == (1, 10)
    return -float(nf.evaluator.count_params(model))


@pytest.mark.parametrize("space_name", list(_spaces()))
@pytest.mark.parametrize("strategy", list(MULTI_TRIAL))
def test_multi_trial_strategies_run_on_every_space(space_name: str, strategy: str) -> None:
    space = _spaces()[space_name]()
    exp = nf.Experiment(space, nf.FunctionalEvaluator(_score), MULTI_TRIAL[strategy](),
                        nf.ExperimentConfig(store=False, max_trials=3))
    nf.run(exp)
    assert exp.state is nf.ExperimentState.DONE
    best = exp.export_top_models(1, formatter="dict")
    assert len(best) == 1
    space.validate(best[0])


@pytest.mark.parametrize("space_name", ["NasBench201", "DARTS", "PNAS"])
@pytest.mark.parametrize("strategy", list(ONE_SHOT))
def test_one_shot_strategies_export_valid_samples(space_name: str, strategy: str) -> None:
    space = _spaces()[space_name]()
    # 16x16 images: a cell supernet mixes every op on every edge, slow on shared CPUs
    exp = nf.Experiment(space, classification(epochs=1, n=32, size=16), ONE_SHOT[strategy](),
                        nf.ExperimentConfig(store=False))
    nf.run(exp)
    assert exp.state is nf.ExperimentState.DONE
    sample = exp.export_top_models(1, formatter="dict")[0]
    space.validate(sample)
    model = space.freeze(sample)  # retrains from scratch: a plain model
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_regularized_evolution_trains_real_models_on_nb201() -> None:
    space = _spaces()["NasBench201"]()
    exp = nf.Experiment(space, classification(epochs=1, n=32),
                        nf.strategy.RegularizedEvolution(population_size=2, sample_size=2),
                        nf.ExperimentConfig(store=False, max_trials=3))
    nf.run(exp)
    assert exp.state is nf.ExperimentState.DONE
    space.validate(exp.export_top_models(1, formatter="dict")[0])


def _failure(space: Any, strategy: Strategy) -> str:
    exp = nf.Experiment(space, classification(epochs=1, n=32), strategy,
                        nf.ExperimentConfig(store=False))
    with pytest.raises(nf.NasflowError) as info:
        nf.run(exp)
    return str(info.value)


@pytest.mark.parametrize("space_name", ["NASNet", "ENAS", "AmoebaNet"])
def test_one_shot_on_a_loose_end_space_says_why_and_what_to_use(space_name: str) -> None:
    # every one-shot strategy, before any supernet is built, and without pointing to
    # another one-shot strategy
    for make in [*ONE_SHOT.values(), nf.strategy.Proxyless]:
        strategy = make()
        msg = _failure(_spaces()[space_name](), strategy)
        assert "loose_end" in msg and "multi-trial" in msg and "hub.DARTS" in msg
        assert type(strategy).__name__ in msg and "use RandomOneShot" not in msg


def test_one_shot_on_a_searched_width_says_to_fix_it_or_go_multi_trial() -> None:
    msg = _failure(hub.DARTS(num_cells=3), nf.strategy.DARTS())
    assert "'width'" in msg and "multi-trial" in msg
