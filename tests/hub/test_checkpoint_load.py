"""``hub.load_checkpoint``: user weights load into a frozen sample only when they fit, and
the error lists what does not."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nasflow import hub

from ._small import small_proxyless


def test_weights_of_the_same_sample_load_from_a_mapping_or_a_file(tmp_path: Path) -> None:
    space = small_proxyless()
    sample = space.random(0)
    trained, fresh = space.freeze(sample), space.freeze(sample)
    with torch.no_grad():  # "training" elsewhere
        for p in trained.parameters():
            p.add_(torch.rand_like(p))
    assert not torch.equal(trained.classifier.weight, fresh.classifier.weight)
    assert hub.load_checkpoint(fresh, trained.state_dict()) is fresh
    assert torch.equal(trained.classifier.weight, fresh.classifier.weight)

    path = tmp_path / "weights.pt"
    torch.save({"state_dict": trained.state_dict(), "epoch": 3}, path)
    other = space.freeze(sample)
    hub.load_checkpoint(other, path)
    assert torch.equal(trained.stem[0].weight, other.stem[0].weight)

    wrapped = {f"module.{k}": v for k, v in trained.state_dict().items()}
    hub.load_checkpoint(space.freeze(sample), wrapped, prefix="module.")


def test_another_sample_is_refused_with_the_keys_and_nothing_loads() -> None:
    space = small_proxyless()
    small = {**space.default(), "s2_depth": 1, "s2_i0": "k3e3"}
    big = {**small, "s2_depth": 2, "s2_i0": "k7e6", "s2_i1": "k3e3"}
    model = space.freeze(small)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(hub.CheckpointMismatchError) as info:
        hub.load_checkpoint(model, space.freeze(big).state_dict())
    err = info.value
    assert "blocks.1.0.0.0.weight" in err.mismatched  # a 7x7 e6 block vs a 3x3 e3 one
    assert err.unexpected and all(k.startswith("blocks.1.1.") for k in err.unexpected)
    assert "of another shape" in str(err) and "not in the model" in str(err)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())

    with pytest.raises(hub.CheckpointMismatchError, match="try prefix='module.'"):
        hub.load_checkpoint(model, {f"module.{k}": v for k, v in before.items()})
    with pytest.raises(FileNotFoundError, match="no checkpoint file"):
        hub.load_checkpoint(model, "/nonexistent/weights.pt")


def test_strict_false_still_checks_shapes() -> None:
    space = small_proxyless()
    model = space.freeze(space.default())
    partial = {k: v for k, v in model.state_dict().items() if k.startswith("stem.")}
    hub.load_checkpoint(model, partial, strict=False)
    partial["stem.0.weight"] = torch.zeros(1, 1, 1, 1)
    with pytest.raises(hub.CheckpointMismatchError, match=r"stem.0.weight: checkpoint \[1, 1"):
        hub.load_checkpoint(model, partial, strict=False)
