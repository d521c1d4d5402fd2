"""OptunaSampler and TPE: the mapping to Optuna, directions, what Optuna is told, and no
trial wasted on a repeat or an infeasible proposal."""

from __future__ import annotations

from typing import Any

import optuna
import orjson
import pytest

import nasflow as nf
from nasflow.strategy import Decision, OptunaSampler, Scheduler
from nasflow.strategy._optuna import restore_rngs, rng_states
from nasflow.strategy._optuna_codec import Codec
from nasflow.testing import SimulatedEngine
from nasflow.testing._strategy_contract import (
    conditional_space,
    conditional_table,
    constrained_space,
    small_table,
    tiny_space,
)

T = optuna.trial.TrialState


def _study(strategy: OptunaSampler) -> optuna.Study:
    assert strategy.study is not None
    return strategy.study


def test_the_codec_round_trips_every_kind_of_choice() -> None:
    space = nf.SearchSpace({
        "prim": nf.Categorical([1, "x", None, 2.5]),
        "odd": nf.Categorical([[1, 2], {"k": 3}]),       # not Optuna values: by index
        "clash": nf.Categorical([1, True, 1.0]),         # equal under ==: by index
        "lr": nf.Numerical(1e-4, 1e-1, log=True),
        "width": nf.Numerical(16, 128, quantize=16, log=True),
        "p": nf.Numerical(0.0, 0.5, quantize=0.1),
        "few": nf.CategoricalMultiple(["a", "b", "c"]),
        "many": nf.CategoricalMultiple(list(range(8)), n_chosen=3),
    })
    codec = Codec(space)
    assert codec.params["prim"].distributions()["prim"].choices == (1, "x", None, 2.5)
    assert codec.params["odd"].distributions()["odd"].choices == (0, 1)
    assert codec.params["clash"].distributions()["clash"].choices == (0, 1, 2)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(30):
        trial = study.ask()
        sample = space.canonicalize(codec.suggest(trial))
        assert set(trial.params) == set(codec.encode(sample))
        assert codec.decode(trial.params) == sample
        assert codec.decode(codec.encode(sample)) == sample
        assert sample["width"] in (16, 32, 48, 64, 80, 96, 112, 128)
        assert len(sample["many"]) == 3
        study.tell(trial, 0.0)
    dist = codec.params["width"].distributions()["width"]
    assert isinstance(dist, optuna.distributions.IntDistribution) and dist.log


def test_conditional_labels_are_suggested_only_when_active() -> None:
    space = conditional_space()
    codec = Codec(space)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    depths = set()
    for _ in range(40):
        trial = study.ask()
        sample = codec.suggest(trial)
        space.validate(sample)  # exactly the active labels
        assert set(trial.params) == set(sample)
        depths.add(sample["depth"])
        study.tell(trial, 0.0)
    assert depths == {1, 2, 3}


@pytest.mark.parametrize("direction", ["minimize", "maximize"])
async def test_the_study_optimises_in_the_experiment_direction(direction: str) -> None:
    strategy = nf.strategy.TPE(seed=0)
    exp = SimulatedEngine.experiment(conditional_space(), strategy, conditional_table,
                                     nf.ExperimentConfig(max_trials=30, objective=direction,
                                                         store=False))
    await exp.run()
    study = _study(strategy)
    assert study.direction.name == direction.upper()
    told = {t.user_attrs["nasflow_hash"]: t.value for t in study.trials
            if t.state is T.COMPLETE}
    # the raw metric, in the study's direction; the last trial ended after the search
    trials = exp.trials()
    assert all(told[t.hash] == t.metric for t in trials[:-1])


def two_objectives(sample: dict[str, Any]) -> tuple[list[dict[str, float]], float]:
    acc = conditional_table(sample)[0][-1]
    return [{"acc": acc, "latency": sample["width"] * sample["depth"] / 10}], 1.0


@pytest.mark.parametrize("make", [
    lambda: OptunaSampler(optuna.samplers.NSGAIISampler(population_size=8, seed=0), seed=0),
    lambda: nf.strategy.TPE(seed=0),
])
async def test_several_objectives_go_to_optuna(make: Any) -> None:
    strategy = make()
    exp = SimulatedEngine.experiment(
        conditional_space(), strategy, two_objectives,
        nf.ExperimentConfig(max_trials=24, concurrency=3, store=False,
                            objective={"acc": "maximize", "latency": "minimize"}),
    )
    await exp.run()
    study = _study(strategy)
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    complete = [t for t in study.trials if t.state is T.COMPLETE]
    assert complete and all(len(t.values) == 2 for t in complete)


async def test_infeasible_proposals_are_told_and_never_submitted() -> None:
    strategy = nf.strategy.TPE(seed=0, n_startup_trials=3)
    exp = SimulatedEngine.experiment(constrained_space(), strategy, small_table,
                                     nf.ExperimentConfig(store=False))
    await exp.run()
    assert len(exp.trials()) == 21  # every allowed sample once, nothing else
    infeasible = [t for t in _study(strategy).trials if t.constraints.get("nasflow", 0) > 0]
    assert infeasible and all(t.state is T.PRUNED for t in infeasible)


async def test_repeats_are_told_their_known_outcome_without_a_trial() -> None:
    strategy = nf.strategy.TPE(seed=0, n_startup_trials=2)
    exp = SimulatedEngine.experiment(tiny_space(), strategy, small_table,
                                     nf.ExperimentConfig(store=False))
    await exp.run()
    assert len(exp.trials()) == 9
    study = _study(strategy)
    assert len(study.trials) > 9  # the sampler proposed repeats; they were only told
    by_hash: dict[str, set[Any]] = {}
    for t in study.trials:
        by_hash.setdefault(t.user_attrs["nasflow_hash"], set()).add(t.value)
    assert all(len(values) == 1 for values in by_hash.values())
    assert all(t.state is T.COMPLETE for t in study.trials)


def flaky_table(sample: dict[str, Any]) -> tuple[list[float], float]:
    if sample["op0"] == "skip":
        raise RuntimeError("diverged")
    return conditional_table(sample)


class StopPools(Scheduler):
    def on_result(self, trial: Any, step: int, metric: float, value: Any,
                  time: float) -> Decision:
        return Decision.STOP if trial.sample["op0"] == "pool" else Decision.CONTINUE


async def test_failed_and_early_stopped_trials_are_told_fail_and_pruned() -> None:
    strategy = OptunaSampler(optuna.samplers.RandomSampler(seed=3), seed=3)
    exp = SimulatedEngine.experiment(conditional_space(), strategy, flaky_table,
                                     nf.ExperimentConfig(max_trials=40, concurrency=2,
                                                         store=False),
                                     scheduler=StopPools())
    await exp.run()
    states = {t.user_attrs["nasflow_hash"]: t.state for t in _study(strategy).trials}
    expected = {nf.TrialState.FAILED: T.FAIL, nf.TrialState.EARLY_STOPPED: T.PRUNED,
                nf.TrialState.SUCCEEDED: T.COMPLETE}
    told = [t for t in exp.trials() if states.get(t.hash) is not T.RUNNING]
    assert {t.state for t in told} == set(expected)
    assert all(states[t.hash] is expected[t.state] for t in told)


async def test_the_state_rebuilds_the_same_study() -> None:
    strategy = nf.strategy.TPE(seed=4)
    exp = SimulatedEngine.experiment(constrained_space(), strategy, small_table,
                                     nf.ExperimentConfig(max_trials=15, store=False))
    await exp.run()
    state = strategy.state_dict()
    again = nf.strategy.TPE(seed=4)
    again.load_state_dict(state)
    assert again.state_dict() == state  # before it runs, the state is kept as given
    rebuilt = optuna.create_study(direction="maximize")
    OptunaSampler._replay(rebuilt, state["trials"])

    def view(study: optuna.Study) -> list[tuple[Any, ...]]:
        return [(t.number, t.state, t.params, t.values, t.user_attrs, t.system_attrs)
                for t in study.trials]

    assert view(rebuilt) == view(_study(strategy))
    assert any(t.state is T.PRUNED for t in rebuilt.trials)  # infeasible ones too


def test_a_sampler_is_required() -> None:
    with pytest.raises(TypeError, match="needs a sampler"):
        OptunaSampler()._build_sampler(None)  # type: ignore[arg-type]


async def test_a_used_strategy_pickles_as_its_state() -> None:
    import cloudpickle

    strategy = nf.strategy.TPE(seed=5)
    exp = SimulatedEngine.experiment(conditional_space(), strategy, conditional_table,
                                     nf.ExperimentConfig(max_trials=12, store=False))
    await exp.run()
    copy = cloudpickle.loads(cloudpickle.dumps(strategy))
    assert copy.study is None
    assert copy.state_dict()["trials"] == strategy.state_dict()["trials"]


async def test_the_state_is_json_and_pickles_nothing_of_optuna() -> None:
    # optuna 5.1's NSGAIISampler holds a _thread.lock: a state that pickled the sampler
    # could not be saved, and a resumed search went on with a fresh one
    strategy = OptunaSampler(optuna.samplers.NSGAIISampler(population_size=6, seed=1), seed=1)
    exp = SimulatedEngine.experiment(conditional_space(), strategy, conditional_table,
                                     nf.ExperimentConfig(max_trials=9, store=False))
    await exp.run()
    state = strategy.state_dict()
    assert set(state) == {"trials", "sampler_rngs", "rng"}
    assert orjson.loads(orjson.dumps(state)) == state
    assert state["sampler_rngs"]  # NSGA-II's generators, by where they sit in the sampler


def test_generators_are_restored_into_a_fresh_sampler() -> None:
    import numpy as np

    used = optuna.samplers.NSGAIISampler(seed=7)
    used._rng.rng.rand(5)
    fresh = optuna.samplers.NSGAIISampler(seed=7)
    restore_rngs(fresh, orjson.loads(orjson.dumps(rng_states(used))))
    assert np.array_equal(fresh._rng.rng.rand(3), used._rng.rng.rand(3))
    # an unseeded lazy generator not made yet, and a numpy Generator with 128-bit state
    lazy = optuna.samplers.RandomSampler()
    lazy.extra = np.random.default_rng(3)
    assert lazy._rng._rng is None
    donor = optuna.samplers.RandomSampler(seed=2)
    donor.extra = np.random.default_rng(4)
    donor.extra.random(2)
    restore_rngs(lazy, orjson.loads(orjson.dumps(rng_states(donor))))
    assert lazy._rng.rng.rand() == donor._rng.rng.rand()
    assert lazy.extra.random() == donor.extra.random()


async def test_a_factory_strategy_pickles_and_resumes_with_a_rebuilt_sampler() -> None:
    import cloudpickle

    def factory() -> Any:
        return optuna.samplers.NSGAIISampler(population_size=6, seed=2)

    def make() -> OptunaSampler:
        return OptunaSampler(factory=factory, seed=2)

    straight = make()
    exp = SimulatedEngine.experiment(conditional_space(), straight, conditional_table,
                                     nf.ExperimentConfig(max_trials=16, concurrency=1,
                                                         store=False))
    await exp.run()
    expected = [t.sample for t in exp.trials()]
    first = make()
    exp = SimulatedEngine.experiment(conditional_space(), first, conditional_table,
                                     nf.ExperimentConfig(max_trials=8, concurrency=1,
                                                         store=False))
    await exp.run()
    copy = cloudpickle.loads(cloudpickle.dumps(first))  # as the experiment saves it
    assert copy.sampler is None and copy.factory is not None
    assert copy.state_dict() == first.state_dict()
    assert [t.sample for t in exp.trials()] == expected[:8]


def test_a_sampler_and_a_factory_are_exclusive() -> None:
    with pytest.raises(TypeError, match="not both"):
        OptunaSampler(optuna.samplers.RandomSampler(), factory=optuna.samplers.RandomSampler)
