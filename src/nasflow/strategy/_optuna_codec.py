"""Between nasflow samples and Optuna parameters (see ``OptunaSampler`` for the mapping)."""

from __future__ import annotations

import math
from typing import Any

import orjson

from nasflow.exceptions import SpaceError
from nasflow.space import Categorical, CategoricalMultiple, Choice, Numerical, Sample, SearchSpace

__all__ = ["Codec"]

_SUBSETS_AS_ONE = 64
"""A ``CategoricalMultiple`` with at most this many subsets is one categorical parameter."""
_PRIMITIVE = (type(None), bool, int, float, str)


class _Param:
    """How one label is suggested, and its value in Optuna's terms and back."""

    def names(self) -> list[str]:
        raise NotImplementedError

    def suggest(self, trial: Any) -> Any:
        raise NotImplementedError

    def encode(self, value: Any) -> dict[str, Any]:
        raise NotImplementedError

    def decode(self, params: dict[str, Any]) -> Any:
        raise NotImplementedError

    def distributions(self) -> dict[str, Any]:
        raise NotImplementedError


class _Categorical(_Param):
    def __init__(self, label: str, choice: Categorical) -> None:
        self.label, self.choice = label, choice
        values = choice.values
        # Optuna compares choices with ==: 1, 1.0 and True would collide; lists are not
        # valid Optuna choices at all. Either way, suggest the index.
        self.by_index = not all(isinstance(v, _PRIMITIVE) for v in values) or len(
            {(v if not isinstance(v, float) or not math.isnan(v) else "nan") for v in values}
        ) != len(values)
        self.options = list(range(len(values))) if self.by_index else list(values)

    def names(self) -> list[str]:
        return [self.label]

    def suggest(self, trial: Any) -> Any:
        picked = trial.suggest_categorical(self.label, self.options)
        return self.choice.values[picked] if self.by_index else picked

    def encode(self, value: Any) -> dict[str, Any]:
        index = self.choice.index(value)
        return {self.label: index if self.by_index else self.choice.values[index]}

    def decode(self, params: dict[str, Any]) -> Any:
        picked = params[self.label]
        return self.choice.values[picked] if self.by_index else picked

    def distributions(self) -> dict[str, Any]:
        from optuna.distributions import CategoricalDistribution

        return {self.label: CategoricalDistribution(self.options)}


class _Numerical(_Param):
    def __init__(self, label: str, choice: Numerical) -> None:
        self.label, self.choice = label, choice
        q = choice.quantize
        if q is not None:  # the multiples of q inside the bounds, as an int parameter
            self.kmin = math.ceil(choice.low / q - 1e-9)
            self.kmax = math.floor(choice.high / q + 1e-9)

    def names(self) -> list[str]:
        return [self.label]

    def suggest(self, trial: Any) -> Any:
        c = self.choice
        if c.quantize is None:
            return c.canonical(trial.suggest_float(self.label, c.low, c.high, log=c.log))
        k = trial.suggest_int(self.label, self.kmin, self.kmax, log=c.log)
        return c.canonical(k * c.quantize)

    def encode(self, value: Any) -> dict[str, Any]:
        c = self.choice
        if c.quantize is None:
            return {self.label: float(value)}
        return {self.label: min(max(round(value / c.quantize), self.kmin), self.kmax)}

    def decode(self, params: dict[str, Any]) -> Any:
        c = self.choice
        x = params[self.label]
        return c.canonical(x if c.quantize is None else x * c.quantize)

    def distributions(self) -> dict[str, Any]:
        from optuna.distributions import FloatDistribution, IntDistribution

        c = self.choice
        if c.quantize is None:
            return {self.label: FloatDistribution(c.low, c.high, log=c.log)}
        return {self.label: IntDistribution(self.kmin, self.kmax, log=c.log)}


class _Subset(_Param):
    def __init__(self, label: str, choice: CategoricalMultiple) -> None:
        self.label, self.choice = label, choice
        self.as_one = choice.size() <= _SUBSETS_AS_ONE
        if self.as_one:
            self.subsets = choice.grid()
            self.keys = {_key(s): i for i, s in enumerate(self.subsets)}
        else:
            self.score_names = [f"{label}:{i}" for i in range(len(choice.values))]

    def names(self) -> list[str]:
        return [self.label] if self.as_one else list(self.score_names)

    def suggest(self, trial: Any) -> Any:
        if self.as_one:
            return self.subsets[trial.suggest_categorical(self.label,
                                                          list(range(len(self.subsets))))]
        return self._pick([trial.suggest_float(n, 0.0, 1.0) for n in self.score_names])

    def _pick(self, scores: list[float]) -> list[Any]:
        n, values = self.choice.n_chosen, self.choice.values
        order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
        picked = order[:n] if n is not None else [i for i in order if scores[i] > 0.5]
        return [values[i] for i in sorted(picked or order[:1])]

    def encode(self, value: Any) -> dict[str, Any]:
        canonical = self.choice.canonical(value)
        if self.as_one:
            return {self.label: self.keys[_key(canonical)]}
        chosen = {_key(v) for v in canonical}
        return {n: 0.75 if _key(v) in chosen else 0.25
                for n, v in zip(self.score_names, self.choice.values, strict=True)}

    def decode(self, params: dict[str, Any]) -> Any:
        if self.as_one:
            return self.subsets[params[self.label]]
        return self._pick([params[n] for n in self.score_names])

    def distributions(self) -> dict[str, Any]:
        from optuna.distributions import CategoricalDistribution, FloatDistribution

        if self.as_one:
            return {self.label: CategoricalDistribution(list(range(len(self.subsets))))}
        return {n: FloatDistribution(0.0, 1.0) for n in self.score_names}


def _key(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def _param(label: str, choice: Choice) -> _Param:
    if isinstance(choice, Categorical):
        return _Categorical(label, choice)
    if isinstance(choice, Numerical):
        return _Numerical(label, choice)
    if isinstance(choice, CategoricalMultiple):
        return _Subset(label, choice)
    raise SpaceError(f"label {label!r}: Optuna samplers cannot search a {type(choice).__name__}")


class Codec:
    """Suggests a sample define-by-run (only labels active given the earlier choices) and
    turns samples into Optuna parameters and back."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        self.params = {label: _param(label, c) for label, c in space.search_space().items()}
        names = [n for p in self.params.values() for n in p.names()]
        if len(set(names)) != len(names):
            clash = sorted({n for n in names if names.count(n) > 1})
            raise SpaceError(
                f"the Optuna parameter names {clash} are used twice (a label looks like "
                "'<other label>:<i>'); rename the label"
            )

    def suggest(self, trial: Any) -> Sample:
        """A sample suggested by ``trial`` (not yet checked against constraints)."""
        sample: Sample = {}
        for label, p in self.params.items():
            if self.space.is_active(label, sample):
                sample[label] = p.suggest(trial)
        return sample

    def encode(self, sample: Sample) -> dict[str, Any]:
        """Optuna's parameters for ``sample``."""
        out: dict[str, Any] = {}
        for label, value in sample.items():
            out.update(self.params[label].encode(value))
        return out

    def distributions(self, sample: Sample) -> dict[str, Any]:
        """The distributions of ``encode(sample)``'s parameters."""
        out: dict[str, Any] = {}
        for label in sample:
            out.update(self.params[label].distributions())
        return out

    def decode(self, params: dict[str, Any]) -> Sample:
        """The sample that ``params`` stand for."""
        sample: Sample = {}
        for label, p in self.params.items():
            if self.space.is_active(label, sample) and all(n in params for n in p.names()):
                sample[label] = p.decode(params)
        return sample
