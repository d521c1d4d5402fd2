"""NAS-Bench-201 (Dong & Yang, ICLR 2020): a 4-node cell with 6 searched edges.

Every edge picks one of 5 ops (the NAS-Bench-201 API's names); all 15 searched cells
share the same 6 decisions, labelled ``cell/<from>_<to>`` as in NNI, so the space
holds 5**6 = 15,625 architectures. The network is the paper's: a 3x3 conv stem, three
stages of ``N`` cells with ``C``, ``2C``, ``4C`` channels joined by residual blocks of
stride 2, then BN-ReLU, global pooling and a linear classifier.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn as nn

from nasflow.exceptions import SpaceBuildError
from nasflow.hub._freeze import fast_freeze
from nasflow.hub._ops import Pool, ReLUConvBN, Zero
from nasflow.nn import LayerChoice, ModelSpace
from nasflow.space import Sample

__all__ = ["NasBench201", "NasBench201Cell"]

OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
"""The candidate ops, spelled as in the NAS-Bench-201 API."""

EDGES: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
"""``(from, to)`` for every edge, in the order of the architecture string."""

_ARCH_RE = re.compile(r"^\|(.+)\|\+\|(.+)\|\+\|(.+)\|$")


def _op(name: str, c: int) -> nn.Module:
    if name == "none":
        return Zero(c, c)
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return ReLUConvBN(c, c, 1, 1, 0)
    if name == "nor_conv_3x3":
        return ReLUConvBN(c, c, 3, 1, 1)
    return Pool("avg", c, c)


class ResNetBasicBlock(nn.Module):
    """The stride-2 residual block between stages (NAS-Bench-201's ``ResNetBasicblock``)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2, 1)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1, 1)
        self.downsample = nn.Sequential(
            nn.AvgPool2d(kernel_size=2, stride=2, padding=0),
            nn.Conv2d(c_in, c_out, kernel_size=1, stride=1, padding=0, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


class NasBench201Cell(nn.Module):
    """The 4-node NAS-Bench-201 cell: node ``j`` sums one op per earlier node.

    ``ops`` is ``{"<from>_<to>": LayerChoice}`` in the space and the chosen plain ops
    once frozen. Every cell built with the same ``label`` makes the same decisions.
    """

    def __init__(self, channels: int, *, label: str = "cell") -> None:
        super().__init__()
        self.edges = nn.ModuleDict({
            f"{i}_{j}": LayerChoice({name: _op(name, channels) for name in OPS},
                                    label=f"{label}/{i}_{j}")
            for i, j in EDGES
        })

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for j in (1, 2, 3):
            total = self.edges[f"0_{j}"](nodes[0])
            for i in range(1, j):
                total = total + self.edges[f"{i}_{j}"](nodes[i])
            nodes.append(total)
        return nodes[3]


class NasBench201(ModelSpace):
    """The NAS-Bench-201 space (NNI's ``NasBench201``): 15,625 cells.

    ``stem_out_channels`` (the paper's ``C``, 16), ``num_modules_per_stack`` (``N``, 5
    cells per stage), ``num_classes`` (10). Inputs are ``(batch, 3, H, W)`` images; the
    benchmark trains on 32x32. ``from_arch_str`` / ``to_arch_str`` convert to and from
    the benchmark's architecture strings, so a sample can be looked up in its table.
    """

    def __init__(self, stem_out_channels: int = 16, num_modules_per_stack: int = 5,
                 num_classes: int = 10, *, num_labels: int | None = None) -> None:
        super().__init__()
        if num_labels is not None:  # NNI's spelling
            num_classes = num_labels
        for name, v in (("stem_out_channels", stem_out_channels),
                        ("num_modules_per_stack", num_modules_per_stack),
                        ("num_classes", num_classes)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise SpaceBuildError(f"NasBench201: {name} must be an int >= 1, got {v!r}")
        c, n = stem_out_channels, num_modules_per_stack
        self.num_classes = num_classes
        self.stem = nn.Sequential(
            nn.Conv2d(3, c, kernel_size=3, padding=1, bias=False), nn.BatchNorm2d(c)
        )
        cells: list[nn.Module] = []
        c_prev = c
        for stage, width in enumerate((c, 2 * c, 4 * c)):
            if stage:
                cells.append(ResNetBasicBlock(c_prev, width))
            cells.extend(NasBench201Cell(width) for _ in range(n))
            c_prev = width
        self.cells = nn.Sequential(*cells)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c_prev), nn.ReLU(inplace=True))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.lastact(self.cells(self.stem(x)))
        return self.classifier(torch.flatten(self.global_pooling(out), 1))

    def freeze(self, sample: Mapping[str, Any]) -> nn.Module:
        """A plain model for ``sample`` (as ``ModelSpace.freeze``; a direct clone, ~10 ms)."""
        return fast_freeze(self, sample)

    # --- architecture strings --------------------------------------------------------

    @staticmethod
    def from_arch_str(arch_str: str) -> Sample:
        """The sample for a NAS-Bench-201 string such as
        ``"|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|none~1|none~2|"``.
        """
        if not isinstance(arch_str, str):
            raise ValueError(f"from_arch_str: expected a string, got {arch_str!r}")
        m = _ARCH_RE.match(arch_str.strip())
        if m is None:
            raise ValueError(
                f"from_arch_str: {arch_str!r} is not a NAS-Bench-201 architecture string; "
                "expected '|op~0|+|op~0|op~1|+|op~0|op~1|op~2|'"
            )
        sample: dict[str, Any] = {}
        for j, node in enumerate(m.groups(), start=1):
            parts = node.split("|")
            if len(parts) != j:
                raise ValueError(
                    f"from_arch_str: node {j} of {arch_str!r} has {len(parts)} inputs, "
                    f"expected {j}"
                )
            for i, part in enumerate(parts):
                op, sep, src = part.partition("~")
                if sep != "~" or src != str(i):
                    raise ValueError(
                        f"from_arch_str: {part!r} in {arch_str!r} should be 'op~{i}'"
                    )
                if op not in OPS:
                    raise ValueError(
                        f"from_arch_str: unknown op {op!r} in {arch_str!r}; the ops are "
                        f"{', '.join(OPS)}"
                    )
                sample[f"cell/{i}_{j}"] = op
        return sample

    @staticmethod
    def to_arch_str(sample: Mapping[str, Any]) -> str:
        """The NAS-Bench-201 string of a sample (the inverse of ``from_arch_str``)."""
        nodes = []
        for j in (1, 2, 3):
            parts = []
            for i in range(j):
                key = f"cell/{i}_{j}"
                if key not in sample:
                    raise ValueError(f"to_arch_str: the sample has no {key!r}: {dict(sample)}")
                op = sample[key]
                if op not in OPS:
                    raise ValueError(
                        f"to_arch_str: {key}={op!r} is not one of {', '.join(OPS)}"
                    )
                parts.append(f"{op}~{i}")
            nodes.append("|" + "|".join(parts) + "|")
        return "+".join(nodes)
