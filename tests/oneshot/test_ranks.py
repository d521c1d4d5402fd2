"""One-shot search on two CPU processes (``devices=2``, gloo): one supernet, one
architecture on every rank.

Every rank ends by sending what it holds (architecture probabilities, its most probable
choice, a digest of every parameter); the tests compare them, and show that without the
synchronisation (each rank its own draws, no averaged gradients: what NNI's ranks did)
they differ. DARTS on two ranks with batch ``B/2`` takes the steps of one process with
batch ``B`` (averaged half-batch gradients are the whole batch's; no batch norm here, whose
statistics would be per half-batch), so its probabilities and metrics agree to float
precision.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

import anyio
import psutil
import pytest
import torch
import torch.nn as nn

import nasflow as nf
from nasflow import RankError
from nasflow import nn as snn
from nasflow.events import StrategyProgress
from nasflow.strategy.oneshot._train import OneShotStrategy

pytestmark = pytest.mark.slow


class Keep(snn.ModelSpace):
    """``y`` is linear in ``x``: keeping ``x`` fits it, destroying it cannot."""

    def __init__(self, die_on_rank: int | None = None) -> None:
        super().__init__()
        self.op = snn.LayerChoice({"destroy": nn.Tanhshrink(), "keep": nn.Identity()},
                                  label="op")
        self.act = snn.LayerChoice({"tanh": nn.Tanh(), "id": nn.Identity()}, label="act")
        self.head = nn.Linear(4, 1)
        self.die_on_rank = die_on_rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        if self.die_on_rank is not None and dist.is_initialized() \
                and dist.get_rank() == self.die_on_rank:
            os._exit(3)
        return self.head(self.act(self.op(x)))


def _data() -> tuple[Any, Any]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 4, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 3.0, 0.5])
    return (x[:192], y[:192]), (x[192:], y[192:])


def _search(strategy: OneShotStrategy, *, devices: int, batch_size: int = 16,
            space: nn.Module | None = None) -> tuple[nf.Experiment, list[dict[str, Any]]]:
    """Run the search; the experiment and its training epochs' progress values."""
    train, val = _data()
    evaluator = nf.evaluator.Regression(train, val, epochs=2, batch_size=batch_size,
                                        lr=0.05, devices=devices)
    torch.manual_seed(0)  # the space's own initial weights: the same in every search
    exp = nf.Experiment(space or Keep(), evaluator, strategy,
                        nf.ExperimentConfig(store=False))
    epochs: list[dict[str, Any]] = []
    failures: list[Exception] = []

    async def run() -> None:
        try:
            await exp.run()
        except Exception as exc:  # raised below, out of the task group
            failures.append(exc)

    async def main() -> None:
        stream = exp.events(StrategyProgress)
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            async for ev in stream:
                assert isinstance(ev, StrategyProgress)
                if ev.values["phase"] == "train":
                    epochs.append(ev.values)

    anyio.run(main)
    if failures:
        raise failures[0]
    return exp, epochs


def _fails(strategy: OneShotStrategy, match: str, **kwargs: Any) -> None:
    with pytest.raises(nf.StrategyError) as caught:
        _search(strategy, devices=2, **kwargs)
    assert isinstance(caught.value.__cause__, RankError), caught.value
    assert re.search(match, str(caught.value.__cause__)), caught.value.__cause__


def no_ranks_left() -> bool:
    return not [p for p in psutil.Process().children(recursive=True)
                if "nasflow.evaluator._ddp" in " ".join(p.cmdline())]


STRATEGIES: dict[str, Callable[[], OneShotStrategy]] = {
    "DARTS": lambda: nf.strategy.DARTS(arc_learning_rate=0.05, evaluate_top=False),
    "GumbelDARTS": lambda: nf.strategy.GumbelDARTS(arc_learning_rate=0.05,
                                                   evaluate_top=False),
    "Proxyless": lambda: nf.strategy.Proxyless(arc_learning_rate=0.05, evaluate_top=False),
    "ENAS": lambda: nf.strategy.ENAS(ctrl_lr=0.05, ctrl_steps=4),
    "RandomOneShot": lambda: nf.strategy.RandomOneShot(search_trials=2),
}


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_every_rank_ends_with_the_same_supernet_and_choice(name: str) -> None:
    strategy = STRATEGIES[name]()
    exp, epochs = _search(strategy, devices=2)
    assert exp.state is nf.ExperimentState.DONE
    assert [e["epoch"] for e in epochs] == [1, 2]  # rank 0's progress, published here
    ends = strategy._rank_ends
    assert ends is not None and len(ends) == 2
    assert ends[0] == ends[1]  # probabilities, choice and every parameter's digest
    assert exp.export_top_models(1)  # exported from rank 0's state, in this process
    assert no_ranks_left()


@pytest.mark.parametrize("name", ["DARTS", "RandomOneShot"])
def test_without_the_synchronisation_the_ranks_differ(name: str) -> None:
    strategy = STRATEGIES[name]()
    strategy._sync_ranks = False  # type: ignore[attr-defined]  # each rank on its own
    _fails(strategy, "ended with different supernets")
    ends = strategy._rank_ends
    assert ends is not None and ends[0]["digest"] != ends[1]["digest"]
    if name == "DARTS":
        assert ends[0]["probs"] != ends[1]["probs"]
    assert no_ranks_left()


def test_darts_on_two_ranks_of_half_batches_takes_one_process_whole_batch_steps() -> None:
    def probs(devices: int, batch_size: int) -> tuple[dict[str, Any], list[float]]:
        _, epochs = _search(STRATEGIES["DARTS"](), devices=devices, batch_size=batch_size)
        return epochs[-1]["probs"], [e["val_mse"] for e in epochs]

    (two, two_mse), (one, one_mse) = probs(2, 16), probs(1, 32)
    (small, _) = probs(1, 16)
    for label in one:
        for alt in one[label]:
            assert two[label][alt] == pytest.approx(one[label][alt], abs=1e-4)
    assert two_mse == pytest.approx(one_mse, rel=1e-4)
    assert two != small  # the ranks shared the batches: not each a whole epoch alone


def test_a_dying_rank_fails_the_search_with_its_cause_and_leaves_no_process() -> None:
    _fails(STRATEGIES["DARTS"](), "rank 1 exited with code 3", space=Keep(die_on_rank=1))
    assert no_ranks_left()
