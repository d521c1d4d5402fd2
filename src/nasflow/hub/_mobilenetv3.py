"""``MobileNetV3Space``: TuNAS's largest MobileNetV3 space (Bender et al., 2020), labels and
defaults as NNI's.

Unlike ``ProxylessNAS``, kernel sizes, expand ratios and widths are *values* of searchable
layers (``s{i}_i{j}_ks``, ``s{i}_i{j}_exp``, ``s{i}_width_mult``), so one-shot strategies
share one weight per layer and slice it (FBNetV2-style); the SE layer is a
``LayerChoice`` (``s{i}_i{j}_se``) where a stage makes it optional.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn as nn

import nasflow as nf
from nasflow import nn as snn
from nasflow.hub._blocks import (
    ConvBNAct,
    DepthwiseSeparable,
    InvertedResidual,
    SqueezeExcite,
    Width,
    make_divisible,
)
from nasflow.hub._searched import Searched, searched_model
from nasflow.space import Sample

__all__ = ["MOBILENETV3_ARCHS", "MobileNetV3Space"]

SE = Literal["force", "optional", "none"]
Act = Literal["hswish", "swish", "relu"]
_ACTS: dict[str, Callable[[], nn.Module]] = {
    "hswish": nn.Hardswish, "swish": nn.SiLU, "relu": nn.ReLU,
}


def _act(name: str) -> Callable[[], nn.Module]:
    if name not in _ACTS:
        raise ValueError(f"MobileNetV3Space: activation must be one of {sorted(_ACTS)}, got "
                         f"{name!r}")
    return _ACTS[name]


def _se(mode: SE, label: str) -> Callable[[Width], nn.Module] | None:
    if mode == "none":
        return None
    if mode == "force":
        return SqueezeExcite
    if mode == "optional":
        return lambda ch: snn.LayerChoice(
            {"identity": nn.Identity(), "se": SqueezeExcite(ch)}, label=label)
    raise ValueError(f"MobileNetV3Space: squeeze_excite entries must be 'force', 'optional' "
                     f"or 'none', got {mode!r}")


class MobileNetV3Space(snn.ModelSpace):
    """The MobileNetV3 space of TuNAS (NNI's ``MobileNetV3Space``, same labels, defaults and
    argument meanings).

    ``base_widths`` (9: stem, stages 0-5, head conv, head linear) are scaled by a per-stage
    ``width_multipliers`` choice (a float fixes it), rounded to multiples of 8; the stem
    and stage 0 share one multiplier. Stages 1-5 repeat MBConvs ``depth_range`` times, each
    with its own expand ratio and kernel size; ``squeeze_excite`` says per stage 0-5 whether
    blocks have SE. ``MobileNetV3Space.searched("mobilenetv3-large-100")`` is the published
    MobileNetV3-Large. For 32x32 tests: ``MobileNetV3Space(num_labels=10,
    width_multipliers=(0.25, 0.5), depth_range=(1, 2), base_widths=(8, 8, 16, 16, 24, 32,
    40, 64, 96))``.
    """

    def __init__(
        self, num_labels: int = 1000,
        base_widths: Sequence[int] = (16, 16, 16, 32, 64, 128, 256, 512, 1024),
        width_multipliers: Sequence[float] | float = (0.5, 0.625, 0.75, 1.0, 1.25, 1.5, 2.0),
        expand_ratios: Sequence[float] = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0),
        squeeze_excite: Sequence[SE] = ("none", "none", "optional", "none", "optional",
                                        "optional"),
        depth_range: Sequence[tuple[int, int]] | tuple[int, int] = (1, 4),
        stride: Sequence[int] = (2, 1, 2, 2, 2, 1, 2, 1, 1),
        activation: Sequence[Act] = ("hswish", "relu", "relu", "relu", "hswish", "hswish",
                                     "hswish", "hswish", "hswish"),
        se_from_exp: bool = True, dropout_rate: float = 0.2, bn_eps: float = 1e-3,
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        n = len(base_widths) - 1  # body and head blocks after the stem
        if n < 4 or not len(stride) == len(activation) == n + 1:
            raise ValueError(
                f"MobileNetV3Space: base_widths, stride and activation need the same length "
                f"(at least 5), got {len(base_widths)}, {len(stride)}, {len(activation)}")
        if len(squeeze_excite) != n - 2:
            raise ValueError(f"MobileNetV3Space: squeeze_excite needs {n - 2} entries (stages "
                             f"0-{n - 3}), got {len(squeeze_excite)}")
        depths = self._depths(depth_range, n - 3)
        widths = self._widths(base_widths, width_multipliers)
        self.widths = widths
        bn = {"bn_eps": bn_eps, "bn_momentum": bn_momentum}
        self.stem = ConvBNAct(3, widths[0], nf.Categorical([3, 5], label="stem_ks"),
                              stride[0], activation=_act(activation[0]), **bn)
        blocks: list[nn.Module] = [DepthwiseSeparable(
            widths[0], widths[1], nf.Categorical([3, 5, 7], label="s0_i0_ks"), stride[1],
            se=_se(squeeze_excite[0], "s0_i0_se"), activation=_act(activation[1]), **bn)]
        for i in range(1, n - 2):
            blocks.append(self._stage(i, widths[i], widths[i + 1], list(expand_ratios),
                                      squeeze_excite[i], stride[i + 1], _act(activation[i + 1]),
                                      depths[i - 1], se_from_exp, bn))
        blocks += [
            ConvBNAct(widths[n - 2], widths[n - 1], 1, stride[n - 1],
                      activation=_act(activation[n - 1]), **bn),
            nn.AdaptiveAvgPool2d(1),
            ConvBNAct(widths[n - 1], widths[n], 1, stride[n], norm=False,
                      activation=_act(activation[n])),
        ]
        self.blocks = nn.Sequential(*blocks)
        self.classifier = nn.Sequential(nn.Dropout(dropout_rate),
                                        snn.Linear(widths[n], num_labels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.blocks(self.stem(x)).flatten(1))

    @staticmethod
    def _depths(depth_range: Sequence[tuple[int, int]] | tuple[int, int],
                count: int) -> list[tuple[int, int]]:
        if len(depth_range) == 2 and all(isinstance(d, int) for d in depth_range):
            ranges = [tuple(depth_range)] * count
        else:
            ranges = [tuple(d) for d in depth_range]  # type: ignore[arg-type]
        if len(ranges) != count or any(len(r) != 2 or not 1 <= r[0] <= r[1] for r in ranges):
            raise ValueError(f"MobileNetV3Space: depth_range must be (min, max) with 1 <= min "
                             f"<= max, or {count} of them, got {depth_range!r}")
        return ranges  # type: ignore[return-value]

    @staticmethod
    def _widths(base: Sequence[int], mults: Sequence[float] | float) -> list[Width]:
        if isinstance(mults, (int, float)):
            return [make_divisible(b * mults, 8) for b in base]
        choices: dict[str, nf.Categorical] = {}
        made: dict[tuple[str, int], Width] = {}
        widths: list[Width] = []
        for i, b in enumerate(base):
            label = f"s{max(i - 1, 0)}_width_mult"  # TuNAS: stem and stage 0 share one
            mult = choices.setdefault(label, nf.Categorical(list(mults), label=label))
            # one expression per (multiplier, base): equal widths are the same object, so
            # the residual of a block between them is kept
            widths.append(made.setdefault((label, b), make_divisible(mult * b, 8)))
        return widths

    @staticmethod
    def _stage(i: int, inp: Width, oup: Width, expands: list[float], se: SE, stride: int,
               act: Callable[[], nn.Module], depth: tuple[int, int], se_from_exp: bool,
               bn: dict[str, float]) -> nn.Module:
        def block(j: int) -> nn.Module:
            exp = nf.Categorical(expands, label=f"s{i}_i{j}_exp")
            ks = nf.Categorical([3, 5, 7], label=f"s{i}_i{j}_ks")
            make_se = _se(se, f"s{i}_i{j}_se")
            if make_se is not None and not se_from_exp:
                src = inp if j == 0 else oup
                outer = make_se
                make_se = lambda _hidden: outer(src)  # noqa: E731 - SE from the input width
            return InvertedResidual(inp if j == 0 else oup, oup, exp, ks,
                                    stride if j == 0 else 1, se=make_se, activation=act, **bn)
        lo, hi = depth
        return snn.Repeat(block, (max(lo, 1) if stride != 1 else lo, hi), label=f"s{i}_depth")

    @classmethod
    def searched(cls, name: str) -> tuple[MobileNetV3Space, Sample]:
        """``(space, sample)`` of a published network (``MOBILENETV3_ARCHS``)."""
        return searched_model(cls, MOBILENETV3_ARCHS, name)


def _large() -> dict[str, object]:
    sample: dict[str, object] = {"stem_ks": 3, "s0_i0_ks": 3}
    stages = {1: [(4, 3), (3, 3)], 2: [(3, 5)] * 3, 3: [(6, 3), (2.5, 3), (2.3, 3), (2.3, 3)],
              4: [(6, 3)] * 2, 5: [(6, 5)] * 3}
    for i, blocks in stages.items():
        sample[f"s{i}_depth"] = len(blocks)
        for j, (exp, ks) in enumerate(blocks):
            sample[f"s{i}_i{j}_exp"] = float(exp)
            sample[f"s{i}_i{j}_ks"] = ks
    return sample


MOBILENETV3_ARCHS: dict[str, Searched] = {
    "mobilenetv3-large-100": Searched(
        kwargs={"base_widths": (16, 16, 24, 40, 80, 112, 160, 960, 1280),
                "expand_ratios": (1.0, 2.0, 2.3, 2.5, 3.0, 4.0, 6.0), "bn_eps": 1e-5,
                "width_multipliers": 1.0,
                "squeeze_excite": ("none", "none", "force", "none", "force", "force")},
        sample=_large(), paper_params=5.4e6,
        source="MobileNetV3-Large 1.0 (Howard et al., 2019, Table 3); NNI's "
               "'mobilenetv3-large-100'"),
}
"""The published MobileNetV3 networks, by NNI's names."""
