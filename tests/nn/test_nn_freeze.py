"""freeze(sample): plain modules that run, save, load and trace; the space is untouched."""

from __future__ import annotations

import io

import cloudpickle
import pytest
import torch
import torch.nn as nn

import nasflow as nf
from nasflow import nn as snn
from nasflow.engine._base import build_model
from nasflow.space import as_search_space


class Block(nn.Module):
    def __init__(self, width: object) -> None:
        super().__init__()
        self.conv = snn.Conv2d(width, width, 3, padding=1)
        self.act = snn.LayerChoice({"relu": nn.ReLU(), "tanh": nn.Tanh()})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


class Net(snn.ModelSpace):
    def __init__(self) -> None:
        super().__init__()
        width = nf.Categorical([4, 8], label="width")
        self.stem = snn.Conv2d(1, width, 3, padding=1)
        self.op = snn.LayerChoice(
            {
                "conv3": snn.Conv2d(width, width, 3, padding=1),
                "conv5": snn.Conv2d(width, width, 5, padding=2),
                "pool": nn.MaxPool2d(3, stride=1, padding=1),
            },
            label="op",
        )
        self.blocks = snn.Repeat(lambda i: Block(width), depth=(1, 2), label="depth")
        self.skip = snn.InputChoice(n_candidates=2, n_chosen=1, label="skip")
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = snn.Linear(width * 2, 3)
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        y = self.blocks(self.op(x))
        z = self.pool(self.skip([x, y])).flatten(1)
        return self.head(torch.cat([z, z], dim=1)) * self.scale


SAMPLE = {"width": 8, "op": "conv5", "depth": 2, "blocks.0.act": "tanh",
          "blocks.1.act": "relu", "skip": [1]}


def _x() -> torch.Tensor:
    return torch.randn(2, 1, 6, 6)


def test_frozen_model_is_plain_and_runs() -> None:
    net = Net()
    model = net.freeze(SAMPLE)
    assert type(model) is Net
    assert not any(isinstance(m, snn.NasModule) for m in model.modules())
    assert type(model.op) is nn.Conv2d and model.op.kernel_size == (5, 5)
    assert [type(b.act) for b in model.blocks] == [nn.Tanh, nn.ReLU]
    assert model.head.in_features == 16
    assert model(_x()).shape == (2, 3)
    assert model.is_frozen and model.frozen_sample == SAMPLE
    assert not model.is_model_space and net.is_model_space


def test_every_sample_of_the_grid_freezes_and_runs() -> None:
    net = Net()
    for sample in net.grid():
        assert net.freeze(sample)(_x()).shape == (2, 3)


def test_freeze_does_not_mutate_the_space() -> None:
    net = Net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    structure = [(name, type(m)) for name, m in net.named_modules()]
    model = net.freeze(SAMPLE)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    assert [(name, type(m)) for name, m in net.named_modules()] == structure
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    own = {id(p) for p in net.parameters()}
    assert not any(id(p) in own for p in model.parameters())
    assert not net.is_frozen
    assert net.freeze(SAMPLE) is not model


def test_shared_modules_stay_shared_in_the_frozen_model() -> None:
    class Tied(snn.ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            shared = nn.Linear(2, 2)
            self.a = shared
            self.op = snn.LayerChoice([shared, nn.Identity()], label="op")

    model = Tied().freeze({"op": 0})
    assert model.a is model.op


def test_eval_mode_carries_over() -> None:
    net = Net().eval()
    model = net.freeze(SAMPLE)
    assert not any(m.training for m in model.modules())


def test_frozen_model_survives_torch_save_and_load() -> None:
    model = Net().freeze(SAMPLE).eval()
    x = _x()
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    assert type(loaded) is Net
    assert torch.equal(loaded(x), model(x))
    fresh = Net().freeze(SAMPLE).eval()
    fresh.load_state_dict(model.state_dict())
    assert torch.equal(fresh(x), model(x))


def test_frozen_model_is_fx_traceable() -> None:
    model = Net().freeze(SAMPLE).eval()
    traced = torch.fx.symbolic_trace(model)
    x = _x()
    assert torch.equal(traced(x), model(x))


def test_search_space_methods_on_a_frozen_model_raise() -> None:
    model = Net().freeze(SAMPLE)
    for call in (model.search_space, model.default, model.size, lambda: model.freeze(SAMPLE)):
        with pytest.raises(nf.SpaceError, match=r"frozen model"):
            call()


def test_unfrozen_space_refuses_to_run() -> None:
    net = Net()
    with pytest.raises(nf.SpaceError, match=r"Freeze the space first"):
        net(_x())


def test_sample_validation_errors_name_label_value_and_allowed() -> None:
    net = Net()
    bad = dict(SAMPLE, width=5)
    with pytest.raises(nf.SampleValidationError) as info:
        net.freeze(bad)
    err = info.value
    assert (err.label, err.value, err.allowed) == ("width", 5, "[4, 8]")
    assert "'width'" in str(err) and "5" in str(err) and "[4, 8]" in str(err)
    with pytest.raises(nf.SampleValidationError, match=r"'depth'.*missing"):
        net.freeze({k: v for k, v in SAMPLE.items() if k != "depth"})
    with pytest.raises(nf.SampleValidationError, match=r"'wdith'.*no such label"):
        net.freeze(dict(SAMPLE, wdith=4))
    with pytest.raises(nf.SampleValidationError, match=r"'skip'"):
        net.freeze(dict(SAMPLE, skip=[0, 1]))


def test_space_works_after_a_cloudpickle_round_trip() -> None:
    # a class defined in a function is pickled by value, wrapped __init__ included
    class Local(snn.ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            width = nf.Categorical([2, 4], label="width")
            self.fc = snn.Linear(3, width)
            self.op = snn.LayerChoice([nn.ReLU(), snn.Linear(width, width)], label="op")
            self.add_constraint("small", lambda s: s["width"] < 4 or s["op"] == 0)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.op(self.fc(x))

    net = cloudpickle.loads(cloudpickle.dumps(Local()))
    assert list(net.search_space()) == ["width", "op"]
    assert len(list(net.grid())) == 3
    sample = {"width": 2, "op": 1}
    model = net.freeze(sample)
    assert model.op.in_features == 2
    assert model(torch.zeros(1, 3)).shape == (1, 2)
    with pytest.raises(nf.SampleValidationError, match=r"small"):
        net.validate({"width": 4, "op": 1})
    again = cloudpickle.loads(cloudpickle.dumps(net))
    assert again.freeze(sample).op.out_features == 2
    fresh = type(again)()  # the unpickled class still builds its space when constructed
    assert list(fresh.search_space()) == ["width", "op"]


def test_engines_and_as_search_space_see_a_model_space() -> None:
    net = Net()
    assert as_search_space(net) is net.search_space_object()
    model = build_model(net, SAMPLE)
    assert type(model) is Net and model.is_frozen
