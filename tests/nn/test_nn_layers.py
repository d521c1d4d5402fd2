"""Searchable layers and searchable(cls): choice and expression arguments, frozen forms."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn as nn

import nasflow as nf
from nasflow import nn as snn


class Scale(nn.Module):
    def __init__(self, factor: float, *extra: int, bias: float = 0.0, **named: Any) -> None:
        super().__init__()
        self.factor, self.extra, self.bias, self.named = factor, extra, bias, named

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor + self.bias


def _space(**layers: Any) -> snn.ModelSpace:
    class Net(snn.ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            for name, layer in layers.items():
                setattr(self, name, layer)

    return Net()


def test_expression_arguments_are_resolved_when_frozen() -> None:
    width = nf.Categorical([4, 8], label="width")
    net = _space(a=snn.Linear(3, width), b=snn.Linear(width * 2, width + 1))
    assert list(net.search_space()) == ["width"]
    model = net.freeze({"width": 8})
    assert (model.b.in_features, model.b.out_features) == (16, 9)


@pytest.mark.parametrize(
    ("layer", "check"),
    [
        (lambda c: snn.Conv1d(2, c, 3), lambda m: m.out_channels == 4),
        (lambda c: snn.Conv2d(2, c, 3, groups=2), lambda m: m.groups == 2),
        (lambda c: snn.Linear(c, 2, bias=False), lambda m: m.in_features == 4 and m.bias is None),
        (lambda c: snn.BatchNorm1d(c), lambda m: m.num_features == 4),
        (lambda c: snn.BatchNorm2d(c, momentum=0.5), lambda m: m.momentum == 0.5),
        (lambda c: snn.LayerNorm([c]), lambda m: m.normalized_shape == (4,)),
        (lambda c: snn.Dropout(c / 8), lambda m: m.p == 0.5),
        (lambda c: snn.MultiheadAttention(c, 2), lambda m: m.embed_dim == 4),
        (lambda c: snn.MaxPool1d(c), lambda m: m.kernel_size == 4),
        (lambda c: snn.MaxPool2d(c, stride=1), lambda m: m.kernel_size == 4 and m.stride == 1),
        (lambda c: snn.AvgPool1d(c), lambda m: m.kernel_size == (4,)),
        (lambda c: snn.AvgPool2d(c), lambda m: m.kernel_size == 4),
        (lambda c: snn.AdaptiveAvgPool1d(c), lambda m: m.output_size == 4),
        (lambda c: snn.AdaptiveAvgPool2d((c, 2)), lambda m: m.output_size == (4, 2)),
    ],
)
def test_each_written_out_layer_freezes_to_its_torch_class(layer: Any, check: Any) -> None:
    net = _space(layer=layer(nf.Categorical([2, 4], label="c")))
    assert isinstance(net.layer, snn.SearchableModule)
    model = net.freeze({"c": 4})
    assert type(model.layer) is net.layer.module_class
    assert check(model.layer)


def test_layer_without_choices_is_built_at_once_and_runs() -> None:
    layer = snn.Linear(3, 2)
    assert isinstance(layer.module, nn.Linear)
    assert layer(torch.zeros(1, 3)).shape == (1, 2)
    net = _space(layer=layer)
    model = net.freeze({})
    assert type(model.layer) is nn.Linear
    assert torch.equal(model.layer.weight, layer.module.weight)
    assert model.layer.weight is not layer.module.weight


def test_layer_with_a_choice_refuses_to_run_unfrozen() -> None:
    layer = snn.Linear(3, nf.Categorical([2, 4]))
    with pytest.raises(nf.SpaceError, match=r"Freeze the space first"):
        layer(torch.zeros(1, 3))


def test_only_non_default_keyword_arguments_are_kept() -> None:
    layer = snn.Conv2d(1, nf.Categorical([2, 4]), 3, padding=1)
    assert layer.kwargs == {"padding": 1}


def test_searchable_wraps_any_module_class() -> None:
    scale = snn.searchable(Scale)
    assert scale is snn.searchable(Scale)
    assert issubclass(scale, snn.NasModule)
    assert scale.__name__ == "Scale"
    f = nf.Categorical([2.0, 3.0])
    net = _space(s=scale(f, 7, nf.Categorical([1, 2]), bias=f - 1, mode=nf.Categorical(["a"])))
    assert list(net.search_space()) == ["s.factor", "s.extra.1", "s.mode"]
    model = net.freeze({"s.factor": 3.0, "s.extra.1": 2, "s.mode": "a"})
    assert type(model.s) is Scale
    assert (model.s.factor, model.s.extra, model.s.bias) == (3.0, (7, 2), 2.0)
    assert model.s.named == {"mode": "a"}
    assert torch.equal(model.s(torch.ones(1)), torch.tensor([5.0]))


def test_searchable_of_a_torch_class_is_the_written_out_layer() -> None:
    assert snn.searchable(nn.Conv2d) is snn.Conv2d
    assert snn.searchable(snn.Conv2d) is snn.Conv2d


def test_searchable_rejects_what_is_not_a_module_class() -> None:
    with pytest.raises(nf.SpaceBuildError, match=r"torch.nn.Module subclass"):
        snn.searchable(int)  # type: ignore[arg-type]


def test_searchable_checks_the_arguments_at_once() -> None:
    with pytest.raises(nf.SpaceBuildError, match=r"Scale.*missing a required argument: 'factor'"):
        snn.searchable(Scale)(bias=nf.Categorical([1, 2]))


def test_a_failing_construction_at_freeze_time_names_the_call() -> None:
    heads = nf.Categorical([2, 3], label="heads")
    net = _space(att=snn.MultiheadAttention(4, heads))
    with pytest.raises(nf.SpaceBuildError, match=r"MultiheadAttention\(4, 3\).*add_constraint"):
        net.freeze({"heads": 3})


def test_module_arguments_are_searched_and_frozen() -> None:
    wrap = snn.searchable(nn.Sequential)
    inner = snn.LayerChoice([nn.ReLU(), nn.Tanh()])
    net = _space(seq=wrap(nn.Identity(), inner, snn.Linear(2, nf.Categorical([2, 3]))))
    assert list(net.search_space()) == ["seq.args.1", "seq.args.2.out_features"]
    model = net.freeze({"seq.args.1": 1, "seq.args.2.out_features": 3})
    assert [type(m) for m in model.seq] == [nn.Identity, nn.Tanh, nn.Linear]
    assert not any(isinstance(m, snn.NasModule) for m in model.modules())
