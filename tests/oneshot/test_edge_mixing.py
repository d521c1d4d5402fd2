"""DARTS's per-edge mixing of a cell with per-input ops (``Supernet(cell_mixing="edge")``):
one candidate set per (node, earlier state), SOFT is exactly the sum of the mixed edges,
HARD equals the frozen model whose every slot inherits its edge's weights, and the edge
probabilities give the space's labels by DARTS's top-edges rule."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn as nn

import nasflow as nf
from nasflow import hub
from nasflow import nn as snn
from nasflow.strategy.oneshot import Supernet
from nasflow.strategy.oneshot._mixed import EdgeMixedCell, MixedCell, MixedLayer
from nasflow.strategy.oneshot._ranking import top_by_probability


def _op(kind: str, c: int) -> Any:
    def build(node: int, slot: int, inp: int) -> nn.Module:  # per input: ops on inputs
        stride = 2 if inp < 2 else 1  # differ from those on nodes (a reduction cell)
        if kind == "conv":
            return nn.Sequential(nn.ReLU(), nn.Conv2d(c, c, 3, stride, 1, bias=False),
                                 nn.BatchNorm2d(c))
        if kind == "pool":
            return nn.AvgPool2d(3, stride, 1, count_include_pad=False)
        return nn.Sequential(nn.Conv2d(c, c, 1, stride, bias=False), nn.BatchNorm2d(c))
    return build


class Reduce(snn.ModelSpace):
    """One reduction-like cell of 3 nodes, 2 ops per node, 3 ops with per-input strides."""

    def __init__(self, c: int = 3) -> None:
        super().__init__()
        self.cell = snn.Cell({k: _op(k, c) for k in ("conv", "pool", "pw")}, num_nodes=3,
                             num_ops_per_node=2, num_predecessors=2, label="cell")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cell(x, x)  # type: ignore[no-any-return]


def _randomise(model: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g))


def test_an_edge_mixed_cell_holds_one_candidate_set_per_edge() -> None:
    space = Reduce()
    edge = Supernet(space, differentiable=True, cell_mixing="edge")
    slot = Supernet(space, differentiable=True, cell_mixing="slot")
    cell = edge.model.cell
    assert isinstance(cell, EdgeMixedCell) and isinstance(slot.model.cell, MixedCell)
    layers = [m for m in cell.modules() if isinstance(m, MixedLayer)]
    assert len(layers) == 2 + 3 + 4  # node i has i edges
    def params(net: Supernet) -> int:
        return sum(p.numel() for p in net.model.parameters())
    assert params(slot) == 2 * params(edge)  # two slots a node, each with its own ops
    assert edge.arch_labels == [f"cell/edge_{i}_{j}" for i in (2, 3, 4) for j in range(i)]
    assert slot.arch_labels == space.search_space_object().labels


def test_soft_mode_is_the_sum_over_each_nodes_edges_of_their_weighted_ops() -> None:
    space = Reduce()
    net = Supernet(space, differentiable=True, cell_mixing="edge")
    _randomise(net.model, 1)
    net.model.eval()
    g = torch.Generator().manual_seed(2)
    probs = {lbl: torch.softmax(torch.randn(3, generator=g), -1) for lbl in net.arch_labels}
    net.set_soft(probs)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        got = net.model(x)
        cell = net.model.cell
        states = [x, x]
        for i in (2, 3, 4):
            node = torch.zeros(())
            for j in range(i):
                edge = cell._modules[f"edge_{i}_{j}"]
                p = probs[f"cell/edge_{i}_{j}"]
                for o in range(3):
                    node = node + p[o] * edge.candidate(o)(states[j])
            states.append(node)
        want = torch.cat(states[2:], 1)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def _same_slot_sample(space: Any) -> dict[str, Any]:
    sample = dict(space.default())
    for key in list(sample):  # both slots of every node: the same input and op
        if key.endswith("_1"):
            sample[key] = sample[key[:-1] + "0"]
    return sample


@pytest.mark.parametrize("make", [Reduce, lambda: hub.DARTS(width=4, num_cells=3)],
                         ids=["Reduce", "hub.DARTS"])
def test_hard_mode_equals_the_frozen_model_whose_slots_inherit_their_edges(make: Any) -> None:
    space = make()
    net = Supernet(space, differentiable=True, cell_mixing="edge")
    _randomise(net.model, 3)  # trained-looking weights: slot 1 must get the edge's, not new
    x = torch.randn(2, 3, 16, 16)
    samples = [space.random(seed=s) for s in range(4)] + [_same_slot_sample(space)]
    for sample in samples:
        net.set_hard(sample)
        net.model.train()
        with torch.no_grad():
            net.model(x)  # moves the batch-norm statistics
        net.model.eval()
        frozen = net.freeze(sample).eval()
        with torch.no_grad():
            torch.testing.assert_close(net.model(x), frozen(x), rtol=0, atol=1e-5)


def test_space_probs_read_each_nodes_slots_off_its_strongest_edges() -> None:
    space = Reduce()
    net = Supernet(space, differentiable=True, cell_mixing="edge")
    probs = {lbl: torch.full((3,), 1 / 3) for lbl in net.arch_labels}
    # node 4: edge 2 strongest (its op 1), then edge 0 (its op 2); edges 1, 3 weak
    probs["cell/edge_4_2"] = torch.tensor([0.1, 0.8, 0.1])
    probs["cell/edge_4_0"] = torch.tensor([0.2, 0.1, 0.7])
    probs["cell/edge_4_1"] = torch.tensor([0.4, 0.3, 0.3])
    out = net.space_probs(probs)
    assert set(out) == set(space.search_space_object().labels)
    torch.testing.assert_close(out["cell/op_4_0"], probs["cell/edge_4_2"])
    torch.testing.assert_close(out["cell/op_4_1"], probs["cell/edge_4_0"])
    assert int(out["cell/input_4_0"].argmax()) == 2 and float(out["cell/input_4_0"][0]) == 0
    assert int(out["cell/input_4_1"].argmax()) == 0 and float(out["cell/input_4_1"][2]) == 0
    for v in out.values():
        assert float(v.sum()) == pytest.approx(1.0)
    plain = {k: v.tolist() for k, v in out.items()}
    best, _ = top_by_probability(net.space, net.specs, plain, 1)[0]
    assert best["cell/op_4_0"] == "pool" and best["cell/input_4_0"] == [2]
    assert best["cell/op_4_1"] == "pw" and best["cell/input_4_1"] == [0]
    space.validate(best)


def test_darts_mixes_per_edge_by_default_and_says_what_cell_mixing_takes() -> None:
    assert nf.strategy.DARTS().cell_mixing == "edge"
    assert nf.strategy.GumbelDARTS().cell_mixing == "edge"
    assert nf.strategy.DARTS(cell_mixing="slot").cell_mixing == "slot"
    with pytest.raises(ValueError, match="cell_mixing.*'edge', 'slot'"):
        nf.strategy.DARTS(cell_mixing="node")
    assert nf.strategy.Proxyless().cell_mixing == "slot"
    with pytest.raises(ValueError, match="only 'slot'"):
        nf.strategy.Proxyless(cell_mixing="edge")


def test_a_cost_penalty_reads_the_edges_through_the_space_labels() -> None:
    space = Reduce()
    net = Supernet(space, differentiable=True, cell_mixing="edge")
    alpha = {lbl: torch.zeros(3, requires_grad=True) for lbl in net.arch_labels}
    probs = net.space_probs({k: torch.softmax(a, -1) for k, a in alpha.items()})
    cost = sum((p * torch.arange(p.numel(), dtype=torch.float32)).sum()
               for k, p in probs.items() if "/op_" in k)
    cost.backward()  # type: ignore[union-attr]
    assert any(float(a.grad.abs().sum()) > 0 for a in alpha.values())  # type: ignore[union-attr]
