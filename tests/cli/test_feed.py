"""``nasflow enqueue`` / ``nasflow import`` on an experiment that is not running (recorded
in its store, taken by the next resume) and ``nasflow resume --max-trials`` continuing a
DONE one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import nasflow as nf
from nasflow.cli import main

SPACE = {"a": nf.Categorical(list(range(10))), "b": nf.Categorical(list(range(10)))}


def evaluate(model: None, trial: nf.Trial) -> float:
    return float(trial.sample["a"] * 10 + trial.sample["b"])


def done_experiment() -> str:
    exp = nf.Experiment(SPACE, evaluate, nf.strategy.Random(seed=0),
                        nf.ExperimentConfig(max_trials=2))
    nf.run(exp)
    return exp.id


def lines(path: Path, rows: list[Any]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_enqueue_and_import_are_recorded_then_taken_by_resume(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exp_id = done_experiment()
    assert main(["enqueue", exp_id, "--sample", '{"a": 9, "b": 9}']) == 0
    out = capsys.readouterr().out
    assert "1 recorded, taken when it resumes" in out and "--max-trials N" in out
    results = lines(tmp_path / "r.jsonl", [{"sample": {"a": 8, "b": 8}, "metric": 88.0}])
    assert main(["import", exp_id, results]) == 0
    assert main(["resume", exp_id, "--quiet"]) == 0  # DONE, and no more room: says how
    assert "--max-trials N" in capsys.readouterr().out
    assert main(["resume", exp_id, "--max-trials", "4", "--quiet"]) == 0
    with nf.load_experiment(exp_id) as exp:
        trials = exp.trials()
    assert [(t.id, t.origin) for t in trials] == [
        (0, None), (1, None), (2, "added"), (3, "enqueued"), (4, None)]
    assert (trials[2].sample, trials[2].metric) == ({"a": 8, "b": 8}, 88.0)
    assert trials[3].sample == {"a": 9, "b": 9}


def test_a_sample_that_does_not_fit_is_refused_and_nothing_is_recorded(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exp_id = done_experiment()
    samples = lines(tmp_path / "s.jsonl", [{"a": 1, "b": 1}, {"a": 1, "b": 77}])
    assert main(["enqueue", exp_id, "--file", samples]) == 1
    err = capsys.readouterr().err
    assert "'b'" in err and "77" in err and "none was taken" in err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"sample": {"a": 1, "b": 1}, "metric": 1}\nnot json\n')
    assert main(["import", exp_id, str(bad)]) == 1
    assert "line 2 is not JSON" in capsys.readouterr().err
    from nasflow.store import StoreReader

    with nf.load_experiment(exp_id) as exp:
        directory = exp.directory
    reader = StoreReader(directory / "experiment.db")
    try:
        assert reader.changes() == []
    finally:
        reader.close()


async def test_a_running_experiment_takes_them_through_its_control_endpoint(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import anyio

    from nasflow.events import TrialStarted

    gate = anyio.Event()

    async def held(model: None, trial: nf.Trial) -> float:
        if trial.id == 0:
            await gate.wait()  # holds the only slot while the CLI feeds the experiment
        return float(trial.sample["a"] * 10 + trial.sample["b"])

    exp = nf.Experiment(SPACE, held, nf.strategy.Random(seed=0),
                        nf.ExperimentConfig(max_trials=3))
    started = exp.events(TrialStarted)
    async with exp:
        async for _ in started:
            break
        samples = lines(tmp_path / "s.jsonl", [{"a": 7, "b": 7}, {"a": 7, "b": 6}])
        assert await anyio.to_thread.run_sync(main, ["enqueue", exp.id, "--file", samples]) == 0
        assert "(RUNNING) took 2 of 2" in capsys.readouterr().out
        results = lines(tmp_path / "r.jsonl", [{"sample": {"a": 0, "b": 1}, "metric": 1.0}])
        assert await anyio.to_thread.run_sync(main, ["import", exp.id, results]) == 0
        bad = lines(tmp_path / "b.jsonl", [{"a": 70, "b": 7}])
        assert await anyio.to_thread.run_sync(main, ["enqueue", exp.id, "--file", bad]) == 1
        assert "'a'" in capsys.readouterr().err
        gate.set()
    trials = exp.trials()
    assert [(t.origin, t.sample) for t in trials[1:4]] == [
        ("added", {"a": 0, "b": 1}), ("enqueued", {"a": 7, "b": 7}),
        ("enqueued", {"a": 7, "b": 6})]
