"""Experiment-side behaviour on the Ray training service: a scheduler (ASHA) stops trials
that run in Ray actors, and the actor goes on to run the next trial.

Evaluators are module-level functions of this module; workers import it by reference.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anyio

import nasflow as nf
from nasflow.evaluator import Trial

SPACE = {"x": nf.Categorical([4, 3, 2, 1])}  # grid order: the first trial is the best


class Climb:
    """Writes ``<where>/<id>`` = ``node pid``, reports ``x`` at step 0; the best trial
    (x=4) goes on to step 3 and returns, every other one waits at the first rung until it
    is stopped (ASHA must stop it: nothing else ends it)."""

    def __init__(self, where: str) -> None:
        self.where = where

    async def __call__(self, model: Any, trial: Trial) -> float:
        x = trial.sample["x"]
        note = Path(self.where) / str(trial.id)
        note.write_text(f"{os.environ['NASFLOW_RAY_NODE']} {os.getpid()}")
        trial.report(float(x), step=0)
        if x != 4:
            await anyio.sleep_forever()  # cancelled by the stop
        for step in range(1, 4):
            trial.report(float(x), step=step)
        return float(x)


async def test_asha_stops_trials_running_in_ray_actors_and_the_actor_is_reused(
        cluster: Any, tmp_path: Path) -> None:
    cfg = nf.ExperimentConfig(max_trials=4, concurrency=1, training_service="ray",
                              trial_resources={"CPU": 1})
    exp = nf.Experiment(SPACE, Climb(str(tmp_path)), nf.strategy.GridSearch(), cfg,
                        scheduler=nf.strategy.ASHA(max_t=4, reduction_factor=2))
    with anyio.fail_after(180):
        await exp.run()
    trials = exp.trials()
    assert [t.state for t in trials] == [nf.TrialState.SUCCEEDED] + [
        nf.TrialState.EARLY_STOPPED] * 3, [t.error for t in trials]
    for t in trials[1:]:
        assert t.error is not None and t.error.type == "Stopped"
        assert t.error.message.startswith("ASHA: at the rung of "), t.error
        assert t.metric is None
    assert trials[0].metric == 4.0
    # one warm actor ran all four, the stopped ones included: a stop does not cost it
    where = {(tmp_path / str(t.id)).read_text() for t in trials}
    assert len(where) == 1, where
    _node, pid = where.pop().split()
    assert int(pid) != os.getpid()
