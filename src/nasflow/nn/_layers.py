"""Layers whose constructor arguments may be choices: ``searchable(cls)`` and the common
torch layers (``Conv2d``, ``Linear``, ``BatchNorm2d``...), written out one by one.

A searchable layer keeps its constructor arguments. Frozen, it becomes
``module_class(*resolved_args, **resolved_kwargs)``: a freshly initialised torch module.
Given no choice at all, it builds that module at once, runs it, and freezes to a copy.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, ClassVar, TypeAlias

import torch.nn as nn

from nasflow.exceptions import SpaceBuildError
from nasflow.nn._base import (
    Collector,
    Freezer,
    NasModule,
    choices_in,
    describe,
    held_choices,
    join,
    modules_in,
)
from nasflow.space import Choice, Condition, Expr

__all__ = [
    "AdaptiveAvgPool1d",
    "AdaptiveAvgPool2d",
    "AvgPool1d",
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "Conv1d",
    "Conv2d",
    "Dropout",
    "LayerNorm",
    "Linear",
    "MaxPool1d",
    "MaxPool2d",
    "MultiheadAttention",
    "SearchableModule",
    "searchable",
    "searchable_name",
]

IntArg: TypeAlias = int | Expr
FloatArg: TypeAlias = float | Expr
BoolArg: TypeAlias = bool | Expr
SizeArg: TypeAlias = int | tuple[int | Expr, ...] | Expr


class SearchableModule(NasModule):
    """A torch module class (``module_class``) whose constructor arguments may be
    choices or expressions on choices (``width * 2``), also inside lists and tuples.

    Unlabelled choices are labelled ``<module path>.<argument name>``. Get a subclass
    for any module class with ``searchable(cls)``.
    """

    module_class: ClassVar[type[nn.Module]]
    """The torch module class built when the space is frozen."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        cls = getattr(type(self), "module_class", None)
        if cls is None:
            raise SpaceBuildError(
                "SearchableModule is abstract: use nasflow.nn.searchable(YourModule) or a "
                "nasflow.nn layer such as nasflow.nn.Conv2d"
            )
        kwargs = {k: v for k, v in kwargs.items() if not _is_default(type(self), k, v)}
        self.args: tuple[Any, ...] = args
        """The positional constructor arguments, as given."""
        self.kwargs: dict[str, Any] = kwargs
        """The keyword constructor arguments that differ from the defaults."""
        self.arguments: list[tuple[str, Any]] = _named_arguments(cls, args, kwargs)
        """``(name, value)`` for every argument given, in signature order."""
        if not choices_in((args, kwargs)):
            self.module = cls(*args, **kwargs)

    def _built(self) -> nn.Module | None:
        return self._modules.get("module")

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Run the module built at once (only possible when no argument is a choice)."""
        built = self._built()
        if built is None:
            return super().forward(*args, **kwargs)
        return built(*args, **kwargs)

    def _own_choices(self) -> list[Choice]:
        own = choices_in((self.args, self.kwargs))
        for m in modules_in((self.args, self.kwargs)):
            own.extend(held_choices(m))
        return own

    def _collect(self, collector: Collector, path: str, condition: Condition) -> None:
        where = describe(self, path)
        for name, value in self.arguments:
            hint = join(path, name)
            collector.add_value(value, hint, condition, where)
            inner = list(modules_in(value))
            for i, m in enumerate(inner):
                collector.visit(m, hint if len(inner) == 1 else f"{hint}.{i}", condition)

    def _freeze(self, freezer: Freezer) -> nn.Module:
        built = self._built()
        if built is not None:
            return freezer.module(built)
        args = freezer.value(self.args)
        kwargs = freezer.value(self.kwargs)
        try:
            return self.module_class(*args, **kwargs)
        except Exception as exc:
            call = _format_call(self.module_class, args, kwargs)
            raise SpaceBuildError(
                f"{call} failed for this sample: {type(exc).__name__}: {exc}. Rule such "
                "samples out with ModelSpace.add_constraint(label, predicate)."
            ) from exc

    def extra_repr(self) -> str:
        return _format_call(None, self.args, self.kwargs)


def _format_call(cls: type | None, args: Any, kwargs: dict[str, Any]) -> str:
    inner = ", ".join([*(repr(a) for a in args), *(f"{k}={v!r}" for k, v in kwargs.items())])
    return f"{cls.__name__}({inner})" if cls is not None else inner


@functools.cache
def _declared_defaults(cls: type) -> dict[str, Any]:
    # the defaults of the nearest explicit __init__ (e.g. nasflow.nn.Conv2d's); only the
    # arguments that differ are passed on, so older torch versions accept the call
    for klass in cls.__mro__:
        if klass is SearchableModule:
            break
        init = klass.__dict__.get("__init__")
        if init is not None:
            return {
                n: p.default
                for n, p in inspect.signature(init).parameters.items()
                if p.default is not inspect.Parameter.empty
            }
    return {}


def _is_default(cls: type, name: str, value: Any) -> bool:
    defaults = _declared_defaults(cls)
    if name not in defaults or isinstance(value, Expr):
        return False
    default = defaults[name]
    return value is default or (type(value) is type(default) and value == default)


def _named_arguments(cls: type, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[
    tuple[str, Any]
]:
    try:
        sig = inspect.signature(cls)
    except (TypeError, ValueError):  # no introspectable signature: name by position
        return [(f"arg{i}", v) for i, v in enumerate(args)] + list(kwargs.items())
    try:
        bound = sig.bind(*args, **kwargs)
    except TypeError as exc:
        raise SpaceBuildError(f"{_format_call(cls, args, kwargs)}: {exc}") from exc
    out: list[tuple[str, Any]] = []
    for name, value in bound.arguments.items():
        kind = sig.parameters[name].kind
        if kind is inspect.Parameter.VAR_POSITIONAL:
            out.extend((f"{name}.{i}", v) for i, v in enumerate(value))
        elif kind is inspect.Parameter.VAR_KEYWORD:
            out.extend(value.items())
        else:
            out.append((name, value))
    return out


# --- searchable(cls) ---------------------------------------------------------------------

_SEARCHABLE: dict[type[nn.Module], type[SearchableModule]] = {}


def searchable(cls: type[nn.Module]) -> type[SearchableModule]:
    """A ``SearchableModule`` subclass for ``cls``: same constructor, arguments may be choices.

    ``searchable(torch.nn.Conv2d)`` is ``nasflow.nn.Conv2d``; the same class is returned for
    the same ``cls``. Frozen, an instance becomes ``cls(*resolved_args, **resolved_kwargs)``.
    Call it (``SConv = searchable(MyConv)``) rather than using it as a decorator: the frozen
    model holds ``MyConv`` instances, which ``torch.save`` finds by their class name.
    """
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise SpaceBuildError(f"searchable() takes a torch.nn.Module subclass, got {cls!r}")
    if issubclass(cls, NasModule):
        return cls  # type: ignore[return-value]
    found = _SEARCHABLE.get(cls)
    if found is None:
        found = type(
            cls.__name__,
            (SearchableModule,),
            {
                "module_class": cls,
                "__module__": cls.__module__,
                "__qualname__": cls.__qualname__,
                "__doc__": f"{cls.__qualname__} whose constructor arguments may be choices.",
            },
        )
        _SEARCHABLE[cls] = found
    return found


def searchable_name(cls: type) -> str | None:
    """``"nasflow.nn.Conv2d"`` for ``torch.nn.Conv2d``: the layer written out for ``cls``."""
    found = _SEARCHABLE.get(cls)
    if found is None or found.__module__ != __name__:
        return None
    return f"nasflow.nn.{found.__name__}"


# --- the common layers, written out --------------------------------------------------------


class Conv1d(SearchableModule):
    """``torch.nn.Conv1d`` whose arguments may be choices or expressions."""

    module_class = nn.Conv1d

    def __init__(self, in_channels: IntArg, out_channels: IntArg, kernel_size: SizeArg,
                 stride: SizeArg = 1, padding: SizeArg | str = 0, dilation: SizeArg = 1,
                 groups: IntArg = 1, bias: BoolArg = True, padding_mode: str = "zeros",
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         dilation=dilation, groups=groups, bias=bias, padding_mode=padding_mode,
                         device=device, dtype=dtype)


class Conv2d(SearchableModule):
    """``torch.nn.Conv2d`` whose arguments may be choices or expressions."""

    module_class = nn.Conv2d

    def __init__(self, in_channels: IntArg, out_channels: IntArg, kernel_size: SizeArg,
                 stride: SizeArg = 1, padding: SizeArg | str = 0, dilation: SizeArg = 1,
                 groups: IntArg = 1, bias: BoolArg = True, padding_mode: str = "zeros",
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         dilation=dilation, groups=groups, bias=bias, padding_mode=padding_mode,
                         device=device, dtype=dtype)


class Linear(SearchableModule):
    """``torch.nn.Linear`` whose arguments may be choices or expressions."""

    module_class = nn.Linear

    def __init__(self, in_features: IntArg, out_features: IntArg, bias: BoolArg = True,
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)


class BatchNorm1d(SearchableModule):
    """``torch.nn.BatchNorm1d`` whose arguments may be choices or expressions."""

    module_class = nn.BatchNorm1d

    def __init__(self, num_features: IntArg, eps: FloatArg = 1e-5,
                 momentum: FloatArg | None = 0.1, affine: BoolArg = True,
                 track_running_stats: BoolArg = True, device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__(num_features, eps=eps, momentum=momentum, affine=affine,
                         track_running_stats=track_running_stats, device=device, dtype=dtype)


class BatchNorm2d(SearchableModule):
    """``torch.nn.BatchNorm2d`` whose arguments may be choices or expressions."""

    module_class = nn.BatchNorm2d

    def __init__(self, num_features: IntArg, eps: FloatArg = 1e-5,
                 momentum: FloatArg | None = 0.1, affine: BoolArg = True,
                 track_running_stats: BoolArg = True, device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__(num_features, eps=eps, momentum=momentum, affine=affine,
                         track_running_stats=track_running_stats, device=device, dtype=dtype)


class LayerNorm(SearchableModule):
    """``torch.nn.LayerNorm`` whose arguments may be choices (also inside
    ``normalized_shape``, e.g. ``[width]``)."""

    module_class = nn.LayerNorm

    def __init__(self, normalized_shape: SizeArg | list[IntArg], eps: FloatArg = 1e-5,
                 elementwise_affine: BoolArg = True, bias: BoolArg = True,
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__(normalized_shape, eps=eps, elementwise_affine=elementwise_affine,
                         bias=bias, device=device, dtype=dtype)


class Dropout(SearchableModule):
    """``torch.nn.Dropout`` whose ``p`` may be a choice (e.g. ``Numerical(0.0, 0.5)``)."""

    module_class = nn.Dropout

    def __init__(self, p: FloatArg = 0.5, inplace: bool = False) -> None:
        super().__init__(p=p, inplace=inplace)


class MultiheadAttention(SearchableModule):
    """``torch.nn.MultiheadAttention`` whose arguments may be choices; add a constraint
    so that ``embed_dim`` is divisible by ``num_heads`` in every sample."""

    module_class = nn.MultiheadAttention

    def __init__(self, embed_dim: IntArg, num_heads: IntArg, dropout: FloatArg = 0.0,
                 bias: BoolArg = True, add_bias_kv: BoolArg = False,
                 add_zero_attn: BoolArg = False, kdim: IntArg | None = None,
                 vdim: IntArg | None = None, batch_first: bool = False, device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__(embed_dim, num_heads, dropout=dropout, bias=bias,
                         add_bias_kv=add_bias_kv, add_zero_attn=add_zero_attn, kdim=kdim,
                         vdim=vdim, batch_first=batch_first, device=device, dtype=dtype)


class MaxPool1d(SearchableModule):
    """``torch.nn.MaxPool1d`` whose arguments may be choices or expressions."""

    module_class = nn.MaxPool1d

    def __init__(self, kernel_size: SizeArg, stride: SizeArg | None = None,
                 padding: SizeArg = 0, dilation: SizeArg = 1, return_indices: bool = False,
                 ceil_mode: BoolArg = False) -> None:
        super().__init__(kernel_size, stride=stride, padding=padding, dilation=dilation,
                         return_indices=return_indices, ceil_mode=ceil_mode)


class MaxPool2d(SearchableModule):
    """``torch.nn.MaxPool2d`` whose arguments may be choices or expressions."""

    module_class = nn.MaxPool2d

    def __init__(self, kernel_size: SizeArg, stride: SizeArg | None = None,
                 padding: SizeArg = 0, dilation: SizeArg = 1, return_indices: bool = False,
                 ceil_mode: BoolArg = False) -> None:
        super().__init__(kernel_size, stride=stride, padding=padding, dilation=dilation,
                         return_indices=return_indices, ceil_mode=ceil_mode)


class AvgPool1d(SearchableModule):
    """``torch.nn.AvgPool1d`` whose arguments may be choices or expressions."""

    module_class = nn.AvgPool1d

    def __init__(self, kernel_size: SizeArg, stride: SizeArg | None = None,
                 padding: SizeArg = 0, ceil_mode: BoolArg = False,
                 count_include_pad: BoolArg = True) -> None:
        super().__init__(kernel_size, stride=stride, padding=padding, ceil_mode=ceil_mode,
                         count_include_pad=count_include_pad)


class AvgPool2d(SearchableModule):
    """``torch.nn.AvgPool2d`` whose arguments may be choices or expressions."""

    module_class = nn.AvgPool2d

    def __init__(self, kernel_size: SizeArg, stride: SizeArg | None = None,
                 padding: SizeArg = 0, ceil_mode: BoolArg = False,
                 count_include_pad: BoolArg = True, divisor_override: IntArg | None = None
                 ) -> None:
        super().__init__(kernel_size, stride=stride, padding=padding, ceil_mode=ceil_mode,
                         count_include_pad=count_include_pad, divisor_override=divisor_override)


class AdaptiveAvgPool1d(SearchableModule):
    """``torch.nn.AdaptiveAvgPool1d`` whose ``output_size`` may be a choice."""

    module_class = nn.AdaptiveAvgPool1d

    def __init__(self, output_size: SizeArg | None) -> None:
        super().__init__(output_size)


class AdaptiveAvgPool2d(SearchableModule):
    """``torch.nn.AdaptiveAvgPool2d`` whose ``output_size`` may be a choice."""

    module_class = nn.AdaptiveAvgPool2d

    def __init__(self, output_size: SizeArg | None) -> None:
        super().__init__(output_size)


for _layer in (
    Conv1d, Conv2d, Linear, BatchNorm1d, BatchNorm2d, LayerNorm, Dropout, MultiheadAttention,
    MaxPool1d, MaxPool2d, AvgPool1d, AvgPool2d, AdaptiveAvgPool1d, AdaptiveAvgPool2d,
):
    _SEARCHABLE[_layer.module_class] = _layer
