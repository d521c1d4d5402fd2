"""Checkpoints and resume: a stopped search ends between two chunks of steps; a fresh
strategy given the old ``state_dict`` and the same experiment directory continues from
the last completed epoch and ends exactly where an uninterrupted search ends."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
import torch

import nasflow as nf
from nasflow.events import StrategyProgress
from nasflow.strategy.oneshot import OneShotStrategy

from .spaces import Tiny, tiny_data
from .test_strategies import _run

MAKERS = {
    "DARTS": lambda: nf.strategy.DARTS(arc_learning_rate=0.05, chunk_steps=1),
    "ENAS": lambda: nf.strategy.ENAS(ctrl_steps=2, num_candidates=2, chunk_steps=1),
}


def _evaluator() -> Any:
    train, val = tiny_data()
    return nf.evaluator.Classification(train, val, epochs=3, batch_size=24)


def _checkpoint(exp: nf.Experiment, strategy: OneShotStrategy) -> dict[str, Any]:
    path = exp.directory / "strategy" / f"{strategy.checkpoint}.pt"
    saved: dict[str, Any] = torch.load(path, weights_only=False)
    return saved


def _stop_after_first_epoch(exp: nf.Experiment) -> list[int]:
    steps: list[int] = []

    async def main() -> None:
        stream = exp.events(StrategyProgress)
        async with anyio.create_task_group() as tg:
            tg.start_soon(exp.run)
            async for ev in stream:
                assert isinstance(ev, StrategyProgress)
                steps.append(ev.step or 0)
                await exp.stop("test: interrupt after epoch 1")

    anyio.run(main)
    return steps


@pytest.mark.parametrize("name", list(MAKERS))
def test_resume_continues_from_the_last_epoch(name: str) -> None:
    reference = MAKERS[name]()
    ref_exp = nf.Experiment(Tiny(), _evaluator(), reference, nf.ExperimentConfig(store=False))
    nf.run(ref_exp)

    first = MAKERS[name]()
    exp1 = nf.Experiment(Tiny(), _evaluator(), first, nf.ExperimentConfig(), id=f"resume-{name}")
    assert _stop_after_first_epoch(exp1) == [1]
    assert exp1.state is nf.ExperimentState.STOPPED
    assert exp1.trials() == []  # stopped before the export
    state = json.loads(json.dumps(first.state_dict()))  # JSON-able, as a snapshot is
    assert state["epoch"] == 1 and state["phase"] == "train"
    assert _checkpoint(exp1, first)["epoch"] == 1

    # what a resumed experiment does (the store's resume is built elsewhere): a fresh
    # strategy, the old state, the old experiment directory
    second = MAKERS[name]()
    second.load_state_dict(state)
    exp2 = nf.Experiment(Tiny(), _evaluator(), second, nf.ExperimentConfig(store=False))
    exp2.directory = exp1.directory
    assert [e.step for e in _run(exp2) if e.values["phase"] == "train"] == [2, 3]
    assert second.state_dict()["phase"] == "done"

    resumed, uninterrupted = _checkpoint(exp2, second), _checkpoint(ref_exp, reference)
    assert resumed["epoch"] == uninterrupted["epoch"] == 3
    torch.testing.assert_close(resumed["model"], uninterrupted["model"], rtol=0, atol=0)
    torch.testing.assert_close(resumed["parts"], uninterrupted["parts"], rtol=0, atol=0)
    assert [r.sample for r in exp2.export_top_models(2)] == [
        r.sample for r in ref_exp.export_top_models(2)]

    with nf.load_experiment(exp1.id) as stored:  # the interrupted run stored its epoch
        assert [step for _, step, _ in stored.progress()] == [1]


def test_experiment_resume_continues_a_stopped_search_from_its_checkpoint() -> None:
    exp1 = nf.Experiment(Tiny(), _evaluator(), MAKERS["DARTS"](), nf.ExperimentConfig())
    assert _stop_after_first_epoch(exp1) == [1]
    # no trial ended, so no strategy snapshot exists: the checkpoint alone carries on
    exp2 = nf.Experiment.restore(exp1.id)
    assert [e.step for e in _run(exp2) if e.values["phase"] == "train"] == [2, 3]
    assert exp2.state is nf.ExperimentState.DONE and len(exp2.export_top_models(5)) == 5
    with nf.load_experiment(exp1.id) as stored:
        assert [step for _, step, v in stored.progress()
                if v["phase"] == "train"] == [1, 2, 3]


def test_resume_without_the_checkpoint_says_what_is_missing() -> None:
    strategy = nf.strategy.DARTS()
    strategy.load_state_dict({"version": 1, "strategy": "DARTS", "epoch": 2,
                              "phase": "train", "checkpoint": "oneshot-darts"})
    exp = nf.Experiment(Tiny(), _evaluator(), strategy, nf.ExperimentConfig(store=False))
    with pytest.raises(nf.StrategyError) as info:
        nf.run(exp)
    assert "resume the same experiment" in str(info.value.__cause__)


def test_a_state_from_another_strategy_is_refused() -> None:
    with pytest.raises(ValueError, match="not made by ENAS"):
        nf.strategy.ENAS().load_state_dict(nf.strategy.DARTS().state_dict())


def test_a_search_that_went_back_to_contiguous_resumes_contiguous(
        caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from .test_fast_paths import TrainView

    make = lambda: nf.strategy.DARTS(arc_learning_rate=0.05, chunk_steps=1,  # noqa: E731
                                     evaluate_top=False)
    first = make()
    exp1 = nf.Experiment(TrainView(), _evaluator(), first, nf.ExperimentConfig(),
                         id="resume-contiguous")
    with caplog.at_level(logging.INFO, logger="nasflow.strategy.oneshot"):
        assert _stop_after_first_epoch(exp1) == [1]
    assert caplog.text.count("failed in channels-last") == 1
    assert _checkpoint(exp1, first)["channels_last"] is False
    caplog.clear()

    second = make()
    second.load_state_dict(json.loads(json.dumps(first.state_dict())))
    exp2 = nf.Experiment(TrainView(), _evaluator(), second, nf.ExperimentConfig(store=False))
    exp2.directory = exp1.directory
    with caplog.at_level(logging.INFO, logger="nasflow.strategy.oneshot"):
        assert [e.step for e in _run(exp2) if e.values["phase"] == "train"] == [2, 3]
    assert "failed in channels-last" not in caplog.text  # it did not try again
    assert second.supernet is not None
    assert all(p.is_contiguous() for p in second.supernet.model.parameters())


def test_a_strategy_pickled_before_the_speed_switches_still_runs() -> None:
    strategy = nf.strategy.DARTS()
    del strategy.__dict__["channels_last"], strategy.__dict__["share_layers"]
    assert strategy.channels_last is None and strategy.share_layers is True

