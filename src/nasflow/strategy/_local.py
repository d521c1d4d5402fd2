"""``LocalSearch``: hill climbing over one-label neighbourhoods, with random restarts
(White et al., "Local Search is State of the Art for NAS Benchmarks", 2020)."""

from __future__ import annotations

import logging
import random
from typing import Any

from nasflow._kernel import TrialState
from nasflow.space import Sample, sample_hash
from nasflow.strategy._base import (
    FrozenTrial,
    Strategy,
    StrategyContext,
    rng_from_state,
    rng_state,
)
from nasflow.strategy._sampling import SpaceTracker, draw_unseen, neighbours

__all__ = ["LocalSearch"]

_log = logging.getLogger("nasflow.strategy")

_WAIT = object()  # nothing to submit until a running trial has ended


class LocalSearch(Strategy):
    """Hill climbing: evaluate the neighbours of the best architecture so far, move as
    soon as one is better, restart at random from a local optimum.

    It starts with ``initial`` random samples (results given to the experiment --
    ``exp.add_results``, ``warm_start``, enqueued samples -- take the place of some).
    The *anchor* is the best result so far
    (primary objective, in the experiment's direction); its neighbours -- every sample
    that differs in one label, in random order -- are evaluated several at a time, and
    the anchor moves to any better result as soon as it arrives. When every neighbour of
    the anchor was tried and none still running could beat it, the anchor is a local
    optimum: the climb restarts from a random unseen sample (whose neighbours are tried
    while it runs). Conditional labels: changing a label may activate choices (drawn at
    random) or deactivate them (dropped). Samples are never evaluated twice; the search
    ends when the space has no unseen sample left. Failed, early-stopped and cancelled
    trials cannot become the anchor.
    """

    def __init__(self, seed: int | None = None, *, initial: int = 10) -> None:
        if not (isinstance(initial, int) and initial >= 1):
            raise ValueError(f"initial must be a positive int, got {initial!r}")
        self.seed = seed
        self.initial = initial
        self._rng = random.Random(seed)
        self._initial_left = initial
        self._anchor: tuple[Sample, float | None] | None = None  # score None: not known yet
        self._queue: list[Sample] = []
        self._pending: set[str] = set()  # hashes of this strategy's running trials
        self.restarts = 0
        """How many times the climb restarted from a random sample."""

    async def run(self, ctx: StrategyContext) -> None:
        tracker = SpaceTracker(ctx.space)
        while True:
            if ctx.budget.exhausted:
                return
            await ctx.wait_capacity()
            self._ingest(ctx, ctx.take_results())
            if ctx.budget.exhausted:
                return
            if tracker.exhausted(ctx.distinct_submitted):
                _log.info("local search: every sample of the space was tried")
                return
            choice = self._next(ctx)
            if choice is _WAIT:
                record = await ctx.next_result()
                if record is None:
                    self._pending.clear()  # nothing is running after all
                else:
                    self._ingest(ctx, [record])
                continue
            if choice is None:
                _log.info("local search: no unseen sample is left")
                return
            assert isinstance(choice, dict)
            self._pending.add(sample_hash(choice))
            await ctx.submit(choice)

    # --- the climb ----------------------------------------------------------------------

    def _ingest(self, ctx: StrategyContext, records: list[FrozenTrial]) -> None:
        for r in records:
            self._pending.discard(r.hash)
            if r.state is not TrialState.SUCCEEDED or r.metric is None:
                continue
            if r.origin is not None and self._initial_left > 0:
                self._initial_left -= 1  # a given result stands for a random initial sample
            score = ctx.objective.score(r.metric)
            best = None if self._anchor is None else self._anchor[1]
            if best is None or score > best:
                self._move(ctx, r.sample, score)

    def _move(self, ctx: StrategyContext, sample: Sample, score: float | None) -> None:
        self._anchor = (dict(sample), score)
        queue = neighbours(ctx.space, sample, self._rng)
        self._rng.shuffle(queue)
        self._queue = queue

    def _next(self, ctx: StrategyContext) -> Sample | object | None:
        rng = self._rng
        if self._initial_left > 0:
            self._initial_left -= 1
            return draw_unseen(ctx.space, rng, ctx.seen)
        while self._queue:
            candidate = self._queue.pop()
            if not ctx.seen(candidate):
                return candidate
        if self._pending:
            return _WAIT  # a running neighbour may still beat the anchor
        # a local optimum (or nothing succeeded yet): restart somewhere new
        seed = draw_unseen(ctx.space, rng, ctx.seen)
        if seed is not None:
            self.restarts += 1
            self._move(ctx, seed, None)  # try its neighbours while it runs
        return seed

    # --- state --------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "rng": rng_state(self._rng),
            "initial_left": self._initial_left,
            "anchor": None if self._anchor is None else [self._anchor[0], self._anchor[1]],
            "queue": list(self._queue),
            "pending": sorted(self._pending),
            "restarts": self.restarts,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._rng = rng_from_state(state["rng"])
        self._initial_left = int(state["initial_left"])
        anchor = state["anchor"]
        self._anchor = None if anchor is None else (dict(anchor[0]), anchor[1])
        self._queue = [dict(s) for s in state["queue"]]
        self._pending = set(state["pending"])
        self.restarts = int(state["restarts"])

    def __repr__(self) -> str:
        return f"LocalSearch(seed={self.seed}, initial={self.initial})"
