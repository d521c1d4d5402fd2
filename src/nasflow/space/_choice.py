"""Decisions: ``Categorical``, ``Numerical``, ``CategoricalMultiple``.

A choice is a leaf decision with a domain. Arithmetic on a choice builds an expression
(``nasflow.space._expr``) resolved when the space is frozen (``width * 2`` becomes ``64``
for ``width == 32``). A choice object's identity is its decision: one object used in
several places is one decision.
Choices hash by identity and never overload ``==``, so they stay usable as dict keys.
"""

from __future__ import annotations

import itertools
import math
import numbers
import random
from abc import abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any

import orjson

from nasflow.exceptions import SpaceBuildError
from nasflow.space._expr import Expr, Resolver

__all__ = ["Categorical", "CategoricalMultiple", "Choice", "Numerical"]


def _canonical_json(value: Any) -> bytes:
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError as exc:
        raise SpaceBuildError(
            f"choice value {value!r} is not JSON-serializable; samples must be plain "
            "JSON (numbers, strings, booleans, None, lists, dicts)"
        ) from exc


class Choice(Expr):
    """A leaf decision. ``label`` names it in samples; ``None`` means derive it from where
    the choice is used (the attribute path in a model space, the key in a dict space)."""

    __slots__ = ("default_value", "label")

    def __init__(self, label: str | None) -> None:
        if label is not None and (not isinstance(label, str) or not label):
            raise SpaceBuildError(f"a label must be a non-empty string, got {label!r}")
        self.label = label
        """The label given by the user, or ``None`` (derived when the space is built)."""

    def evaluate(self, resolve: Resolver) -> Any:
        return resolve(self)

    def leaves(self) -> Iterator[Choice]:
        yield self

    @abstractmethod
    def default(self) -> Any:
        """The value used by ``space.default()``."""

    @abstractmethod
    def sample(self, rng: random.Random) -> Any:
        """A value drawn uniformly (or log-uniformly) from the domain."""

    @abstractmethod
    def grid(self, granularity: int = 2) -> list[Any]:
        """The values a grid search visits; every value for a finite domain."""

    @abstractmethod
    def check(self, value: Any) -> str | None:
        """``None`` if ``value`` is in the domain, else what is wrong with it, in words."""

    @abstractmethod
    def canonical(self, value: Any) -> Any:
        """The canonical spelling of an in-domain value (e.g. ``1.0`` → ``1``)."""

    def normalize(self, value: Any) -> Any:
        """``canonical(value)``, or ``ValueError`` saying what is wrong with it."""
        problem = self.check(value)
        if problem is not None:
            raise ValueError(problem)
        return self.canonical(value)

    @abstractmethod
    def describe(self) -> str:
        """The domain in words, for error messages."""

    @abstractmethod
    def size(self) -> int | None:
        """The number of values, or ``None`` when the domain is continuous."""

    def same_domain(self, other: Choice) -> bool:
        """Whether two choices may share one label (same kind, same domain)."""
        return type(self) is type(other) and self.describe() == other.describe()

    def __repr__(self) -> str:
        name = f", label={self.label!r}" if self.label else ""
        return f"{type(self).__name__}({self.describe()}{name})"


def _refuse_positional(values: Any, positional: tuple[Any, ...]) -> None:
    """``Categorical("width", [16, 32])`` is NNI's ``nni.choice(label, values)`` order."""
    if len(positional) == 1 and isinstance(values, str) and not isinstance(
            positional[0], str):
        raise TypeError(
            f"Categorical({values!r}, {positional[0]!r}): the label comes second, by "
            f"name, in nasflow: Categorical({positional[0]!r}, label={values!r}) (NNI's "
            "nni.choice(label, values) order is reversed)")
    raise TypeError(
        f"Categorical takes the values and then keywords only, got "
        f"{len(positional)} more positional argument(s) {positional!r}: write "
        "Categorical(values, label=..., default=..., weights=...)")


class Categorical(Choice):
    """One value out of a list: ``Categorical([16, 32, 64], label="width")``."""

    __slots__ = ("_fast", "_keys", "values", "weights")

    def __init__(
        self,
        values: Sequence[Any],
        *positional: Any,
        label: str | None = None,
        default: Any = None,
        weights: Sequence[float] | None = None,
    ) -> None:
        if positional:
            _refuse_positional(values, positional)
        super().__init__(label)
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
            values = list(values) if not isinstance(values, (str, bytes)) else [values]
        values = list(values)
        if not values:
            raise SpaceBuildError(f"Categorical {label or ''}: needs at least one value")
        keys = [_canonical_json(v) for v in values]
        if len(set(keys)) != len(keys):
            dup = next(v for v, k in zip(values, keys, strict=True) if keys.count(k) > 1)
            raise SpaceBuildError(
                f"Categorical {label or ''}: values must be unique, {dup!r} repeats"
            )
        for v in values:
            if isinstance(v, Expr):
                raise SpaceBuildError("Categorical values must be plain values, not choices")
        self.values: list[Any] = values
        """The candidate values, in order."""
        self._keys = {k: i for i, k in enumerate(keys)}
        # fast path for the common case of hashable scalar values; keyed by type too, so
        # that 1, 1.0 and True stay distinct
        self._fast: dict[tuple[type, Any], int] = {
            (type(v), v): i for i, v in enumerate(values)
            if isinstance(v, (int, float, str, bool)) or v is None
        }
        if weights is not None:
            w = [float(x) for x in weights]
            if len(w) != len(values) or any(x < 0 for x in w) or not math.isclose(sum(w), 1.0):
                raise SpaceBuildError(
                    f"Categorical {label or ''}: weights must be {len(values)} non-negative "
                    f"numbers summing to 1, got {list(weights)!r}"
                )
            self.weights: list[float] | None = w
        else:
            self.weights = None
        if default is not None and _canonical_json(default) not in self._keys:
            raise SpaceBuildError(
                f"Categorical {label or ''}: default {default!r} is not one of {values!r}"
            )
        self.default_value = default

    def index(self, value: Any) -> int:
        """The position of ``value`` in ``values``; ``ValueError`` if absent."""
        try:
            return self._fast[(type(value), value)]
        except (KeyError, TypeError):
            pass
        try:
            return self._keys[_canonical_json(value)]
        except (KeyError, SpaceBuildError):
            raise ValueError(f"{value!r} is not one of {self.values!r}") from None

    def default(self) -> Any:
        return self.values[0] if self.default_value is None else self.default_value

    def sample(self, rng: random.Random) -> Any:
        if self.weights is None:
            return self.values[rng.randrange(len(self.values))]
        return rng.choices(self.values, weights=self.weights)[0]

    def grid(self, granularity: int = 2) -> list[Any]:
        return list(self.values)

    def check(self, value: Any) -> str | None:
        try:
            self.index(value)
        except ValueError:
            return f"{value!r} is not one of the choices"
        return None

    def canonical(self, value: Any) -> Any:
        return self.values[self.index(value)]

    def normalize(self, value: Any) -> Any:
        try:
            return self.values[self.index(value)]
        except ValueError:
            raise ValueError(f"{value!r} is not one of the choices") from None

    def describe(self) -> str:
        return repr(self.values)

    def size(self) -> int:
        return len(self.values)


def _is_number(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


class Numerical(Choice):
    """A number in ``[low, high]``, uniform or log-uniform, optionally quantized.

    ``quantize=q`` rounds to multiples of ``q`` (clipped to the bounds); with integer
    ``low``, ``high`` and ``q`` the values are ints.
    """

    __slots__ = ("high", "log", "low", "quantize")

    def __init__(
        self,
        low: float,
        high: float,
        *,
        label: str | None = None,
        log: bool = False,
        quantize: float | None = None,
        default: float | None = None,
    ) -> None:
        super().__init__(label)
        name = f"Numerical {label}" if label else "Numerical"
        if not (_is_number(low) and _is_number(high)):
            raise SpaceBuildError(f"{name}: low and high must be numbers, got {low!r}, {high!r}")
        if not (math.isfinite(low) and math.isfinite(high)) or not low < high:
            raise SpaceBuildError(f"{name}: needs finite low < high, got [{low!r}, {high!r}]")
        if log and low <= 0:
            raise SpaceBuildError(f"{name}: log=True needs low > 0, got low={low!r}")
        if quantize is not None and not (_is_number(quantize) and quantize > 0):
            raise SpaceBuildError(f"{name}: quantize must be a positive number, got {quantize!r}")
        self.low = low
        self.high = high
        self.log = bool(log)
        self.quantize = quantize
        if quantize is not None and self._quantized_values(1) == []:
            raise SpaceBuildError(
                f"{name}: no multiple of quantize={quantize} lies in [{low}, {high}]"
            )
        self.default_value = None
        if default is not None:
            problem = self.check(default)
            if problem:
                raise SpaceBuildError(f"{name}: default {default!r} is outside {self.describe()}")
            self.default_value = self.canonical(default)

    @property
    def is_int(self) -> bool:
        """Whether every value is an int (integer bounds and an integer quantum)."""
        return all(isinstance(x, int) for x in (self.low, self.high, self.quantize))

    def _finish(self, x: float) -> float:
        if self.quantize is not None:
            q = self.quantize
            x = round(x / q) * q
            # stay inside the bounds on the quantum grid
            while x > self.high:
                x -= q
            while x < self.low:
                x += q
            x = min(max(x, self.low), self.high)
            if self.is_int:
                return round(x)
            return float(round(x, 12))
        return min(max(float(x), self.low), self.high)

    def default(self) -> float:
        if self.default_value is not None:
            return self.default_value
        mid = math.sqrt(self.low * self.high) if self.log else (self.low + self.high) / 2
        return self._finish(mid)

    def sample(self, rng: random.Random) -> float:
        if self.log:
            x = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        else:
            x = rng.uniform(self.low, self.high)
        return self._finish(x)

    def _quantized_values(self, limit: int) -> list[float] | None:
        if self.quantize is None:
            return None
        q = self.quantize
        first = math.ceil(self.low / q - 1e-9)
        last = math.floor(self.high / q + 1e-9)
        if last - first + 1 > limit:
            return None
        return sorted({self._finish(k * q) for k in range(first, last + 1)})

    def grid(self, granularity: int = 2) -> list[float]:
        points = 2**granularity + 1
        exact = self._quantized_values(points)
        if exact is not None:
            return exact
        lo, hi = (math.log(self.low), math.log(self.high)) if self.log else (self.low, self.high)
        out: list[float] = []
        for i in range(points):
            if i in (0, points - 1):  # exact bounds, free of log/exp rounding
                v = self._finish(self.low if i == 0 else self.high)
            else:
                x = lo + (hi - lo) * i / (points - 1)
                v = self._finish(math.exp(x) if self.log else x)
            if v not in out:
                out.append(v)
        return out

    def check(self, value: Any) -> str | None:
        if not _is_number(value):
            return f"{value!r} is not a number"
        if not math.isfinite(value) or not self.low <= value <= self.high:
            return f"{value!r} is out of range"
        if self.quantize is not None:
            # the grid is multiples of quantize (clipped to the bounds), as sampling makes it
            k = value / self.quantize
            on_grid = math.isclose(k, round(k), abs_tol=1e-6)
            if not on_grid:
                return f"{value!r} is not on the quantize={self.quantize} grid"
        return None

    def canonical(self, value: Any) -> Any:
        if self.quantize is not None:
            return self._finish(value)
        return float(value)

    def describe(self) -> str:
        parts = [f"[{self.low}, {self.high}]"]
        if self.log:
            parts.append("log")
        if self.quantize is not None:
            parts.append(f"quantize={self.quantize}")
        return " ".join(parts)

    def size(self) -> int | None:
        exact = self._quantized_values(1_000_000)
        return None if exact is None else len(exact)


class CategoricalMultiple(Choice):
    """Several distinct values out of a list, as a list in the list's order.

    ``n_chosen=None`` accepts any non-empty subset. ``InputChoice`` is built on it.
    """

    __slots__ = ("n_chosen", "values")

    def __init__(
        self,
        values: Sequence[Any],
        *,
        n_chosen: int | None = None,
        label: str | None = None,
        default: Sequence[Any] | None = None,
    ) -> None:
        super().__init__(label)
        self.values = list(values)
        name = f"CategoricalMultiple {label}" if label else "CategoricalMultiple"
        if not self.values:
            raise SpaceBuildError(f"{name}: needs at least one value")
        if len({_canonical_json(v) for v in self.values}) != len(self.values):
            raise SpaceBuildError(f"{name}: values must be unique, got {self.values!r}")
        if n_chosen is not None and not (
            isinstance(n_chosen, int) and 1 <= n_chosen <= len(self.values)
        ):
            raise SpaceBuildError(
                f"{name}: n_chosen must be between 1 and {len(self.values)}, got {n_chosen!r}"
            )
        self.n_chosen = n_chosen
        self.default_value = None
        if default is not None:
            if self.check(list(default)):
                raise SpaceBuildError(f"{name}: default {default!r} is not allowed")
            self.default_value = self.canonical(list(default))

    def _index(self, value: Any) -> int:
        key = _canonical_json(value)
        for i, v in enumerate(self.values):
            if _canonical_json(v) == key:
                return i
        raise ValueError(value)

    def default(self) -> list[Any]:
        if self.default_value is not None:
            return list(self.default_value)
        return self.values[: self.n_chosen or 1]

    def sample(self, rng: random.Random) -> list[Any]:
        k = self.n_chosen or rng.randint(1, len(self.values))
        picked = sorted(rng.sample(range(len(self.values)), k))
        return [self.values[i] for i in picked]

    def grid(self, granularity: int = 2) -> list[list[Any]]:
        sizes = [self.n_chosen] if self.n_chosen else range(1, len(self.values) + 1)
        return [
            [self.values[i] for i in combo]
            for k in sizes
            for combo in itertools.combinations(range(len(self.values)), k)
        ]

    def check(self, value: Any) -> str | None:
        if not isinstance(value, (list, tuple)):
            return f"{value!r} is not a list"
        try:
            idx = [self._index(v) for v in value]
        except (ValueError, SpaceBuildError):
            return f"{value!r} contains a value that is not a candidate"
        if len(set(idx)) != len(idx):
            return f"{value!r} repeats a value"
        if self.n_chosen is not None and len(idx) != self.n_chosen:
            return f"{value!r} has {len(idx)} values, not {self.n_chosen}"
        if not idx:
            return f"{value!r} is empty"
        return None

    def canonical(self, value: Any) -> list[Any]:
        return [self.values[i] for i in sorted(self._index(v) for v in value)]

    def describe(self) -> str:
        n = self.n_chosen if self.n_chosen is not None else "1+"
        return f"{n} of {self.values!r}"

    def size(self) -> int:
        n = len(self.values)
        if self.n_chosen is not None:
            return math.comb(n, self.n_chosen)
        return 2**n - 1
