"""``Random``: uniform samples, de-duplicated, until the budget or the space runs out."""

from __future__ import annotations

import logging
import random
from typing import Any

from nasflow.exceptions import SpaceExhaustedError
from nasflow.strategy._base import Strategy, StrategyContext, rng_from_state, rng_state

__all__ = ["Random"]

_log = logging.getLogger("nasflow.strategy")


class Random(Strategy):
    """Uniform random search.

    With ``dedup`` a sample equal to one already submitted is drawn again (it never costs a
    trial); the search ends once every sample of a finite space was tried, or after
    ``patience`` draws in a row produced nothing new.
    """

    def __init__(self, seed: int | None = None, dedup: bool = True, patience: int = 1000) -> None:
        self.seed = seed
        self.dedup = dedup
        self.patience = patience
        self._rng = random.Random(seed)

    async def run(self, ctx: StrategyContext) -> None:
        space, rng = ctx.space, self._rng
        size = space.size() if self.dedup and not space.constraints else None
        while True:
            # draw only once a trial can start: a snapshot taken while we wait then holds
            # no drawn-but-unsubmitted sample, so a resumed search repeats this one exactly
            await ctx.wait_capacity()
            if ctx.budget.exhausted:
                return
            if size is not None and ctx.distinct_submitted >= size:
                _log.info("random search: all %d samples of the space were tried", size)
                return
            for _ in range(self.patience):
                try:
                    sample = space.random(rng=rng)
                except SpaceExhaustedError:
                    _log.info("random search: the constraints reject every sample drawn")
                    return
                if not self.dedup or not ctx.seen(sample):
                    break
            else:
                _log.info("random search: %d draws in a row repeated earlier samples; "
                          "the space looks exhausted", self.patience)
                return
            await ctx.submit(sample)

    def state_dict(self) -> dict[str, Any]:
        return {"rng": rng_state(self._rng)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._rng = rng_from_state(state["rng"])

    def __repr__(self) -> str:
        return f"Random(seed={self.seed}, dedup={self.dedup})"
