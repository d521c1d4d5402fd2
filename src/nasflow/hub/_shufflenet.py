"""``ShuffleNetSpace``: the Single Path One-Shot space (Guo et al., ECCV 2020) on ShuffleNetV2
blocks (Ma et al., ECCV 2018), labels and defaults as NNI's.

Twenty choice blocks (``layer_1`` ... ``layer_20``), each one of ``k3``, ``k5``, ``k7``
(ShuffleNetV2 blocks with that depthwise kernel) or ``xcep`` (three depthwise-pointwise
pairs); with ``channel_search=True`` every block's middle width is searched too
(``channel_{i}``: 0.2x ... 1.6x), which RandomOneShot trains as one sliced weight.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn as nn

import nasflow as nf
from nasflow import nn as snn
from nasflow.hub._blocks import Width
from nasflow.hub._searched import Searched, searched_model
from nasflow.space import Sample

__all__ = ["SHUFFLENET_ARCHS", "ShuffleNetBlock", "ShuffleNetSpace"]

ProjWidth = Literal["input", "half"]


class ShuffleNetBlock(nn.Module):
    """A ShuffleNetV2 unit. Stride 1: half the channels pass through, the other half go
    through the main branch (``sequence``: ``p`` pointwise, ``d`` depthwise), then the two
    are concatenated. Stride 2: both branches see the whole input; the projection branch
    keeps ``in_channels`` (SPOS, ``proj_width="input"``) or ``out_channels // 2``
    (the ShuffleNetV2 paper, ``"half"``) channels, the main branch gives the rest."""

    def __init__(self, in_channels: int, out_channels: int, mid_channels: Width, *,
                 kernel_size: int, stride: int, sequence: str = "pdp", affine: bool = True,
                 proj_width: ProjWidth = "input") -> None:
        super().__init__()
        if stride not in (1, 2) or kernel_size not in (3, 5, 7):
            raise ValueError(f"ShuffleNetBlock: stride 1 or 2 and kernel 3, 5 or 7, got "
                             f"{stride}, {kernel_size}")
        self.stride = stride
        channels = in_channels // 2 if stride == 1 else in_channels
        proj = channels if stride == 1 or proj_width == "input" else out_channels // 2
        main_out = out_channels - proj
        if main_out <= 0:
            raise ValueError(f"ShuffleNetBlock: out_channels {out_channels} leaves no "
                             f"channels for the main branch")
        pad = kernel_size // 2
        layers: list[nn.Module] = []
        prev: Width = channels
        first_point, first_depth = True, True
        for i, token in enumerate(sequence):
            if token == "d":
                layers += [snn.Conv2d(prev, prev, kernel_size, stride if first_depth else 1,
                                      pad, groups=prev, bias=False),
                           snn.BatchNorm2d(prev, affine=affine)]
                first_depth = False
                continue
            if token != "p":
                raise ValueError(f"ShuffleNetBlock: sequence is made of 'p' and 'd', got "
                                 f"{sequence!r}")
            out: Width = main_out if i == len(sequence) - 1 else (
                mid_channels if first_point else prev)
            layers += [snn.Conv2d(prev, out, 1, bias=False),
                       snn.BatchNorm2d(out, affine=affine), nn.ReLU(inplace=True)]
            first_point, prev = False, out
        if sequence[-1] != "p":
            raise ValueError("ShuffleNetBlock: the last conv of the sequence must be 'p'")
        self.branch_main = nn.Sequential(*layers)
        self.branch_proj = nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size, stride, pad, groups=channels,
                      bias=False),
            nn.BatchNorm2d(channels, affine=affine),
            nn.Conv2d(channels, proj, 1, bias=False),
            nn.BatchNorm2d(proj, affine=affine),
            nn.ReLU(inplace=True),
        ) if stride == 2 else nn.Sequential()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 2:
            return torch.cat((self.branch_proj(x), self.branch_main(x)), 1)
        # channel shuffle: even channels pass through, odd ones go through the main branch
        return torch.cat((x[:, 0::2], self.branch_main(x[:, 1::2])), 1)


class ShuffleNetSpace(snn.ModelSpace):
    """The SPOS space (NNI's ``ShuffleNetSpace``: same labels, defaults and arguments).

    ``stage_repeats`` and ``stage_out_channels`` (stem, stages, last conv) default to
    SPOS's ``(4, 4, 8, 4)`` and ``(16, 64, 160, 320, 640, 1024)``. ``proj_width``,
    ``classifier_bias``, ``dropout_rate`` and ``stem_pool`` (a max pool after the stem)
    tell SPOS's variant from the ShuffleNetV2 paper's; with
    ``ShuffleNetSpace.searched("shufflenetv2-1.0")`` they give ShuffleNetV2 1.0x. For
    32x32 tests: ``ShuffleNetSpace(num_labels=10, stage_repeats=(1, 2, 1),
    stage_out_channels=(8, 16, 32, 64, 128), channel_search=True)``.
    """

    def __init__(self, num_labels: int = 1000, channel_search: bool = False,
                 affine: bool = True, *, stage_repeats: Sequence[int] = (4, 4, 8, 4),
                 stage_out_channels: Sequence[int] = (16, 64, 160, 320, 640, 1024),
                 proj_width: ProjWidth = "input", classifier_bias: bool = False,
                 dropout_rate: float = 0.1, stem_pool: bool = False) -> None:
        super().__init__()
        if len(stage_out_channels) != len(stage_repeats) + 2:
            raise ValueError(
                f"ShuffleNetSpace: stage_out_channels needs the stem, one width per stage "
                f"and the last conv ({len(stage_repeats) + 2}), got {list(stage_out_channels)}")
        self.stage_out_channels = list(stage_out_channels)
        out = stage_out_channels[0]
        stem: list[nn.Module] = [nn.Conv2d(3, out, 3, 2, 1, bias=False), nn.BatchNorm2d(out),
                                 nn.ReLU(inplace=True)]
        if stem_pool:  # ShuffleNetV2's 3x3 max pool (SPOS downsamples in a 4th stage)
            stem.append(nn.MaxPool2d(3, 2, 1))
        self.first_conv = nn.Sequential(*stem)
        blocks: list[nn.Module] = []
        index = 0
        for stage, repeat in enumerate(stage_repeats):
            for i in range(repeat):
                index += 1
                inp, out = out, stage_out_channels[stage + 1]
                stride = 2 if i == 0 else 1
                base_mid = out // 2
                mid: Width = base_mid
                if channel_search:
                    mid = nf.Categorical([int(base_mid * 0.2 * k) for k in range(1, 9)],
                                         label=f"channel_{index}")
                common = {"stride": stride, "affine": affine, "proj_width": proj_width}
                blocks.append(snn.LayerChoice({
                    "k3": ShuffleNetBlock(inp, out, mid, kernel_size=3, **common),
                    "k5": ShuffleNetBlock(inp, out, mid, kernel_size=5, **common),
                    "k7": ShuffleNetBlock(inp, out, mid, kernel_size=7, **common),
                    "xcep": ShuffleNetBlock(inp, out, mid, kernel_size=3, sequence="dpdpdp",
                                            **common),
                }, label=f"layer_{index}"))
        self.features = nn.Sequential(*blocks)
        last = stage_out_channels[-1]
        self.conv_last = nn.Sequential(nn.Conv2d(out, last, 1, bias=False),
                                       nn.BatchNorm2d(last, affine=affine),
                                       nn.ReLU(inplace=True))
        self.globalpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout_rate)
        self.classifier = nn.Linear(last, num_labels, bias=classifier_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_last(self.features(self.first_conv(x)))
        return self.classifier(self.dropout(self.globalpool(x).flatten(1)))

    @classmethod
    def searched(cls, name: str, **overrides: object) -> tuple[ShuffleNetSpace, Sample]:
        """``(space, sample)`` of a published network (``SHUFFLENET_ARCHS``)."""
        return searched_model(cls, SHUFFLENET_ARCHS, name, **overrides)


_SPOS = ["k7", "k5", "k3", "k5", "k7", "k3", "k7", "k3", "k7", "k3", "k7", "xcep", "k3", "k3",
         "k3", "k3", "xcep", "k7", "xcep", "xcep"]

SHUFFLENET_ARCHS: dict[str, Searched] = {
    "shufflenetv2-1.0": Searched(
        kwargs={"stage_repeats": (4, 8, 4), "stage_out_channels": (24, 116, 232, 464, 1024),
                "proj_width": "half", "classifier_bias": True, "dropout_rate": 0.0,
                "stem_pool": True},
        sample={f"layer_{i}": "k3" for i in range(1, 17)}, paper_params=2.3e6,
        source="ShuffleNetV2 1.0x (Ma et al., 2018, Table 5: 146M FLOPs, 2.3M params)"),
    "spos": Searched(
        sample={f"layer_{i}": op for i, op in enumerate(_SPOS, 1)},
        source="SPOS block search; NNI's 'spos' (the paper reports 319M FLOPs)"),
}
"""Published networks of the ShuffleNet space, by NNI's names (plus ShuffleNetV2 1.0x)."""
