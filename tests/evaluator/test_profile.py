"""Profilers: FLOPs, parameters and latency on known modules; FLOPs constraints that
exclude architectures before any trial runs; profiles as objectives."""

from __future__ import annotations

import pickle
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
import torch
import torch.nn as nn

import nasflow as nf
from nasflow import nn as snn
from nasflow.evaluator import (
    Profiled,
    count_flops,
    count_params,
    flops_constraint,
    measure_latency,
    params_constraint,
)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)


# --- counting --------------------------------------------------------------------------------

def test_a_linear_layer_costs_two_flops_per_multiply_add() -> None:
    layer = nn.Linear(8, 4)
    assert count_flops(layer, (1, 8)) == 2 * 8 * 4
    assert count_flops(layer, (3, 8)) == 3 * 2 * 8 * 4
    assert count_flops(layer, torch.randn(5, 8)) == 5 * 2 * 8 * 4
    assert count_flops(layer, (3, 8), meta=False) == 3 * 2 * 8 * 4


def test_convolutions_and_a_whole_network() -> None:
    conv = nn.Conv2d(1, 4, 3)  # 6x6 outputs of 4 channels, each 9 multiply-adds
    assert count_flops(conv, (1, 1, 8, 8)) == 2 * 4 * 36 * 9
    net = nn.Sequential(conv, nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 10))
    assert count_flops(net, (2, 1, 8, 8)) == 2 * (2 * 4 * 36 * 9 + 2 * 144 * 10)


def test_counting_on_meta_leaves_the_model_alone() -> None:
    layer = nn.Linear(8, 4)
    before = layer.weight.detach().clone()
    count_flops(layer, (1, 8))
    assert layer.weight.device.type == "cpu" and torch.equal(layer.weight, before)


class DataDependent(nn.Module):
    """Chooses a branch by looking at its input: meta tensors cannot say which."""

    def __init__(self) -> None:
        super().__init__()
        self.small, self.big = nn.Linear(8, 2), nn.Linear(8, 64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.small(x) if bool(x.sum() >= 0) else self.big(x)


def test_a_model_that_needs_real_values_is_counted_on_a_real_pass() -> None:
    assert count_flops(DataDependent(), (1, 8)) == 2 * 8 * 2  # zeros: the small branch


def test_parameters_are_counted_once_even_when_shared() -> None:
    layer = nn.Linear(8, 4)
    assert count_params(layer) == 8 * 4 + 4
    tied = nn.Sequential(layer, nn.ReLU(), layer)
    assert count_params(tied) == 36
    layer.bias.requires_grad_(False)
    assert count_params(tied, trainable_only=True) == 32


class Slow(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(0.002)  # the work being timed
        return x


def test_latency_is_the_median_pass_in_milliseconds_and_the_mode_is_restored() -> None:
    model = Slow()
    model.train()
    ms = measure_latency(model, (1, 4), warmup=1, repeats=3)
    assert 2.0 <= ms < 200.0
    assert model.training
    assert measure_latency(nn.Linear(4, 4), torch.randn(1, 4), repeats=5) < 50.0
    with pytest.raises(ValueError, match="repeats >= 1"):
        measure_latency(model, (1, 4), repeats=0)


def test_bad_inputs_say_what_is_expected() -> None:
    with pytest.raises(TypeError, match=r"an input shape such as \(1, 3, 32, 32\)"):
        count_flops(nn.Linear(8, 4), "1x8")
    with pytest.raises(TypeError, match="an input shape"):
        flops_constraint(Net(), 1e6, [1.5, 2])


# --- constraints before any trial -----------------------------------------------------------

class Net(snn.ModelSpace):
    def __init__(self) -> None:
        super().__init__()
        width = nf.Categorical([4, 8, 16, 32], label="width")
        self.conv = snn.Conv2d(1, width, 3, padding=1)
        self.act = snn.LayerChoice([nn.ReLU(), nn.Tanh()], label="act")
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = snn.Linear(width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.act(self.conv(x))).flatten(1))


def net_flops(width: int) -> int:
    return 2 * width * 64 * 9 + 2 * width * 10  # conv on 8x8 (padded), then the head


def test_a_flops_constraint_keeps_only_architectures_under_the_limit() -> None:
    space = Net()
    constraint = flops_constraint(space, net_flops(8), (1, 1, 8, 8))
    space.add_constraint("flops", constraint)
    assert sorted({s["width"] for s in space.grid()}) == [4, 8]
    assert constraint.value({"width": 16, "act": 0}) == net_flops(16)
    with pytest.raises(nf.SampleValidationError, match="constraint 'flops'"):
        space.validate({"width": 32, "act": 1})
    for seed in range(20):
        assert space.random(seed)["width"] in (4, 8)


def test_each_architecture_is_measured_once() -> None:
    space = Net()
    calls: list[int] = []
    constraint = params_constraint(space, 200)  # widths 4 and 8: 90 and 170 parameters

    def measure(model: nn.Module) -> int:
        calls.append(1)
        return count_params(model)

    constraint.measure = measure
    space.add_constraint("params", constraint)
    for _ in range(3):
        kept = list(space.grid())
    assert len(calls) == 8 and len(kept) == 4  # 4 widths x 2 activations, measured once
    assert all(s["width"] <= 8 for s in kept)


async def test_excluded_architectures_never_become_trials() -> None:
    space = Net()
    space.add_constraint("flops", flops_constraint(space, net_flops(16), (1, 1, 8, 8)))
    seen: list[int] = []
    lock = threading.Lock()

    def evaluate(model: nn.Module, trial: nf.Trial) -> float:
        flops = count_flops(model, (1, 1, 8, 8))
        with lock:
            seen.append(flops)
        return 1.0 / flops

    exp = nf.Experiment(space, evaluate, nf.strategy.GridSearch(),
                        nf.ExperimentConfig(max_trials=50, concurrency=2))
    await exp.run()
    assert len(exp.trials()) == 6  # widths 4, 8, 16 x two activations: the whole grid
    assert sorted(seen) == sorted(net_flops(w) for w in (4, 8, 16) for _ in range(2))


def test_a_model_that_cannot_run_on_the_input_fails_with_a_clear_error() -> None:
    space = Net()
    space.add_constraint("flops", flops_constraint(space, 1e9, (1, 3, 8, 8)))  # 3 channels
    with pytest.raises(nf.NasflowError, match=r"could not measure the FLOPs of sample"):
        space.random(0)


def test_a_constrained_space_pickles_for_resume() -> None:
    space = Net()
    space.add_constraint("flops", flops_constraint(space, net_flops(8), (1, 1, 8, 8)))
    list(space.grid())
    again = pickle.loads(pickle.dumps(space))
    assert [s["width"] for s in again.grid()] == [4, 4, 8, 8]


def test_the_profilers_module_imports_without_torch() -> None:
    code = ("import sys; sys.modules['torch'] = None; import nasflow.evaluator as e; "
            "import nasflow.evaluator._profile; print(len(e.__all__))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=False)
    assert out.returncode == 0, out.stderr


# --- profiles as objectives ------------------------------------------------------------------

def train(model: nn.Module, trial: Any) -> float:
    """A stand-in for training: the accuracy grows with the width."""
    width = trial.sample["width"]
    for epoch in (1, 2):
        trial.report(1 - 1 / (width * epoch), step=epoch)
    return 1 - 1 / (2 * width) + 0.001 * trial.sample["act"]


async def test_profiled_adds_the_profile_to_every_report() -> None:
    space = Net()
    objective = {"accuracy": "maximize", "flops": "minimize"}
    exp = nf.Experiment(space, Profiled(train, (1, 1, 8, 8), repeats=2),
                        nf.strategy.GridSearch(), nf.ExperimentConfig(objective=objective))
    await exp.run()
    trials = exp.trials()
    assert len(trials) == 8 and all(t.state is nf.TrialState.SUCCEEDED for t in trials)
    for t in trials:
        width = t.sample["width"]
        assert t.metrics["flops"] == net_flops(width)
        assert t.metrics["params"] == (9 * width + width) + (width * 10 + 10)
        assert t.metrics["latency_ms"] > 0
        assert t.metric == t.metrics["accuracy"] == 1 - 1 / (2 * width) + 0.001 * t.sample["act"]
    # accuracy and FLOPs trade off exactly: the front is the best act of every width
    front = exp.export_top_models(10)
    assert [(r.sample["width"], r.sample["act"]) for r in front] == [
        (32, 1), (16, 1), (8, 1), (4, 1)]


async def test_profiled_async_and_current_trial_reports_and_dict_results() -> None:
    reported: list[Any] = []

    async def evaluate(model: nn.Module, trial: Any) -> dict[str, float]:
        nf.current_trial().report(0.5, step=1)
        reported.append(trial.last_reported)
        return {"accuracy": 0.9, "latency_ms": 123.0}  # its own keys win

    exp = nf.Experiment(Net(), Profiled(evaluate, (1, 1, 8, 8), metrics=["latency_ms"]),
                        nf.strategy.Random(seed=0),
                        nf.ExperimentConfig(max_trials=2,
                                            objective={"accuracy": "maximize",
                                                       "latency_ms": "minimize"}))
    await exp.run()
    assert [t.state for t in exp.trials()] == [nf.TrialState.SUCCEEDED] * 2
    assert all(t.metrics == {"accuracy": 0.9, "latency_ms": 123.0} for t in exp.trials())
    assert all(set(r) == {"accuracy", "latency_ms"} and r["accuracy"] == 0.5
               for r in reported)


def test_profiled_needs_known_metrics_and_a_model() -> None:
    with pytest.raises(ValueError, match="metrics must be some of"):
        Profiled(train, (1, 8), metrics=["energy"])
    with pytest.raises(TypeError, match="torch-free"):
        Profiled(train, (1, 8)).profile(None)
