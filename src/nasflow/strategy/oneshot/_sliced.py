"""Weight-sharing layers (FBNetV2-style): one weight of the largest size, sliced per sample.

A searchable ``Conv1d``/``Conv2d``/``Linear`` whose channels, features or kernel size are
choices holds the weight of its largest variant. HARD mode slices it (the first
``out`` output channels, the first ``in`` input channels, the centre ``k x k`` of the
kernel), so a sampled sub-network runs as small and as fast as the frozen model. SOFT
and GATE modes run the largest layer once with masks: the output-channel mask is the
mixing-weight sum of the candidates' masks, the kernel mask likewise, so the
architecture gradient reaches every candidate in one pass.

Input sizes always follow the input tensor, so a layer whose ``in_channels`` is a choice
needs no decision of its own. ``BatchNorm`` and ``LayerNorm`` slice their parameters and
statistics to the input the same way.
"""

from __future__ import annotations

from typing import Any, cast

import torch
import torch.nn as nn
import torch.nn.functional as F

from nasflow.strategy.oneshot._arch import ArchState, Combos, Mode

__all__ = ["SlicedBatchNorm", "SlicedConv", "SlicedLayerNorm", "SlicedLinear", "build_sliced"]

_CONV = {nn.Conv1d: 1, nn.Conv2d: 2}
_CONV_FN = {1: F.conv1d, 2: F.conv2d}


def _same(values: list[Any]) -> bool:
    return all(v == values[0] for v in values)


def _tuple(v: Any, nd: int) -> tuple[int, ...]:
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * nd


class SlicedConv(nn.Module):
    """A convolution whose ``out_channels``, ``kernel_size`` (and ``padding`` to match)
    are choices; ``in_channels`` follows the input; ``groups`` fixed or depthwise."""

    weight: nn.Parameter
    bias: nn.Parameter | None
    _out_masks: torch.Tensor
    _kernel_masks: torch.Tensor

    def __init__(self, arch: ArchState, where: str, combos: Combos, resolved: list[dict[str, Any]],
                 nd: int, template: nn.Module, depthwise: bool) -> None:
        super().__init__()
        self._arch = arch
        self._where = where
        self.combos = combos
        self.nd = nd
        self.weight = cast(nn.Parameter, template.weight)  # shared, not copied
        self.bias = cast("nn.Parameter | None", template.bias)
        first = resolved[0]
        self.stride = _tuple(first.get("stride", 1), nd)
        self.dilation = _tuple(first.get("dilation", 1), nd)
        self.groups: int = first.get("groups", 1)
        self.depthwise = depthwise
        self._outs = [r["out_channels"] for r in resolved]
        self._kernels = [_tuple(r["kernel_size"], nd) for r in resolved]
        self._pads = [r.get("padding", 0) for r in resolved]
        self.max_kernel = tuple(max(k[d] for k in self._kernels) for d in range(nd))
        out_max = self.weight.shape[0]
        self._vary_out = not _same(self._outs)
        self._vary_kernel = not _same(self._kernels)
        self.register_buffer("_out_masks", torch.stack([
            (torch.arange(out_max) < o).float() for o in self._outs
        ]), persistent=False)
        kmasks = []
        for k in self._kernels:
            m = torch.zeros(self.max_kernel)
            m[tuple(slice((big - small) // 2, (big - small) // 2 + small)
                    for big, small in zip(self.max_kernel, k, strict=True))] = 1.0
            kmasks.append(m)
        self.register_buffer("_kernel_masks", torch.stack(kmasks), persistent=False)
        self.soft_padding = self._soft_padding()
        """The padding of the masked largest kernel that matches every candidate's output
        size, or ``None`` when the candidates' outputs differ in size."""

    def _soft_padding(self) -> Any:
        if all(p == "same" for p in self._pads):
            return "same"
        if any(isinstance(p, str) and p != "valid" for p in self._pads):
            return None
        found: set[tuple[int, ...]] = set()
        for pad, k in zip(self._pads, self._kernels, strict=True):
            p = (0,) * self.nd if pad == "valid" else _tuple(pad, self.nd)
            if any((big - small) % 2 for big, small in zip(self.max_kernel, k, strict=True)):
                return None
            found.add(tuple(pi + (big - small) // 2 * di for pi, big, small, di in
                            zip(p, self.max_kernel, k, self.dilation, strict=True)))
        return next(iter(found)) if len(found) == 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        arch = self._arch
        conv = _CONV_FN[self.nd]
        in_ch = x.shape[1]
        groups = in_ch if self.depthwise else self.groups
        if arch.mode is Mode.HARD:
            c = self.combos.index(arch, self._where)
            out = in_ch if self.depthwise else self._outs[c]
            k = self._kernels[c]
            crop = tuple(slice((big - small) // 2, (big - small) // 2 + small)
                         for big, small in zip(self.max_kernel, k, strict=True))
            w = self.weight[(slice(0, out), slice(0, in_ch // groups), *crop)]
            b = None if self.bias is None else self.bias[:out]
            return conv(x, w, b, self.stride, self._pads[c], self.dilation, groups)
        weights = self.combos.weights(arch)
        out_n = in_ch if self.depthwise else self.weight.shape[0]
        w = self.weight[:out_n, : in_ch // groups]
        if self._vary_kernel:
            kmask = (weights[:, None] * self._kernel_masks.flatten(1)).sum(0)
            w = w * kmask.view(1, 1, *self.max_kernel)
        b = None if self.bias is None else self.bias[:out_n]
        y = conv(x, w, b, self.stride, self.soft_padding, self.dilation, groups)
        if self._vary_out:
            mask = (weights[:, None] * self._out_masks).sum(0)[: y.shape[1]]
            y = y * mask.view(1, -1, *([1] * self.nd))
        return y

    def extra_repr(self) -> str:
        return (f"max={tuple(self.weight.shape)}, labels={self.combos.labels}, "
                f"depthwise={self.depthwise}")


class SlicedLinear(nn.Module):
    """A linear layer whose ``out_features`` is a choice; ``in_features`` follows the input."""

    weight: nn.Parameter
    bias: nn.Parameter | None
    _out_masks: torch.Tensor

    def __init__(self, arch: ArchState, where: str, combos: Combos,
                 resolved: list[dict[str, Any]], template: nn.Linear) -> None:
        super().__init__()
        self._arch = arch
        self._where = where
        self.combos = combos
        self.weight = cast(nn.Parameter, template.weight)
        self.bias = cast("nn.Parameter | None", template.bias)
        self._outs = [r["out_features"] for r in resolved]
        self._vary_out = not _same(self._outs)
        out_max = self.weight.shape[0]
        self.register_buffer("_out_masks", torch.stack([
            (torch.arange(out_max) < o).float() for o in self._outs
        ]), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        arch = self._arch
        n_in = x.shape[-1]
        if arch.mode is Mode.HARD:
            out = self._outs[self.combos.index(arch, self._where)]
            b = None if self.bias is None else self.bias[:out]
            return F.linear(x, self.weight[:out, :n_in], b)
        y = F.linear(x, self.weight[:, :n_in], self.bias)
        if self._vary_out:
            weights = self.combos.weights(self._arch)
            y = y * (weights[:, None] * self._out_masks).sum(0)
        return y

    def extra_repr(self) -> str:
        return f"max={tuple(self.weight.shape)}, labels={self.combos.labels}"


class SlicedBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm over the first ``C`` channels of its largest variant, ``C`` being the
    input's channel count. Its running statistics are views into the full ones, so
    updates land in the shared buffers."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {input.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        factor = 0.0
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            factor = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                      else self.momentum)
        use_batch = self.training or self.running_mean is None
        track = not self.training or self.track_running_stats
        rm = self.running_mean[:c] if track and self.running_mean is not None else None
        rv = self.running_var[:c] if track and self.running_var is not None else None
        w = None if self.weight is None else self.weight[:c]
        b = None if self.bias is None else self.bias[:c]
        return F.batch_norm(x, rm, rv, w, b, use_batch, factor, self.eps)


class SlicedLayerNorm(nn.Module):
    """Layer norm over the last dimension, its parameters sliced to the input's size."""

    weight: nn.Parameter | None
    bias: nn.Parameter | None

    def __init__(self, template: nn.LayerNorm) -> None:
        super().__init__()
        self.weight = template.weight
        self.bias = template.bias
        self.eps = template.eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[-1]
        w = None if self.weight is None else self.weight[:n]
        b = None if self.bias is None else self.bias[:n]
        return F.layer_norm(x, (n,), w, b, self.eps)


# --- choosing the sliced form ----------------------------------------------------------


def _max_args(resolved: list[dict[str, Any]], names: tuple[str, ...]) -> dict[str, Any]:
    args = dict(resolved[0])
    for name in names:
        if name in args:
            values = [r[name] for r in resolved]
            if all(isinstance(v, int) for v in values):
                args[name] = max(values)
            else:  # kernel tuples: the largest per dimension
                nd = max(len(v) if isinstance(v, (tuple, list)) else 1 for v in values)
                args[name] = tuple(max(_tuple(v, nd)[d] for v in values) for d in range(nd))
    return args


def _fixed(resolved: list[dict[str, Any]], names: set[str]) -> bool:
    """Whether every argument outside ``names`` takes one value in all combinations."""
    keys = set().union(*(r.keys() for r in resolved))
    return all(_same([r.get(k) for r in resolved]) for k in keys - names)


def build_sliced(cls: type[nn.Module], arch: ArchState, where: str, combos: Combos,
                 resolved: list[dict[str, Any]]) -> nn.Module | None:
    """The weight-sharing form of ``cls`` for these argument combinations, or ``None`` when
    ``cls`` has none or a varying argument cannot be sliced (the caller then builds one
    module per combination)."""
    if any(not k.isidentifier() for r in resolved for k in r):
        return None  # arguments without names: cannot tell which is which
    if cls in _CONV:
        nd = _CONV[cls]
        if not _fixed(resolved, {"in_channels", "out_channels", "kernel_size", "padding",
                                 "groups"}):
            return None
        if any(r.get("padding_mode", "zeros") != "zeros" for r in resolved):
            return None
        if any(isinstance(r["kernel_size"], (tuple, list)) and len(r["kernel_size"]) != nd
               for r in resolved):
            return None
        groups = [r.get("groups", 1) for r in resolved]
        depthwise = not _same(groups)
        if depthwise and any(g != r["in_channels"] or g != r["out_channels"]
                             for g, r in zip(groups, resolved, strict=True)):
            return None
        if not depthwise and groups[0] != 1 and not (
            _same([r["in_channels"] for r in resolved])
            and _same([r["out_channels"] for r in resolved])
        ):
            return None  # grouped convs slice only when depthwise
        args = _max_args(resolved, ("in_channels", "out_channels", "kernel_size"))
        args["padding"] = 0
        if depthwise:
            args["groups"] = args["in_channels"]
        return SlicedConv(arch, where, combos, resolved, nd, cls(**args), depthwise)
    if cls is nn.Linear:
        if not _fixed(resolved, {"in_features", "out_features"}):
            return None
        template = cls(**_max_args(resolved, ("in_features", "out_features")))
        return SlicedLinear(arch, where, combos, resolved, template)
    if cls in (nn.BatchNorm1d, nn.BatchNorm2d):
        if not _fixed(resolved, {"num_features"}):
            return None
        args = _max_args(resolved, ("num_features",))
        return SlicedBatchNorm(**args)
    if cls is nn.LayerNorm:
        shapes = [r["normalized_shape"] for r in resolved]
        if not _fixed(resolved, {"normalized_shape"}) or not all(
            isinstance(s, int) or (isinstance(s, (tuple, list)) and len(s) == 1) for s in shapes
        ):
            return None
        args = dict(resolved[0])
        args["normalized_shape"] = max(s if isinstance(s, int) else s[0] for s in shapes)
        return SlicedLayerNorm(cls(**args))
    return None
