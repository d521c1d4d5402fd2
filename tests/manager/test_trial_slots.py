"""A ``devices=N`` trial owns N slots of a manager's workers (issue 16): on local workers
and on a daemon, with ``concurrency=4`` at most two ``devices=2`` trials run at once, and
a daemon lends a running ``devices=2`` trial a second worker, so another experiment's
trial waits for it to end instead of running beside it on that worker's slot.

Ordering, not time: each trial leaves a marker file while it runs and records how many
markers it saw (itself included) at its start and while it waited for its gate; the
trials of an experiment wait for a gate the test opens only once it saw the expected
trials start.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from _mgr_helpers import daemon, free_port

import nasflow as nf
from nasflow.events import IntermediateMetric, TrialEnded, TrialStarted, TrialSubmitted


class Gated(nf.Evaluator):
    """Trials that claim ``devices`` slots (without starting ranks: only the slots are
    under test), mark themselves running in ``markers``, and wait for ``gate``. The
    metric is the most markers a trial saw at once."""

    def __init__(self, markers: Path, gate: Path, devices: int) -> None:
        self.markers, self.gate, self.devices = markers, gate, devices

    def evaluate(self, model: Any, trial: nf.Trial) -> float:
        mine = self.markers / f"{trial.experiment_id}-{trial.id}"
        mine.touch()
        try:
            seen = 0
            step = 0
            while True:
                seen = max(seen, sum(1 for _ in self.markers.iterdir()))
                if self.gate.exists():
                    return float(seen)
                trial.report(float(seen), step=step)
                step += 1
                time.sleep(0.02)
        finally:
            mine.unlink()


async def _starts(events: Any, n: int, seen: list[Any]) -> None:
    async for ev in events:
        seen.append(ev)
        if sum(isinstance(e, TrialStarted) for e in seen) == n:
            return


def _peak(seen: list[Any]) -> int:
    running = peak = 0
    for ev in seen:
        running += 1 if isinstance(ev, TrialStarted) else -1
        peak = max(peak, running)
    return peak


async def _two_at_once(tmp_path: Path, **config: Any) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    gate = tmp_path / "gate"
    exp = nf.Experiment({"x": nf.Categorical(list(range(6)))}, Gated(markers, gate, 2),
                        nf.strategy.GridSearch(),
                        nf.ExperimentConfig(max_trials=6, concurrency=4, **config))
    events = exp.events(TrialStarted, TrialEnded)
    seen: list[Any] = []
    with anyio.fail_after(180):  # a guard against hanging, not a timed assertion
        async with anyio.create_task_group() as tg:
            tg.start_soon(exp.run)
            await _starts(events, 2, seen)
            # two trials hold the four slots: both run, and neither has ended
            assert not any(isinstance(e, TrialEnded) for e in seen)
            gate.touch()
            async for ev in events:
                seen.append(ev)
    trials = exp.trials()
    assert [t.state for t in trials] == [nf.TrialState.SUCCEEDED] * 6, [t.error for t in trials]
    assert _peak(seen) == 2, seen
    assert max(t.metric or 0.0 for t in trials) <= 2  # no third marker ever appeared


async def test_local_workers_run_concurrency_over_devices_trials_at_once(tmp_path: Path
                                                                         ) -> None:
    await _two_at_once(tmp_path, training_service="local")


async def test_a_daemon_runs_concurrency_over_devices_trials_at_once(tmp_path: Path) -> None:
    token = secrets.token_urlsafe(16)
    async with daemon(free_port(), token, "--workers", "4") as d:
        await _two_at_once(tmp_path, manager=d.url, token=token)


async def test_a_daemon_lends_a_devices_trial_its_second_worker(tmp_path: Path) -> None:
    """Two workers: experiment A's ``devices=2`` trial takes both, so experiment B's
    trial (one slot) starts only after A's ended -- it never sees A's marker."""
    markers = tmp_path / "markers"
    markers.mkdir()
    token = secrets.token_urlsafe(16)
    async with daemon(free_port(), token, "--workers", "2") as d:
        def experiment(name: str, devices: int) -> nf.Experiment:
            return nf.Experiment(
                {"x": nf.Categorical([0])}, Gated(markers, tmp_path / f"gate-{name}", devices),
                nf.strategy.GridSearch(),
                nf.ExperimentConfig(max_trials=1, concurrency=2, manager=d.url, token=token,
                                    home=str(tmp_path / name)))

        a, b = experiment("a", 2), experiment("b", 1)
        a_events = a.events(TrialStarted, TrialEnded)
        b_events = b.events(TrialSubmitted, TrialStarted)
        seen: list[Any] = []
        with anyio.fail_after(180):  # a guard against hanging, not a timed assertion
            async with anyio.create_task_group() as tg:
                tg.start_soon(a.run)
                await _starts(a_events, 1, seen)
                (tmp_path / "gate-b").touch()  # B's trial would end at once, if it started
                tg.start_soon(b.run)
                async for ev in b_events:  # B's trial reached the daemon's queue
                    assert isinstance(ev, TrialSubmitted), ev
                    break
                # A's trial reports while it waits (and counts markers): had the daemon
                # started B's trial beside it, both would have seen two markers
                reports = 0
                async for _ in a.events(IntermediateMetric):
                    reports += 1
                    if reports == 25:
                        break
                (tmp_path / "gate-a").touch()
    (ta,), (tb,) = a.trials(), b.trials()
    assert ta.state is tb.state is nf.TrialState.SUCCEEDED, (ta.error, tb.error)
    assert ta.metric == 1.0  # A's trial ran alone on the daemon's two workers
    assert tb.metric == 1.0


class RankGpus(nf.Evaluator):
    """A ``devices=2`` trial that writes down the ``CUDA_VISIBLE_DEVICES`` its ranks
    would be started with (without starting them: no GPU here)."""

    devices = 2

    def __init__(self, out: Path) -> None:
        self.out = out

    def evaluate(self, model: Any, trial: nf.Trial) -> float:
        import os

        from nasflow.evaluator._ddp import _rank_env

        self.out.write_text(f"{os.environ.get('CUDA_VISIBLE_DEVICES')} "
                            f"{_rank_env().get('CUDA_VISIBLE_DEVICES')}")
        return 1.0


async def test_the_ranks_of_a_devices_trial_get_the_gpus_of_its_lent_slots(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A daemon on two GPU slots (GPUs "5" and "7", by CUDA_VISIBLE_DEVICES): the worker
    running a devices=2 trial sees its own GPU, its ranks see both."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,7")  # the daemon's GPUs, no driver needed
    out = tmp_path / "gpus"
    token = secrets.token_urlsafe(16)
    async with daemon(free_port(), token, "--gpus", "0,1") as d:
        exp = nf.Experiment({"x": nf.Categorical([0])}, RankGpus(out),
                            nf.strategy.GridSearch(),
                            nf.ExperimentConfig(max_trials=1, concurrency=2, manager=d.url,
                                                token=token))
        with anyio.fail_after(120):  # a guard against hanging, not a timed assertion
            await exp.run()
    (trial,) = exp.trials()
    assert trial.state is nf.TrialState.SUCCEEDED, trial.error
    own, ranks = out.read_text().split()
    assert own in ("5", "7")
    assert ranks == f"{own},{'7' if own == '5' else '5'}"
