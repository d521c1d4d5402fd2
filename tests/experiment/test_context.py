"""The strategy's contract is small, its one-shot needs are apart, and the records a
strategy is handed are frozen copies: it can never change the experiment's trial table."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from nasflow._kernel import TrialState
from nasflow.config import ExperimentConfig
from nasflow.space import Categorical
from nasflow.strategy import (
    FrozenTrial,
    OneShotContext,
    Strategy,
    StrategyContext,
    oneshot_context,
)
from nasflow.testing import SimulatedEngine

SPACE = {"x": Categorical([1, 2, 3, 4])}


def table(sample: dict) -> tuple[list[float], float]:
    return [float(sample["x"])], 1.0


def _abstract(cls: type) -> set[str]:
    return set(getattr(cls, "__abstractmethods__", set()))


def test_the_strategy_context_has_at_most_nine_abstract_members() -> None:
    members = _abstract(StrategyContext)
    assert len(members) <= 9, sorted(members)
    assert {"submit", "wait_capacity", "take_results", "next_result", "kill"} <= members


def test_the_one_shot_needs_are_on_their_own_contract() -> None:
    assert _abstract(OneShotContext) == {"record", "progress", "save_checkpoint",
                                         "load_checkpoint"}
    assert not _abstract(StrategyContext) & _abstract(OneShotContext)
    assert not hasattr(StrategyContext, "model_space")


class _Grab(Strategy):
    """Submits everything, then keeps what the context handed out."""

    def __init__(self) -> None:
        self.taken: list[FrozenTrial] = []
        self.history: list[FrozenTrial] = []
        self.handle_result: FrozenTrial | None = None
        self.oneshot: object = None

    async def run(self, ctx: StrategyContext) -> None:
        first = await ctx.submit({"x": 1})
        self.handle_result = await first.result()
        for x in (2, 3):
            await ctx.submit({"x": x})
        while (record := await ctx.next_result()) is not None:
            self.taken.append(record)
        self.history = ctx.history([TrialState.SUCCEEDED])
        self.oneshot = oneshot_context(ctx)


async def test_strategies_get_frozen_copies_of_the_records() -> None:
    strategy = _Grab()
    exp = SimulatedEngine.experiment(SPACE, strategy, table,
                                     ExperimentConfig(store=False, concurrency=2))
    await exp.run()
    handed = [strategy.handle_result, *strategy.taken, *strategy.history]
    assert handed and all(isinstance(r, FrozenTrial) for r in handed)
    assert [r.to_dict() for r in strategy.history] == [t.to_dict() for t in exp.trials()]
    record = strategy.history[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.metric = 99.0  # type: ignore[misc]
    record.sample["x"] = 99  # the strategy's own copy: the experiment's stays
    assert exp.trials()[record.id].sample == {"x": 1}
    assert isinstance(strategy.oneshot, OneShotContext)


def test_a_context_without_one_shot_needs_says_so() -> None:
    class Bare:
        pass

    with pytest.raises(TypeError, match="one-shot context"):
        oneshot_context(Bare())  # type: ignore[arg-type]


def test_frozen_trial_has_the_fields_of_a_trial_record() -> None:
    from nasflow._kernel import TrialRecord

    assert [f.name for f in dataclasses.fields(FrozenTrial)] == [
        f.name for f in dataclasses.fields(TrialRecord)]
    assert inspect.signature(FrozenTrial.of)
