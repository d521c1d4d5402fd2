"""Hardware-aware one-shot search (issue 16): ``DARTS``, ``GumbelDARTS`` and
``Proxyless`` with ``penalty=`` trade accuracy for a cheaper architecture, on a space
where the cheap op is known (an MLP that fits the data, or an op that throws the input
away and costs nothing)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn as nn

import nasflow as nf
from nasflow import nn as snn
from nasflow.strategy._base import Strategy


class Destroy(nn.Module):
    """Throws its input away: no FLOPs, no parameters, and nothing to learn from."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


def identity_mlp() -> nn.Module:
    """Two linear layers that start as the identity (so it fits from the first step) and
    cost FLOPs and parameters."""
    first, second = nn.Linear(4, 16), nn.Linear(16, 4)
    with torch.no_grad():
        first.weight.copy_(torch.eye(16, 4))
        second.weight.copy_(torch.eye(4, 16))
        first.bias.zero_()
        second.bias.zero_()
    return nn.Sequential(first, second)


class CostOrFit(snn.ModelSpace):
    """``mlp`` keeps the input (the target is linear in it) and costs FLOPs and
    parameters; ``destroy`` costs nothing and leaves nothing to fit."""

    def __init__(self) -> None:
        super().__init__()
        self.op = snn.LayerChoice({"mlp": identity_mlp(), "destroy": Destroy()}, label="op")
        self.head = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.op(x))


def data() -> tuple[Any, Any]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(512, 4, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 3.0, 0.5])
    return (x[:384], y[:384]), (x[384:], y[384:])


KINDS: dict[str, Callable[..., Strategy]] = {
    "DARTS": lambda **kw: nf.strategy.DARTS(arc_learning_rate=0.05, **kw),
    "GumbelDARTS": lambda **kw: nf.strategy.GumbelDARTS(arc_learning_rate=0.05, **kw),
    "Proxyless": lambda **kw: nf.strategy.Proxyless(arc_learning_rate=0.05,
                                                    warmup_epochs=1, **kw),
}


def search(strategy: Strategy) -> nf.Experiment:
    train, val = data()
    evaluator = nf.evaluator.Regression(train, val, epochs=4, batch_size=32, lr=0.05)
    exp = nf.Experiment(CostOrFit(), evaluator, strategy, nf.ExperimentConfig(store=False))
    nf.run(exp)
    assert exp.state is nf.ExperimentState.DONE
    return exp


def flops_of(sample: dict[str, Any]) -> int:
    return nf.evaluator.count_flops(CostOrFit().freeze(sample), (1, 4))


@pytest.mark.parametrize("name", list(KINDS))
def test_a_strong_flops_penalty_exports_a_cheaper_architecture(name: str) -> None:
    plain = search(KINDS[name]()).export_top_models(1, formatter="dict")[0]
    penalised_exp = search(KINDS[name](penalty=nf.strategy.FLOPsPenalty(weight=50.0)))
    penalised = penalised_exp.export_top_models(1, formatter="dict")[0]
    assert plain == {"op": "mlp"}  # accuracy alone keeps the op that fits
    assert penalised == {"op": "destroy"}
    assert flops_of(penalised) < flops_of(plain)
    recorded = {t.sample["op"]: t.metrics["flops"] for t in penalised_exp.trials()}
    assert recorded == {op: flops_of({"op": op}) for op in recorded}  # the estimates


def test_the_flops_table_is_measured_on_the_frozen_models() -> None:
    penalty = nf.strategy.FLOPsPenalty(weight=0.0)
    search(nf.strategy.DARTS(penalty=penalty))
    assert penalty.base == flops_of({"op": "mlp"})
    assert penalty.deltas["op"].tolist() == [0.0, flops_of({"op": "destroy"}) - penalty.base]


def test_a_params_penalty_exports_fewer_parameters() -> None:
    exp = search(KINDS["DARTS"](penalty=nf.strategy.ParamsPenalty(weight=10.0)))
    assert exp.export_top_models(1, formatter="dict") == [{"op": "destroy"}]


def test_a_latency_table_from_elsewhere_is_used_as_given() -> None:
    table = {"op": {"mlp": 5.0, "destroy": 0.1}}
    exp = search(KINDS["DARTS"](penalty=nf.strategy.LatencyPenalty(weight=10.0, table=table)))
    assert exp.export_top_models(1, formatter="dict") == [{"op": "destroy"}]


def test_a_measured_latency_table_has_every_alternative() -> None:
    penalty = nf.strategy.LatencyPenalty(target_ms=5, weight=0.0, repeats=3)
    search(nf.strategy.DARTS(penalty=penalty))
    assert penalty.base > 0
    assert penalty.deltas["op"].shape == (2,) and penalty.deltas["op"][0] == 0


def test_under_the_target_no_penalty_applies() -> None:
    roomy = nf.strategy.FLOPsPenalty(target=10 * flops_of({"op": "mlp"}), weight=10.0)
    exp = search(KINDS["DARTS"](penalty=roomy))
    assert exp.export_top_models(1, formatter="dict") == [{"op": "mlp"}]


@pytest.mark.parametrize(("make", "message"), [
    (lambda: nf.strategy.FLOPsPenalty(weight=-1), "weight"),
    (lambda: nf.strategy.LatencyPenalty(target_ms=0), "target"),
    (lambda: nf.strategy.DARTS(penalty=0.1), "LatencyPenalty"),
])
def test_bad_penalties_are_rejected(make: Callable[[], Any], message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        make()


def test_a_latency_table_without_a_label_says_which() -> None:
    penalty = nf.strategy.LatencyPenalty(weight=1.0, table={"other": {"a": 1.0}})
    train, val = data()
    evaluator = nf.evaluator.Regression(train, val, epochs=1, batch_size=32)
    exp = nf.Experiment(CostOrFit(), evaluator, nf.strategy.DARTS(penalty=penalty),
                        nf.ExperimentConfig(store=False))
    with pytest.raises(nf.StrategyError) as info:
        nf.run(exp)
    assert "no row for the label 'op'" in repr(info.value.__cause__)


class Deep(snn.ModelSpace):
    """A Repeat whose deeper blocks' op labels are inactive at depth 1."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = snn.Repeat(
            lambda i: snn.LayerChoice({"mlp": identity_mlp(), "keep": nn.Identity()},
                                      label=f"op{i}"), depth=(1, 2), label="depth")
        self.head = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(x))


def test_samples_without_inactive_labels_get_an_estimate() -> None:
    train, val = data()
    evaluator = nf.evaluator.Regression(train, val, epochs=2, batch_size=32, lr=0.05)
    exp = nf.Experiment(Deep(), evaluator,
                        nf.strategy.DARTS(penalty=nf.strategy.FLOPsPenalty(weight=1.0)),
                        nf.ExperimentConfig(store=False))
    nf.run(exp)
    assert exp.state is nf.ExperimentState.DONE
    for t in exp.trials():
        assert t.metrics["flops"] >= 0


def wide_identity() -> nn.Module:
    """The identity through a 1024-wide hidden layer: about a million multiply-adds per
    sample, against ``Destroy``'s none, so the measured latency tells them apart."""
    layers = [nn.Linear(4, 1024), nn.Linear(1024, 1024), nn.Linear(1024, 4)]
    with torch.no_grad():
        for layer in layers:
            layer.weight.copy_(torch.eye(*layer.weight.shape))
            layer.bias.zero_()
    return nn.Sequential(*layers)


class SlowOrFit(CostOrFit):
    """``mlp`` fits and is slow; ``destroy`` is fast and fits nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.op = snn.LayerChoice({"mlp": wide_identity(), "destroy": Destroy()}, label="op")


def test_a_strong_measured_latency_penalty_exports_the_faster_architecture() -> None:
    train, val = data()

    def run(penalty: Any) -> tuple[nf.Experiment, dict[str, Any]]:
        evaluator = nf.evaluator.Regression(train, val, epochs=4, batch_size=32, lr=0.05)
        exp = nf.Experiment(SlowOrFit(), evaluator,
                            nf.strategy.DARTS(arc_learning_rate=0.05, penalty=penalty),
                            nf.ExperimentConfig(store=False))
        nf.run(exp)
        return exp, exp.export_top_models(1, formatter="dict")[0]

    _, plain = run(None)
    penalty = nf.strategy.LatencyPenalty(weight=10.0, repeats=5)
    exp, penalised = run(penalty)
    assert plain == {"op": "mlp"}  # accuracy alone keeps the op that fits
    # the table measured on this device: the op that adds the least time is exported
    fastest = ["mlp", "destroy"][int(penalty.deltas["op"].argmin())]
    assert penalised == {"op": fastest} == {"op": "destroy"}
    recorded = {t.sample["op"]: t.metrics["latency_ms"] for t in exp.trials()}
    assert recorded["destroy"] < recorded.get("mlp", float("inf"))
