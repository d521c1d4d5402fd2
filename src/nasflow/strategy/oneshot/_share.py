"""Work shared between candidates in SOFT mode: a stateless layer runs once per input.

In a DARTS-like space several candidates of one choice start with the same stateless
layer on the same tensor (``ReLU -> Conv -> BN``, ``ReLU -> SepConv -> BN``...), and
the op slots of a cell that read the same state run the same parameter-free candidates
(pooling, identity) on it. SOFT mode runs every candidate, so each of those would be
computed, and differentiated, several times. While a mixed module runs in SOFT mode,
the output of such a layer is remembered by (input tensor, layer configuration) and
reused: the same values, and the same gradient (autograd sums the uses' gradients
before the layer's backward instead of after it).

Which layers: exactly the torch activation and pooling classes below (not subclasses,
which may override ``forward``), without hooks, not ``inplace`` and not returning
indices; a candidate is such a layer, or a plain ``nn.Sequential`` whose leading
children are. The memo lives on the ``ArchState`` for the outermost mixed module's call
only (a cell, or a choice outside cells), holding its inputs so their ids stay unique.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn as nn

from nasflow.strategy.oneshot._arch import ArchState

__all__ = ["SharedPlan", "sharing"]

_STATELESS: frozenset[type[nn.Module]] = frozenset({
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Softplus,
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
})


def share_key(module: nn.Module) -> str | None:
    """What identifies ``module``'s computation (class and arguments), or ``None`` when
    its output may not be shared."""
    if type(module) not in _STATELESS or getattr(module, "inplace", False) \
            or getattr(module, "return_indices", False):
        return None
    if module._forward_hooks or module._forward_pre_hooks or module._backward_hooks:
        return None
    return f"{type(module).__qualname__}({module.extra_repr()})"


@contextmanager
def sharing(arch: ArchState) -> Iterator[None]:
    """Open the memo for a mixed module's call (no-op when an outer one holds it)."""
    if arch.memo is not None or not arch.share:
        yield
        return
    arch.memo = {}
    try:
        yield
    finally:
        arch.memo = None


def _memo_call(arch: ArchState, key: str, module: nn.Module, x: torch.Tensor) -> Any:
    memo = arch.memo
    if memo is None:
        return module(x)
    slot = (id(x), key)
    hit = memo.get(slot)
    if hit is not None and hit[0] is x:
        return hit[1]
    out = module(x)
    memo[slot] = (x, out)
    return out


class SharedPlan:
    """How one candidate runs with sharing: its leading stateless layers (with their
    keys) through the memo, the rest as usual."""

    def __init__(self, candidate: nn.Module) -> None:
        self.candidate = candidate
        key = share_key(candidate)
        self.head: list[tuple[str, nn.Module]] = []
        self.tail: list[nn.Module] = []
        if key is not None:
            self.head = [(key, candidate)]
        elif (type(candidate) is nn.Sequential and not candidate._forward_hooks
              and not candidate._forward_pre_hooks and not candidate._backward_hooks):
            children = list(candidate)
            while children and (k := share_key(children[0])) is not None:
                self.head.append((k, children.pop(0)))
            if self.head:
                self.tail = children
        self.shares = bool(self.head)
        """Whether anything of this candidate can be shared."""

    def __call__(self, arch: ArchState, x: Any) -> Any:
        if not self.shares or not isinstance(x, torch.Tensor):
            return self.candidate(x)
        for key, module in self.head:
            x = _memo_call(arch, key, module, x)
        for module in self.tail:
            x = module(x)
        return x
