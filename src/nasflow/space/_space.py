"""A search space: labelled choices, when each is active, and constraints over samples.

A *sample* is a flat dict ``label -> JSON value`` holding exactly the labels that are
active for it: a choice inside a ``LayerChoice`` candidate only appears when that candidate
is chosen. ``canonicalize`` drops inactive labels and normalises values, so equal
architectures have equal samples and equal hashes (``sample_hash``).
"""

from __future__ import annotations

import hashlib
import itertools
import math
import random
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from nasflow.exceptions import (
    SampleValidationError,
    SpaceBuildError,
    SpaceError,
    SpaceExhaustedError,
)
from nasflow.space._choice import Categorical, Choice
from nasflow.space._expr import Expr

__all__ = [
    "Condition",
    "Constraint",
    "Sample",
    "SearchSpace",
    "SpaceBuilder",
    "canonical_json",
    "sample_hash",
]

Sample = dict[str, Any]
"""A flat ``label -> JSON value`` dict."""

Condition = tuple[tuple[str, frozenset[Any]], ...]
"""An AND of ``label in allowed-values`` terms; the empty tuple is always true."""

_MISSING = object()


def canonical_json(sample: Mapping[str, Any]) -> bytes:
    """The canonical JSON bytes of a sample: sorted keys, compact, orjson's float format."""
    return orjson.dumps(sample, option=orjson.OPT_SORT_KEYS)


def sample_hash(sample: Mapping[str, Any]) -> str:
    """A stable 16-hex-digit id of a sample, equal across processes and runs."""
    return hashlib.blake2b(canonical_json(sample), digest_size=8).hexdigest()


class Constraint:
    """A named predicate over samples; samples for which it is false are not in the space.

    ``predicate`` is a function ``sample -> bool`` or a boolean expression on choices
    (``width * depth <= 256``).
    """

    __slots__ = ("label", "predicate")

    def __init__(self, predicate: Callable[[Sample], bool] | Expr, *, label: str) -> None:
        if not (callable(predicate) or isinstance(predicate, Expr)):
            raise SpaceBuildError(f"constraint {label!r}: expected a function or an expression")
        if not isinstance(label, str) or not label:
            raise SpaceBuildError(f"a constraint needs a non-empty label, got {label!r}")
        self.predicate = predicate
        self.label = label

    def __repr__(self) -> str:
        return f"Constraint({self.predicate!r}, label={self.label!r})"


@dataclass
class _Entry:
    label: str
    choice: Choice
    conditions: list[Condition] | None  # None: always active; else active if any holds


class SearchSpace:
    """Labelled choices with activation conditions and constraints.

    Build one from a dict (``SearchSpace({"lr": Numerical(1e-4, 1e-1, log=True), ...})``:
    a key labels an unlabelled choice, values may also be expressions or constants, and
    ``Constraint`` values become constraints), or get one from ``ModelSpace``.
    """

    def __init__(
        self,
        space: Mapping[str, Any] | None = None,
        *,
        constraints: Iterable[Constraint] = (),
    ) -> None:
        builder = SpaceBuilder()
        template: dict[str, Any] = {}
        _refuse_plain_values(space or {})
        for key, value in (space or {}).items():
            if isinstance(value, Constraint):
                builder.add_constraint(value)
                continue
            template[key] = value
            if isinstance(value, Choice):
                builder.add(value, label_hint=key)
            elif isinstance(value, Expr):
                for i, leaf in enumerate(value.leaves()):
                    builder.add(leaf, label_hint=f"{key}.{i}")
        for c in constraints:
            builder.add_constraint(c)
        builder._fill(self)
        self._template = template

    # --- construction (shared with ModelSpace through SpaceBuilder) ---------------------

    def _init_from(self, entries: list[_Entry], aliases: dict[str, list[Choice]],
                   constraints: list[Constraint]) -> None:
        self._entries = entries
        self._aliases = aliases
        self._constraints = constraints
        self._template = {}
        self._index = {e.label: e for e in entries}
        self._simple = not constraints and all(e.conditions is None for e in entries)
        self._by_id: dict[int, str] | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_by_id"] = None  # object ids do not survive pickling
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    # --- inspection ---------------------------------------------------------------------

    def search_space(self) -> dict[str, Choice]:
        """``{label: choice}`` for every decision, parents before the choices they gate."""
        return {e.label: e.choice for e in self._entries}

    @property
    def labels(self) -> list[str]:
        """Every label, in sampling order."""
        return [e.label for e in self._entries]

    @property
    def constraints(self) -> list[Constraint]:
        """The constraints, in the order they were added."""
        return list(self._constraints)

    def conditions(self, label: str) -> list[Condition] | None:
        """When ``label`` is active: ``None`` for always, else a list of alternatives."""
        return self._entry(label).conditions

    def is_active(self, label: str, sample: Mapping[str, Any]) -> bool:
        """Whether ``label`` takes part in the architecture described by ``sample``."""
        return self._active(self._entry(label), sample)

    def size(self) -> int | None:
        """How many distinct samples exist before constraints; ``None`` if infinite or huge."""
        if any(e.choice.size() is None for e in self._entries):
            return None
        if all(e.conditions is None for e in self._entries):
            return math.prod(e.choice.size() or 1 for e in self._entries)
        parents = {p for e in self._entries for c in e.conditions or () for p, _ in c}
        gate = [e for e in self._entries if e.label in parents]
        total = 0
        for n, partial in enumerate(self._iter_grid(gate, granularity=2, check=False)):
            if n > 100_000:
                return None
            total += math.prod(
                e.choice.size() or 1
                for e in self._entries
                if e.label not in parents and self._active(e, partial)
            )
        return total

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, sample: object) -> bool:
        try:
            self.validate(sample)  # type: ignore[arg-type]
        except SampleValidationError:
            return False
        return True

    def __repr__(self) -> str:
        inner = ", ".join(f"{e.label!r}: {e.choice!r}" for e in self._entries)
        return f"SearchSpace({{{inner}}})"

    # --- sampling -----------------------------------------------------------------------

    def default(self) -> Sample:
        """Every active label at its default; the first grid point that satisfies the
        constraints if the defaults do not."""
        sample: Sample = {}
        for e in self._entries:
            if self._active(e, sample):
                sample[e.label] = e.choice.default()
        if self._satisfies(sample):
            return sample
        for s in self.grid():
            return s
        raise SpaceExhaustedError("no sample satisfies the constraints of this space")

    def random(
        self,
        seed: int | None = None,
        *,
        rng: random.Random | None = None,
        fixed: Mapping[str, Any] | None = None,
        max_tries: int = 1000,
    ) -> Sample:
        """A uniformly drawn sample that satisfies the constraints.

        ``fixed`` pins some labels (values used where the label is active); strategies use
        it to mutate or complete a sample. Raises ``SpaceExhaustedError`` after
        ``max_tries`` draws that all violate a constraint.
        """
        rng = rng if rng is not None else random.Random(seed)
        if self._simple and not fixed:
            return {e.label: e.choice.sample(rng) for e in self._entries}
        for _ in range(max_tries):
            sample: Sample = {}
            for e in self._entries:
                if self._active(e, sample):
                    if fixed is not None and e.label in fixed:
                        sample[e.label] = e.choice.canonical(fixed[e.label])
                    else:
                        sample[e.label] = e.choice.sample(rng)
            if self._satisfies(sample):
                return sample
        names = ", ".join(c.label for c in self._constraints)
        raise SpaceExhaustedError(
            f"{max_tries} random samples all violated the constraints ({names}); "
            "loosen the constraints or widen the space"
        )

    def grid(self, granularity: int = 2) -> Iterator[Sample]:
        """Every sample of a finite space (constraints applied), in a fixed order.

        Continuous ``Numerical`` choices contribute ``2**granularity + 1`` points each.
        """
        return self._iter_grid(self._entries, granularity, check=True)

    def _iter_grid(self, entries: list[_Entry], granularity: int, check: bool) -> Iterator[Sample]:
        if all(e.conditions is None for e in entries):
            labels = [e.label for e in entries]
            for combo in itertools.product(*(e.choice.grid(granularity) for e in entries)):
                sample = dict(zip(labels, combo, strict=True))
                if not check or self._satisfies(sample):
                    yield sample
            return
        partial: Sample = {}

        def rec(i: int) -> Iterator[Sample]:
            if i == len(entries):
                if not check or self._satisfies(partial):
                    yield dict(partial)
                return
            e = entries[i]
            if not self._active(e, partial):
                yield from rec(i + 1)
                return
            for value in e.choice.grid(granularity):
                partial[e.label] = value
                yield from rec(i + 1)
            del partial[e.label]

        yield from rec(0)

    # --- checking -----------------------------------------------------------------------

    def validate(self, sample: Mapping[str, Any]) -> None:
        """Raise ``SampleValidationError`` naming the label, the value and what is allowed
        unless ``sample`` is exactly a sample of this space."""
        self._check(sample, strict=True)

    def canonicalize(self, sample: Mapping[str, Any]) -> Sample:
        """The canonical form: inactive labels dropped, values in canonical spelling, labels
        in space order. Raises ``SampleValidationError`` for missing, unknown or bad labels
        and for violated constraints."""
        return self._check(sample, strict=False)

    def _check(self, sample: Mapping[str, Any], strict: bool) -> Sample:
        if not isinstance(sample, Mapping):
            raise SampleValidationError(None, sample, "a dict of label -> value",
                                        reason=f"expected a dict, got {type(sample).__name__}")
        index = self._index
        unknown = [k for k in sample if k not in index]
        if unknown:
            raise SampleValidationError(
                unknown[0], sample[unknown[0]], f"the labels {self.labels}",
                reason="no such label in this space (a typo?)",
            )
        out: Sample = {}
        for e in self._entries:
            value = sample.get(e.label, _MISSING)
            if e.conditions is not None and not self._active(e, out):
                if strict and value is not _MISSING:
                    raise SampleValidationError(
                        e.label, value, f"no value; it is only used when {self._describe(e)}",
                        reason=f"is inactive in this sample but has the value {value!r}"
                        " (space.canonicalize() drops inactive labels)",
                    )
                continue
            if value is _MISSING:
                raise SampleValidationError(e.label, None, e.choice.describe(),
                                            reason="is missing")
            try:
                out[e.label] = e.choice.normalize(value)
            except ValueError as exc:
                raise SampleValidationError(
                    e.label, value, e.choice.describe(), reason=str(exc)
                ) from None
        for c in self._constraints:
            if not self._holds(c, out):
                raise SampleValidationError(
                    c.label, out, f"samples for which constraint {c.label!r} holds",
                    reason=f"the sample {out!r} violates it", constraint=True,
                )
        return out

    def _describe(self, e: _Entry) -> str:
        alts = [
            " and ".join(f"{p} in {sorted(v, key=repr)}" for p, v in cond)
            for cond in e.conditions or []
        ]
        return " or ".join(alts)

    def _entry(self, label: str) -> _Entry:
        try:
            return self._index[label]
        except KeyError:
            raise SpaceError(f"no label {label!r} in this space; labels: {self.labels}") from None

    @staticmethod
    def _active(e: _Entry, sample: Mapping[str, Any]) -> bool:
        if e.conditions is None:
            return True
        return any(
            all(sample.get(p, _MISSING) in allowed for p, allowed in cond)
            for cond in e.conditions
        )

    def _satisfies(self, sample: Mapping[str, Any]) -> bool:
        return all(self._holds(c, sample) for c in self._constraints)

    def _holds(self, c: Constraint, sample: Mapping[str, Any]) -> bool:
        try:
            if isinstance(c.predicate, Expr):
                return bool(self.resolve(c.predicate, sample))
            return bool(c.predicate(dict(sample)))
        except (KeyError, SpaceError) as exc:
            raise SpaceError(
                f"constraint {c.label!r} could not be evaluated on {dict(sample)!r}: "
                f"{exc!r}; a constraint may only read labels that are active"
            ) from exc

    # --- resolving ----------------------------------------------------------------------

    def label_of(self, choice: Choice) -> str:
        """The label under which ``choice`` is decided in this space."""
        if self._by_id is None:
            self._by_id = {id(c): label for label, cs in self._aliases.items() for c in cs}
        try:
            return self._by_id[id(choice)]
        except KeyError:
            raise SpaceError(f"{choice!r} is not part of this search space") from None

    def resolve(self, value: Any, sample: Mapping[str, Any]) -> Any:
        """The concrete value of a choice, an expression or a constant under ``sample``."""
        if not isinstance(value, Expr):
            return value

        def lookup(choice: Choice) -> Any:
            label = self.label_of(choice)
            try:
                return sample[label]
            except KeyError:
                raise SpaceError(
                    f"label {label!r} is needed here but absent from the sample"
                ) from None

        return value.evaluate(lookup)

    def freeze(self, sample: Mapping[str, Any]) -> dict[str, Any]:
        """For a dict space: the dict with every choice and expression replaced by its value."""
        sample = self.canonicalize(sample)
        return {k: self.resolve(v, sample) for k, v in self._template.items()}


def _refuse_plain_values(space: Mapping[str, Any]) -> None:
    """A dict-space value that is no choice, expression or constraint would be searched
    by nobody and seen by no trial: refuse it, naming each key and the fix."""
    wrong = {k: v for k, v in space.items() if not isinstance(v, (Choice, Expr, Constraint))}
    if not wrong:
        return
    hints = []
    for key, value in wrong.items():
        if isinstance(value, (list, tuple)):
            hints.append(f"{key!r}: {value!r} is a plain list; to search it write "
                         f"nf.Categorical({list(value)!r})")
        else:
            hints.append(f"{key!r}: {value!r} is a constant; a dict space holds choices "
                         "only: pass constants to the evaluator (a closure or "
                         f"functools.partial), or write nf.Categorical([{value!r}])")
    raise SpaceBuildError("every value of a dict space must be a choice: " + "; ".join(hints))


class SpaceBuilder:
    """Collects choices (with where they are used) and constraints into a ``SearchSpace``."""

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._aliases: dict[str, list[Choice]] = {}
        self._labels: dict[int, str] = {}
        self._constraints: list[Constraint] = []

    def add(self, choice: Choice, *, label_hint: str, condition: Condition = ()) -> str:
        """Register a use of ``choice`` (active under ``condition``); returns its label.

        The label is the choice's own, else ``label_hint``. One object is one decision;
        two objects with one label share it if their domains agree, else this raises.
        """
        known = self._labels.get(id(choice))
        if known is not None:
            self._merge(self._entries[known], condition)
            return known
        label = choice.label or label_hint
        entry = self._entries.get(label)
        if entry is not None:
            if not entry.choice.same_domain(choice):
                origin = "the label" if choice.label else "the derived label"
                raise SpaceBuildError(
                    f"{origin} {label!r} is used by two different choices: "
                    f"{entry.choice!r} and {choice!r}. Give them different labels, or use "
                    "one choice object where you mean one decision."
                )
            self._aliases[label].append(choice)
            self._merge(entry, condition)
        else:
            self._entries[label] = _Entry(label, choice, None if not condition else [condition])
            self._aliases[label] = [choice]
        self._labels[id(choice)] = label
        return label

    def gate(self, parent: str, allowed: Iterable[Any], condition: Condition = ()) -> Condition:
        """``condition`` extended with ``parent in allowed`` (for choices nested under it)."""
        choice = self._entries[parent].choice
        if not isinstance(choice, Categorical):
            raise SpaceBuildError(f"only a Categorical can gate other choices, not {choice!r}")
        return (*condition, (parent, frozenset(allowed)))

    def add_constraint(self, constraint: Constraint) -> None:
        """Register a constraint; its label must be unique among constraints."""
        if not isinstance(constraint, Constraint):
            raise SpaceBuildError(f"expected a nasflow Constraint, got {constraint!r}")
        if any(c.label == constraint.label for c in self._constraints):
            raise SpaceBuildError(f"two constraints are labelled {constraint.label!r}")
        self._constraints.append(constraint)

    @staticmethod
    def _merge(entry: _Entry, condition: Condition) -> None:
        if entry.conditions is None:
            return
        if not condition:
            entry.conditions = None
        elif condition not in entry.conditions:
            entry.conditions.append(condition)

    def build(self) -> SearchSpace:
        """The finished space."""
        space = SearchSpace.__new__(SearchSpace)
        self._fill(space)
        return space

    def _fill(self, space: SearchSpace) -> None:
        # a gated choice must come after every choice that gates it (stable topological sort)
        pending = list(self._entries.values())
        ordered: list[_Entry] = []
        placed: set[str] = set()
        while pending:
            progress = False
            for e in list(pending):
                parents = {p for c in e.conditions or () for p, _ in c}
                if parents <= placed:
                    ordered.append(e)
                    placed.add(e.label)
                    pending.remove(e)
                    progress = True
            if not progress:
                raise SpaceBuildError(
                    f"choices gate each other in a cycle: {[e.label for e in pending]}"
                )
        space._init_from(ordered, dict(self._aliases), list(self._constraints))
