"""The NDS cell spaces: NNI's labels and op sets, DARTS-V2 at the paper's 3.3M parameters,
searched width/depth, both datasets, reduction cells, the auxiliary head, drop path."""

from __future__ import annotations

import pytest
import torch
import torch.fx

import nasflow as nf
from nasflow import hub
from nasflow.hub._ops import DropPath
from nasflow.nn import FrozenCell, NasModule

from .conftest import image_data

FAMILIES = [hub.NASNet, hub.ENAS, hub.AmoebaNet, hub.PNAS, hub.DARTS]


def _v2() -> dict[str, object]:
    return hub.DARTS.genotype_sample(hub.DARTS.V2_NORMAL, hub.DARTS.V2_REDUCE)


def test_darts_v2_has_the_papers_parameter_count() -> None:
    space = hub.DARTS(width=36, num_cells=20, dataset="cifar", auxiliary_loss=True)
    model = space.freeze(_v2())
    total = nf.evaluator.count_params(model)
    aux = sum(p.numel() for n, p in model.named_parameters() if n.startswith("auxiliary_head"))
    # the DARTS paper's 3.3M (its code's count, 3.349342M, leaves out the auxiliary head)
    assert total - aux == 3_349_342
    assert total == 3_825_768


def test_darts_labels_and_ops_follow_nni() -> None:
    space = hub.DARTS(width=16, num_cells=8, dataset="cifar")
    ss = space.search_space()
    assert list(ss)[:4] == ["normal/op_2_0", "normal/input_2_0", "normal/op_2_1",
                            "normal/input_2_1"]
    assert len(ss) == 2 * 4 * 2 * 2  # two cell types, 4 nodes, 2 ops, (op, input) each
    assert list(ss["reduce/op_5_1"].values) == list(hub.DARTS.OPS)
    assert "none" not in hub.DARTS.OPS
    assert ss["normal/input_5_1"].describe() == "1 of [0, 1, 2, 3, 4]"


@pytest.mark.parametrize("cls", FAMILIES, ids=lambda c: c.__name__)
def test_each_family_searches_width_and_depth_by_default(cls: type[hub.NDS]) -> None:
    space = cls()
    ss = space.search_space()
    assert list(ss["width"].values) == [16, 24, 32]
    assert list(ss["depth"].values) == [4, 8, 12, 16, 20]
    nodes = 4 if cls is hub.DARTS else 5
    assert len(ss) == 2 + 2 * nodes * 2 * 2
    assert list(ss["normal/op_2_0"].values) == list(cls.OPS)
    sample = space.random(1)
    model = space.freeze(sample)
    assert model.is_frozen and model.frozen_sample == space.canonicalize(sample)
    assert len(model.cells) == sample["depth"]
    assert not any(isinstance(m, NasModule) for m in model.modules())


@pytest.mark.parametrize("cls", FAMILIES, ids=lambda c: c.__name__)
@pytest.mark.parametrize(("dataset", "size", "classes"), [("cifar", 32, 10),
                                                          ("imagenet", 64, 1000)])
def test_frozen_models_run_trace_and_profile(cls: type[hub.NDS], dataset: str, size: int,
                                             classes: int) -> None:
    space = cls(width=8, num_cells=3, dataset=dataset)
    model = space.freeze(space.random(0)).eval()
    x = torch.randn(2, 3, size, size)
    out = model(x)
    assert out.shape == (2, classes)
    traced = torch.fx.symbolic_trace(model)
    assert torch.equal(traced(x), out)
    assert nf.evaluator.count_params(model) > 0
    assert nf.evaluator.count_flops(model, x[:1]) > 0


def test_reduction_cells_halve_the_size_and_double_the_channels() -> None:
    space = hub.DARTS(width=8, num_cells=6, dataset="cifar")
    model = space.freeze(space.random(2)).eval()
    sizes: list[tuple[int, ...]] = []
    for cell in model.cells:
        cell.register_forward_hook(lambda m, i, o: sizes.append(tuple(o.shape[1:])))
    model(torch.randn(1, 3, 32, 32))
    # cells 2 and 4 reduce (num_cells // 3, 2 * num_cells // 3); 4 nodes concatenated
    assert sizes == [(32, 32, 32), (32, 32, 32), (64, 16, 16), (64, 16, 16), (128, 8, 8),
                     (128, 8, 8)]


def test_reduction_ops_on_the_inputs_have_stride_2_and_on_nodes_stride_1() -> None:
    space = hub.DARTS(width=8, num_cells=3)
    sample = space.default()
    sample.update({"reduce/op_3_0": "skip_connect", "reduce/input_3_0": [0],
                   "reduce/op_3_1": "skip_connect", "reduce/input_3_1": [2]})
    model = space.freeze(sample)
    cell = model.cells[1]
    assert isinstance(cell, FrozenCell)
    on_input, on_node = cell.ops[1][0], cell.ops[1][1]
    assert type(on_input).__name__ == "FactorizedReduce"
    assert isinstance(on_node, torch.nn.Identity)


def test_loose_end_output_width_follows_the_sample() -> None:
    space = hub.ENAS(width=8, num_cells=3)
    sample = space.default()
    model = space.freeze(sample).eval()
    first = model.cells[0]
    assert isinstance(first, FrozenCell)
    read = {j for node in first.inputs for j in node}
    assert first.output_nodes == [n for n in range(2, 7) if n not in read]
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_auxiliary_head_and_drop_path_while_training_only() -> None:
    space = hub.DARTS(width=8, num_cells=3, auxiliary_loss=True, drop_path_prob=0.2)
    model = space.freeze(space.random(0))
    assert any(isinstance(m, DropPath) for m in model.modules())
    x = torch.randn(2, 3, 32, 32)
    logits, aux = model.train()(x)
    assert logits.shape == aux.shape == (2, 10)
    model.eval()
    assert torch.equal(model(x), model(x))  # no dropped paths in eval mode


def test_bad_arguments_say_what_is_allowed() -> None:
    with pytest.raises(nf.SpaceBuildError, match="dataset must be 'cifar' or 'imagenet'"):
        hub.DARTS(dataset="mnist")
    with pytest.raises(nf.SpaceBuildError, match="num_cells"):
        hub.DARTS(num_cells=2)
    with pytest.raises(nf.SpaceBuildError, match="unknown op"):
        hub.NDS(["conv_9x9"])
    with pytest.raises(ValueError, match="8 \\(op, input\\) pairs"):
        hub.DARTS.genotype_sample(hub.DARTS.V2_NORMAL[:4], hub.DARTS.V2_REDUCE)
    with pytest.raises(nf.SampleValidationError, match="normal/op_2_0"):
        hub.DARTS(width=8, num_cells=3).freeze({**_v2(), "normal/op_2_0": "conv_9x9"})


def test_a_small_darts_trains_on_generated_images() -> None:
    space = hub.DARTS(width=4, num_cells=3)
    model = space.freeze(_v2())
    (x, y), _ = image_data(32)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    losses = []
    for _ in range(6):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
