"""TensorBoard (issue 16): ``ExperimentConfig(tensorboard=True)`` writes every trial's
metrics as scalars, ``trial.tensorboard()`` without the package does not fail the trial,
and ``nasflow tensorboard ID`` serves the experiment (a real TensorBoard server)."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import nasflow as nf
from nasflow.integrations import tensorboard as tb

SPACE = {"a": nf.Categorical([1, 2, 3])}


def reporting(model: None, trial: nf.Trial) -> float:
    for step in range(3):
        trial.report({"default": trial.sample["a"] * (step + 1), "loss": 1.0 / (step + 1)},
                     step=step)
    return float(trial.sample["a"] * 10)


def scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(run))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)]
            for tag in acc.Tags()["scalars"]}


@pytest.fixture
def no_tensorboard(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if the tensorboard package were not installed (the import fails)."""
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    monkeypatch.setattr(tb, "_warned", threading.Event())


def test_every_trial_s_metrics_become_scalars() -> None:
    exp = nf.Experiment(SPACE, reporting, nf.strategy.GridSearch(),
                        nf.ExperimentConfig(max_trials=3, tensorboard=True))
    nf.run(exp)
    for t in exp.trials():
        got = scalars(exp.directory / "trials" / str(t.id) / "tensorboard")
        a = t.sample["a"]
        assert got["default"] == [(0, a), (1, 2 * a), (2, 3 * a)]
        assert [s for s, _ in got["loss"]] == [0, 1, 2]
        assert got["loss"][2][1] == pytest.approx(1 / 3)
        assert got["final/metric"] == [(0, 10.0 * a)]


def test_without_the_flag_nothing_is_written() -> None:
    exp = nf.Experiment(SPACE, reporting, nf.strategy.GridSearch(),
                        nf.ExperimentConfig(max_trials=1))
    nf.run(exp)
    assert not (exp.directory / "trials" / "0" / "tensorboard").exists()


def test_the_config_flag_must_be_a_bool() -> None:
    with pytest.raises(nf.ConfigError, match="tensorboard"):
        nf.ExperimentConfig(tensorboard="yes")


def test_trial_writer_logs_beside_the_scalars() -> None:
    def own(model: None, trial: nf.Trial) -> float:
        writer = trial.tensorboard()
        writer.add_scalar("mine", 7.0, 4)
        trial.report(1.0, step=0)
        return 1.0

    exp = nf.Experiment(SPACE, own, nf.strategy.GridSearch(),
                        nf.ExperimentConfig(max_trials=1, tensorboard=True))
    nf.run(exp)
    got = scalars(exp.directory / "trials" / "0" / "tensorboard")
    assert got["mine"] == [(4, 7.0)] and got["metric"] == [(0, 1.0)]


def test_a_missing_tensorboard_does_not_fail_the_trial(
        no_tensorboard: None, caplog: pytest.LogCaptureFixture) -> None:
    def own(model: None, trial: nf.Trial) -> float:
        writer = trial.tensorboard()
        assert isinstance(writer, tb.NullWriter) and not writer
        writer.add_scalar("mine", 7.0, 4)  # does nothing, raises nothing
        with writer as w:
            w.add_histogram("h", [1, 2], 0)
        return 1.0

    caplog.set_level(logging.WARNING, logger="nasflow.tensorboard")
    exp = nf.Experiment(SPACE, own, nf.strategy.GridSearch(),
                        nf.ExperimentConfig(max_trials=2, tensorboard=True))
    nf.run(exp)
    assert [t.state for t in exp.trials()] == [nf.TrialState.SUCCEEDED] * 2
    warnings = [r.getMessage() for r in caplog.records if r.name == "nasflow.tensorboard"]
    assert len(warnings) == 1  # once per process, not once per trial
    assert "pip install 'nasflow[tensorboard]'" in warnings[0]


@pytest.mark.slow
def test_the_cli_serves_the_experiment_s_trials(home: Path) -> None:
    exp = nf.Experiment(SPACE, reporting, nf.strategy.GridSearch(),
                        nf.ExperimentConfig(max_trials=2, tensorboard=True))
    nf.run(exp)
    proc = subprocess.Popen(
        [sys.executable, "-m", "nasflow", "tensorboard", exp.id[:8], "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "NASFLOW_HOME": str(home)})
    watchdog = threading.Timer(90, proc.kill)  # a blocked readline ends
    watchdog.start()
    try:
        url = None
        assert proc.stdout is not None
        for line in proc.stdout:
            found = re.search(r"(http://[\w.:\-]+/)", line)
            if found:
                url = found.group(1)
                break
        assert url is not None, "TensorBoard printed no address"
        with urllib.request.urlopen(url + "data/runs", timeout=30) as response:
            runs: Any = json.loads(response.read())
        assert sorted(runs) == ["0/tensorboard", "1/tensorboard"]
    finally:
        watchdog.cancel()
        proc.kill()
        proc.communicate(timeout=30)


def test_the_cli_says_how_to_install_tensorboard(home: Path, tmp_path: Path) -> None:
    exp = nf.Experiment(SPACE, reporting, nf.strategy.GridSearch(),
                        nf.ExperimentConfig(max_trials=1))
    nf.run(exp)
    hide = tmp_path / "hide"  # a tensorboard package that cannot be found
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(
        "import importlib.machinery, sys\n"
        "class _Hide(importlib.machinery.PathFinder):\n"
        "    @classmethod\n"
        "    def find_spec(cls, name, path=None, target=None):\n"
        "        return None if name == 'tensorboard' else super().find_spec(name, path,"
        " target)\n"
        "sys.meta_path = [f for f in sys.meta_path if f is not importlib.machinery.PathFinder]"
        " + [_Hide]\n")
    done = subprocess.run(
        [sys.executable, "-m", "nasflow", "tensorboard", exp.id], capture_output=True,
        text=True, timeout=90,
        env={**os.environ, "NASFLOW_HOME": str(home), "PYTHONPATH": str(hide)})
    assert done.returncode == 1
    assert "pip install 'nasflow[tensorboard]'" in done.stderr


class Width(nf.nn.ModelSpace):
    def __init__(self) -> None:
        super().__init__()
        self.body = nf.nn.Linear(4, nf.Categorical([3, 5], label="width"))

    def forward(self, x: Any) -> Any:
        return self.body(x)


def test_the_built_in_evaluators_write_their_epochs_as_scalars() -> None:
    """``Classification`` on local workers: every epoch's validation accuracy becomes a
    scalar at its step (written by the experiment from the events the worker sent)."""
    import torch

    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 4, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    evaluator = nf.evaluator.Classification((x[:64], y[:64]), (x[64:], y[64:]), epochs=3,
                                            batch_size=16, lr=0.05)
    exp = nf.Experiment(Width(), evaluator, nf.strategy.GridSearch(),
                        nf.ExperimentConfig(max_trials=2, tensorboard=True,
                                            training_service="local"))
    nf.run(exp)
    stored = nf.load_experiment(exp.id)
    for t in exp.trials():
        assert t.state is nf.TrialState.SUCCEEDED, t.error
        got = scalars(exp.directory / "trials" / str(t.id) / "tensorboard")
        curve = stored.intermediates(t.id)
        assert [s for s, _ in curve] == [0, 1, 2]
        assert got["metric"] == [(s, pytest.approx(v)) for s, v in curve]
        assert got["final/metric"] == [(0, pytest.approx(t.metric))]
