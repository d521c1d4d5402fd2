"""One InputChoice reduction: the frozen module, the supernet's ``MixedInput`` and ``Cell``'s
node sums share ``ChosenInputs.reduce``, so a supernet in HARD (and GATE) mode computes
*exactly* (bit for bit) what the frozen model does, for every reduction and every
``n_chosen``; SOFT mode with the weights that express the choice agrees to rounding."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from nasflow import nn as snn
from nasflow.nn import ChosenInputs
from nasflow.strategy.oneshot import Supernet, UnsupportedSpaceError

REDUCTIONS = ["concat", "mean", "none", "sum"]


def test_every_reduction_is_covered() -> None:
    from nasflow.nn._choices import _REDUCTIONS

    assert sorted(_REDUCTIONS) == REDUCTIONS


class Pick(snn.ModelSpace):
    def __init__(self, n_chosen: int | None, reduction: str) -> None:
        super().__init__()
        self.reduction = reduction
        self.proj = nn.Linear(3, 3)
        self.pick = snn.InputChoice(4, n_chosen, reduction=reduction,  # type: ignore[arg-type]
                                    label="pick")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # four distinct candidates, all depending on a trained weight
        out = self.pick([self.proj(x) * (i + 1) + i for i in range(4)])
        return torch.stack(out) if self.reduction == "none" else out


def _samples(space: Pick) -> list[dict]:
    seen: dict[str, dict] = {}
    for seed in range(12):
        sample = space.random(seed=seed)
        seen[str(sample)] = sample
    return list(seen.values())


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("n_chosen", [1, 2, 3, None])
@pytest.mark.parametrize("differentiable", [False, True])
def test_hard_mode_is_exactly_the_frozen_model(reduction: str, n_chosen: int | None,
                                               differentiable: bool) -> None:
    space = Pick(n_chosen, reduction)
    x = torch.randn(2, 3)
    if differentiable and n_chosen != 1 and reduction in ("concat", "none"):
        with pytest.raises(UnsupportedSpaceError):  # a weighted mix cannot concatenate
            Supernet(space, differentiable=True)
        return
    net = Supernet(space, differentiable=differentiable)
    for sample in _samples(space):
        frozen = space.freeze(sample)
        net.set_hard(sample)
        expected = frozen(x)
        assert torch.equal(net.model(x), expected), sample
        chosen = [frozen.proj(x) * (i + 1) + i for i in sample["pick"]]
        direct = ChosenInputs.reduce(chosen, reduction)
        assert torch.equal(torch.stack(direct) if reduction == "none" else direct, expected)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("n_chosen", [1, 2, 3])
def test_the_mixed_op_under_the_chosen_weights_equals_the_frozen_model(
        reduction: str, n_chosen: int) -> None:
    if n_chosen != 1 and reduction in ("concat", "none"):
        pytest.skip("refused by the differentiable supernet (tested above)")
    space = Pick(n_chosen, reduction)
    net = Supernet(space, differentiable=True)
    x = torch.randn(2, 3)
    spec = net.specs["pick"]
    for sample in _samples(space):
        expected = space.freeze(sample)(x)
        picked = spec.indices(sample["pick"])
        indicator = torch.zeros(spec.n)
        indicator[picked] = 1.0
        # GATE runs the picked inputs only: the frozen value, bit for bit
        net.set_gate({"pick": picked}, {"pick": indicator.clone().requires_grad_()})
        assert torch.equal(net.model(x), expected), sample
        # SOFT mixes every input by weight: the choice is the indicator (a mean: its
        # share 1/n_chosen each, the weights summing to one as a softmax's do)
        weights = indicator / n_chosen if reduction == "mean" else indicator
        net.set_soft({"pick": weights.requires_grad_()})
        torch.testing.assert_close(net.model(x), expected, rtol=1e-6, atol=1e-6)


class Cells(snn.ModelSpace):
    """A cell whose nodes sum two ops each, over two inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.cell = snn.Cell({"id": nn.Identity(), "lin": nn.Linear(3, 3), "tanh": nn.Tanh()},
                             num_nodes=3, num_ops_per_node=2, num_predecessors=2,
                             label="cell")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cell([x, x * 2 + 1])


@pytest.mark.parametrize("differentiable", [False, True])
def test_a_cells_node_sums_are_exactly_the_frozen_cells(differentiable: bool) -> None:
    space = Cells()
    net = Supernet(space, differentiable=differentiable)
    x = torch.randn(4, 3)
    for seed in range(8):
        sample = space.random(seed=seed)
        net.set_hard(sample)
        assert torch.equal(net.model(x), space.freeze(sample)(x)), sample
