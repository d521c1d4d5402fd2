"""``GridSearch``: every sample of the space, in order or shuffled."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from nasflow._nni import nni_arguments
from nasflow.space import Sample, SearchSpace
from nasflow.strategy._base import Strategy, StrategyContext, rng_from_state, rng_state

__all__ = ["GridSearch"]

_MAX_GRANULARITY = 16


class GridSearch(Strategy):
    """Exhaustive search over the grid of the space.

    A finite space is visited once, then the search ends. Continuous ``Numerical``
    choices are gridded at growing granularity (3, 5, 9, ... points), each round visiting
    only new points. ``shuffle`` visits samples in a random order (shuffled in buffers of
    ``buffer`` samples, so huge grids need no memory). Samples already submitted, also
    before a resume, are skipped.
    """

    @nni_arguments({"dedup": "it never submits a sample twice (samples submitted before, "
                             "also before a resume, are skipped): drop dedup="})
    def __init__(self, shuffle: bool = False, seed: int | None = None, buffer: int = 1000) -> None:
        self.shuffle = shuffle
        self.seed = seed
        self.buffer = buffer
        # the order is replayed from the start on resume (seen samples are skipped), so
        # the state is the generator's *initial* state
        self._initial = rng_state(random.Random(seed))
        self._rng = rng_from_state(self._initial)

    async def run(self, ctx: StrategyContext) -> None:
        self._rng = rng_from_state(self._initial)
        for sample in self._samples(ctx.space):
            if ctx.budget.exhausted:
                return
            if not ctx.seen(sample):
                await ctx.submit(sample)

    def _samples(self, space: SearchSpace) -> Iterator[Sample]:
        finite = space.size() is not None
        for granularity in range(1, _MAX_GRANULARITY + 1):
            grid = space.grid(granularity)
            yield from self._shuffled(grid) if self.shuffle else grid
            if finite:
                return

    def _shuffled(self, samples: Iterator[Sample]) -> Iterator[Sample]:
        buf: list[Sample] = []
        for s in samples:
            buf.append(s)
            if len(buf) >= self.buffer:
                self._rng.shuffle(buf)
                yield from buf
                buf = []
        self._rng.shuffle(buf)
        yield from buf

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self._initial}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._initial = state["rng"]

    def __repr__(self) -> str:
        return f"GridSearch(shuffle={self.shuffle}, seed={self.seed})"
