"""The core of ``nasflow.nn``: the ``NasModule`` marker, collecting a module tree's choices
into a ``SearchSpace``, and freezing a module tree into plain torch modules.

Every searchable module implements two hooks: ``_collect`` registers its choices (with the
condition under which each is active) on a ``Collector``, and ``_freeze`` returns the
plain module that replaces it for one sample, built through a ``Freezer``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from typing import Any

import torch.nn as nn

from nasflow.exceptions import SpaceBuildError, SpaceError
from nasflow.space import Choice, Condition, Expr, Sample, SearchSpace, SpaceBuilder

__all__ = [
    "STATE_ATTR",
    "Collector",
    "FrozenState",
    "Freezer",
    "NasModule",
    "attribute_choices",
    "choices_in",
    "copy_keeping_choices",
    "describe",
    "held_choices",
    "join",
    "modules_in",
]

STATE_ATTR = "_nasflow_state"
"""The attribute of a ``ModelSpace`` that holds its ``SpaceState`` (or ``FrozenState``)."""

# attributes every torch module has; never scanned for choices
_MODULE_INTERNALS = frozenset(vars(nn.Module())) | {STATE_ATTR, "is_model_space"}


def join(path: str, name: str) -> str:
    """``path.name``, or ``name`` at the root (whose path is ``""``)."""
    return f"{path}.{name}" if path else name


# --- finding choices and modules inside values ---------------------------------------


def choices_in(value: Any) -> list[Choice]:
    """The distinct choices ``value`` depends on, in order of first appearance.

    Looks inside expressions, lists, tuples, sets and dict values (not inside modules).
    """
    found: dict[int, Choice] = {}
    _walk_choices(value, found)
    return list(found.values())


def _walk_choices(value: Any, found: dict[int, Choice]) -> None:
    if isinstance(value, Expr):
        for leaf in value.leaves():
            found.setdefault(id(leaf), leaf)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for v in value:
            _walk_choices(v, found)
    elif isinstance(value, dict):
        for v in value.values():
            _walk_choices(v, found)


def modules_in(value: Any) -> Iterator[nn.Module]:
    """The torch modules inside ``value`` (itself, or in lists, tuples and dict values)."""
    if isinstance(value, nn.Module):
        yield value
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from modules_in(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from modules_in(v)


def attribute_choices(module: nn.Module) -> Iterator[tuple[str, Any]]:
    """``(name, value)`` for each plain attribute of ``module`` that holds a choice."""
    for name, value in vars(module).items():
        if name not in _MODULE_INTERNALS and choices_in(value):
            yield name, value


def held_choices(module: nn.Module) -> Iterator[Choice]:
    """Every choice held by ``module`` and the modules below it (with repeats)."""
    for m in module.modules():
        if isinstance(m, NasModule):
            yield from m._own_choices()
        for _, value in attribute_choices(m):
            yield from choices_in(value)


def copy_keeping_choices(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` whose choices are the original choice objects.

    Choices are decisions, not state: a copied block makes the same decisions as the
    original (``Repeat`` and ``Cell`` use this when given a module to replicate).
    """
    memo: dict[int, Any] = {id(c): c for c in held_choices(module)}
    return copy.deepcopy(module, memo)


# --- the searchable-module marker ---------------------------------------------------


class NasModule(nn.Module):
    """Base class of every searchable module (``LayerChoice``, ``Conv2d`` with a choice...).

    A ``NasModule`` only describes part of a search space: it cannot run. Freezing the
    model space replaces it by a plain torch module; ``isinstance(m, NasModule)`` tells
    whether a module tree still holds a decision.
    """

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Refuse to run: a searchable module has no concrete architecture yet."""
        raise SpaceError(
            f"{type(self).__name__} is part of a model space, not a concrete model, so it "
            "cannot run. Freeze the space first: model = space.freeze(space.default()) "
            "(or any sample), then call the frozen model."
        )

    # --- hooks for the space builder and the freezer --------------------------------

    def _own_choices(self) -> list[Choice]:
        """The choices this module holds itself (its children report their own)."""
        return []

    def _collect(self, collector: Collector, path: str, condition: Condition) -> None:
        """Register this module's choices; by default, those of its attributes and children."""
        collector.visit_plain(self, path, condition)

    def _freeze(self, freezer: Freezer) -> nn.Module:
        """The plain module that replaces this one for ``freezer.sample``."""
        raise NotImplementedError(f"{type(self).__name__} does not implement _freeze")


# --- building the search space -------------------------------------------------------


class Collector:
    """Walks a module tree and registers its choices on a ``SpaceBuilder``.

    ``path`` is the dotted attribute path from the model-space root (``""`` for the root);
    it is the label of an unlabelled choice. ``condition`` says when the module is active.
    """

    def __init__(self) -> None:
        self.builder = SpaceBuilder()
        """The builder the choices and constraints go to."""

    def add(self, choice: Choice, hint: str, condition: Condition, where: str) -> str:
        """Register ``choice`` (label: its own, else ``hint``); returns the label."""
        try:
            return self.builder.add(choice, label_hint=hint, condition=condition)
        except SpaceBuildError as exc:
            raise SpaceBuildError(f"{where}: {exc}") from exc

    def add_value(self, value: Any, hint: str, condition: Condition, where: str) -> None:
        """Register every choice in ``value``; several are labelled ``hint.0``, ``hint.1``..."""
        found = choices_in(value)
        for i, choice in enumerate(found):
            self.add(choice, hint if len(found) == 1 else f"{hint}.{i}", condition, where)

    def gate(self, label: str, allowed: Iterable[Any], condition: Condition) -> Condition:
        """``condition`` and ``label in allowed``: for what is nested under that decision."""
        return self.builder.gate(label, allowed, condition)

    def visit(self, module: nn.Module, path: str, condition: Condition) -> None:
        """Register the choices of ``module`` and everything below it."""
        if isinstance(module, NasModule):
            module._collect(self, path, condition)
        else:
            self.visit_plain(module, path, condition)

    def visit_plain(self, module: nn.Module, path: str, condition: Condition) -> None:
        """Register the choices held in ``module``'s attributes, then visit its children."""
        where = describe(module, path)
        for name, value in attribute_choices(module):
            self.add_value(value, join(path, name), condition, where)
        for name, child in module._modules.items():
            if child is not None:
                self.visit(child, join(path, name), condition)


def describe(module: nn.Module, path: str) -> str:
    """``"LayerChoice at 'blocks.0.op'"``, for error messages."""
    return f"{type(module).__name__} at {path!r}" if path else f"{type(module).__name__} (root)"


# --- freezing -------------------------------------------------------------------------


class FrozenState:
    """Marks a module tree built by ``ModelSpace.freeze``; keeps the sample it came from."""

    def __init__(self, sample: Sample) -> None:
        self.sample = dict(sample)
        """The canonical sample the model was frozen from."""


class Freezer:
    """Builds the plain module tree for one canonical sample.

    One freezer builds one model: a module (or parameter) used twice in the space is one
    object in the frozen model too, so weight tying survives.
    """

    def __init__(self, space: SearchSpace, sample: Sample) -> None:
        self.space = space
        """The space the sample belongs to."""
        self.sample = sample
        """The canonical sample."""
        self.memo: dict[int, Any] = {}
        """``copy.deepcopy`` memo: original object id -> its frozen counterpart."""

    def chosen(self, choice: Choice) -> Any:
        """The sample's value for ``choice``."""
        return self.space.resolve(choice, self.sample)

    def value(self, value: Any) -> Any:
        """``value`` with choices and expressions resolved and modules frozen."""
        if isinstance(value, Expr):
            return self.space.resolve(value, self.sample)
        if isinstance(value, nn.Module):
            return self.module(value)
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, tuple):
            items = [self.value(v) for v in value]
            return type(value)(*items) if hasattr(value, "_fields") else tuple(items)
        if isinstance(value, (set, frozenset)):
            return type(value)(self.value(v) for v in value)
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        return value

    def module(self, module: nn.Module) -> nn.Module:
        """The frozen counterpart of ``module`` (built once per freezer)."""
        key = id(module)
        if key in self.memo:
            return self.memo[key]  # type: ignore[no-any-return]
        if isinstance(module, NasModule):
            out = module._freeze(self)
            if out.training != module.training:  # freshly built modules start in train mode
                out.train(module.training)
        else:
            out = self._plain(module)
        self.memo[key] = out
        return out

    def _plain(self, module: nn.Module) -> nn.Module:
        # freeze the children first: deepcopy then finds them in the memo, so the copy
        # gets its own parameters and buffers and the frozen children
        for child in module._modules.values():
            if child is not None:
                self.module(child)
        state = module.__dict__.get(STATE_ATTR)
        if state is not None and id(state) not in self.memo:
            self.memo[id(state)] = FrozenState(self.sample)
        new = copy.deepcopy(module, self.memo)
        for name, value in attribute_choices(module):
            new.__dict__[name] = self.value(value)
        if state is not None:  # a (nested) model space: its copy is a model, not a space
            new.__dict__["is_model_space"] = False
        return new
