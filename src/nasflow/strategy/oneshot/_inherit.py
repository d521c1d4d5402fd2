"""``Supernet.freeze(sample)``: a plain model that inherits the supernet's weights.

The model is built exactly as ``space.freeze(sample)`` builds it; then every module of
the space gets its weights from its supernet counterpart: plain modules (chosen
candidates, blocks, the user's own layers) copy their parameters and buffers, and
searchable layers take the slice of the shared weight their sample selects (the first
channels, the centre of the kernel), so the frozen model computes what the supernet
computes in HARD mode for that sample.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from nasflow.nn import Freezer, NasModule, SearchableModule
from nasflow.space import Sample
from nasflow.strategy.oneshot._mixed import MixedArgs
from nasflow.strategy.oneshot._sliced import SlicedConv

__all__ = ["inherit"]


def inherit(supernet: Any, sample: Sample) -> nn.Module:
    """See the module docstring (``supernet`` is a ``Supernet``)."""
    space = supernet.source
    canonical = supernet.space.canonicalize(sample)
    freezer = Freezer(supernet.space, canonical)
    frozen = freezer.module(space)
    seen: set[int] = set()
    with torch.no_grad():
        for original in space.modules():
            if id(original) in seen:
                continue
            seen.add(id(original))
            target = freezer.memo.get(id(original))
            source = supernet.counterpart(original)
            if target is None or source is None:
                continue  # not part of this architecture
            if isinstance(original, SearchableModule) and original._built() is None:
                if isinstance(source, MixedArgs):
                    i = source.combos.index_of(canonical, supernet.specs)
                    target.load_state_dict(source.candidate(i).state_dict())
                else:
                    _copy_sliced(source, target)
            elif not isinstance(original, NasModule):
                _copy_own(source, target)
    return frozen


def _tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    own: dict[str, torch.Tensor] = {}
    own.update((n, p) for n, p in module.named_parameters(recurse=False) if p is not None)
    own.update((n, b) for n, b in module.named_buffers(recurse=False) if b is not None)
    return own


def _copy_own(source: nn.Module, target: nn.Module) -> None:
    src = _tensors(source)
    for name, t in _tensors(target).items():
        if name in src and src[name].shape == t.shape:
            t.copy_(src[name])


def _copy_sliced(source: nn.Module, target: nn.Module) -> None:
    src = _tensors(source)
    conv = isinstance(source, SlicedConv)
    for name, t in _tensors(target).items():
        s = src.get(name)
        if s is None:
            continue
        if s.dim() != t.dim():
            raise ValueError(f"cannot inherit {name!r}: shapes {tuple(s.shape)} and "
                             f"{tuple(t.shape)}")
        index = []
        for d, (big, small) in enumerate(zip(s.shape, t.shape, strict=True)):
            if conv and name == "weight" and d >= 2:  # the centre of the kernel
                start = (big - small) // 2
                index.append(slice(start, start + small))
            else:
                index.append(slice(0, small))
        t.copy_(s[tuple(index)])
