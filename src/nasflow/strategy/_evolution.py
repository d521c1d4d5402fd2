"""``RegularizedEvolution``: aging evolution (Real et al., 2019), asynchronous."""

from __future__ import annotations

import random
from collections import deque
from typing import Any

from nasflow._kernel import TrialState
from nasflow.space import Sample
from nasflow.strategy._base import (
    FrozenTrial,
    Strategy,
    StrategyContext,
    rng_from_state,
    rng_state,
)
from nasflow.strategy._sampling import crossover, draw_unseen, mutate, steady_proposals

__all__ = ["RegularizedEvolution"]



class RegularizedEvolution(Strategy):
    """Aging evolution: tournament selection, mutation, and the oldest member dies.

    The first ``population_size`` members are random trials, or results given to the
    experiment (``exp.add_results``, ``warm_start``, enqueued samples), which take the
    place of random ones. From then on, each time a worker is
    free (steady state, no generations) the best of ``sample_size`` random members of the
    population is mutated -- each active label redrawn with probability
    ``mutation_prob``, and at least one label always changes -- and the child is
    submitted. With ``crossover`` the child mixes two tournament winners label by label
    before the mutation. Conditional labels: a mutated label may activate choices (they
    are drawn at random) or deactivate them (they are dropped).

    Only trials that SUCCEEDED with a metric join the population, ranked by the primary
    objective in the experiment's direction; failed, early-stopped and cancelled trials
    do not (unlike NNI, where failed models with a metric joined it).

    With ``dedup`` a child equal to a submitted sample is bred again (it never costs a
    trial); after ``patience`` repeats in a row a random unseen sample is taken instead,
    and the search ends once the space has no unseen sample left.
    """

    def __init__(
        self,
        population_size: int = 100,
        sample_size: int = 25,
        mutation_prob: float = 0.05,
        crossover: bool = False,
        dedup: bool = True,
        seed: int | None = None,
        patience: int = 100,
    ) -> None:
        if not (isinstance(population_size, int) and population_size >= 1):
            raise ValueError(f"population_size must be a positive int, got {population_size!r}")
        if not (isinstance(sample_size, int) and 1 <= sample_size <= population_size):
            raise ValueError(
                f"sample_size must be an int in [1, population_size={population_size}], "
                f"got {sample_size!r}"
            )
        if not 0.0 <= mutation_prob <= 1.0:
            raise ValueError(f"mutation_prob must be in [0, 1], got {mutation_prob!r}")
        self.population_size = population_size
        self.sample_size = sample_size
        self.mutation_prob = mutation_prob
        self.crossover = crossover
        self.dedup = dedup
        self.seed = seed
        self.patience = patience
        self._rng = random.Random(seed)
        self._population: deque[tuple[Sample, float]] = deque()
        self._random_submitted = 0

    async def run(self, ctx: StrategyContext) -> None:
        async for sample in steady_proposals(ctx, self._add, self._propose, dedup=self.dedup,
                                             name="regularized evolution"):
            await ctx.submit(sample)

    # --- the algorithm ------------------------------------------------------------------

    def _add(self, ctx: StrategyContext, record: FrozenTrial) -> None:
        if record.state is not TrialState.SUCCEEDED or record.metric is None:
            return
        if record.origin is not None and self._random_submitted < self.population_size:
            self._random_submitted += 1  # a given result: one random member fewer to draw
        self._population.append((record.sample, ctx.objective.score(record.metric)))
        while len(self._population) > self.population_size:
            self._population.popleft()  # aging: the oldest dies, however good

    def _propose(self, ctx: StrategyContext) -> Sample | None:
        rng = self._rng
        seen = ctx.seen if self.dedup else _never
        if self._random_submitted < self.population_size or not self._population:
            self._random_submitted += 1
            return draw_unseen(ctx.space, rng, seen)
        for _ in range(self.patience):
            parent = self._tournament()
            if self.crossover:
                other = self._tournament()
                parent = crossover(ctx.space, parent, other, rng) or parent
            child = mutate(ctx.space, parent, rng, self.mutation_prob)
            if child is not None and not seen(child):
                return child
        # the population's neighbourhood is used up: explore elsewhere
        return draw_unseen(ctx.space, rng, seen)

    def _tournament(self) -> Sample:
        members = list(self._population)
        picked = self._rng.sample(range(len(members)), min(self.sample_size, len(members)))
        best = max(picked, key=lambda i: members[i][1])  # the first of equals wins
        return members[best][0]

    # --- state --------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "rng": rng_state(self._rng),
            "population": [[sample, score] for sample, score in self._population],
            "random_submitted": self._random_submitted,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._rng = rng_from_state(state["rng"])
        self._population = deque((dict(s), float(v)) for s, v in state["population"])
        self._random_submitted = int(state["random_submitted"])

    def __repr__(self) -> str:
        return (f"RegularizedEvolution(population_size={self.population_size}, "
                f"sample_size={self.sample_size}, mutation_prob={self.mutation_prob}, "
                f"crossover={self.crossover}, dedup={self.dedup}, seed={self.seed})")


def _never(sample: Sample) -> bool:
    return False
