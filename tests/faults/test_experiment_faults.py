"""Faults found by an outside probe in the experiment, the store, the in-process engine,
the space and the config (issue 10): each test reproduced its defect first. The lock
across processes is in test_experiment_lock.py, the store's integrity check in
test_store_damage.py, the kill -9 soak in test_kill_soak.py."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest

import nasflow as nf
from nasflow.events import TrialStarted

# --- 1. one id, one run -------------------------------------------------------------------

async def test_two_new_experiments_with_one_id_do_not_both_run() -> None:
    import anyio

    gate = anyio.Event()

    async def evaluate(model: None, trial: nf.Trial) -> float:
        await gate.wait()
        return 1.0

    space = {"x": nf.Categorical([1, 2, 3])}
    a = nf.Experiment(space, evaluate, nf.strategy.GridSearch(), id="same")
    b = nf.Experiment(space, evaluate, nf.strategy.GridSearch(), id="same")
    started = a.events(TrialStarted)
    async with a:
        async for _ in started:  # a holds the lock and runs a trial
            break
        with pytest.raises(nf.NasflowError, match="same"):
            await b.run()
        gate.set()
    assert len(a.trials()) == 3


# --- 2. a reused trial id never gets another sample's checkpoint -----------------------------

def _trial(directory: Path, trial_id: int, sample: dict[str, Any]) -> nf.Trial:
    from nasflow._kernel import Objective

    return nf.Trial(trial_id, sample, objective=Objective({"default": "maximize"}),
                    pipe=None, directory=lambda: directory)


def test_a_checkpoint_is_served_only_to_its_own_sample(tmp_path: Path) -> None:
    folder = tmp_path / "trials" / "7"
    _trial(folder, 7, {"x": 1}).save_checkpoint({"weights": "of x=1"})
    assert _trial(folder, 7, {"x": 1}).load_checkpoint() == {"weights": "of x=1"}
    other = _trial(folder, 7, {"x": 2})
    assert other.load_checkpoint() is None  # another architecture under the same id
    other.save_checkpoint({"weights": "of x=2"})
    assert _trial(folder, 7, {"x": 2}).load_checkpoint() == {"weights": "of x=2"}
    assert len(list(folder.glob("checkpoint*"))) == 1  # the stale one is gone
    assert _trial(folder, 7, {"x": 1}).load_checkpoint() is None


def test_a_copied_trial_folder_does_not_serve_its_checkpoint_to_another_id(
        tmp_path: Path) -> None:
    _trial(tmp_path / "3", 3, {"x": 1}).save_checkpoint("three")
    shutil.copytree(tmp_path / "3", tmp_path / "4")
    assert _trial(tmp_path / "4", 4, {"x": 1}).load_checkpoint() is None


# --- 4. a metric that does not fit a float ----------------------------------------------------

async def test_a_metric_too_large_for_a_float_fails_that_trial_alone() -> None:
    def evaluate(model: None, trial: nf.Trial) -> Any:
        if trial.sample["x"] == 1:
            return 10**400
        if trial.sample["x"] == 2:
            trial.report(10**400)
        return 1.0

    exp = nf.Experiment({"x": nf.Categorical([0, 1, 2, 3])}, evaluate,
                        nf.strategy.GridSearch())
    await exp.run()
    assert exp.state is nf.ExperimentState.DONE
    by_x = {t.sample["x"]: t for t in exp.trials()}
    for x in (1, 2):
        assert by_x[x].state is nf.TrialState.FAILED
        assert by_x[x].error is not None and by_x[x].error.type == "MetricError"
        assert "float" in by_x[x].error.message
    assert by_x[0].state is by_x[3].state is nf.TrialState.SUCCEEDED


def test_to_number_turns_an_overflow_into_a_metric_error() -> None:
    from nasflow._kernel import to_number

    with pytest.raises(nf.MetricError, match="fit a float"):
        to_number(10**400)
    with pytest.raises(nf.MetricError, match="fit a float"):
        to_number(-(10**400), what="metric 'loss'")


# --- 6. dict-space entries that are not choices ----------------------------------------------

def test_a_dict_space_entry_that_is_not_a_choice_is_refused_by_name() -> None:
    with pytest.raises(nf.SpaceError) as caught:
        nf.Experiment({"width": [16, 32, 64], "epochs": 10, "depth": nf.Categorical([1, 2])},
                      lambda model, trial: 1.0, nf.strategy.Random())
    message = str(caught.value)
    assert "'width'" in message and "nf.Categorical([16, 32, 64])" in message
    assert "'epochs'" in message


def test_expressions_and_constraints_are_still_accepted() -> None:
    w = nf.Categorical([1, 2])
    space = nf.SearchSpace({"w": w, "twice": w * 2})
    assert space.freeze({"w": 2}) == {"w": 2, "twice": 4}


# --- 7. smaller ones --------------------------------------------------------------------------

@pytest.mark.parametrize("home_value", [123, 4.5, b"bytes", ["a"]])
def test_a_home_that_is_not_a_path_is_a_config_error(home_value: Any) -> None:
    with pytest.raises(nf.ConfigError, match="home"):
        nf.ExperimentConfig(home=home_value)


@pytest.mark.parametrize("url", ["ws://", "wss://", "ws://:80", "ws://host:notaport",
                                 "ws://host:99999", "ws:// spaced:1", "ws://h:1/p?q#f"])
def test_a_manager_url_without_a_host_or_with_a_bad_port_is_refused(url: str) -> None:
    with pytest.raises(nf.ConfigError, match="manager"):
        nf.ExperimentConfig(manager=url)


@pytest.mark.parametrize("url", ["ws://127.0.0.1:8765", "wss://example.org", "ws://[::1]:9"])
def test_a_good_manager_url_is_kept(url: str) -> None:
    assert nf.ExperimentConfig(manager=url).manager == url


def test_a_negative_step_is_refused(tmp_path: Path) -> None:
    trial = _trial(tmp_path, 0, {"x": 1})
    with pytest.raises(ValueError, match="step"):
        trial.report(0.5, step=-5)
    with pytest.raises(ValueError, match="step"):
        trial.save_checkpoint("x", step=-1)
    trial.report(0.5, step=0)


async def test_a_memory_error_says_the_trial_ran_out_of_memory() -> None:
    def evaluate(model: None, trial: nf.Trial) -> float:
        raise MemoryError

    exp = nf.Experiment({"x": nf.Categorical([1])}, evaluate, nf.strategy.GridSearch())
    await exp.run()
    (t,) = exp.trials()
    assert t.error is not None and t.error.type == "MemoryError"
    assert "out of memory" in t.error.message


async def test_experiment_files_are_private_to_their_owner(home: Path) -> None:
    def evaluate(model: None, trial: nf.Trial) -> float:
        trial.save_checkpoint({"w": 1})
        print("hello")
        return 1.0

    old = os.umask(0o022)
    try:
        exp = nf.Experiment({"x": nf.Categorical([1, 2])}, evaluate, nf.strategy.GridSearch())
        await exp.run()
    finally:
        os.umask(old)
    mode = stat.S_IMODE(exp.directory.stat().st_mode)
    assert mode == 0o700, oct(mode)  # nobody else can reach anything inside
    private = [exp.directory / "experiment.db", exp.directory / "strategy.pkl",
               exp.directory / "evaluator.pkl"]
    assert [(p.name, oct(stat.S_IMODE(p.stat().st_mode))) for p in private
            if stat.S_IMODE(p.stat().st_mode) & 0o077] == []
