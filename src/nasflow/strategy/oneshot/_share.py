"""Work shared between candidates in SOFT mode: a stateless layer runs once per input.

In a DARTS-like space several candidates of one choice start with the same stateless
layer on the same tensor (``ReLU -> Conv -> BN``, ``ReLU -> SepConv -> BN``...), and
the op slots of a cell that read the same state run the same parameter-free candidates
(pooling, identity) on it. SOFT mode runs every candidate, so each of those would be
computed, and differentiated, several times. While a mixed module runs in SOFT mode,
the output of such a layer is remembered by (input tensor, layer class and
configuration) and reused: the same values, and the same gradient (autograd sums the
uses' gradients before the layer's backward instead of after it).

Which layers: exactly the torch activation and pooling classes below (not subclasses,
which may override ``forward``), not ``inplace`` and not returning indices; a candidate
is such a layer, or a plain ``nn.Sequential`` whose leading children are. Two layers
share only when their class and every public attribute (``training`` aside) are equal.
Checked at every call, so that changes made after the supernet was built count: a
layer with hooks (its own, or global module hooks) is called as usual, and so is a
candidate ``nn.Sequential`` with hooks of its own.

What the other candidates see stays exact:

* A memo entry records the version counters of its input and its output; if either
  tensor was modified in place since (a candidate writing into its input, or into the
  output it was given), the layer runs again instead of being shared.
* A candidate takes shared outputs only once it has run, in the same training mode and
  grad mode, on outputs of its own and left them unmodified. One that modifies them in
  place is never shared again (its own outputs are then recomputed by whoever needs
  them). Should a candidate that passed that check later modify a shared output after
  all (its behaviour depending on the data), the outputs other candidates hold are
  damaged: ``SharedOutputModifiedError`` is raised rather than computing on wrong values.
* Tensors of inference mode carry no version counter: under ``torch.inference_mode``
  nothing is shared.

The memo lives on the ``ArchState`` for the outermost mixed module's call only (a cell,
or a choice outside cells), holding its inputs so their ids stay unique.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from operator import itemgetter
from typing import Any

import torch
import torch.nn as nn
import torch.nn.modules.module as _module

from nasflow.strategy.oneshot._arch import ArchState

__all__ = ["SharedOutputModifiedError", "SharedPlan", "share_key", "sharing"]

_STATELESS: frozenset[type[nn.Module]] = frozenset({
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Softplus,
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
})

_HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")


class SharedOutputModifiedError(RuntimeError):
    """A candidate modified in place the output of a layer it shares with other candidates,
    after earlier calls showed it did not (see the module docstring)."""


def _hooked(module: nn.Module) -> bool:
    """Whether ``module`` has forward or backward hooks of its own."""
    d = module.__dict__
    return any(d.get(name) for name in _HOOKS)


def _global_hooks() -> bool:
    """Whether global module hooks (``register_module_forward_hook``...) are set."""
    return bool(_module._global_forward_hooks or _module._global_forward_pre_hooks
                or _module._global_backward_hooks or _module._global_backward_pre_hooks)


def _frozen(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    return value


def _public(d: dict[str, Any]) -> list[str]:
    return sorted(k for k in d if k[0] != "_" and k != "training")


def share_key(module: nn.Module) -> Hashable | None:
    """What identifies ``module``'s computation: its class and its whole configuration
    (every public attribute but ``training``). ``None`` when its output may not be
    shared: not one of the classes, ``inplace``, returning indices, hooked, or an
    attribute that cannot be compared by hashing."""
    if _hooked(module):
        return None
    return _config_key(module)


def _config_key(module: nn.Module) -> Hashable | None:
    """``share_key`` but for hooks."""
    cls = type(module)
    if cls not in _STATELESS:
        return None
    d = module.__dict__
    if d.get("inplace") or d.get("return_indices"):
        return None
    key = (cls, tuple((k, _frozen(d[k])) for k in _public(d)))
    try:
        hash(key)
    except TypeError:
        return None
    return key


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


def _lookup(memo: dict[Any, Any], key: Hashable, module: nn.Module, x: torch.Tensor,
            take: bool) -> tuple[Any, bool]:
    """``module(x)``: the remembered output if there is a valid one and ``take``; else
    computed (and remembered when nothing valid is). Returns it and whether it is shared."""
    slot = (id(x), key)
    entry = memo.get(slot)
    if (entry is not None and entry[0] is x and entry[1] == x._version
            and entry[3] == entry[2]._version):
        if take:
            return entry[2], True
        return module(x), False
    out = module(x)
    if isinstance(out, torch.Tensor):
        memo[slot] = (x, x._version, out, out._version)
    return out, False


_KEY_IDS: dict[Hashable, int] = {}  # share keys as small ints: cheap to hash
_KEY_LOCK = threading.Lock()


class _Layer:
    """A leading stateless layer of a candidate, with its share key cached: recomputed
    only when the layer's attributes changed (compared at every call, cheaply)."""

    __slots__ = ("get", "key", "module", "size", "values")

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.refresh()

    def refresh(self) -> None:
        d = self.module.__dict__
        names = _public(d)
        self.size = len(d)
        self.get: Callable[[dict[str, Any]], Any] | None = itemgetter(*names) if names \
            else None
        # copies: a list attribute edited in place (kernel_size[0] = 1) must compare unequal
        self.values = copy.deepcopy(self.get(d)) if self.get is not None else None
        key = _config_key(self.module)
        if key is None:
            self.key = None
        else:
            with _KEY_LOCK:  # training runs in worker threads
                self.key = _KEY_IDS.setdefault(key, len(_KEY_IDS))

    def current_key(self) -> int | None:
        """The layer's share key now (``None``: not shareable now, e.g. hooked)."""
        module = self.module
        if _hooked(module):
            return None
        d = module.__dict__
        try:
            if len(d) != self.size or (self.get is not None and self.get(d) != self.values):
                self.refresh()
        except KeyError:  # an attribute was removed (and another added)
            self.refresh()
        return self.key


class SharedPlan:
    """How one candidate runs with sharing: its leading stateless layers through the
    memo, the rest as usual (see the module docstring)."""

    def __init__(self, candidate: nn.Module, where: str = "") -> None:
        self.candidate = candidate
        self.where = where
        """The candidate, for error messages."""
        self.mutates = False
        """Whether the candidate was seen modifying its stateless layers' outputs in place
        (it is then never shared again)."""
        self._trusted: set[tuple[bool, bool]] = set()  # (training, grad) modes checked
        self._layout()

    def _layout(self) -> None:
        c = self.candidate
        self._children: list[Any] | None = None  # a Sequential's, as it was laid out
        self.head: list[_Layer] = []
        self.tail: list[nn.Module] = []
        if type(c) in _STATELESS:
            self.head = [_Layer(c)]
        elif type(c) is nn.Sequential:
            children: list[Any] = list(c._modules.values())
            self._children = children
            n = 0
            while n < len(children) and type(children[n]) in _STATELESS:
                n += 1
            self.head = [_Layer(m) for m in children[:n]]
            self.tail = children[n:]
        self.shares = bool(self.head)
        """Whether anything of this candidate may be shared (by its structure)."""

    def __call__(self, arch: ArchState, x: Any) -> Any:
        c = self.candidate
        memo = arch.memo
        if (memo is None or self.mutates or not isinstance(x, torch.Tensor)
                or torch.is_inference_mode_enabled() or x.is_inference()):
            return c(x)
        if self._children is not None and list(c._modules.values()) != self._children:
            self._layout()  # the Sequential was changed after the supernet was built
            self._trusted.clear()
        if not self.head or _hooked(c) or _global_hooks():
            return c(x)
        mode = (c.training, torch.is_grad_enabled())
        take = mode in self._trusted
        held: list[tuple[torch.Tensor, int, bool, nn.Module]] = []
        rest = self.tail
        for i, layer in enumerate(self.head):
            key = layer.current_key()
            if key is None:  # hooked or reconfigured since: runs as usual from here
                rest = [h.module for h in self.head[i:]] + self.tail
                break
            module = layer.module
            x, shared = _lookup(memo, key, module, x, take)
            held.append((x, x._version, shared, module))
        for module in rest:
            x = module(x)
        for t, version, shared, module in held:
            if t._version != version:
                self.mutates = True
                if shared:
                    raise SharedOutputModifiedError(
                        f"{self.where}: modified in place the output of its "
                        f"{type(module).__name__}, which SOFT mode shares with other "
                        "candidates (it did not on earlier calls), so their values are "
                        "wrong now; turn sharing off with the strategy's "
                        "share_layers=False (for a Supernet: supernet.arch.share = False)"
                    )
        if not take and not self.mutates:
            self._trusted.add(mode)
        return x
