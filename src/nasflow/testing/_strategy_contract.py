"""A contract test suite every search strategy must pass, on the simulated engine.

Subclass it in a test module and say how to build the strategy::

    from nasflow.testing import StrategyContract

    class TestMyStrategy(StrategyContract):
        def make_strategy(self, seed):
            return MyStrategy(seed=seed)

Whole searches run on ``SimulatedEngine`` (no waiting, deterministic). Set
``learns = False`` for a strategy that does not learn from results (random or grid
search): the test that it finds the best architecture faster than random search is then
skipped, and so are those that it is drawn toward a perfect result it was given
(``FeedContract``: every strategy is checked not to propose enqueued or added samples again).
"""

from __future__ import annotations

import statistics
from collections.abc import AsyncIterator, Iterable
from typing import Any

import anyio
import orjson

from nasflow._kernel import ExperimentState, TrialRecord, TrialState
from nasflow.config import ExperimentConfig
from nasflow.events import TrialEnded
from nasflow.experiment import Experiment
from nasflow.space import Categorical, Constraint, Sample, SearchSpace, SpaceBuilder, sample_hash
from nasflow.strategy import FrozenTrial, Random, Strategy, StrategyContext, TrialHandle
from nasflow.testing._feed_contract import FeedContract
from nasflow.testing._simulated import SimulatedEngine

__all__ = ["StrategyContract"]

_OPS = {"conv": 0.30, "sep": 0.26, "pool": 0.08, "skip": 0.0}


def conditional_space() -> SearchSpace:
    """``depth`` in 1..3 gates ``op1`` (depth >= 2) and ``op2`` (depth 3): 252 samples."""
    b = SpaceBuilder()
    b.add(Categorical([8, 16, 32], label="width"), label_hint="width")
    b.add(Categorical([1, 2, 3], label="depth"), label_hint="depth")
    b.add(Categorical(list(_OPS), label="op0"), label_hint="op0")
    b.add(Categorical(list(_OPS), label="op1"), label_hint="op1",
          condition=b.gate("depth", [2, 3]))
    b.add(Categorical(list(_OPS), label="op2"), label_hint="op2",
          condition=b.gate("depth", [3]))
    return b.build()


def conditional_table(sample: Sample) -> tuple[list[float], float]:
    """Accuracy over three epochs; bigger and deeper trains longer (so ends interleave)."""
    ops = [sample[f"op{i}"] for i in range(3) if f"op{i}" in sample]
    acc = 0.4 + sum(_OPS[op] * (1 - 0.25 * i) for i, op in enumerate(ops))
    acc += {8: 0.0, 16: 0.03, 32: 0.05}[sample["width"]]
    acc = round(min(acc, 0.99), 6)
    return [round(acc * k / 3, 6) for k in (1, 2, 3)], 1.0 + sample["width"] / 8 + len(ops)


def tiny_space() -> SearchSpace:
    """Nine samples, one label conditional."""
    b = SpaceBuilder()
    b.add(Categorical([0, 1, 2], label="a"), label_hint="a")
    b.add(Categorical(["x", "y"], label="b"), label_hint="b")
    b.add(Categorical([True, False], label="c"), label_hint="c", condition=b.gate("b", ["y"]))
    return b.build()


def constrained_space() -> SearchSpace:
    """``a + b <= 5`` over 6 x 6: 21 of 36 samples are allowed."""
    return SearchSpace({
        "a": Categorical(list(range(6))),
        "b": Categorical(list(range(6))),
        "small": Constraint(lambda s: s["a"] + s["b"] <= 5, label="small"),
    })


def small_table(sample: Sample) -> tuple[list[float], float]:
    value = float(sum(v if isinstance(v, int) else len(str(v)) for v in sample.values()))
    return [value], 1.0 + len(sample)


_TARGET = (1, 3, 0, 2)
LEARN_SPACE = {f"x{i}": Categorical(list(range(5)), label=f"x{i}") for i in range(4)}
"""625 samples; one is best (see ``learn_loss``)."""


def learn_loss(sample: Sample) -> float:
    """A smooth loss with its single minimum at x = (1, 3, 0, 2)."""
    return float(sum((sample[f"x{i}"] - t) ** 2 for i, t in enumerate(_TARGET)))


class StrategyContract(FeedContract):
    """The behaviour every strategy owes its experiment (see the module docstring)."""

    learns = True
    """Whether the strategy learns from results (else the faster-than-random test skips)."""
    concurrency = 2
    """Simulated workers in the tests that run several trials at once."""
    learn_budget = 100
    """Trials each run of the direction test gets."""

    def make_strategy(self, seed: int) -> Strategy:
        raise NotImplementedError

    def experiment(self, space: Any, strategy: Strategy, table: Any, **config: Any) -> Experiment:
        config.setdefault("concurrency", self.concurrency)
        return SimulatedEngine.experiment(space, strategy, table,
                                          ExperimentConfig(store=False, **config))

    # --- the contract -----------------------------------------------------------------------

    async def test_budget_is_respected(self) -> None:
        exp = self.experiment(conditional_space(), self.make_strategy(0), conditional_table,
                              max_trials=9, concurrency=3)
        await exp.run()
        trials = exp.trials()
        assert exp.state is ExperimentState.DONE, exp.end_reason
        assert len(trials) == 9
        assert all(t.state is TrialState.SUCCEEDED for t in trials)

    async def test_ends_cleanly_when_the_space_is_exhausted(self) -> None:
        space = tiny_space()
        exp = self.experiment(space, self.make_strategy(0), small_table)
        with anyio.fail_after(60):
            await exp.run()
        assert exp.state is ExperimentState.DONE, exp.end_reason
        hashes = [t.hash for t in exp.trials()]
        assert sorted(hashes) == sorted(sample_hash(s) for s in space.grid())

    async def test_constraints_are_respected_and_never_cost_a_trial(self) -> None:
        space = constrained_space()
        exp = self.experiment(space, self.make_strategy(1), small_table)
        with anyio.fail_after(60):
            await exp.run()
        assert exp.state is ExperimentState.DONE, exp.end_reason
        trials = exp.trials()
        assert all(t.sample["a"] + t.sample["b"] <= 5 for t in trials)
        assert all(t.state is TrialState.SUCCEEDED for t in trials)
        assert len({t.hash for t in trials}) == len(trials) == 21

    async def test_never_repeats_a_sample(self) -> None:
        exp = self.experiment(conditional_space(), self.make_strategy(2), conditional_table,
                              max_trials=80, concurrency=4)
        await exp.run()
        trials = exp.trials()
        assert len(trials) == 80
        assert len({t.hash for t in trials}) == 80
        assert all(t.state is TrialState.SUCCEEDED for t in trials)

    async def test_state_round_trip_resumes_identically(self) -> None:
        first, more = 8, 8
        space = conditional_space()
        # the uninterrupted search
        straight = self.experiment(space, self.make_strategy(3), conditional_table,
                                   max_trials=first + more, concurrency=1)
        await straight.run()
        expected = [t.sample for t in straight.trials()]
        # the same search stopped after `first` trials ...
        counting = _Counting(self.make_strategy(3))
        stopped = self.experiment(space, counting, conditional_table,
                                  max_trials=first, concurrency=1)
        await stopped.run()
        assert [t.sample for t in stopped.trials()] == expected[:first]
        state = counting.inner.state_dict()
        orjson.dumps(state)  # plain data: snapshots are stored as JSON
        # ... and continued by a fresh strategy on the same history
        fresh = self.make_strategy(3)
        fresh.load_state_dict(orjson.loads(orjson.dumps(state)))
        resumed = self.experiment(
            space, _Resumed(fresh, expected[:first], counting.taken), conditional_table,
            max_trials=first + more, concurrency=1,
        )
        await resumed.run()
        assert [t.sample for t in resumed.trials()] == expected

    async def test_stopping_mid_search_ends_cleanly(self) -> None:
        exp = self.experiment(conditional_space(), self.make_strategy(4), conditional_table,
                              max_trials=200, concurrency=3)
        events = exp.events(TrialEnded)
        async with anyio.create_task_group() as tg:
            tg.start_soon(exp.run)
            await _nth(events, 5)
            await exp.stop("enough")
        assert exp.state is ExperimentState.STOPPED
        _all_finished(exp.trials())

    async def test_cancelling_mid_search_ends_cleanly(self) -> None:
        exp = self.experiment(conditional_space(), self.make_strategy(5), conditional_table,
                              max_trials=200, concurrency=3)
        events = exp.events(TrialEnded)
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(exp.run)
                await _nth(events, 5)
                scope.cancel()
        assert exp.state is ExperimentState.STOPPED
        _all_finished(exp.trials())

    async def test_needs_only_the_strategy_context_contract(self) -> None:
        """The strategy uses only ``StrategyContext``'s members (not ``capacity``, not
        the one-shot ones), and is handed frozen records it cannot change."""
        exp = self.experiment(conditional_space(), _OnBare(self.make_strategy(6)),
                              conditional_table, max_trials=12, concurrency=2)
        await exp.run()
        assert exp.state is ExperimentState.DONE, exp.end_reason
        assert len(exp.trials()) == 12

    async def test_minimizes_faster_than_random(self) -> None:
        await self._faster_than_random("minimize")

    async def test_maximizes_faster_than_random(self) -> None:
        await self._faster_than_random("maximize")

    async def _faster_than_random(self, direction: str) -> None:
        """On a table whose best sample is known, the strategy needs fewer trials than
        random search to find it (median of 3 seeds) -- in the experiment's direction."""
        if not self.learns:
            import pytest

            pytest.skip("the strategy does not learn from results")
        sign = 1.0 if direction == "minimize" else -1.0
        best = next(s for s in SearchSpace(LEARN_SPACE).grid() if learn_loss(s) == 0)

        def table(sample: Sample) -> tuple[list[float], float]:
            return [sign * learn_loss(sample)], 1.0 + sample["x0"] % 2

        async def trials_to_best(strategy: Strategy) -> int:
            exp = self.experiment(LEARN_SPACE, strategy, table, objective=direction,
                                  max_trials=self.learn_budget)
            await exp.run()
            samples = [t.sample for t in exp.trials()]
            return samples.index(best) + 1 if best in samples else self.learn_budget + 1

        seeds = range(3)
        ours = [await trials_to_best(self.make_strategy(s)) for s in seeds]
        randoms = [await trials_to_best(Random(seed=s)) for s in seeds]
        assert statistics.median(ours) < statistics.median(randoms), (ours, randoms)


async def _nth(events: AsyncIterator[Any], n: int) -> None:
    seen = 0
    async for _ in events:
        seen += 1
        if seen == n:
            return


def _all_finished(trials: list[TrialRecord]) -> None:
    assert trials
    assert all(t.state.finished for t in trials), [t.state for t in trials]


class _Delegate(StrategyContext):
    """A context that forwards to the experiment's (subclasses change one thing); what is
    beyond the contract (``capacity``, ``oneshot``, ...) is forwarded as it is."""

    def __init__(self, ctx: StrategyContext) -> None:
        self._ctx = ctx
        self.space = ctx.space
        self.objective = ctx.objective
        self.budget = ctx.budget

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "_ctx":
            raise AttributeError(name)
        return getattr(self._ctx, name)

    async def submit(self, sample: Sample) -> TrialHandle:
        return await self._ctx.submit(sample)

    async def wait_capacity(self) -> None:
        await self._ctx.wait_capacity()

    def take_results(self) -> list[FrozenTrial]:
        return self._ctx.take_results()

    async def next_result(self) -> FrozenTrial | None:
        return await self._ctx.next_result()

    async def wait_trial(self, trial_id: int) -> FrozenTrial:
        return await self._ctx.wait_trial(trial_id)

    def history(self, states: Iterable[TrialState] | None = None) -> list[FrozenTrial]:
        return self._ctx.history(states)

    def kill(self, trial_id: int, state: TrialState = TrialState.CANCELED,
             reason: str = "") -> bool:
        return self._ctx.kill(trial_id, state, reason)

    def seen(self, sample: Sample) -> bool:
        return self._ctx.seen(sample)

    @property
    def distinct_submitted(self) -> int:
        return self._ctx.distinct_submitted


class _Bare(_Delegate):
    """Only the contract: anything beyond it is an ``AttributeError``."""

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"{name!r} is not a member of the StrategyContext contract")


class _OnBare(Strategy):
    """Runs ``inner`` on a context that offers the contract and nothing more."""

    def __init__(self, inner: Strategy) -> None:
        self.inner = inner

    async def run(self, ctx: StrategyContext) -> None:
        await self.inner.run(_Bare(ctx))


class _CountingContext(_Delegate):
    def __init__(self, ctx: StrategyContext, owner: _Counting) -> None:
        super().__init__(ctx)
        self._owner = owner

    def take_results(self) -> list[FrozenTrial]:
        out = self._ctx.take_results()
        self._owner.taken += len(out)
        return out

    async def next_result(self) -> FrozenTrial | None:
        record = await self._ctx.next_result()
        self._owner.taken += record is not None
        return record


class _Counting(Strategy):
    """Runs ``inner``, counting the results it took (what a snapshot records)."""

    def __init__(self, inner: Strategy) -> None:
        self.inner = inner
        self.taken = 0

    async def run(self, ctx: StrategyContext) -> None:
        await self.inner.run(_CountingContext(ctx, self))


class _HandOver(_Delegate):
    """Hands ``unseen`` results out first, as a resumed experiment does."""

    def __init__(self, ctx: StrategyContext, unseen: list[FrozenTrial]) -> None:
        super().__init__(ctx)
        self._unseen = list(unseen)

    def take_results(self) -> list[FrozenTrial]:
        out, self._unseen = self._unseen + self._ctx.take_results(), []
        return out

    async def next_result(self) -> FrozenTrial | None:
        if self._unseen:
            return self._unseen.pop(0)
        return await self._ctx.next_result()


class _Resumed(Strategy):
    """Replays ``history`` (one trial at a time), then runs ``inner`` as a resumed
    strategy: restored state, and the results it had not taken handed to it first."""

    def __init__(self, inner: Strategy, history: list[Sample], taken: int) -> None:
        self.inner, self.history, self.taken = inner, history, taken

    async def run(self, ctx: StrategyContext) -> None:
        ctx.take_results()  # from here on, ended trials are queued for take_results
        for sample in self.history:
            handle = await ctx.submit(sample)
            await handle.result()
        ended = ctx.take_results()
        await self.inner.run(_HandOver(ctx, ended[self.taken:]))
