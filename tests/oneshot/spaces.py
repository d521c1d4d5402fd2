"""Model spaces and data the one-shot tests share."""

from __future__ import annotations

import torch
import torch.nn as nn

import nasflow as nf
from nasflow import nn as snn


class Block(nn.Module):
    """A plain module holding a searchable layer and a nested choice."""

    def __init__(self, width: nf.Categorical, i: int, norm: bool) -> None:
        super().__init__()
        self.conv = snn.Conv2d(width, width, 3, padding=1)
        self.norm = snn.BatchNorm2d(width) if norm else nn.Identity()
        self.act = snn.LayerChoice({"relu": nn.ReLU(), "tanh": nn.Tanh()}, label=f"act{i}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class Rich(snn.ModelSpace):
    """Every kind of choice: sliced layers (width, kernel, depthwise), a LayerChoice with
    a nested choice, a Repeat of blocks with nested choices, an InputChoice, a Cell, a
    searchable layer without sliced form (pooling kernel), batch and layer norms."""

    def __init__(self) -> None:
        super().__init__()
        width = nf.Categorical([4, 8], label="width")
        k = nf.Categorical([3, 5], label="k")
        self.stem = snn.Conv2d(1, width, k, padding=k // 2)
        self.bn = snn.BatchNorm2d(width)
        self.op = snn.LayerChoice({
            "conv": snn.Conv2d(width, width, 3, padding=1),
            "dw": snn.Conv2d(width, width, 3, padding=1, groups=width),
            "pool": nn.MaxPool2d(3, 1, 1),
            "drop": snn.Dropout(nf.Categorical([0.0, 0.5], label="p")),
        }, label="op")
        self.blocks = snn.Repeat(lambda i: Block(width, i, norm=True), depth=(1, 2),
                                 label="depth")
        self.skip = snn.InputChoice(2, 1, label="skip")
        self.cell = snn.Cell({"id": nn.Identity(), "conv": snn.Conv2d(width, width, 1),
                              "neg": nn.Tanh()}, num_nodes=2, label="cell")
        pk = nf.Categorical([1, 3], label="pk")
        self.pool = snn.MaxPool2d(pk, stride=1, padding=pk // 2)
        self.ln = snn.LayerNorm([width * 2])
        self.head = snn.Linear(width * 2, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.stem(x))
        y = self.blocks(self.op(x))
        s = self.skip([x, y])
        c = self.pool(self.cell(s)).mean((2, 3))
        return self.head(self.ln(c))


class Lean(snn.ModelSpace):
    """Like ``Rich`` without norms or concatenation after a width choice, so that masked
    (SOFT / GATE) and sliced (HARD) runs compute the same values."""

    def __init__(self) -> None:
        super().__init__()
        width = nf.Categorical([4, 8], label="width")
        k = nf.Categorical([3, 5], label="k")
        self.stem = snn.Conv2d(1, width, k, padding=k // 2)
        self.op = snn.LayerChoice({
            "conv": snn.Conv2d(width, width, 3, padding=1),
            "dw": snn.Conv2d(width, width, 3, padding=1, groups=width),
            "pool": nn.MaxPool2d(3, 1, 1),
        }, label="op")
        self.blocks = snn.Repeat(lambda i: Block(width, i, norm=False), depth=(1, 2),
                                 label="depth")
        self.skip = snn.InputChoice(2, 1, label="skip")
        pk = nf.Categorical([1, 3], label="pk")
        self.pool = snn.MaxPool2d(pk, stride=1, padding=pk // 2)
        self.head = snn.Linear(width, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.tanh(self.stem(x))
        y = self.blocks(self.op(x))
        return self.head(self.pool(self.skip([x, y])).mean((2, 3)))


class Tiny(snn.ModelSpace):
    """A small classifier space for running strategies end to end."""

    def __init__(self) -> None:
        super().__init__()
        width = nf.Categorical([4, 8], label="width")
        self.stem = snn.Conv2d(1, width, 3, padding=1)
        self.op = snn.LayerChoice({"conv": snn.Conv2d(width, width, 3, padding=1),
                                   "pool": nn.MaxPool2d(3, 1, 1)}, label="op")
        self.blocks = snn.Repeat(lambda i: Block(width, i, norm=True), depth=(1, 2),
                                 label="depth")
        self.head = snn.Linear(width, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.op(torch.relu(self.stem(x)))).mean((2, 3)))


def tiny_data(n: int = 96) -> tuple[tuple[torch.Tensor, torch.Tensor],
                                    tuple[torch.Tensor, torch.Tensor]]:
    """Random 4-class 6x6 images: train and validation pairs."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, 6, 6, generator=g)
    y = (x.mean((1, 2, 3)) > 0).long() + 2 * (x[:, 0, 0, 0] > 0).long()
    cut = n * 3 // 4
    return (x[:cut], y[:cut]), (x[cut:], y[cut:])


def darts_ops(c: int) -> dict[str, nn.Module]:
    """The DARTS-like candidates of ``examples/oneshot_digits.py`` on ``c`` channels."""
    return {
        "conv3": nn.Sequential(nn.ReLU(), nn.Conv2d(c, c, 3, padding=1, bias=False),
                               nn.BatchNorm2d(c)),
        "sep3": nn.Sequential(nn.ReLU(), nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False),
                              nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c)),
        "dil3": nn.Sequential(nn.ReLU(), nn.Conv2d(c, c, 3, padding=2, dilation=2, bias=False),
                              nn.BatchNorm2d(c, affine=False)),
        "max3": nn.MaxPool2d(3, stride=1, padding=1),
        "avg3": nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),
        "skip": nn.Identity(),
    }


class Cells(snn.ModelSpace):
    """A one-cell DARTS-like space on grey images (one input channel)."""

    def __init__(self, c: int = 4) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))
        self.cell = snn.Cell(darts_ops(c), num_nodes=2,
                             num_ops_per_node=2, label="cell")
        self.head = nn.Linear(2 * c, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.cell(self.stem(x))).mean((2, 3)))
