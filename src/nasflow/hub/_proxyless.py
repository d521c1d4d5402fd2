"""``ProxylessNAS``: the search space of ProxylessNAS (Cai et al., ICLR 2019), labels as NNI's.

A stem conv (stride 2), a fixed depthwise-separable block, six stages of MBConv blocks and
a 1x1 feature-mix conv before the classifier. In stages 2-6 the depth is searched
(``s{stage}_depth``, 1 to 4 blocks); each block is a ``LayerChoice`` (``s{stage}_i{index}``)
among the six MBConvs ``k{3,5,7}e{3,6}`` (kernel size, expand ratio), as in the paper and
NNI: candidates are separate layers, so one-shot strategies train each on its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn

from nasflow import nn as snn
from nasflow.hub._blocks import ConvBNAct, DepthwiseSeparable, InvertedResidual, make_divisible
from nasflow.hub._searched import Searched, searched_model
from nasflow.space import Sample

__all__ = ["PROXYLESS_ARCHS", "ProxylessNAS"]

_DOWNSAMPLE = (True, False, True, True, True, False, True, False)
_KERNELS = (3, 5, 7)
_EXPANDS = (3, 6)


def _mbconv_choice(stage: int, index: int, in_width: int, out_width: int, downsample: bool,
                   bn: dict[str, float]) -> snn.LayerChoice:
    first = index == 0
    stride = 2 if first and downsample else 1
    inp = in_width if first else out_width
    return snn.LayerChoice({
        f"k{k}e{e}": InvertedResidual(inp, out_width, e, k, stride, **bn)
        for e in _EXPANDS for k in _KERNELS
    }, label=f"s{stage}_i{index}")


class ProxylessNAS(snn.ModelSpace):
    """The ProxylessNAS space (NNI's ``ProxylessNAS``, same labels and defaults).

    ``base_widths``: stem, stage 1..7 and feature-mix widths (9 ints), scaled by
    ``width_mult`` and rounded to multiples of 8. ``depth_range``: the (min, max) blocks of
    stages 2-6 (the paper's (1, 4)); stage 7 has one block. For fast tests on 32x32 images,
    ``ProxylessNAS(num_labels=10, width_mult=0.25, depth_range=(1, 2))``.
    ``ProxylessNAS.searched("proxyless-mobile")`` is the published mobile network.
    """

    def __init__(self, num_labels: int = 1000,
                 base_widths: Sequence[int] = (32, 16, 32, 40, 80, 96, 192, 320, 1280),
                 dropout_rate: float = 0.0, width_mult: float = 1.0, bn_eps: float = 1e-3,
                 bn_momentum: float = 0.1, depth_range: tuple[int, int] = (1, 4)) -> None:
        super().__init__()
        if len(base_widths) != 9:
            raise ValueError(f"ProxylessNAS: base_widths needs 9 widths (stem, stages 1-7, "
                             f"feature mix), got {len(base_widths)}: {list(base_widths)}")
        lo, hi = depth_range
        if not 1 <= lo <= hi:
            raise ValueError(f"ProxylessNAS: depth_range needs 1 <= min <= max, got "
                             f"{depth_range}")
        widths = [int(make_divisible(w * width_mult, 8)) for w in base_widths]
        bn = {"bn_eps": bn_eps, "bn_momentum": bn_momentum}
        self.num_labels = num_labels
        self.widths = widths
        self.stem = ConvBNAct(3, widths[0], 3, 2, **bn)
        blocks: list[nn.Module] = [DepthwiseSeparable(widths[0], widths[1], 3, 1, **bn)]
        for stage in range(2, 8):
            def block(i: int, stage: int = stage) -> nn.Module:
                return _mbconv_choice(stage, i, widths[stage - 1], widths[stage],
                                      _DOWNSAMPLE[stage], bn)
            if stage < 7:
                blocks.append(snn.Repeat(block, depth_range, label=f"s{stage}_depth"))
            else:
                blocks.append(block(0))
        self.blocks = nn.Sequential(*blocks)
        self.feature_mix_layer = ConvBNAct(widths[7], widths[8], 1, **bn)
        self.global_avg_pooling = nn.AdaptiveAvgPool2d(1)
        self.dropout_layer = nn.Dropout(dropout_rate)
        self.classifier = nn.Linear(widths[8], num_labels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        x = self.global_avg_pooling(self.feature_mix_layer(x)).flatten(1)
        return self.classifier(self.dropout_layer(x))

    @classmethod
    def searched(cls, name: str) -> tuple[ProxylessNAS, Sample]:
        """``(space, sample)`` of a published network (``PROXYLESS_ARCHS``: names as NNI's
        ``load_searched_model``); ``space.freeze(sample)`` builds it, untrained."""
        return searched_model(cls, PROXYLESS_ARCHS, name)


def _arch(depths: Mapping[int, int], ops: Mapping[int, Sequence[str]]) -> dict[str, Any]:
    sample: dict[str, Any] = {}
    for stage in range(2, 8):
        if stage < 7:
            sample[f"s{stage}_depth"] = depths[stage]
        for i, op in enumerate(ops[stage]):
            sample[f"s{stage}_i{i}"] = op
    return sample


PROXYLESS_ARCHS: dict[str, Searched] = {
    "proxyless-mobile": Searched(
        kwargs={}, paper_params=4.1e6,
        source="ProxylessNAS (Cai et al., 2019), mobile model; NNI's 'proxyless-mobile'",
        sample=_arch({2: 2, 3: 4, 4: 4, 5: 4, 6: 4}, {
            2: ["k5e3", "k3e3"], 3: ["k7e3", "k3e3", "k5e3", "k5e3"],
            4: ["k7e6", "k5e3", "k5e3", "k5e3"], 5: ["k5e6", "k5e3", "k5e3", "k5e3"],
            6: ["k7e6", "k7e6", "k7e3", "k7e3"], 7: ["k7e6"]})),
    "proxyless-gpu": Searched(
        kwargs={"base_widths": (40, 24, 32, 56, 112, 128, 256, 432, 1728)},
        paper_params=7.1e6, source="ProxylessNAS GPU model; NNI's 'proxyless-gpu'",
        sample=_arch({2: 1, 3: 2, 4: 2, 5: 3, 6: 4}, {
            2: ["k5e3"], 3: ["k7e3", "k3e3"], 4: ["k7e6", "k5e3"],
            5: ["k5e6", "k3e3", "k5e3"], 6: ["k7e6", "k7e6", "k7e6", "k5e6"], 7: ["k7e6"]})),
    "proxyless-cpu": Searched(
        kwargs={"base_widths": (40, 24, 32, 48, 88, 104, 216, 360, 1432)},
        paper_params=4.4e6, source="ProxylessNAS CPU model; NNI's 'proxyless-cpu'",
        sample=_arch({2: 4, 3: 4, 4: 2, 5: 4, 6: 4}, {
            2: ["k3e6", "k3e3", "k3e3", "k3e3"], 3: ["k3e6", "k3e3", "k3e3", "k5e3"],
            4: ["k3e6", "k3e3"], 5: ["k5e6", "k3e3", "k3e3", "k3e3"],
            6: ["k5e6", "k5e3", "k5e3", "k3e3"], 7: ["k5e6"]})),
}
"""The published ProxylessNAS networks, by NNI's names."""
