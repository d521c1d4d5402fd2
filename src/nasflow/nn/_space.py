"""``ModelSpace``: the user's root module; its search space is built when ``__init__`` returns."""

from __future__ import annotations

import functools
import random as _random
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar, TypeVar

import torch.nn as nn

from nasflow.exceptions import SpaceBuildError, SpaceError
from nasflow.nn._base import STATE_ATTR, Collector, Freezer, FrozenState, NasModule, choices_in
from nasflow.nn._layers import searchable_name
from nasflow.space import Choice, Constraint, Expr, Sample, SearchSpace

__all__ = ["ModelSpace"]

_DEPTH_ATTR = "_nasflow_init_depth"
_Init = TypeVar("_Init", bound=Callable[..., None])


class SpaceState:
    """What a ``ModelSpace`` keeps besides its modules: extra choices, constraints, and
    the built ``SearchSpace``."""

    def __init__(self) -> None:
        self.extra: list[tuple[Choice, str | None]] = []
        """Choices registered with ``add_choice``, with their labels (``None``: the
        choice must be labelled by another use, e.g. as an attribute)."""
        self.constraints: list[Constraint] = []
        """Constraints registered with ``add_constraint``."""
        self.space: SearchSpace | None = None
        """The search space, once ``__init__`` returned."""


def _wrap_init(init: _Init) -> _Init:
    """Wrap a ``ModelSpace`` subclass's ``__init__``: when the outermost one returns,
    build the search space; when it raises, explain choices given to plain modules."""
    if getattr(init, "__nasflow_wrapped__", False):
        return init

    @functools.wraps(init)
    def __init__(self: ModelSpace, *args: Any, **kwargs: Any) -> None:  # noqa: N807
        depth = self.__dict__.get(_DEPTH_ATTR, 0)
        self.__dict__[_DEPTH_ATTR] = depth + 1
        try:
            init(self, *args, **kwargs)
        except Exception as exc:
            explained = _explain(exc) if depth == 0 else None
            if explained is not None:
                raise explained from exc
            raise
        finally:
            if depth == 0:
                self.__dict__.pop(_DEPTH_ATTR, None)
            else:
                self.__dict__[_DEPTH_ATTR] = depth
        if depth == 0:
            self._nasflow_finish()

    __init__.__nasflow_wrapped__ = True  # type: ignore[attr-defined]
    return __init__  # type: ignore[return-value]


class ModelSpace(nn.Module):
    """The root of a PyTorch model space: subclass it, build layers in ``__init__``.

    Layers may be ``LayerChoice``, ``InputChoice``, ``Repeat``, ``Cell`` and searchable
    layers (``nasflow.nn.Conv2d``...) whose arguments are choices. The search space is
    built when the outermost ``__init__`` returns; ``freeze(sample)`` then returns a new,
    plain ``torch.nn.Module`` (an instance of your class) for one architecture.
    """

    is_model_space: ClassVar[bool] = True
    """Tells engines to call ``freeze(sample)`` for each trial (False on frozen models)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is not None:
            cls.__init__ = _wrap_init(init)  # type: ignore[method-assign]

    @_wrap_init
    def __init__(self) -> None:
        super().__init__()
        self.__dict__[STATE_ATTR] = SpaceState()

    # --- building -------------------------------------------------------------------

    def _state(self) -> SpaceState:
        state = self.__dict__.get(STATE_ATTR)
        if isinstance(state, FrozenState):
            raise SpaceError(
                f"this {type(self).__name__} is a frozen model (sample {state.sample}), not a "
                "search space; call search-space methods on the model space it came from"
            )
        if state is None:
            raise SpaceBuildError(
                f"{type(self).__name__}.__init__ must call super().__init__() first"
            )
        return state  # type: ignore[no-any-return]

    def _nasflow_finish(self) -> None:
        state = self._state()
        state.space = self._build(state)

    def _build(self, state: SpaceState) -> SearchSpace:
        collector = Collector()
        for choice, label in state.extra:
            if label is not None:
                collector.add(choice, label, (), "add_choice")
        collector.visit_plain(self, "", ())
        for constraint in state.constraints:
            collector.builder.add_constraint(constraint)
        space = collector.builder.build()
        for choice, label in state.extra:
            if label is None and not _has(space, choice):
                raise SpaceBuildError(
                    f"add_choice({choice!r}): the choice has no label and is used nowhere "
                    "else; label it, or keep it as an attribute (self.lr = "
                    "self.add_choice(...)) to label it after the attribute"
                )
        for constraint in state.constraints:
            for choice in choices_in(constraint.predicate):
                if not _has(space, choice):
                    raise SpaceBuildError(
                        f"constraint {constraint.label!r} uses {choice!r}, which no layer of "
                        f"this {type(self).__name__} uses; pass it to a layer or register it "
                        "with self.add_choice()"
                    )
        return space

    def add_choice(self, choice: Choice, *, label: str | None = None) -> Choice:
        """Register a choice that is no module argument (e.g. a learning rate the evaluator
        reads from ``trial.sample``); returns it, always active.

        The label is the choice's own, else ``label``; with neither, keep the choice as an
        attribute (``self.lr = self.add_choice(nf.Numerical(...))`` is labelled ``lr``).
        """
        state = self._state()
        if not isinstance(choice, Choice):
            raise SpaceBuildError(f"add_choice() takes a nasflow choice, got {choice!r}")
        if label is not None and choice.label is not None and label != choice.label:
            raise SpaceBuildError(
                f"add_choice(): the choice is labelled {choice.label!r} but label={label!r}"
            )
        state.extra.append((choice, choice.label or label))
        if state.space is not None:
            state.space = self._build(state)
        return choice

    def add_constraint(self, label: str, predicate: Callable[[Sample], bool] | Expr) -> None:
        """Keep only the samples for which ``predicate`` holds.

        ``predicate`` is a function of the sample dict (it sees only active labels) or a
        boolean expression on choices used in this space (``width * depth <= 256``).
        """
        state = self._state()
        constraint = Constraint(predicate, label=label)
        if any(c.label == label for c in state.constraints):
            raise SpaceBuildError(f"two constraints are labelled {label!r}")
        state.constraints.append(constraint)
        if state.space is not None:
            state.space = self._build(state)

    # --- the search space -----------------------------------------------------------

    def search_space_object(self) -> SearchSpace:
        """The ``SearchSpace`` behind this model space."""
        space = self._state().space
        if space is None:
            raise SpaceError(
                f"the search space of {type(self).__name__} is built when its __init__ "
                "returns; it is not available inside __init__"
            )
        return space

    def search_space(self) -> dict[str, Choice]:
        """``{label: choice}`` for every decision, parents before what they gate."""
        return self.search_space_object().search_space()

    def label_of(self, target: Choice | NasModule) -> str:
        """The label of a choice, or of a ``LayerChoice``/``InputChoice``/``Repeat``."""
        choice: Any = target
        if isinstance(target, NasModule):
            choice = getattr(target, "choice", None)
            if choice is None:  # a Repeat; never `or`: a choice has no truth value
                choice = getattr(target, "depth_choice", None)
        if not isinstance(choice, Choice):
            raise SpaceError(f"{type(target).__name__} has no decision of its own")
        return self.search_space_object().label_of(choice)

    def random(
        self,
        seed: int | None = None,
        *,
        rng: _random.Random | None = None,
        fixed: Mapping[str, Any] | None = None,
        max_tries: int = 1000,
    ) -> Sample:
        """A random sample that satisfies the constraints (see ``SearchSpace.random``)."""
        return self.search_space_object().random(seed, rng=rng, fixed=fixed, max_tries=max_tries)

    def grid(self, granularity: int = 2) -> Iterator[Sample]:
        """Every sample (constraints applied), in a fixed order."""
        return self.search_space_object().grid(granularity)

    def default(self) -> Sample:
        """Every active label at its default."""
        return self.search_space_object().default()

    def validate(self, sample: Mapping[str, Any]) -> None:
        """Raise ``SampleValidationError`` (label, value, allowed) unless ``sample`` is
        exactly a sample of this space."""
        self.search_space_object().validate(sample)

    def canonicalize(self, sample: Mapping[str, Any]) -> Sample:
        """``sample`` with inactive labels dropped and values in canonical spelling."""
        return self.search_space_object().canonicalize(sample)

    def size(self) -> int | None:
        """How many architectures exist before constraints (``None``: infinite or huge)."""
        return self.search_space_object().size()

    # --- freezing ---------------------------------------------------------------------

    def freeze(self, sample: Mapping[str, Any]) -> nn.Module:
        """A new plain ``torch.nn.Module`` for ``sample``; the space is left untouched.

        The result is an instance of this class whose searchable modules are replaced by
        plain torch modules (chosen candidates are copies with their own parameters;
        searchable layers are freshly built). Raises ``SampleValidationError`` naming the
        label, the value and what is allowed if ``sample`` does not belong to the space.
        """
        space = self.search_space_object()
        return Freezer(space, space.canonicalize(sample)).module(self)

    @property
    def is_frozen(self) -> bool:
        """Whether this is a model built by ``freeze`` rather than a search space."""
        return isinstance(self.__dict__.get(STATE_ATTR), FrozenState)

    @property
    def frozen_sample(self) -> Sample | None:
        """The sample a frozen model was built from (``None`` for a search space)."""
        state = self.__dict__.get(STATE_ATTR)
        return dict(state.sample) if isinstance(state, FrozenState) else None


def _has(space: SearchSpace, choice: Choice) -> bool:
    try:
        space.label_of(choice)
    except SpaceError:
        return False
    return True


# --- explaining a space that cannot be built ---------------------------------------------

_EXPLAINED = (TypeError, ValueError, RuntimeError, AssertionError, IndexError)


def _explain(exc: Exception) -> SpaceBuildError | None:
    """A ``SpaceBuildError`` naming the plain module that got a choice, if ``exc`` came from
    one: the innermost frame, below the failing ``__init__``, whose ``self`` is a plain
    torch module and one of whose arguments holds a choice."""
    if not isinstance(exc, _EXPLAINED):
        return None
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        owner = frame.f_locals.get("self")
        if not isinstance(owner, nn.Module) or isinstance(owner, (NasModule, ModelSpace)):
            continue
        for name, value in _frame_arguments(frame):
            found = choices_in(value)
            if found:
                return SpaceBuildError(
                    _message(type(owner), frame.f_code.co_name, name, value, found, exc)
                )
    return None


def _frame_arguments(frame: Any) -> Iterator[tuple[str, Any]]:
    code = frame.f_code
    n = code.co_argcount + code.co_kwonlyargcount
    names = list(code.co_varnames[:n])
    flags = code.co_flags
    if flags & 0x04:  # CO_VARARGS
        names.append(code.co_varnames[n])
        n += 1
    if flags & 0x08:  # CO_VARKEYWORDS
        names.append(code.co_varnames[n])
    for name in names:
        if name != "self" and name in frame.f_locals:
            yield name, frame.f_locals[name]


def _message(cls: type, func: str, arg: str, value: Any, found: list[Choice],
             exc: Exception) -> str:
    labels = ", ".join(
        f"label {c.label!r}" if c.label else f"unlabelled {c!r}" for c in found
    )
    module = cls.__module__
    qualified = f"{module}.{cls.__qualname__}"
    if module.startswith("torch.nn.") and getattr(nn, cls.__name__, None) is cls:
        qualified = f"torch.nn.{cls.__name__}"
    where = qualified if func == "__init__" else f"{qualified}.{func}()"
    explicit = searchable_name(cls)
    fix = (
        f"use {explicit} (which accepts choices) or nasflow.nn.searchable({qualified})"
        if explicit
        else f"make the class searchable: nasflow.nn.searchable({qualified})(...)"
    )
    return (
        f"cannot build the model space: {where} got the search-space choice {value!r} "
        f"({labels}) for its argument {arg!r}, but a plain torch module needs a concrete "
        f"value when it is constructed; {fix}. (The constructor failed with "
        f"{type(exc).__name__}: {exc})"
    )
