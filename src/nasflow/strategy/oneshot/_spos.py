"""``RandomOneShot`` (SPOS): uniform path sampling, then a search over inherited-weight
sub-networks with any multi-trial strategy.

Phase 1 trains the supernet: every step runs one architecture drawn uniformly from the
space (``space.random``, so constraints hold). Phase 2 hands a ``SubnetContext`` to a
multi-trial strategy (``nf.strategy.Random`` by default). To that strategy it looks like
an experiment with capacity 1 whose ``submit(sample)`` evaluates the sub-network on the
validation data with the supernet's weights (batch-norm statistics re-estimated for
it) and records it through the experiment's ``oneshot_context(ctx).record``: every evaluated
architecture becomes a SUCCEEDED trial whose metric is its supernet validation metric,
which is what ``export_top_models`` ranks by.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import anyio
import torch

from nasflow._kernel import TrialState
from nasflow.exceptions import BudgetExhausted
from nasflow.space import Sample, sample_hash
from nasflow.strategy._base import (
    Budget,
    ForwardsOneShot,
    FrozenTrial,
    Strategy,
    StrategyContext,
    TrialHandle,
    oneshot_context,
)
from nasflow.strategy.oneshot._train import OneShotStrategy, Run

__all__ = ["RandomOneShot", "SubnetContext"]


class SubnetContext(ForwardsOneShot, StrategyContext):
    """A strategy context whose trials are sub-networks of a trained supernet.

    ``submit`` evaluates at once with ``evaluate(sample) -> metric`` and records the
    result through ``outer.record``; nothing ever runs in the background, so
    ``wait_capacity`` never waits and ``running()`` is empty. At most ``max_trials``
    samples are evaluated (``BudgetExhausted`` after that, or once the experiment stops).
    """

    def __init__(self, outer: StrategyContext, evaluate: Callable[[Sample], Awaitable[Any]],
                 max_trials: int) -> None:
        self._outer = outer
        self._evaluate = evaluate
        self.space = outer.space
        self.objective = outer.objective
        self.oneshot = oneshot_context(outer)
        """The outer experiment's one-shot context (``record`` goes through it)."""
        earlier = outer.history([TrialState.SUCCEEDED])
        self._seen = {r.hash for r in earlier}
        self.budget = Budget(max_trials, None)
        self.budget.submitted = len(earlier)  # a resumed search keeps its count
        self._inbox: deque[FrozenTrial] = deque()
        self._records: dict[int, FrozenTrial] = {}

    @property
    def capacity(self) -> int:
        return 1

    async def submit(self, sample: Sample) -> TrialHandle:
        if self.budget.exhausted or self._outer.budget.stopping:
            raise BudgetExhausted(
                f"{self.budget.max_trials} sub-networks were evaluated"
                if not self._outer.budget.stopping else "the experiment is stopping")
        sample = self.space.canonicalize(sample)
        h = sample_hash(sample)
        self.budget.submitted += 1
        self._seen.add(h)
        value = await self._evaluate(sample)
        record = await self.oneshot.record(sample, value)
        self._records[record.id] = record
        self._inbox.append(record)
        return TrialHandle(self, record.id, sample, h)

    async def wait_capacity(self) -> None:
        await anyio.lowlevel.checkpoint()

    def take_results(self) -> list[FrozenTrial]:
        out = list(self._inbox)
        self._inbox.clear()
        return out

    async def next_result(self) -> FrozenTrial | None:
        await anyio.lowlevel.checkpoint()
        return self._inbox.popleft() if self._inbox else None

    async def wait_trial(self, trial_id: int) -> FrozenTrial:
        return self._records[trial_id]

    def history(self, states: Iterable[TrialState] | None = None) -> list[FrozenTrial]:
        return self._outer.history(states)

    def running(self) -> list[FrozenTrial]:
        return []

    def kill(self, trial_id: int, state: TrialState = TrialState.CANCELED,
             reason: str = "") -> bool:
        return False  # evaluations finish inside submit()

    def seen(self, sample: Sample) -> bool:
        return sample_hash(self.space.canonicalize(sample)) in self._seen

    @property
    def distinct_submitted(self) -> int:
        return len(self._seen)


class RandomOneShot(OneShotStrategy):
    """Single-path one-shot (SPOS), as NNI's ``RandomOneShot``, with the second phase built in.

    ``search``: the multi-trial strategy run on the trained supernet (default
    ``nf.strategy.Random(seed=seed)``); ``search_trials``: sub-networks it may evaluate
    (default: the experiment's ``max_trials``, else 50); ``bn_calibration_batches``:
    training batches that re-estimate batch-norm statistics for each evaluated
    sub-network (0 keeps the supernet's).
    """

    def __init__(self, *, search: Strategy | None = None, search_trials: int | None = None,
                 bn_calibration_batches: int = 4, epochs: int | None = None, top_k: int = 5,
                 seed: int = 0, chunk_steps: int = 20, checkpoint: str | None = None,
                 channels_last: bool | None = None, share_layers: bool = True) -> None:
        super().__init__(epochs=epochs, top_k=top_k, seed=seed, chunk_steps=chunk_steps,
                         checkpoint=checkpoint, channels_last=channels_last,
                         share_layers=share_layers)
        if search is None:
            from nasflow.strategy._random import Random

            search = Random(seed=seed)
        if not isinstance(search, Strategy) or isinstance(search, OneShotStrategy):
            raise TypeError(f"RandomOneShot(search=...): expected a multi-trial strategy such "
                            f"as nf.strategy.Random(), got {search!r}")
        if search_trials is not None and (not isinstance(search_trials, int)
                                          or search_trials < 1):
            raise ValueError(f"RandomOneShot(search_trials=...): got {search_trials!r}; "
                             "expected a positive int")
        self.search = search
        self.search_trials = search_trials
        self.bn_calibration_batches = bn_calibration_batches

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "search": self.search.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if state.get("search"):
            self.search.load_state_dict(state["search"])

    def _step(self, rt: Run, x: Any, y: Any) -> dict[str, Any]:
        rt.supernet.set_hard(rt.supernet.space.random(rng=rt.rng))
        rt.optimizer.zero_grad(set_to_none=True)
        loss = rt.loss(x, y)
        torch.autograd.backward(loss)
        rt.optimizer.step()
        return {"train_loss": loss}

    def _eval_arch(self, rt: Run) -> None:
        rt.supernet.set_hard(rt.supernet.space.random(rng=rt.rng))

    def _probs(self, rt: Run) -> dict[str, dict[str, float]]:
        out = {}
        for label, spec in rt.supernet.specs.items():
            out[label] = {spec.key(i): round(1.0 / spec.n, 5) for i in range(spec.n)}
        return out

    async def _export(self, ctx: StrategyContext, rt: Run) -> None:
        limit = self.search_trials or ctx.budget.max_trials or 50
        tools = oneshot_context(ctx)

        async def evaluate(sample: Sample) -> float:
            value = await anyio.to_thread.run_sync(self._evaluate, rt, sample)
            await tools.progress(step=rt.epochs, strategy=type(self).__name__, phase="search",
                               evaluated=sub.budget.submitted, **{f"val_{rt.metric}": value})
            return value

        sub = SubnetContext(ctx, evaluate, limit)
        try:
            await self.search.run(sub)
        except BudgetExhausted:
            pass  # the sub-network budget is spent: the search is complete

    def _evaluate(self, rt: Run, sample: Sample) -> float:
        return self.evaluate_sample(rt, sample, calibrate=self.bn_calibration_batches)

    def __repr__(self) -> str:
        return (f"RandomOneShot(epochs={self.epochs}, search={self.search!r}, "
                f"search_trials={self.search_trials}, seed={self.seed})")
