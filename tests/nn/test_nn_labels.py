"""Labels: explicit, derived from attribute paths, shared objects, equal and conflicting labels."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import nasflow as nf
from nasflow import nn as snn


class Block(nn.Module):
    def __init__(self, width: object) -> None:
        super().__init__()
        self.conv = snn.Conv2d(width, width, 1)
        self.op = snn.LayerChoice([nn.ReLU(), nn.Identity()])


def test_explicit_labels_are_used_as_given() -> None:
    class Net(snn.ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.op = snn.LayerChoice([nn.ReLU(), nn.Tanh()], label="act")
            self.skip = snn.InputChoice(2, label="skip")
            self.blocks = snn.Repeat(nn.Identity(), depth=(1, 2), label="depth")
            self.fc = snn.Linear(4, nf.Categorical([2, 3], label="out"))

    assert list(Net().search_space()) == ["act", "skip", "depth", "out"]


def test_labels_are_derived_from_attribute_paths() -> None:
    class Net(snn.ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.stem = snn.Conv2d(1, nf.Categorical([4, 8]), 3)
            self.op = snn.LayerChoice({"a": nn.ReLU(), "b": nn.Tanh()})
            self.blocks = snn.Repeat(lambda i: Block(4), depth=(1, 2))
            self.skip = snn.InputChoice(3, n_chosen=2)

    labels = list(Net().search_space())
    assert labels == [
        "stem.out_channels", "op", "blocks", "blocks.0.op", "blocks.1.op", "skip",
    ]


def test_derived_label_inside_a_candidate_follows_the_candidate_name() -> None:
    class Net(snn.ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            k = nf.Categorical([1, 3])
            self.op = snn.LayerChoice({"conv": snn.Conv2d(2, 2, k), "id": nn.Identity()})

    assert list(Net().search_space()) == ["op", "op.conv.kernel_size"]


def test_several_choices_in_one_argument_get_numbered_labels() -> None:
    class Net(snn.ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            a, b = nf.Categorical([1, 3]), nf.Categorical([1, 5])
            self.conv = snn.Conv2d(2, 2, (a, b))

    net = Net()
    assert list(net.search_space()) == ["conv.kernel_size.0", "conv.kernel_size.1"]
    model = net.freeze({"conv.kernel_size.0": 3, "conv.kernel_size.1": 5})
    assert model.conv.kernel_size == (3, 5)


def test_one_choice_object_used_twice_is_one_decision() -> None:
    class Net(snn.ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            width = nf.Categorical([4, 8])
            self.a = snn.Linear(3, width)
            self.b = snn.Linear(width, width)

    net = Net()
    assert list(net.search_space()) == ["a.out_features"]
    model = net.freeze({"a.out_features": 8})
    assert (model.a.out_features, model.b.in_features, model.b.out_features) == (8, 8, 8)


def test_equal_explicit_labels_share_a_decision() -> None:
    class Net(snn.ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.a = snn.Linear(3, nf.Categorical([4, 8], label="w"))
            self.b = snn.Linear(3, nf.Categorical([4, 8], label="w"))
            self.c = snn.LayerChoice([nn.ReLU(), nn.Tanh()], label="act")
            self.d = snn.LayerChoice([nn.ReLU(), nn.Tanh()], label="act")

    net = Net()
    assert list(net.search_space()) == ["w", "act"]
    model = net.freeze({"w": 8, "act": 1})
    assert model.b.out_features == 8
    assert isinstance(model.d, nn.Tanh)


def test_conflicting_labels_raise_naming_both_choices_and_the_module() -> None:
    class Net(snn.ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.a = snn.Linear(3, nf.Categorical([4, 8], label="w"))
            self.b = snn.Linear(3, nf.Categorical([4, 16], label="w"))

    with pytest.raises(nf.SpaceBuildError, match=r"'b'.*'w'.*\[4, 8\].*\[4, 16\]"):
        Net()


def test_conflicting_layer_choice_labels_raise() -> None:
    class Net(snn.ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.a = snn.LayerChoice([nn.ReLU(), nn.Tanh()], label="op")
            self.b = snn.LayerChoice([nn.ReLU(), nn.Tanh(), nn.Identity()], label="op")

    with pytest.raises(nf.SpaceBuildError, match=r"'op' is used by two different choices"):
        Net()


def test_choice_kept_as_attribute_is_registered_and_resolved() -> None:
    class Net(snn.ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.width = nf.Categorical([4, 8])
            self.fc = snn.Linear(2, self.width)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x).view(-1, self.width)

    net = Net()
    assert list(net.search_space()) == ["width"]
    model = net.freeze({"width": 8})
    assert model.width == 8
    assert model(torch.zeros(1, 2)).shape == (1, 8)


def test_add_choice_registers_a_hyperparameter() -> None:
    class Net(snn.ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.add_choice(nf.Numerical(1e-4, 1e-1, log=True, label="lr"))
            self.add_choice(nf.Categorical([16, 32]), label="batch")
            self.fc = nn.Linear(2, 2)

    net = Net()
    assert list(net.search_space()) == ["lr", "batch"]
    sample = net.random(seed=1)
    assert set(sample) == {"lr", "batch"}
    assert isinstance(net.freeze(sample).fc, nn.Linear)


def test_unlabelled_add_choice_is_labelled_by_its_attribute() -> None:
    class Net(snn.ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.lr = self.add_choice(nf.Numerical(1e-4, 1e-1, log=True))

    net = Net()
    assert list(net.search_space()) == ["lr"]
    assert net.freeze({"lr": 0.01}).lr == 0.01


def test_unlabelled_add_choice_used_nowhere_is_an_error() -> None:
    class Net(snn.ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.add_choice(nf.Categorical([1, 2]))

    with pytest.raises(nf.SpaceBuildError, match=r"no label and is used nowhere"):
        Net()


def test_label_of_finds_the_label_of_modules_and_choices() -> None:
    class Net(snn.ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.width = nf.Categorical([1, 2])
            self.op = snn.LayerChoice([nn.ReLU(), nn.Tanh()])
            self.rep = snn.Repeat(nn.Identity(), (0, 1))

    net = Net()
    assert net.label_of(net.op) == "op"
    assert net.label_of(net.rep) == "rep"
    assert net.label_of(net.width) == "width"
