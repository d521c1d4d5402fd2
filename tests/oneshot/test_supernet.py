"""Supernet conversion: every kind of choice round-trips, the user's class is untouched,
masked (SOFT / GATE) runs agree with sliced (HARD) ones, and GATE's deferred gradient
equals the full mixture's."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from nasflow import nn as snn
from nasflow.strategy.oneshot import Supernet
from nasflow.strategy.oneshot._mixed import (
    MixedArgs,
    MixedCell,
    MixedInput,
    MixedLayer,
    MixedRepeat,
)
from nasflow.strategy.oneshot._sliced import (
    SlicedBatchNorm,
    SlicedConv,
    SlicedLayerNorm,
    SlicedLinear,
)

from .spaces import Lean, Rich


def _one_hot(net: Supernet, sample: dict) -> dict[str, torch.Tensor]:
    weights = {}
    for label, spec in net.specs.items():
        w = torch.zeros(spec.n)
        if label in sample:
            w[spec.indices(sample[label])] = 1.0
        else:
            w[0] = 1.0  # inactive: any one-hot weight leaves the output unchanged
        weights[label] = w.requires_grad_()
    return weights


def test_every_element_is_converted_and_the_space_is_untouched() -> None:
    space = Rich()
    before = {n: type(m) for n, m in space.named_modules()}
    net = Supernet(space, differentiable=True)
    assert type(net.model) is Rich  # the user's class, its forward unchanged
    kinds = {type(m) for m in net.model.modules()}
    assert {MixedLayer, MixedInput, MixedRepeat, MixedCell, MixedArgs, SlicedConv,
            SlicedLinear, SlicedBatchNorm, SlicedLayerNorm} <= kinds
    assert not any(isinstance(m, snn.NasModule) for m in net.model.modules())
    assert {n: type(m) for n, m in space.named_modules()} == before
    assert space.freeze(space.default())(torch.randn(1, 1, 6, 6)).shape == (1, 10)
    assert set(net.specs) == set(space.search_space())


@pytest.mark.parametrize("space_cls", [Rich, Lean])
def test_hard_mode_matches_the_frozen_model_with_inherited_weights(space_cls: type) -> None:
    space = space_cls()
    net = Supernet(space, differentiable=False)
    x = torch.randn(3, 1, 6, 6)
    for seed in range(6):
        sample = space.random(seed=seed)
        net.set_hard(sample)
        net.model.train()
        net.model(x)  # moves the batch-norm statistics away from their initial values
        net.model.eval()
        frozen = net.freeze(sample).eval()
        assert not any(isinstance(m, snn.NasModule) for m in frozen.modules())
        torch.testing.assert_close(net.model(x), frozen(x), rtol=0, atol=1e-6)


def test_weights_are_shared_between_samples() -> None:
    space = Lean()
    net = Supernet(space, differentiable=False)
    stem = net.model.stem
    assert isinstance(stem, SlicedConv)
    assert tuple(stem.weight.shape) == (8, 1, 5, 5)  # the largest variant only
    small = net.freeze({**space.default(), "width": 4, "k": 3})
    torch.testing.assert_close(small.stem.weight, stem.weight[:4, :, 1:4, 1:4])


def test_soft_mode_with_one_hot_weights_equals_hard_mode() -> None:
    space = Lean()
    net = Supernet(space, differentiable=True)
    net.model.eval()
    x = torch.randn(2, 1, 6, 6)
    for seed in range(6):
        sample = space.random(seed=seed)
        net.set_hard(sample)
        hard = net.model(x)
        net.set_soft(_one_hot(net, sample))
        torch.testing.assert_close(net.model(x), hard, rtol=1e-5, atol=1e-5)


def test_gate_mode_runs_one_path_with_the_full_mixtures_gradient() -> None:
    space = Lean()
    net = Supernet(space, differentiable=True)
    net.model.eval()
    x = torch.randn(2, 1, 6, 6)
    target = torch.randn(2, 3)
    for seed in range(4):
        sample = space.random(seed=seed)
        soft_w = _one_hot(net, sample)
        net.set_soft(soft_w)
        soft_out = net.model(x)
        ((soft_out - target) ** 2).sum().backward()
        gate_w = _one_hot(net, sample)
        picked = {k: net.specs[k].indices(v) for k, v in sample.items()}
        for label, w in gate_w.items():
            picked.setdefault(label, [int(w.argmax())])
        net.set_gate(picked, gate_w)
        gate_out = net.model(x)
        ((gate_out - target) ** 2).sum().backward()
        torch.testing.assert_close(gate_out, soft_out, rtol=1e-5, atol=1e-5)
        for label in sample:
            torch.testing.assert_close(gate_w[label].grad, soft_w[label].grad,
                                       rtol=1e-4, atol=1e-5, msg=label)


def test_a_module_used_twice_stays_one_module() -> None:
    class Shared(snn.ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            op = snn.LayerChoice([nn.Identity(), nn.Tanh()], label="op")
            self.a = op
            self.b = op

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(self.a(x))

    net = Supernet(Shared(), differentiable=True)
    assert net.model.a is net.model.b
    assert net.consumers("op") == ["LayerChoice at 'a'"]
