"""Building blocks shared by the hub's cell spaces (NAS-Bench-201, the NDS family).

All are plain torch modules (no decisions inside), so frozen models trace with
``torch.fx`` and one-shot strategies can share them as candidates.
"""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = [
    "DilConv",
    "DropPath",
    "FactorizedReduce",
    "Pool",
    "ReLUConvBN",
    "SepConv",
    "Zero",
]


class Zero(nn.Module):
    """The ``none`` op: zeros of the output shape (NAS-Bench-201 and DARTS's ``Zero``)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.c_in, self.c_out, self.stride = c_in, c_out, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.c_in == self.c_out:
            return x.mul(0.0)
        shape = (x.shape[0], self.c_out, x.shape[2], x.shape[3])
        return x.new_zeros(shape)


class ReLUConvBN(nn.Sequential):
    """ReLU, convolution, batch norm (the papers' ``nor_conv`` / DARTS's ``ReLUConvBN``)."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int, padding: int,
                 dilation: int = 1, affine: bool = True) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel_size, stride, padding, dilation, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class DilConv(nn.Sequential):
    """ReLU, depthwise (dilated) conv, pointwise conv, batch norm (DARTS)."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int, padding: int,
                 dilation: int, affine: bool = True) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel_size, stride, padding, dilation, groups=c_in,
                      bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """Two stacked ``DilConv`` without dilation (DARTS's separable convolution)."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int, padding: int,
                 affine: bool = True) -> None:
        super().__init__(
            DilConv(c_in, c_in, kernel_size, stride, padding, 1, affine),
            DilConv(c_in, c_out, kernel_size, 1, padding, 1, affine),
        )


class FactorizedReduce(nn.Module):
    """Halves the resolution with two offset stride-2 1x1 convs, concatenated (DARTS)."""

    def __init__(self, c_in: int, c_out: int, affine: bool = True) -> None:
        super().__init__()
        if c_out % 2:
            raise ValueError(f"FactorizedReduce needs an even c_out, got {c_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        out = torch.cat([self.conv_1(x), self.conv_2(x[:, :, 1:, 1:])], dim=1)
        return self.bn(out)


class Pool(nn.Module):
    """3x3 average or max pooling; a 1x1 ``ReLUConvBN`` first when channels change."""

    def __init__(self, kind: str, c_in: int, c_out: int, stride: int = 1,
                 kernel_size: int = 3) -> None:
        super().__init__()
        self.pre = None if c_in == c_out else ReLUConvBN(c_in, c_out, 1, 1, 0)
        pad = kernel_size // 2
        if kind == "avg":
            self.pool: nn.Module = nn.AvgPool2d(kernel_size, stride, pad, count_include_pad=False)
        elif kind == "max":
            self.pool = nn.MaxPool2d(kernel_size, stride, pad)
        else:
            raise ValueError(f"Pool: kind must be 'avg' or 'max', got {kind!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pre is not None:
            x = self.pre(x)
        return self.pool(x)


class DropPath(nn.Module):
    """Drops a whole sample's path with probability ``p`` while training (DARTS's
    ``drop_path``); the identity at ``p == 0`` or in eval mode."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"DropPath: p must be in [0, 1), got {p!r}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = torch.empty(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype)
        return x / keep * mask.bernoulli_(keep)
