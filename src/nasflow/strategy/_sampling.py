"""What the multi-trial strategies share: the steady-state loop, unseen random draws, space
exhaustion, mutation, crossover and one-label neighbourhoods.

Every move respects conditional labels the same way: change the labels it changes, then
let ``space.random(fixed=...)`` keep what is still active, draw labels that just became
active, and drop those that became inactive; constraints are checked there too.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from nasflow.exceptions import SpaceExhaustedError
from nasflow.space import Categorical, CategoricalMultiple, Choice, Numerical, Sample, SearchSpace
from nasflow.space import sample_hash as _hash

if TYPE_CHECKING:
    from nasflow.strategy._base import FrozenTrial, StrategyContext

__all__ = [
    "ENUMERATE_LIMIT",
    "SpaceTracker",
    "complete",
    "steady_proposals",
    "crossover",
    "draw_unseen",
    "mutate",
    "neighbours",
]

_log = logging.getLogger("nasflow.strategy")
T = TypeVar("T")

ENUMERATE_LIMIT = 100_000
"""A finite space this small is enumerated once random draws stop finding new samples."""


async def steady_proposals(
    ctx: StrategyContext, tell: Callable[[StrategyContext, FrozenTrial], None],
    propose: Callable[[StrategyContext], T | None], *, dedup: bool, name: str,
) -> AsyncIterator[T]:
    """The asynchronous steady-state loop: once a trial can start, ``tell`` the strategy
    every result that came in, then yield its next proposal (the caller submits it).

    Ends when the budget is spent, the space is exhausted, or ``propose`` has nothing.
    """
    tracker = SpaceTracker(ctx.space)
    while True:
        if ctx.budget.exhausted:
            return
        await ctx.wait_capacity()
        for record in ctx.take_results():
            tell(ctx, record)
        if ctx.budget.exhausted:
            return
        if dedup and tracker.exhausted(ctx.distinct_submitted):
            _log.info("%s: every sample of the space was tried", name)
            return
        proposal = propose(ctx)
        if proposal is None:
            _log.info("%s: no unseen sample is left", name)
            return
        yield proposal


class SpaceTracker:
    """Knows when every sample of a space was submitted.

    Only an unconstrained finite space can be counted up front (``space.size()`` counts
    before constraints); a constrained one is found exhausted by ``draw_unseen``.
    """

    def __init__(self, space: SearchSpace) -> None:
        self.size = None if space.constraints else space.size()

    def exhausted(self, distinct_submitted: int) -> bool:
        """Whether ``distinct_submitted`` covers the whole space."""
        return self.size is not None and distinct_submitted >= self.size


def complete(space: SearchSpace, rng: random.Random, fixed: dict[str, Any],
             tries: int = 5) -> Sample | None:
    """``fixed`` made a valid sample (see the module docstring), or ``None`` when the
    constraints reject it."""
    try:
        return space.random(rng=rng, fixed=fixed, max_tries=tries)
    except SpaceExhaustedError:
        return None


def draw_unseen(space: SearchSpace, rng: random.Random, seen: Callable[[Sample], bool],
                tries: int = 200) -> Sample | None:
    """A random sample not yet ``seen``; ``None`` when there is none left (or the
    constraints reject every draw)."""
    for _ in range(tries):
        try:
            sample = space.random(rng=rng)
        except SpaceExhaustedError:
            return None
        if not seen(sample):
            return sample
    # nearly exhausted: a small space is listed once rather than drawn from blindly
    size = space.size()
    if size is None or size > ENUMERATE_LIMIT:
        return None
    left = [s for s in space.grid() if not seen(s)]
    return rng.choice(left) if left else None


def mutate(space: SearchSpace, parent: Sample, rng: random.Random, prob: float) -> Sample | None:
    """Each active label of ``parent`` redrawn with probability ``prob`` (at least one,
    to a different value where it has one), then completed."""
    choices = space.search_space()
    labels = [label for label in parent if _size(choices[label]) != 1]
    if not labels:
        return None
    picked = [label for label in labels if rng.random() < prob] or [rng.choice(labels)]
    child = dict(parent)
    for label in picked:
        child[label] = _other_value(choices[label], parent[label], rng)
    return complete(space, rng, child)


def crossover(space: SearchSpace, a: Sample, b: Sample, rng: random.Random) -> Sample | None:
    """Each label from ``a`` or ``b`` with equal odds (a label only one of them has comes
    from it), then completed."""
    child = {}
    for label in space.labels:
        if label in a and label in b:
            child[label] = (a if rng.random() < 0.5 else b)[label]
        elif label in a or label in b:
            child[label] = a[label] if label in a else b[label]
    return complete(space, rng, child)


def neighbours(space: SearchSpace, sample: Sample, rng: random.Random) -> list[Sample]:
    """Every valid sample that differs from ``sample`` in one of its labels (labels that
    this change activates are drawn at random), in space order, without repeats."""
    choices = space.search_space()
    out: list[Sample] = []
    known = {_hash(sample)}
    for label, value in sample.items():
        for other in _alternatives(choices[label], value):
            candidate = complete(space, rng, {**sample, label: other}, tries=3)
            if candidate is None:
                continue
            h = _hash(candidate)
            if h not in known:
                known.add(h)
                out.append(candidate)
    return out


# --- per choice ---------------------------------------------------------------------------------

def _size(choice: Choice) -> int | None:
    return choice.size()


def _other_value(choice: Choice, value: Any, rng: random.Random) -> Any:
    """A random value of ``choice`` different from ``value`` (when there is one)."""
    for _ in range(20):
        new = choice.sample(rng)
        if new != value:
            return new
    return value


def _alternatives(choice: Choice, value: Any) -> Iterator[Any]:
    """The values one step away from ``value``."""
    if isinstance(choice, Categorical):
        index = choice.index(value)
        yield from (v for i, v in enumerate(choice.values) if i != index)
    elif isinstance(choice, Numerical):
        yield from _numeric_steps(choice, value)
    elif isinstance(choice, CategoricalMultiple):
        yield from _subset_steps(choice, value)
    else:  # a choice kind this module does not know: every other grid value
        yield from (v for v in choice.grid() if v != value)


def _numeric_steps(choice: Numerical, value: float) -> Iterator[float]:
    """The neighbouring quanta, or a step of 1/8 of the (log) range each way."""
    if choice.quantize is not None:
        for direction in (-1, 1):
            candidate = choice.canonical(value + direction * choice.quantize)
            if candidate != value and choice.check(candidate) is None:
                yield candidate
        return
    lo, hi = choice.low, choice.high
    for direction in (-1, 1):
        if choice.log:
            x = math.exp(math.log(value) + direction * (math.log(hi) - math.log(lo)) / 8)
        else:
            x = value + direction * (hi - lo) / 8
        x = min(max(x, lo), hi)
        if x != value:
            yield choice.canonical(x)


def _subset_steps(choice: CategoricalMultiple, value: list[Any]) -> Iterator[list[Any]]:
    """One candidate in or out (any size), or one swapped (``n_chosen`` fixed)."""
    chosen = [i for i, v in enumerate(choice.values) if v in value]
    others = [i for i in range(len(choice.values)) if i not in chosen]
    if choice.n_chosen is None:
        for i in range(len(choice.values)):
            picked = [j for j in chosen if j != i] if i in chosen else sorted([*chosen, i])
            if picked:
                yield [choice.values[j] for j in picked]
        return
    for out in chosen:
        for into in others:
            picked = sorted([j for j in chosen if j != out] + [into])
            yield [choice.values[j] for j in picked]
