"""Published networks as ``(space arguments, sample)``: the hub's ``searched(name)``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from nasflow.space import Sample

__all__ = ["Searched", "searched_model"]

_Space = TypeVar("_Space")


@dataclass(frozen=True)
class Searched:
    """One published network of a hub space."""

    sample: dict[str, Any]
    """The architecture, a sample of the space built with ``kwargs``."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """The space's constructor arguments (widths, ratios...) for this network."""
    paper_params: float = 0.0
    """The parameter count the paper publishes (ImageNet head, 1000 classes)."""
    source: str = ""
    """Where the figure and the architecture come from."""


def searched_model(cls: type[_Space], table: Mapping[str, Searched], name: str,
                   **overrides: Any) -> tuple[_Space, Sample]:
    """``(cls(**kwargs, **overrides), sample)`` for ``table[name]``; a clear error
    listing the known names otherwise."""
    if name not in table:
        raise ValueError(f"{cls.__name__}: unknown published network {name!r}; known: "
                         f"{sorted(table)}")
    entry = table[name]
    space = cls(**{**entry.kwargs, **overrides})
    return space, dict(entry.sample)
