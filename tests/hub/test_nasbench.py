"""hub.NasBench201: the paper's network (exact parameter counts), its 15,625 cells under
NNI's labels, arch-string conversion both ways, a frozen model that traces and trains."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.fx

import nasflow as nf
from nasflow import hub
from nasflow.nn import ModelSpace, NasModule

from .conftest import image_data

OPS = ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]
LABELS = ["cell/0_1", "cell/0_2", "cell/1_2", "cell/0_3", "cell/1_3", "cell/2_3"]
ISSUE_ARCH = ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|"
              "+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|")


@pytest.fixture(scope="module")
def space() -> hub.NasBench201:
    return hub.NasBench201(num_classes=10)


def test_labels_ops_and_size(space: hub.NasBench201) -> None:
    ss = space.search_space()
    assert list(ss) == LABELS
    assert all(list(ss[label].values) == OPS for label in LABELS)
    assert space.size() == 15625 == len(OPS) ** 6


@pytest.mark.parametrize(("op", "params"), [("nor_conv_3x3", 1_531_546), ("none", 73_306)])
def test_parameter_counts_match_the_paper(space: hub.NasBench201, op: str, params: int) -> None:
    model = space.freeze(dict.fromkeys(LABELS, op))
    assert nf.evaluator.count_params(model) == params


def test_arch_string_round_trip(space: hub.NasBench201) -> None:
    sample = hub.NasBench201.from_arch_str(ISSUE_ARCH)
    assert sample["cell/0_3"] == "skip_connect" and sample["cell/2_3"] == "nor_conv_3x3"
    space.validate(sample)
    assert hub.NasBench201.to_arch_str(sample) == ISSUE_ARCH
    for seed in range(5):
        s = space.random(seed)
        assert hub.NasBench201.from_arch_str(hub.NasBench201.to_arch_str(s)) == s


@pytest.mark.parametrize("bad", [
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|", "|conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|",
    "|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", 42,
])
def test_a_bad_arch_string_says_what_is_expected(bad: object) -> None:
    with pytest.raises(ValueError, match="from_arch_str"):
        hub.NasBench201.from_arch_str(bad)  # type: ignore[arg-type]


def test_to_arch_str_names_a_missing_or_bad_label() -> None:
    with pytest.raises(ValueError, match="cell/2_3"):
        hub.NasBench201.to_arch_str({k: "none" for k in LABELS[:-1]})
    with pytest.raises(ValueError, match="conv_9x9"):
        hub.NasBench201.to_arch_str({**dict.fromkeys(LABELS, "none"), "cell/0_1": "conv_9x9"})


def test_validate_random_default_and_grid(space: hub.NasBench201) -> None:
    space.validate(space.default())
    space.validate(space.random(3))
    grid = list(itertools.islice(space.grid(), 30))
    assert len({hub.NasBench201.to_arch_str(s) for s in grid}) == 30
    with pytest.raises(nf.SampleValidationError, match="cell/1_2"):
        space.validate({**space.default(), "cell/1_2": "sep_conv_3x3"})


def test_the_fast_freeze_builds_what_modelspace_freeze_builds(space: hub.NasBench201) -> None:
    sample = hub.NasBench201.from_arch_str(ISSUE_ARCH)
    fast, generic = space.freeze(sample), ModelSpace.freeze(space, sample)
    assert type(fast) is type(generic) is hub.NasBench201
    assert fast.is_frozen and fast.frozen_sample == generic.frozen_sample == sample
    a, b = dict(fast.state_dict()), dict(generic.state_dict())
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert not any(isinstance(m, NasModule) for m in fast.modules())
    # own parameters: training the frozen model leaves the space untouched
    assert all(p is not q for p, q in zip(fast.parameters(), space.parameters(), strict=False))
    x = torch.randn(2, 3, 32, 32)
    fast.eval()
    generic.eval()
    assert torch.equal(fast(x), generic(x))


def test_frozen_model_traces_and_profiles(space: hub.NasBench201) -> None:
    model = space.freeze(hub.NasBench201.from_arch_str(ISSUE_ARCH)).eval()
    x = torch.randn(2, 3, 32, 32)
    traced = torch.fx.symbolic_trace(model)
    assert torch.equal(traced(x), model(x))
    flops = nf.evaluator.count_flops(model, torch.randn(1, 3, 32, 32))
    assert flops > nf.evaluator.count_flops(
        space.freeze(dict.fromkeys(LABELS, "none")), torch.randn(1, 3, 32, 32))


def test_a_small_variant_trains_on_generated_images() -> None:
    small = hub.NasBench201(stem_out_channels=8, num_modules_per_stack=1)
    model = small.freeze(dict.fromkeys(LABELS, "nor_conv_3x3"))
    (x, y), _ = image_data(64)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    losses = []
    for _ in range(8):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_bad_arguments_are_named() -> None:
    with pytest.raises(nf.SpaceBuildError, match="stem_out_channels"):
        hub.NasBench201(stem_out_channels=0)
    assert hub.NasBench201(num_labels=100).classifier.out_features == 100  # NNI's spelling
