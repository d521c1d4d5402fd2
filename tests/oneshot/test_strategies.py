"""Each one-shot strategy runs as an ordinary strategy: it learns on a task with an
obviously better op, streams progress events (live and stored), and exports ranked,
valid samples through ``export_top_models``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import pytest
import torch
import torch.nn as nn

import nasflow as nf
from nasflow import nn as snn
from nasflow.events import StrategyProgress
from nasflow.strategy._base import Strategy

from .spaces import Tiny, tiny_data


class Destroy(nn.Module):
    """Throws its input away."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


class Keep(snn.ModelSpace):
    """``y`` is linear in ``x``: keeping ``x`` fits it, destroying it cannot."""

    def __init__(self) -> None:
        super().__init__()
        self.op = snn.LayerChoice({"destroy": Destroy(), "keep": nn.Identity()}, label="op")
        self.head = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.op(x))


def _linear_data() -> tuple[Any, Any]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(512, 4, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 3.0, 0.5])
    return (x[:384], y[:384]), (x[384:], y[384:])


STRATEGIES: dict[str, Callable[[], Strategy]] = {
    "DARTS": lambda: nf.strategy.DARTS(arc_learning_rate=0.05),
    "GumbelDARTS": lambda: nf.strategy.GumbelDARTS(arc_learning_rate=0.05),
    "Proxyless": lambda: nf.strategy.Proxyless(arc_learning_rate=0.05, warmup_epochs=1),
    "ENAS": lambda: nf.strategy.ENAS(ctrl_lr=0.05, ctrl_steps=10),
    "RandomOneShot": lambda: nf.strategy.RandomOneShot(),
}


def _run(exp: nf.Experiment) -> list[StrategyProgress]:
    events: list[StrategyProgress] = []

    async def main() -> None:
        stream = exp.events(StrategyProgress)
        async with anyio.create_task_group() as tg:
            tg.start_soon(exp.run)
            async for ev in stream:
                assert isinstance(ev, StrategyProgress)
                events.append(ev)

    anyio.run(main)
    return events


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_the_strategy_prefers_the_op_that_keeps_information(name: str) -> None:
    train, val = _linear_data()
    evaluator = nf.evaluator.Regression(train, val, epochs=4, batch_size=32, lr=0.05)
    exp = nf.Experiment(Keep(), evaluator, STRATEGIES[name](), nf.ExperimentConfig(store=False))
    events = _run(exp)
    assert exp.state is nf.ExperimentState.DONE
    assert exp.export_top_models(1, formatter="dict") == [{"op": "keep"}]
    epochs = [e for e in events if e.values["phase"] == "train"]
    assert [e.step for e in epochs] == [1, 2, 3, 4]
    first, last = epochs[0].values, epochs[-1].values
    if name != "RandomOneShot":  # SPOS samples (and validates) uniformly by design
        assert last["probs"]["op"]["keep"] > max(0.6, first["probs"]["op"]["keep"])
        assert last["val_mse"] < first["val_mse"]


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_a_few_steps_stream_store_and_export_valid_ranked_samples(name: str) -> None:
    space = Tiny()
    train, val = tiny_data()
    evaluator = nf.evaluator.Classification(train, val, epochs=1, batch_size=24)
    exp = nf.Experiment(space, evaluator, STRATEGIES[name](), nf.ExperimentConfig())
    live = _run(exp)
    assert live and live[0].step == 1
    epoch = live[0].values
    assert epoch["strategy"] == name and epoch["epochs"] == 1 and epoch["steps"] == 3
    assert 0.0 <= epoch["val_accuracy"] <= 1.0 and epoch["train_loss"] > 0
    assert set(epoch["probs"]) == set(space.search_space())
    for label, probs in epoch["probs"].items():
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-3), label

    top = exp.export_top_models(3)
    assert len(top) == 3
    for record in top:
        space.validate(record.sample)
    models = exp.export_top_models(2, formatter="instance")
    assert models[0](torch.randn(2, 1, 6, 6)).shape == (2, 4)

    with nf.load_experiment(exp.id) as stored:
        progress = stored.progress()
        assert [values for _, _, values in progress] == [e.values for e in live]
        assert [r.sample for r in stored.export_top_models(3)] == [r.sample for r in top]


def test_darts_ranks_by_architecture_probability() -> None:
    train, val = tiny_data()
    evaluator = nf.evaluator.Classification(train, val, epochs=1, batch_size=24)
    exp = nf.Experiment(Tiny(), evaluator, nf.strategy.DARTS(top_k=4, arc_learning_rate=0.05),
                        nf.ExperimentConfig(store=False))
    nf.run(exp)
    top = exp.export_top_models(4)
    probs = [r.metrics["arch_prob"] for r in top]
    assert probs == sorted(probs, reverse=True)
    assert [r.metrics["arch_rank"] for r in top] == [1.0, 2.0, 3.0, 4.0]
    assert all("supernet_accuracy" in r.metrics for r in top)
    assert top[0].metric == probs[0]  # maximised objective: the metric is the probability


def test_the_supernet_gives_inherited_weight_models() -> None:
    train, val = _linear_data()
    evaluator = nf.evaluator.Regression(train, val, epochs=2, batch_size=32, lr=0.05)
    strategy = nf.strategy.RandomOneShot(search_trials=2)
    exp = nf.Experiment(Keep(), evaluator, strategy, nf.ExperimentConfig(store=False))
    nf.run(exp)
    assert strategy.supernet is not None
    model = strategy.supernet.freeze({"op": "keep"})
    x, y = val
    with torch.no_grad():
        mse = float(((model(x).squeeze(1) - y) ** 2).mean())
    assert mse == pytest.approx(exp.best().metric, rel=1e-4)


@pytest.mark.parametrize("inner", ["GridSearch", "RegularizedEvolution", "TPE"])
def test_random_one_shot_searches_the_supernet_with_any_multi_trial_strategy(inner: str) -> None:
    space = Tiny()
    train, val = tiny_data()
    evaluator = nf.evaluator.Classification(train, val, epochs=1, batch_size=24)
    search = getattr(nf.strategy, inner)()
    strategy = nf.strategy.RandomOneShot(search=search, search_trials=5)
    exp = nf.Experiment(space, evaluator, strategy, nf.ExperimentConfig(store=False))
    events = _run(exp)
    trials = exp.trials()
    assert len(trials) == 5 and len({t.hash for t in trials}) == 5  # de-duplicated
    assert all(t.state is nf.TrialState.SUCCEEDED for t in trials)
    searched = [e.values for e in events if e.values["phase"] == "search"]
    assert [v["evaluated"] for v in searched] == [1, 2, 3, 4, 5]
    best = exp.best()
    assert best is not None and best.metric == max(t.metric for t in trials)
    assert strategy.state_dict()["search"] == search.state_dict()
