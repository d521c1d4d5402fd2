"""LayerChoice, InputChoice and Repeat: sample values, nesting and gating, frozen forms."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn as nn

import nasflow as nf
from nasflow import nn as snn

# --- LayerChoice ---------------------------------------------------------------------


def test_layer_choice_list_samples_an_index_and_freezes_to_that_candidate() -> None:
    class Net(snn.ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.op = snn.LayerChoice([nn.ReLU(), nn.Tanh(), nn.Identity()])

    net = Net()
    assert net.search_space()["op"].values == [0, 1, 2]
    assert isinstance(net.freeze({"op": 1}).op, nn.Tanh)


def test_layer_choice_dict_samples_a_key() -> None:
    class Net(snn.ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.op = snn.LayerChoice({"relu": nn.ReLU(), "lin": nn.Linear(2, 2)})

    net = Net()
    assert net.search_space()["op"].values == ["relu", "lin"]
    model = net.freeze({"op": "lin"})
    assert type(model.op) is nn.Linear
    assert model.op is not net.op["lin"]  # a copy with its own parameters
    assert torch.equal(model.op.weight, net.op["lin"].weight)


@pytest.mark.parametrize(
    ("candidates", "match"),
    [
        ([], "at least one candidate"),
        ([nn.ReLU(), "relu"], "not a torch.nn.Module"),
        ({"a.b": nn.ReLU()}, "without '.'"),
        ({"forward": nn.ReLU()}, "not usable"),
        (nn.ReLU(), "list or a dict"),
    ],
)
def test_layer_choice_rejects_bad_candidates(candidates: Any, match: str) -> None:
    with pytest.raises(nf.SpaceBuildError, match=match):
        snn.LayerChoice(candidates, label="op")


# --- nesting and gating ----------------------------------------------------------------


class Nested(snn.ModelSpace):
    def __init__(self) -> None:
        super().__init__()
        self.op = snn.LayerChoice(
            {
                "conv": snn.Conv2d(2, 2, nf.Categorical([1, 3], label="k"), padding="same"),
                "id": nn.Identity(),
            },
            label="op",
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


def test_nested_choice_is_only_in_samples_that_choose_its_parent() -> None:
    net = Nested()
    assert net.search_space_object().conditions("k") is not None
    assert list(net.grid()) == [{"op": "conv", "k": 1}, {"op": "conv", "k": 3}, {"op": "id"}]
    assert net.size() == 3
    for seed in range(20):
        sample = net.random(seed=seed)
        assert ("k" in sample) == (sample["op"] == "conv")
        net.validate(sample)


def test_nested_choice_given_for_an_unchosen_parent_is_rejected() -> None:
    net = Nested()
    with pytest.raises(nf.SampleValidationError, match=r"'k'.*inactive"):
        net.validate({"op": "id", "k": 3})
    assert net.canonicalize({"op": "id", "k": 3}) == {"op": "id"}
    assert isinstance(net.freeze({"op": "id", "k": 3}).op, nn.Identity)
    with pytest.raises(nf.SampleValidationError, match=r"'k'.*missing"):
        net.freeze({"op": "conv"})


def test_choice_used_inside_and_outside_a_candidate_is_always_active() -> None:
    class Net(snn.ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            width = nf.Categorical([2, 4], label="width")
            self.fc = snn.Linear(2, width)
            self.op = snn.LayerChoice([snn.Linear(width, width), nn.Identity()], label="op")

    net = Net()
    assert net.search_space_object().conditions("width") is None
    assert net.size() == 4


def test_gating_nests_through_levels() -> None:
    class Net(snn.ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            inner = snn.LayerChoice([nn.ReLU(), snn.Linear(2, nf.Categorical([2, 3], label="w"))],
                                    label="inner")
            self.outer = snn.LayerChoice([inner, nn.Identity()], label="outer")

    net = Net()
    samples = list(net.grid())
    assert samples == [
        {"outer": 0, "inner": 0},
        {"outer": 0, "inner": 1, "w": 2},
        {"outer": 0, "inner": 1, "w": 3},
        {"outer": 1},
    ]
    assert net.size() == 4


# --- InputChoice -----------------------------------------------------------------------


def _tensors() -> list[torch.Tensor]:
    return [torch.full((1, 2), float(i + 1)) for i in range(3)]


@pytest.mark.parametrize(
    ("reduction", "expected"),
    [
        ("sum", torch.full((1, 2), 4.0)),
        ("mean", torch.full((1, 2), 2.0)),
        ("concat", torch.tensor([[1.0, 1.0, 3.0, 3.0]])),
    ],
)
def test_chosen_inputs_reductions(reduction: Any, expected: torch.Tensor) -> None:
    assert torch.equal(snn.ChosenInputs([0, 2], reduction)(_tensors()), expected)


def test_chosen_inputs_none_returns_the_list_and_one_chosen_returns_the_tensor() -> None:
    xs = _tensors()
    assert snn.ChosenInputs([0, 2], "none")(xs) == [xs[0], xs[2]]
    assert snn.ChosenInputs([1], "sum")(xs) is xs[1]
    assert snn.ChosenInputs(1, "concat")(xs) is xs[1]


def test_input_choice_samples_sorted_indices_and_freezes_to_chosen_inputs() -> None:
    class Net(snn.ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.skip = snn.InputChoice(3, n_chosen=2, reduction="mean")

    net = Net()
    assert net.size() == 3
    assert net.canonicalize({"skip": [2, 0]}) == {"skip": [0, 2]}
    model = net.freeze({"skip": [2, 0]})
    assert isinstance(model.skip, snn.ChosenInputs)
    assert (model.skip.chosen, model.skip.reduction) == ([0, 2], "mean")
    assert torch.equal(model.skip(_tensors()), torch.full((1, 2), 2.0))


def test_input_choice_with_any_number_chosen() -> None:
    class Net(snn.ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.skip = snn.InputChoice(3, n_chosen=None)

    assert Net().size() == 7


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_candidates": 0}, "n_candidates"),
        ({"n_candidates": 2, "n_chosen": 3}, "n_chosen"),
        ({"n_candidates": 2, "reduction": "max"}, "reduction"),
    ],
)
def test_input_choice_rejects_bad_arguments(kwargs: Any, match: str) -> None:
    with pytest.raises(nf.SpaceBuildError, match=match):
        snn.InputChoice(**kwargs)


# --- Repeat --------------------------------------------------------------------------


class Block(nn.Module):
    def __init__(self, i: int = 0) -> None:
        super().__init__()
        self.index = i
        self.op = snn.LayerChoice([nn.ReLU(), nn.Tanh()])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


def _repeat_space(blocks: Any, depth: Any, label: str | None = None) -> snn.ModelSpace:
    class Net(snn.ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.blocks = snn.Repeat(blocks, depth, label=label)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.blocks(x)

    return Net()


def test_repeat_with_a_callable_gates_each_block_on_the_depth() -> None:
    net = _repeat_space(Block, (1, 3), label="depth")
    assert [b.index for b in net.blocks.blocks] == [0, 1, 2]
    assert list(net.search_space()) == [
        "depth", "blocks.0.op", "blocks.1.op", "blocks.2.op",
    ]
    assert net.size() == 2 + 4 + 8
    assert len(list(net.grid())) == 14
    sample = {"depth": 2, "blocks.0.op": 1, "blocks.1.op": 0}
    net.validate(sample)
    model = net.freeze(sample)
    assert isinstance(model.blocks, nn.Sequential)
    assert [type(m) for m in model.blocks] == [Block, Block]
    assert isinstance(model.blocks[0].op, nn.Tanh)
    assert model(torch.zeros(1, 2)).shape == (1, 2)


def test_repeat_with_a_module_copies_it_and_shares_its_decisions() -> None:
    net = _repeat_space(Block(), (1, 2))
    assert net.blocks[0] is not net.blocks[1]
    assert list(net.search_space()) == ["blocks", "blocks.0.op"]
    model = net.freeze({"blocks": 2, "blocks.0.op": 1})
    assert all(isinstance(b.op, nn.Tanh) for b in model.blocks)


def test_repeat_with_a_list_needs_one_block_per_depth() -> None:
    net = _repeat_space([nn.ReLU(), nn.Tanh()], (0, 2), label="d")
    assert len(net.freeze({"d": 0}).blocks) == 0
    assert [type(m) for m in net.freeze({"d": 2}).blocks] == [nn.ReLU, nn.Tanh]
    with pytest.raises(nf.SpaceBuildError, match=r"3 blocks for a depth of at most 2"):
        snn.Repeat([nn.ReLU(), nn.ReLU(), nn.ReLU()], (1, 2))


def test_repeat_with_a_fixed_depth_has_no_decision() -> None:
    net = _repeat_space(Block, 2)
    assert list(net.search_space()) == ["blocks.0.op", "blocks.1.op"]
    assert len(net.freeze(net.default()).blocks) == 2


def test_repeat_with_a_categorical_depth() -> None:
    depth = nf.Categorical([1, 3], label="n")
    net = _repeat_space(Block, depth)
    assert net.blocks.max_depth == 3
    assert net.search_space()["n"] is depth
    assert net.size() == 2 + 8
    # block 1 is active for depth 3 only
    assert net.search_space_object().conditions("blocks.1.op") == [(("n", frozenset({3})),)]


@pytest.mark.parametrize(
    ("depth", "match"),
    [
        (-1, ">= 0"),
        ((2, 1), "min <= max"),
        (nf.Numerical(1, 3), "depth must be"),
        (nf.Categorical([1.5, 2]), "ints >= 0"),
        (nf.Categorical([1, 2], label="a"), "give the label in one place"),
    ],
)
def test_repeat_rejects_bad_depths(depth: Any, match: str) -> None:
    with pytest.raises(nf.SpaceBuildError, match=match):
        snn.Repeat(nn.ReLU(), depth, label="b")
