"""The building blocks of the mobile spaces (ProxylessNAS, MobileNetV3): conv-BN-activation,
squeeze-and-excite, depthwise-separable and inverted-residual (MBConv) blocks, whose
widths, kernel sizes and expand ratios may be choices or expressions on choices.

Every convolution and batch norm is a searchable ``nasflow.nn`` layer, so one-shot
strategies slice one shared weight per layer (``strategy/oneshot/_sliced.py``) and a frozen
sample is built from plain ``torch.nn`` layers only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypedDict

import torch
import torch.nn as nn

from nasflow import nn as snn
from nasflow.space import Expr, Resolver, resolve_value

__all__ = [
    "BatchNormArgs",
    "ConvBNAct",
    "DepthwiseSeparable",
    "Divisible",
    "InvertedResidual",
    "SqueezeExcite",
    "make_divisible",
    "same_width",
]

Width = int | Expr
"""A channel count: an int, a choice, or an expression on choices."""


def _divisible(v: float, divisor: int, min_value: int | None) -> int:
    """The TF-slim rounding every MobileNet uses: the multiple of ``divisor`` nearest
    ``v`` (at least ``min_value``), but never more than 10% below ``v``."""
    low = divisor if min_value is None else min_value
    new = max(low, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


class BatchNormArgs(TypedDict):
    """The batch-norm settings every block of a mobile space passes on (``**bn``)."""

    bn_eps: float
    bn_momentum: float


class Divisible(Expr):
    """``make_divisible`` of an expression, resolved when the space is frozen."""

    __slots__ = ("divisor", "min_value", "value")

    def __init__(self, value: Any, divisor: int, min_value: int | None = None) -> None:
        self.value = value
        self.divisor = divisor
        self.min_value = min_value

    def evaluate(self, resolve: Resolver) -> int:
        return _divisible(resolve_value(self.value, resolve), self.divisor, self.min_value)

    def leaves(self) -> Iterator[Any]:
        if isinstance(self.value, Expr):
            yield from self.value.leaves()

    def __repr__(self) -> str:
        return f"make_divisible({self.value!r}, {self.divisor})"


def make_divisible(v: Any, divisor: int = 8, min_value: int | None = None) -> Width:
    """``v`` rounded to a multiple of ``divisor`` (TF-slim's rule); an expression stays
    an expression."""
    if isinstance(v, Expr):
        return Divisible(v, divisor, min_value)
    return _divisible(v, divisor, min_value)


def same_width(a: Width, b: Width) -> bool:
    """Whether two widths are always equal: the same int, or the very same expression
    (two different choices may differ, so a residual needs them to be one object)."""
    if isinstance(a, Expr) or isinstance(b, Expr):
        return a is b
    return a == b


def _padding(kernel: int | Expr, dilation: int) -> int | Expr:
    return (kernel - 1) // 2 * dilation


class ConvBNAct(nn.Sequential):
    """Convolution, batch norm (``norm=False``: none, and the conv gets a bias) and an
    activation (``None``: none)."""

    def __init__(self, in_channels: Width, out_channels: Width, kernel_size: int | Expr = 3,
                 stride: int = 1, groups: Width = 1, *, norm: bool = True,
                 activation: Callable[[], nn.Module] | None = nn.ReLU6,
                 bn_eps: float = 1e-5, bn_momentum: float = 0.1) -> None:
        layers: list[nn.Module] = [snn.Conv2d(
            in_channels, out_channels, kernel_size, stride, _padding(kernel_size, 1),
            groups=groups, bias=not norm,
        )]
        if norm:
            layers.append(snn.BatchNorm2d(out_channels, eps=bn_eps, momentum=bn_momentum))
        if activation is not None:
            layers.append(activation())
        super().__init__(*layers)


class SqueezeExcite(nn.Module):
    """Squeeze-and-excite (MobileNetV3's): global average, 1x1 reduce, ReLU, 1x1 expand,
    hard sigmoid gate; the reduced width is ``make_divisible(channels * ratio, 8)``."""

    def __init__(self, channels: Width, ratio: float = 0.25) -> None:
        super().__init__()
        reduced = make_divisible(channels * ratio, 8)
        self.conv_reduce = snn.Conv2d(channels, reduced, 1, bias=True)
        self.act = nn.ReLU()
        self.conv_expand = snn.Conv2d(reduced, channels, 1, bias=True)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        result: torch.Tensor = x * self.gate(self.conv_expand(self.act(self.conv_reduce(s))))
        return result


class _Residual(nn.Sequential):
    """A sequence with an identity shortcut when ``has_skip``."""

    has_skip: bool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)  # type: ignore[no-untyped-call]
        result: torch.Tensor = x + out if self.has_skip else out
        return result


class DepthwiseSeparable(_Residual):
    """Depthwise conv (with activation), optional SE, pointwise-linear conv; a shortcut when
    stride is 1 and the widths are the same (MBConv with expand ratio 1)."""

    def __init__(self, in_channels: Width, out_channels: Width, kernel_size: int | Expr = 3,
                 stride: int = 1, *, se: Callable[[Width], nn.Module] | None = None,
                 activation: Callable[[], nn.Module] = nn.ReLU6, bn_eps: float = 1e-5,
                 bn_momentum: float = 0.1) -> None:
        bn: BatchNormArgs = {"bn_eps": bn_eps, "bn_momentum": bn_momentum}
        layers: list[nn.Module] = [
            ConvBNAct(in_channels, in_channels, kernel_size, stride, groups=in_channels,
                      activation=activation, **bn)]
        if se is not None:
            layers.append(se(in_channels))
        layers.append(ConvBNAct(in_channels, out_channels, 1, activation=None, **bn))
        super().__init__(*layers)
        self.has_skip = stride == 1 and same_width(in_channels, out_channels)


class InvertedResidual(_Residual):
    """MBConv: 1x1 expansion to ``make_divisible(in * expand_ratio, 8)`` channels, a
    ``kernel_size`` depthwise conv, optional SE on the expanded channels, 1x1 projection;
    a shortcut when stride is 1 and the widths are the same."""

    def __init__(self, in_channels: Width, out_channels: Width, expand_ratio: float | Expr,
                 kernel_size: int | Expr = 3, stride: int = 1, *,
                 se: Callable[[Width], nn.Module] | None = None,
                 activation: Callable[[], nn.Module] = nn.ReLU6, bn_eps: float = 1e-5,
                 bn_momentum: float = 0.1) -> None:
        if stride not in (1, 2):
            raise ValueError(f"InvertedResidual: stride must be 1 or 2, got {stride!r}")
        bn: BatchNormArgs = {"bn_eps": bn_eps, "bn_momentum": bn_momentum}
        hidden = make_divisible(in_channels * expand_ratio, 8)
        layers: list[nn.Module] = [
            ConvBNAct(in_channels, hidden, 1, activation=activation, **bn),
            ConvBNAct(hidden, hidden, kernel_size, stride, groups=hidden,
                      activation=activation, **bn),
        ]
        if se is not None:
            layers.append(se(hidden))
        layers.append(ConvBNAct(hidden, out_channels, 1, activation=None, **bn))
        super().__init__(*layers)
        self.has_skip = stride == 1 and same_width(in_channels, out_channels)
