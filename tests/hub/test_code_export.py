"""``formatter="code"`` and ``nasflow export --format code``: the generated source, run in
a process where nasflow cannot be imported, rebuilds the frozen model exactly (names,
shapes, state dict, bit-identical outputs)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import nasflow as nf
from nasflow import nn as snn
from nasflow.demo import DigitsNet
from nasflow.exceptions import SpaceError
from nasflow.nn import to_code

from ._export_check import assert_exports

ROOT = Path(__file__).resolve().parents[2]


def _digits_samples() -> list[dict[str, object]]:
    space = DigitsNet()
    return [space.default()] + [space.random(seed) for seed in range(6)]


@pytest.mark.parametrize("index", range(7))
def test_digits_demo_samples_export(index: int, tmp_path: Path) -> None:
    space = DigitsNet()
    model = space.freeze(_digits_samples()[index])
    assert_exports(model, torch.rand(5, 1, 8, 8), tmp_path)


class Token(nn.Module):
    """A block holding its own tensors outside any torch.nn layer."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.cls = nn.Parameter(torch.randn(1, 1, dim))
        self.register_buffer("scale", torch.full((dim,), 0.5))
        self.register_buffer("mask", torch.tensor([1.0, float("-inf")]), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) * self.scale


class Mixed(snn.ModelSpace):
    """Functional calls, concatenating input choices, attention and a root parameter."""

    def __init__(self) -> None:
        super().__init__()
        dim = nf.Categorical([8, 16], label="dim")
        self.embed = snn.Linear(4, dim)
        self.token = snn.LayerChoice({"token": Token(8), "none": nn.Identity()},
                                     label="token")
        self.attn = snn.MultiheadAttention(8, nf.Categorical([1, 2, 4], label="heads"),
                                           batch_first=True)
        self.norm = nn.LayerNorm(8, eps=1e-6)
        self.proj = snn.Linear(dim, 8)
        self.pick = snn.InputChoice(2, n_chosen=None, reduction="mean", label="pick")
        self.bias = nn.Parameter(torch.zeros(1))
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.token(self.proj(F.gelu(self.embed(x))))
        a, _ = self.attn(h, h, h, need_weights=False)
        h = self.norm(h + a)
        mean, top = h.mean(dim=1), h.amax(dim=1)
        both = torch.cat([self.pick([mean, top]), top * self.token_scale()], dim=-1)
        return self.head(both) + self.bias

    def token_scale(self) -> float:
        return 2.0


@pytest.mark.parametrize("seed", range(4))
def test_a_space_with_functional_calls_and_attention_exports(seed: int, tmp_path: Path) -> None:
    space = Mixed()
    sample = space.random(seed)
    model = space.freeze(sample)
    source = assert_exports(model, torch.randn(3, 5, 4), tmp_path)
    assert "nasflow" not in source.split('"""', 2)[2]  # only the docstring names it


def test_the_model_is_left_as_it_was() -> None:
    model = Mixed().freeze({"dim": 8, "token": "token", "heads": 2, "pick": [0]})
    before = dict(vars(model))
    keys = list(model.state_dict())
    to_code(model)
    assert dict(vars(model)).keys() == before.keys() and list(model.state_dict()) == keys


class Branchy(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if x.sum() > 0 else -x


def test_an_untraceable_model_says_why_and_what_to_do() -> None:
    with pytest.raises(SpaceError, match=r"torch.fx could not trace.*formatter='dict'"):
        to_code(Branchy())
    with pytest.raises(SpaceError, match="class_name must be a Python identifier"):
        to_code(nn.Linear(2, 2), class_name="my model")


def _parameters(model: nn.Module, trial: nf.Trial) -> float:
    return float(sum(p.numel() for p in model.parameters()))


def _experiment(home: Path) -> nf.Experiment:
    exp = nf.Experiment(DigitsNet(), _parameters, nf.strategy.Random(seed=0),
                        nf.ExperimentConfig(max_trials=4, home=str(home)))
    nf.run(exp)
    return exp


def test_export_top_models_code_rebuilds_each_winner(home: Path, tmp_path: Path) -> None:
    exp = _experiment(home)
    sources = exp.export_top_models(2, formatter="code")
    models = exp.export_top_models(2, formatter="instance")
    assert len(sources) == 2 and all(isinstance(s, str) for s in sources)
    for i, (source, model) in enumerate(zip(sources, models, strict=True)):
        assert source == to_code(model)
        assert_exports(model, torch.rand(2, 1, 8, 8), tmp_path / str(i))
    with pytest.raises(ValueError, match="'code'"):
        exp.export_top_models(1, formatter="source")


def test_code_needs_a_model_space() -> None:
    exp = nf.Experiment({"a": nf.Categorical([1, 2])}, lambda m, t: 1.0,
                        nf.strategy.GridSearch(), nf.ExperimentConfig(store=False))
    nf.run(exp)
    with pytest.raises(ValueError, match="needs a model space.*formatter='dict'"):
        exp.export_top_models(1, formatter="code")


def test_cli_writes_one_file_per_trial(home: Path, tmp_path: Path) -> None:
    exp = _experiment(home)
    out = tmp_path / "exported"
    env = {"NASFLOW_HOME": str(home), "COLUMNS": "200", "PATH": "/usr/bin:/bin"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "nasflow", *args], capture_output=True,
                              text=True, timeout=120, env=env, cwd=ROOT)

    done = cli("export", exp.id, "--top", "2", "--format", "code", "-o", str(out))
    assert done.returncode == 0, done.stderr
    ranked = [r.id for r in exp.export_top_models(2)]
    files = sorted(out.glob("*.py"))
    assert sorted(f.name for f in files) == sorted(f"trial_{i}.py" for i in ranked)
    assert [line.split()[0] for line in done.stdout.splitlines()] == [
        str(out / f"trial_{i}.py") for i in ranked]
    for record, model in zip(exp.export_top_models(2),
                             exp.export_top_models(2, formatter="instance"), strict=True):
        assert (out / f"trial_{record.id}.py").read_text() == to_code(model)

    missing = cli("export", exp.id, "--format", "code")
    assert missing.returncode == 2 and "needs -o DIR" in missing.stderr
    stray = cli("export", exp.id, "-o", str(out))
    assert stray.returncode == 2 and "only for --format code" in stray.stderr


def _hub_spaces() -> list[str]:
    from nasflow import hub

    return [name for name in hub.__all__ if isinstance(getattr(hub, name), type)
            and issubclass(getattr(hub, name), snn.ModelSpace)
            and name not in ("AutoformerSpace", "NDS")]  # an alias; the NDS base needs its ops


def _input_for(model: nn.Module) -> torch.Tensor:
    """The smallest usual image size the model accepts (CIFAR, then ImageNet)."""
    model.eval()
    for size in (32, 224):
        x = torch.randn(1, 3, size, size)
        try:
            with torch.no_grad():
                model(x)
        except RuntimeError:
            continue
        return x
    raise AssertionError(f"{type(model).__name__} takes neither 32x32 nor 224x224 images")


@pytest.mark.parametrize("name", _hub_spaces())
def test_every_hub_space_exports_its_default_and_a_random_sample(name: str,
                                                                 tmp_path: Path) -> None:
    from nasflow import hub

    torch.set_num_threads(1)
    space = getattr(hub, name)()
    for i, sample in enumerate([space.default(), space.random(0)]):
        model = space.freeze(sample)
        assert_exports(model, _input_for(model), tmp_path / str(i))


class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        shared = nn.Linear(4, 4)
        self.first = nn.Sequential(shared, nn.ReLU())
        self.second = nn.Sequential(nn.Tanh(), shared)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(x))


def test_a_module_used_twice_stays_one_module(tmp_path: Path) -> None:
    model = Tied()
    source = assert_exports(model, torch.randn(3, 4), tmp_path)
    namespace: dict[str, object] = {}
    exec(compile(source, "tied", "exec"), namespace)
    rebuilt = namespace["Tied"]()  # type: ignore[operator]
    assert rebuilt.get_submodule("first.0") is rebuilt.get_submodule("second.1")
