"""What an NNI user writes out of habit gets an error (or a warning) that names
nasflow's way, never a bare TypeError, a private class name or a silent no-op."""

from __future__ import annotations

import gc
import warnings
from typing import Any

import pytest
import torch

import nasflow as nf

SPACE = {"a": nf.Categorical([1, 2, 3, 4]), "b": nf.Categorical(["x", "y", "z"])}


# --- the evaluator's signature, and experiments whose trials all fail alike ---------------

def test_a_one_argument_evaluator_is_refused_before_any_trial_runs() -> None:
    def evaluate(model: Any) -> float:  # NNI's FunctionalEvaluator form
        return 1.0

    with pytest.raises(TypeError, match=r"evaluate\(model\).*fn\(model, trial\)"):
        nf.Experiment(SPACE, evaluate, nf.strategy.Random())
    with pytest.raises(TypeError, match=r"fn\(model, trial, \*\*kwargs\)"):
        nf.FunctionalEvaluator(lambda model, trial: 1.0, epochs=3)


def _broken(model: None, trial: nf.Trial) -> float:
    raise TypeError("evaluate() missing 1 required positional argument: 'x'")


def test_the_first_identical_failures_stop_the_experiment_loudly(
        caplog: pytest.LogCaptureFixture) -> None:
    exp = nf.Experiment(SPACE, _broken, nf.strategy.Random(seed=0),
                        nf.ExperimentConfig(max_trials=20))
    with pytest.raises(nf.RepeatedFailureError) as info:
        nf.run(exp)
    err = info.value
    assert err.count == 3 and err.error.type == "TypeError"
    assert "first 3 trials" in str(err) and "fn(model, trial)" in str(err)
    assert "max_identical_failures=None" in str(err)
    assert exp.state is nf.ExperimentState.FAILED and "first 3 trials" in exp.end_reason
    assert len(exp.trials()) == 3  # not 20
    assert any(r.levelname == "ERROR" and "fn(model, trial)" in r.getMessage()
               for r in caplog.records)
    with nf.load_experiment(exp.id) as stored:
        assert stored.state is nf.ExperimentState.FAILED


def test_the_number_of_identical_failures_is_configurable() -> None:
    exp = nf.Experiment(SPACE, _broken, nf.strategy.Random(seed=0),
                        nf.ExperimentConfig(max_trials=6, max_identical_failures=2))
    with pytest.raises(nf.RepeatedFailureError):
        nf.run(exp)
    assert len(exp.trials()) == 2
    keep_going = nf.Experiment(SPACE, _broken, nf.strategy.Random(seed=0),
                               nf.ExperimentConfig(max_trials=5, max_identical_failures=None))
    nf.run(keep_going)
    assert keep_going.state is nf.ExperimentState.DONE and len(keep_going.trials()) == 5
    with pytest.raises(nf.ConfigError, match="max_identical_failures"):
        nf.ExperimentConfig(max_identical_failures=0)


def test_failures_that_differ_or_follow_a_success_do_not_stop_it() -> None:
    def differs(model: None, trial: nf.Trial) -> float:
        raise ValueError(f"bad sample {trial.sample}")

    def some_fail(model: None, trial: nf.Trial) -> float:
        if trial.id > 0:
            raise ValueError("the same error every time")
        return 1.0

    for evaluate in (differs, some_fail):
        exp = nf.Experiment(SPACE, evaluate, nf.strategy.GridSearch(),
                            nf.ExperimentConfig(max_trials=6))
        nf.run(exp)
        assert exp.state is nf.ExperimentState.DONE and len(exp.trials()) == 6


# --- names and argument orders ------------------------------------------------------------

def test_categorical_in_nni_choice_order_names_the_nasflow_order() -> None:
    with pytest.raises(TypeError, match=r"Categorical\(\[16, 32\], label='width'\)"):
        nf.Categorical("width", [16, 32])  # type: ignore[misc]
    with pytest.raises(TypeError, match=r"Categorical\(values, label=\.\.\."):
        nf.Categorical([16, 32], "width")  # type: ignore[misc]
    assert nf.Categorical([16, 32], label="width").values == [16, 32]


def test_setting_a_config_field_says_how_to_give_it() -> None:
    exp = nf.Experiment(SPACE, lambda model, trial: 1.0, nf.strategy.Random())
    with pytest.raises(nf.ConfigError, match=r"frozen.*NNI's 'max_trial_number' is "
                       r"nasflow's 'max_trials'.*ExperimentConfig\(max_trials=20\)"):
        exp.config.max_trial_number = 20  # type: ignore[attr-defined]
    with pytest.raises(nf.ConfigError, match=r"frozen.*config.replace\(concurrency=2\)"):
        exp.config.concurrency = 2  # type: ignore[misc]
    with pytest.raises(nf.ConfigError, match="did you mean 'max_trials'"):
        exp.config.max_trial = 3  # type: ignore[attr-defined]
    with pytest.raises(nf.ConfigError, match="'concurrency'"):
        nf.ExperimentConfig.from_dict({"trial_concurrency": 2})
    with pytest.raises(nf.ConfigError, match="nasflow's name for it: 'max_trials'"):
        nf.ExperimentConfig(max_trial_number=20)  # type: ignore[call-arg]
    with pytest.raises(nf.ConfigError, match="did you mean 'concurrency'"):
        nf.ExperimentConfig(concurency=2)  # type: ignore[call-arg]
    assert exp.config.max_trials is None  # nothing changed


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(8, 4), torch.randint(0, 2, (8,))


@pytest.mark.parametrize(("make", "message"), [
    (lambda: nf.evaluator.Classification(train_dataloaders=_data(), val_dataloaders=_data()),
     r"^Classification\(train_dataloaders=\.\.\.\) is NNI's argument.*train_data"),
    (lambda: nf.evaluator.Regression(_data(), _data(), max_epochs=3),
     r"^Regression\(max_epochs=\.\.\.\).*epochs="),
    (lambda: nf.evaluator.Classification(_data(), _data(), epoch=3),
     r"^Classification\(\) got an unexpected keyword argument epoch=3; did you mean epochs="),
    (lambda: nf.strategy.GridSearch(dedup=True), r"GridSearch\(dedup=.*never submits"),
    (lambda: nf.strategy.PolicyBasedRL(replay_buffer_size=8),
     r"PolicyBasedRL\(replay_buffer_size=.*samples_per_update="),
    (lambda: nf.strategy.DARTS(log_prob_every_n_step=10), r"DARTS\(log_prob_every_n_step=.*"
     r"once per epoch.*progress\(\)"),
    (lambda: nf.strategy.ENAS(reward_metric_name="acc"), r"ENAS\(reward_metric_name=.*"
     r"primary objective"),
])
def test_nni_arguments_name_the_nasflow_equivalent(make: Any, message: str) -> None:
    with pytest.raises(TypeError, match=message) as info:
        make()
    assert "Supervised" not in str(info.value)


def test_the_checked_constructors_keep_their_signatures() -> None:
    import inspect

    assert "shuffle" in inspect.signature(nf.strategy.GridSearch).parameters
    assert "train_data" in inspect.signature(nf.evaluator.Classification).parameters
    assert nf.strategy.GridSearch(shuffle=True, seed=1).shuffle


# --- exp.run() without await ------------------------------------------------------------

def test_run_not_awaited_warns_with_how_to_run() -> None:
    exp = nf.Experiment(SPACE, lambda model, trial: 1.0, nf.strategy.Random(),
                        nf.ExperimentConfig(max_trials=1, store=False))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exp.run()  # the NNI habit: a statement in sync code
        gc.collect()
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert any("nf.run(exp)" in m and "await exp.run()" in m for m in messages), messages
    assert not any("was never awaited" in m and "coroutine '" in m for m in messages)
    assert exp.state is nf.ExperimentState.CREATED
    nf.run(exp)  # and the experiment can still run
    assert exp.state is nf.ExperimentState.DONE


async def test_run_is_still_a_coroutine_for_every_way_of_awaiting_it() -> None:
    import asyncio

    import anyio

    def make() -> nf.Experiment:
        return nf.Experiment(SPACE, lambda model, trial: 1.0, nf.strategy.Random(),
                             nf.ExperimentConfig(max_trials=2, store=False))

    first, second, third = make(), make(), make()
    await first.run()
    async with anyio.create_task_group() as tg:
        tg.start_soon(second.run)
    await asyncio.create_task(third.run())
    assert {e.state for e in (first, second, third)} == {nf.ExperimentState.DONE}


# --- NNI's remote/Kubernetes training services are Ray here ------------------------------

def test_nni_cluster_services_point_to_ray() -> None:
    cfg = nf.ExperimentConfig(training_service="ray", trial_resources={"CPU": 2})
    assert cfg.trial_resources == {"CPU": 2.0}
    for nni in ("kubernetes", "remote"):
        with pytest.raises(nf.ConfigError) as info:
            nf.ExperimentConfig(training_service=nni)
        assert "'ray'" in str(info.value) and "'local'" in str(info.value)
