"""Structural choices: ``LayerChoice``, ``InputChoice`` (frozen: ``ChosenInputs``), ``Repeat``."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import torch
import torch.nn as nn

from nasflow.exceptions import SpaceBuildError
from nasflow.nn._base import Collector, Freezer, NasModule, copy_keeping_choices, describe, join
from nasflow.space import Categorical, CategoricalMultiple, Choice, Condition

__all__ = ["ChosenInputs", "InputChoice", "LayerChoice", "Repeat"]

Reduction = Literal["sum", "mean", "concat", "none"]
_REDUCTIONS = ("sum", "mean", "concat", "none")


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _name(kind: str, label: str | None) -> str:
    return f"{kind} {label!r}" if label else kind


# --- LayerChoice ----------------------------------------------------------------------


class LayerChoice(NasModule):
    """One module out of several candidates.

    ``candidates`` is a list (the sample value is the index) or a dict ``name -> module``
    (the sample value is the name; names must be non-empty and contain no ``.``).
    Choices inside a candidate are only active when that candidate is chosen. Frozen, a
    ``LayerChoice`` becomes (a copy of) the chosen candidate itself.
    """

    def __init__(
        self,
        candidates: Sequence[nn.Module] | Mapping[str, nn.Module],
        *,
        label: str | None = None,
    ) -> None:
        super().__init__()
        what = _name("LayerChoice", label)
        if isinstance(candidates, Mapping):
            names = list(candidates)
            for n in names:
                if not isinstance(n, str) or not n or "." in n:
                    raise SpaceBuildError(
                        f"{what}: candidate names must be non-empty strings without '.', "
                        f"got {n!r}"
                    )
            modules = list(candidates.values())
            values: list[Any] = list(names)
        elif isinstance(candidates, Sequence) and not isinstance(candidates, (str, bytes)):
            modules = list(candidates)
            names = [str(i) for i in range(len(modules))]
            values = list(range(len(modules)))
        else:
            raise SpaceBuildError(
                f"{what}: candidates must be a list or a dict of modules, "
                f"got {type(candidates).__name__}"
            )
        if not modules:
            raise SpaceBuildError(f"{what}: needs at least one candidate")
        for n, m in zip(names, modules, strict=True):
            if not isinstance(m, nn.Module):
                raise SpaceBuildError(
                    f"{what}: candidate {n!r} is a {type(m).__name__}, not a torch.nn.Module"
                )
            try:
                self.add_module(n, m)
            except (KeyError, TypeError) as exc:
                raise SpaceBuildError(f"{what}: candidate name {n!r} is not usable: {exc}") from exc
        self.names: list[str] = names
        """The candidates' names (``"0"``, ``"1"``... for a list)."""
        self.choice = Categorical(values, label=label)
        """The decision: an index for a list of candidates, a name for a dict."""

    @property
    def label(self) -> str | None:
        """The label given by the user (``None``: derived from the attribute path)."""
        return self.choice.label

    @property
    def candidates(self) -> dict[str, nn.Module]:
        """``name -> candidate``, in order."""
        return {n: self._modules[n] for n in self.names}  # type: ignore[misc]

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, key: int | str) -> nn.Module:
        """The candidate for a sample value (an index or a name)."""
        return self._modules[self.names[self.choice.index(key)]]  # type: ignore[return-value]

    def _own_choices(self) -> list[Choice]:
        return [self.choice]

    def _collect(self, collector: Collector, path: str, condition: Condition) -> None:
        self._collect_as(collector, path, path, condition)

    def _collect_as(self, collector: Collector, path: str, hint: str, condition: Condition) -> None:
        """Register under ``hint`` when unlabelled (``Cell`` passes ``cell/op_2_0``)."""
        label = collector.add(self.choice, hint, condition, describe(self, path))
        for value, name in zip(self.choice.values, self.names, strict=True):
            gated = collector.gate(label, [value], condition)
            collector.visit(self._modules[name], join(path, name), gated)  # type: ignore[arg-type]

    def _freeze(self, freezer: Freezer) -> nn.Module:
        return freezer.module(self[freezer.chosen(self.choice)])

    def extra_repr(self) -> str:
        return f"label={self.label!r}" if self.label else ""


# --- InputChoice ----------------------------------------------------------------------


class InputChoice(NasModule):
    """Choose ``n_chosen`` of ``n_candidates`` input tensors and reduce them.

    The sample value is the sorted list of chosen indices (``n_chosen=None``: any
    non-empty subset). ``reduction`` is ``"sum"``, ``"mean"``, ``"concat"`` (along dim 1)
    or ``"none"`` (the list). Frozen, it becomes ``ChosenInputs``, called with the list of
    candidate tensors.
    """

    def __init__(
        self,
        n_candidates: int,
        n_chosen: int | None = 1,
        reduction: Reduction = "sum",
        *,
        label: str | None = None,
    ) -> None:
        super().__init__()
        what = _name("InputChoice", label)
        if not _is_int(n_candidates) or n_candidates < 1:
            raise SpaceBuildError(f"{what}: n_candidates must be an int >= 1, got {n_candidates!r}")
        if reduction not in _REDUCTIONS:
            raise SpaceBuildError(
                f"{what}: reduction must be one of {_REDUCTIONS}, got {reduction!r}"
            )
        if n_chosen is not None and (not _is_int(n_chosen) or not 1 <= n_chosen <= n_candidates):
            raise SpaceBuildError(
                f"{what}: n_chosen must be None or an int in [1, {n_candidates}], got {n_chosen!r}"
            )
        self.n_candidates = n_candidates
        """How many inputs the frozen module is called with."""
        self.n_chosen = n_chosen
        """How many are chosen (``None``: any non-empty subset)."""
        self.reduction: Reduction = reduction
        """How the chosen inputs are combined."""
        self.choice = CategoricalMultiple(list(range(n_candidates)), n_chosen=n_chosen, label=label)
        """The decision: a sorted list of indices."""

    @property
    def label(self) -> str | None:
        """The label given by the user (``None``: derived from the attribute path)."""
        return self.choice.label

    def _own_choices(self) -> list[Choice]:
        return [self.choice]

    def _collect(self, collector: Collector, path: str, condition: Condition) -> None:
        collector.add(self.choice, path, condition, describe(self, path))

    def _freeze(self, freezer: Freezer) -> nn.Module:
        return ChosenInputs(freezer.chosen(self.choice), self.reduction)

    def extra_repr(self) -> str:
        label = f", label={self.label!r}" if self.label else ""
        return (
            f"n_candidates={self.n_candidates}, n_chosen={self.n_chosen}, "
            f"reduction={self.reduction!r}{label}"
        )


class ChosenInputs(nn.Module):
    """The frozen ``InputChoice``: picks the chosen tensors out of the candidates and
    reduces them. With one chosen input (and a reduction other than ``"none"``) it returns
    that tensor unchanged; ``"none"`` always returns a list."""

    def __init__(self, chosen: int | Sequence[int], reduction: Reduction = "sum") -> None:
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        self.chosen: list[int] = [chosen] if isinstance(chosen, int) else list(chosen)
        """The indices of the chosen inputs."""
        self.reduction: Reduction = reduction
        """How they are combined."""

    def forward(self, candidate_inputs: Sequence[torch.Tensor]) -> Any:
        """The reduction of ``candidate_inputs[i]`` for the chosen ``i``."""
        return self.reduce([candidate_inputs[i] for i in self.chosen], self.reduction)

    @staticmethod
    def reduce(picked: Sequence[torch.Tensor], reduction: str) -> Any:
        """``picked`` combined by ``reduction``: the one implementation, shared by the
        frozen module, the one-shot supernet's ``MixedInput`` and ``Cell``'s node sums, so
        that a supernet in HARD mode computes exactly what the frozen model does.

        ``"none"``: the list; one tensor: itself; ``"concat"``: along dim 1; ``"sum"``: a
        left-to-right sum; ``"mean"``: that sum divided by ``len(picked)``.
        """
        if reduction == "none":
            return list(picked)
        if len(picked) == 1:
            return picked[0]
        if reduction == "concat":
            return torch.cat(list(picked), dim=1)
        total = picked[0]
        for t in picked[1:]:
            total = total + t
        return total / len(picked) if reduction == "mean" else total

    def extra_repr(self) -> str:
        return f"chosen={self.chosen}, reduction={self.reduction!r}"


# --- Repeat ---------------------------------------------------------------------------


class Repeat(NasModule):
    """A stack of blocks whose depth is searched.

    ``blocks``: a callable ``i -> Module`` (called for each of the ``max`` blocks), a
    module (deep-copied per block; the copies share its choices, so every block makes
    the same decisions: use a callable for independent blocks), or a list of exactly
    ``max`` modules. ``depth``: an int (fixed), ``(min, max)`` (a ``Categorical`` over
    ``range(min, max + 1)`` labelled ``label``) or a ``Categorical`` of ints. Block ``i``
    and its choices are active only when ``depth > i``. Frozen: ``nn.Sequential`` of the
    first ``depth`` blocks.
    """

    def __init__(
        self,
        blocks: Callable[[int], nn.Module] | nn.Module | Sequence[nn.Module],
        depth: int | tuple[int, int] | Categorical,
        *,
        label: str | None = None,
    ) -> None:
        super().__init__()
        what = _name("Repeat", label)
        self.depth_choice: Categorical | None = None
        """The depth decision (``None`` when the depth is fixed)."""
        self._label = label
        depths: list[int]
        if _is_int(depth):
            if depth < 0:  # type: ignore[operator]
                raise SpaceBuildError(f"{what}: depth must be >= 0, got {depth!r}")
            depths = [depth]  # type: ignore[list-item]
        elif isinstance(depth, tuple) and len(depth) == 2 and all(_is_int(d) for d in depth):
            lo, hi = depth
            if not 0 <= lo <= hi:
                raise SpaceBuildError(
                    f"{what}: depth (min, max) needs 0 <= min <= max, got {depth}"
                )
            self.depth_choice = Categorical(list(range(lo, hi + 1)), label=label)
            depths = self.depth_choice.values
        elif isinstance(depth, Categorical):
            if not all(_is_int(d) and d >= 0 for d in depth.values):
                raise SpaceBuildError(f"{what}: a depth Categorical needs ints >= 0, got {depth!r}")
            if label is not None and depth.label is not None and label != depth.label:
                raise SpaceBuildError(
                    f"{what}: its depth choice is labelled {depth.label!r}; give the label "
                    "in one place only"
                )
            self.depth_choice = depth
            depths = depth.values
        else:
            raise SpaceBuildError(
                f"{what}: depth must be an int, a (min, max) tuple of ints or a Categorical "
                f"of ints, got {depth!r}"
            )
        self.min_depth: int = min(depths)
        """The smallest depth."""
        self.max_depth: int = max(depths)
        """The largest depth: how many blocks exist."""
        for i, block in enumerate(self._make_blocks(blocks, what)):
            self.add_module(str(i), block)

    def _make_blocks(self, blocks: Any, what: str) -> list[nn.Module]:
        n = self.max_depth
        if isinstance(blocks, nn.Module):
            made = [copy_keeping_choices(blocks) for _ in range(n)]
        elif callable(blocks):
            made = [blocks(i) for i in range(n)]
        elif isinstance(blocks, Sequence) and not isinstance(blocks, (str, bytes)):
            made = list(blocks)
            if len(made) != n:
                raise SpaceBuildError(
                    f"{what}: got {len(made)} blocks for a depth of at most {n}; give exactly "
                    f"{n}, a module to copy, or a callable i -> module"
                )
        else:
            raise SpaceBuildError(
                f"{what}: blocks must be a callable, a module or a list of modules, "
                f"got {type(blocks).__name__}"
            )
        for i, b in enumerate(made):
            if not isinstance(b, nn.Module):
                raise SpaceBuildError(f"{what}: block {i} is a {type(b).__name__}, not a module")
        return made

    @property
    def label(self) -> str | None:
        """The depth's label as given by the user (``None``: derived from the path)."""
        if self.depth_choice is not None and self.depth_choice.label is not None:
            return self.depth_choice.label
        return self._label

    @property
    def blocks(self) -> list[nn.Module]:
        """All ``max_depth`` blocks."""
        return [self._modules[str(i)] for i in range(self.max_depth)]  # type: ignore[misc]

    def __len__(self) -> int:
        return self.max_depth

    def __getitem__(self, i: int) -> nn.Module:
        return self.blocks[i]

    def _own_choices(self) -> list[Choice]:
        return [] if self.depth_choice is None else [self.depth_choice]

    def _collect(self, collector: Collector, path: str, condition: Condition) -> None:
        if self.depth_choice is None:
            for i, block in enumerate(self.blocks):
                collector.visit(block, join(path, str(i)), condition)
            return
        label = collector.add(
            self.depth_choice, self._label or path, condition, describe(self, path)
        )
        depths = self.depth_choice.values
        for i, block in enumerate(self.blocks):
            cond = condition
            if i >= self.min_depth:
                cond = collector.gate(label, [d for d in depths if d > i], condition)
            collector.visit(block, join(path, str(i)), cond)

    def _freeze(self, freezer: Freezer) -> nn.Module:
        depth = self.max_depth if self.depth_choice is None else freezer.chosen(self.depth_choice)
        return nn.Sequential(*(freezer.module(b) for b in self.blocks[:depth]))

    def extra_repr(self) -> str:
        label = f", label={self.label!r}" if self.label else ""
        return f"depth=({self.min_depth}, {self.max_depth}){label}"
