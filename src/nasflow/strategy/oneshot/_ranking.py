"""Ranking architectures by the probability a learned distribution gives them.

A differentiable strategy ends with one probability vector per label. An
architecture's probability is the product, over its *active* labels, of the
probability of its value (for an ``InputChoice``, of each chosen input). The ``k``
most probable valid architectures are found by a beam search over the labels in the
space's sampling order, skipping labels that the partial sample leaves inactive;
samples that violate a constraint are dropped.
"""

from __future__ import annotations

import logging
import math
from typing import Any, cast

from nasflow.exceptions import SampleValidationError
from nasflow.space import CategoricalMultiple, Sample, SearchSpace
from nasflow.strategy.oneshot._arch import MAX_COMBOS, LabelSpec

__all__ = ["Ranked", "top_by_probability"]

_log = logging.getLogger("nasflow.strategy.oneshot")

Ranked = tuple[Sample, float]
"""A canonical sample and its log-probability."""


def _options(spec: LabelSpec, probs: list[float]) -> list[tuple[Any, float]]:
    logp = [math.log(max(p, 1e-30)) for p in probs]
    if not spec.multiple:
        return [(v, lp) for v, lp in zip(spec.values, logp, strict=True)]
    subsets = spec.choice.grid()
    if len(subsets) > MAX_COMBOS:
        # too many subsets to list: the n_chosen most probable inputs only
        k = spec.n_chosen or 1
        best = sorted(range(spec.n), key=lambda i: -probs[i])[:k]
        subsets = [[spec.values[i] for i in sorted(best)]]
    choice = cast(CategoricalMultiple, spec.choice)
    return [(s, math.fsum(logp[choice._index(v)] for v in s)) for s in subsets]


def top_by_probability(space: SearchSpace, specs: dict[str, LabelSpec],
                       probs: dict[str, list[float]], k: int, *, beam: int | None = None
                       ) -> list[Ranked]:
    """The ``k`` most probable valid architectures, most probable first."""
    width = beam if beam is not None else max(64, 8 * k)
    beams: list[tuple[Sample, float]] = [({}, 0.0)]
    for label in space.labels:
        grown: list[tuple[Sample, float]] = []
        options = _options(specs[label], probs[label])
        for sample, score in beams:
            if not space.is_active(label, sample):
                grown.append((sample, score))
                continue
            for value, lp in options:
                grown.append(({**sample, label: value}, score + lp))
        grown.sort(key=lambda item: -item[1])
        beams = grown[:width]
    out: list[Ranked] = []
    for sample, score in beams:
        try:
            out.append((space.canonicalize(sample), score))
        except SampleValidationError:
            continue  # violates a constraint
        if len(out) == k:
            break
    if len(out) < k:
        _log.info("only %d valid architectures among the %d most probable", len(out), width)
    return out
