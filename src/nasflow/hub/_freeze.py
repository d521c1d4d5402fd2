"""A fast ``freeze`` for hub spaces whose only decisions are ``LayerChoice``\\ s.

``ModelSpace.freeze`` copies with ``copy.deepcopy``, which handles any user module but
spends most of its time in generic bookkeeping (about 60 ms for NAS-Bench-201's 1.5M
parameters). Hub modules are plain torch modules whose state is their parameters,
buffers, children and a few scalar attributes, so they can be cloned directly: new
module objects, cloned tensors, shared immutable attributes. The result is the same
tree ``ModelSpace.freeze`` builds (tests compare the two).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import torch.nn as nn

from nasflow.nn import LayerChoice, ModelSpace
from nasflow.nn._base import STATE_ATTR, FrozenState, NasModule
from nasflow.space import SearchSpace

__all__ = ["fast_freeze"]

_HOOK_DICTS = tuple(
    k for k, v in vars(nn.Module()).items() if isinstance(v, (dict, OrderedDict)) and "hook" in k
)


def fast_freeze(space: ModelSpace, sample: Mapping[str, Any]) -> nn.Module:
    """``space.freeze(sample)`` for a space whose decisions are all ``LayerChoice``."""
    search: SearchSpace = space.search_space_object()
    canonical = search.canonicalize(sample)  # validates, naming label, value and allowed
    memo: dict[int, Any] = {}
    root = _clone(space, search, canonical, memo)
    root.__dict__[STATE_ATTR] = FrozenState(canonical)
    root.__dict__["is_model_space"] = False
    return root


def _clone(module: nn.Module, search: SearchSpace, sample: Mapping[str, Any],
           memo: dict[int, Any]) -> nn.Module:
    key = id(module)
    if key in memo:
        return memo[key]  # type: ignore[no-any-return]
    if isinstance(module, LayerChoice):
        out = _clone(module[search.resolve(module.choice, sample)], search, sample, memo)
        memo[key] = out
        return out
    if isinstance(module, NasModule):
        raise TypeError(f"fast_freeze handles LayerChoice only, not {type(module).__name__}")
    new = object.__new__(type(module))
    d = dict(module.__dict__)
    for name in _HOOK_DICTS:
        if name in d:
            d[name] = type(d[name])(d[name])
    params: dict[str, Any] = {}
    for name, p in module._parameters.items():
        if p is None:
            params[name] = None
        elif id(p) in memo:
            params[name] = memo[id(p)]
        else:
            params[name] = memo[id(p)] = nn.Parameter(p.detach().clone(), p.requires_grad)
    d["_parameters"] = params
    d["_buffers"] = {
        name: None if b is None else b.clone() for name, b in module._buffers.items()
    }
    d["_non_persistent_buffers_set"] = set(module._non_persistent_buffers_set)
    d["_modules"] = {
        name: None if c is None else _clone(c, search, sample, memo)
        for name, c in module._modules.items()
    }
    new.__dict__ = d
    memo[key] = new
    return new
