"""Cell: NNI-style labels, op and input choices per node, merge ops, frozen FrozenCell."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn as nn

import nasflow as nf
from nasflow import nn as snn


class Double(nn.Module):
    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [x * 2 for x in xs]


class AddFirst(nn.Module):
    def forward(self, out: torch.Tensor, inputs: list[torch.Tensor]) -> torch.Tensor:
        return out + inputs[0].sum()


class CellNet(snn.ModelSpace):
    def __init__(self, merge_op: Any = "all", **kwargs: Any) -> None:
        super().__init__()
        self.cell = snn.Cell(
            {"id": nn.Identity(), "neg": snn.searchable(Scale)(-1.0), "lin": nn.Linear(2, 2)},
            num_nodes=2,
            num_ops_per_node=2,
            num_predecessors=2,
            merge_op=merge_op,
            label="cell",
            **kwargs,
        )

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.cell(a, b)


class Scale(nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


def _inputs() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.ones(1, 2), torch.full((1, 2), 3.0)


def test_cell_labels_follow_nni() -> None:
    space = CellNet().search_space()
    assert list(space) == [
        "cell/op_2_0", "cell/input_2_0", "cell/op_2_1", "cell/input_2_1",
        "cell/op_3_0", "cell/input_3_0", "cell/op_3_1", "cell/input_3_1",
    ]
    assert space["cell/op_2_0"].values == ["id", "neg", "lin"]
    assert space["cell/input_2_0"].describe() == "1 of [0, 1]"
    assert space["cell/input_3_1"].describe() == "1 of [0, 1, 2]"
    assert CellNet().size() == (3 * 2) ** 2 * (3 * 3) ** 2


def _sample(**overrides: Any) -> dict[str, Any]:
    sample: dict[str, Any] = {
        "cell/op_2_0": "id", "cell/input_2_0": [0],
        "cell/op_2_1": "neg", "cell/input_2_1": [1],
        "cell/op_3_0": "id", "cell/input_3_0": [2],
        "cell/op_3_1": "id", "cell/input_3_1": [0],
    }
    sample.update(overrides)
    return sample


def test_frozen_cell_computes_the_chosen_graph() -> None:
    model = CellNet().freeze(_sample())
    cell = model.cell
    assert isinstance(cell, snn.FrozenCell)
    assert not any(isinstance(m, snn.NasModule) for m in model.modules())
    assert cell.inputs == [[0, 1], [2, 0]]
    a, b = _inputs()
    node2 = a - b  # id(a) + neg(b)
    node3 = node2 + a
    assert torch.equal(model(a, b), torch.cat([node2, node3], dim=1))
    assert torch.equal(cell([a, b]), model(a, b))


def test_loose_end_concatenates_only_unread_nodes() -> None:
    model = CellNet("loose_end").freeze(_sample())
    assert model.cell.output_nodes == [3]
    a, b = _inputs()
    assert model(a, b).shape == (1, 2)
    model = CellNet("loose_end").freeze(_sample(**{"cell/input_3_0": [1]}))
    assert model.cell.output_nodes == [2, 3]


def test_pre_and_postprocessors_run_around_the_cell() -> None:
    net = CellNet(preprocessor=Double(), postprocessor=AddFirst())
    model = net.freeze(_sample())
    a, b = _inputs()
    node2 = 2 * a - 2 * b
    expected = torch.cat([node2, node2 + 2 * a], dim=1) + (2 * a).sum()
    assert torch.equal(model(a, b), expected)


def test_frozen_cell_traces_and_checks_its_input_count() -> None:
    model = CellNet().freeze(_sample())
    traced = torch.fx.symbolic_trace(model)
    a, b = _inputs()
    assert torch.equal(traced(a, b), model(a, b))
    with pytest.raises(ValueError, match=r"takes 2 inputs, got 1"):
        model.cell(a)


def test_cell_label_defaults_to_the_path_and_factories_get_the_node_index() -> None:
    calls: list[tuple[int, int]] = []

    def factory(node_index: int, op_index: int) -> nn.Module:
        calls.append((node_index, op_index))
        return nn.Identity()

    class Net(snn.ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.c = snn.Cell([factory, nn.ReLU], num_nodes=2)

    assert list(Net().search_space()) == ["c/op_1_0", "c/input_1_0", "c/op_2_0", "c/input_2_0"]
    assert calls == [(1, 0), (2, 0)]


def test_choices_inside_cell_candidates_are_gated() -> None:
    class Net(snn.ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            drop = nf.Categorical([0.1, 0.2], label="p")
            self.c = snn.Cell({"drop": snn.Dropout(drop), "id": nn.Identity()}, num_nodes=1)

    net = Net()
    assert list(net.search_space()) == ["c/op_1_0", "p", "c/input_1_0"]
    assert net.canonicalize({"c/op_1_0": "id", "c/input_1_0": [0], "p": 0.1}) == {
        "c/op_1_0": "id", "c/input_1_0": [0],
    }
    model = net.freeze({"c/op_1_0": "drop", "c/input_1_0": [0], "p": 0.2})
    assert model.c.ops[0][0].p == 0.2


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_nodes": 0}, "num_nodes"),
        ({"num_nodes": 1, "merge_op": "some"}, "merge_op"),
        ({"num_nodes": 1, "num_predecessors": 0}, "num_predecessors"),
        ({"num_nodes": 1, "preprocessor": "x"}, "preprocessor"),
    ],
)
def test_cell_rejects_bad_arguments(kwargs: Any, match: str) -> None:
    with pytest.raises(nf.SpaceBuildError, match=match):
        snn.Cell([nn.Identity()], **kwargs)


class Stride(nn.Module):
    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :: self.stride]


class PerInputNet(snn.ModelSpace):
    """Ops on the cell's inputs halve the size, ops on its nodes keep it (a reduction cell)."""

    def __init__(self) -> None:
        super().__init__()

        def halve(node: int, op: int, inp: int | None) -> nn.Module:
            return Stride(2 if inp is None or inp < 2 else 1)

        self.cell = snn.Cell({"a": halve, "b": lambda n, o, i: Stride(2 if i < 2 else 1)},
                             num_nodes=2, num_predecessors=2, label="cell")

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.cell(a, b)


def test_a_factory_taking_the_input_index_gets_one_op_per_input() -> None:
    space = PerInputNet()
    assert space.cell.per_input
    assert list(space.search_space()) == ["cell/op_2_0", "cell/input_2_0", "cell/op_3_0",
                                          "cell/input_3_0"]
    assert [len(space.cell.op_choices(i, 0)) for i in (2, 3)] == [2, 3]
    x = torch.arange(8.0).reshape(1, 8)
    model = space.freeze({"cell/op_2_0": "a", "cell/input_2_0": [1],
                          "cell/op_3_0": "b", "cell/input_3_0": [2]})
    node3 = model.cell.ops[1][0]
    assert node3.stride == 1 and model.cell.ops[0][0].stride == 2
    assert model(x, x).shape == (1, 8)  # two halved nodes, concatenated
