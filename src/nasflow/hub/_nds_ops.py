"""The op table of the NDS cell spaces (Radosavovic et al., "On Network Design Spaces for
Visual Recognition", ICCV 2019), with the names NNI's ``nasnet.py`` uses."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn

from nasflow.hub._ops import DilConv, DropPath, FactorizedReduce, ReLUConvBN, SepConv, Zero

__all__ = ["OPS", "AuxiliaryHead", "DropPathOp", "make_op"]


def _conv_pair(c: int, stride: int, k: int) -> nn.Module:
    # a 1xk then kx1 factorised conv (NASNet's conv_3x1_1x3 / conv_7x1_1x7)
    return nn.Sequential(
        nn.ReLU(inplace=False),
        nn.Conv2d(c, c, (1, k), stride=(1, stride), padding=(0, k // 2), bias=False),
        nn.Conv2d(c, c, (k, 1), stride=(stride, 1), padding=(k // 2, 0), bias=False),
        nn.BatchNorm2d(c),
    )


def _dil_sep(c: int, stride: int) -> nn.Module:
    # AmoebaNet's dilated separable conv: two dilated depthwise-separable stages
    return nn.Sequential(DilConv(c, c, 3, stride, 2, 2), DilConv(c, c, 3, 1, 2, 2))


OPS: dict[str, Callable[[int, int], nn.Module]] = {
    "none": lambda c, s: Zero(c, c, s),
    "avg_pool_2x2": lambda c, s: nn.AvgPool2d(2, stride=s, padding=0, count_include_pad=False),
    "avg_pool_3x3": lambda c, s: nn.AvgPool2d(3, stride=s, padding=1, count_include_pad=False),
    "avg_pool_5x5": lambda c, s: nn.AvgPool2d(5, stride=s, padding=2, count_include_pad=False),
    "max_pool_2x2": lambda c, s: nn.MaxPool2d(2, stride=s, padding=0),
    "max_pool_3x3": lambda c, s: nn.MaxPool2d(3, stride=s, padding=1),
    "max_pool_5x5": lambda c, s: nn.MaxPool2d(5, stride=s, padding=2),
    "max_pool_7x7": lambda c, s: nn.MaxPool2d(7, stride=s, padding=3),
    "skip_connect": lambda c, s: nn.Identity() if s == 1 else FactorizedReduce(c, c),
    "conv_1x1": lambda c, s: ReLUConvBN(c, c, 1, s, 0),
    "conv_3x3": lambda c, s: ReLUConvBN(c, c, 3, s, 1),
    "sep_conv_3x3": lambda c, s: SepConv(c, c, 3, s, 1),
    "sep_conv_5x5": lambda c, s: SepConv(c, c, 5, s, 2),
    "sep_conv_7x7": lambda c, s: SepConv(c, c, 7, s, 3),
    "dil_conv_3x3": lambda c, s: DilConv(c, c, 3, s, 2, 2),
    "dil_conv_5x5": lambda c, s: DilConv(c, c, 5, s, 4, 2),
    "dil_sep_conv_3x3": _dil_sep,
    "conv_3x1_1x3": lambda c, s: _conv_pair(c, s, 3),
    "conv_7x1_1x7": lambda c, s: _conv_pair(c, s, 7),
}
"""``name -> f(channels, stride)``; every op keeps ``channels`` and divides the size by
``stride`` (1 or 2)."""


class DropPathOp(nn.Sequential):
    """An op followed by drop path (DARTS drops every op's path except skip connections)."""


def make_op(name: str, channels: int, stride: int, drop_path_prob: float) -> nn.Module:
    """Op ``name``; wrapped with drop path when ``drop_path_prob > 0`` and it is no identity."""
    op = OPS[name](channels, stride)
    if drop_path_prob > 0 and not isinstance(op, nn.Identity):
        return DropPathOp(op, DropPath(drop_path_prob))
    return op


class AuxiliaryHead(nn.Module):
    """The auxiliary classifier of DARTS/NASNet, on the 8x8 (CIFAR) or 14x14 (ImageNet)
    output of the second reduction cell; its logits join the loss while training."""

    def __init__(self, channels: int, num_classes: int, dataset: str) -> None:
        super().__init__()
        cifar = dataset == "cifar"
        layers: list[nn.Module] = [
            nn.ReLU(inplace=True),
            nn.AvgPool2d(5, stride=3 if cifar else 2, padding=0, count_include_pad=False),
            nn.Conv2d(channels, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),
        ]
        if cifar:  # DARTS's ImageNet head omits this batch norm (a typo it kept)
            layers.append(nn.BatchNorm2d(768))
        layers.append(nn.ReLU(inplace=True))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))
