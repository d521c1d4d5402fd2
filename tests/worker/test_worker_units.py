"""The worker's parts in this process: payload, output capture, trial runner."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest

from nasflow._kernel import Objective, TrialState
from nasflow._payload import PayloadError, load, pack
from nasflow.evaluator import FunctionalEvaluator, Trial, current_trial
from nasflow.protocol import FinalMetric, Metric, RunTrial, TrialEnded, TrialStarted
from nasflow.worker._runner import TrialRunner, _capture


def _dirs(root: Path) -> Any:
    return lambda i: root / "trials" / str(i)


def test_payload_round_trip(tmp_path: Path) -> None:
    def evaluate(model: Any, trial: Trial) -> float:
        return 1.0

    payload = load(pack({"x": [1]}, FunctionalEvaluator(evaluate),
                        Objective({"acc": "maximize"}), _dirs(tmp_path)))
    assert payload.space == {"x": [1]}
    assert payload.objective.directions == {"acc": "maximize"}
    assert payload.trial_directory(7) == tmp_path.resolve() / "trials" / "7"
    assert payload.evaluator.evaluate(None, None) == 1.0  # type: ignore[arg-type]


def test_the_experiments_sys_path_is_appended(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    entry = str(tmp_path / "user-code")
    monkeypatch.setattr(sys, "path", [*sys.path, entry])
    data = pack({}, FunctionalEvaluator(lambda m, t: 1.0), Objective({"default": "maximize"}),
                _dirs(tmp_path))
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != entry])
    load(data)
    assert sys.path[-1] == entry


def test_an_unpicklable_part_is_named(tmp_path: Path) -> None:
    lock = threading.Lock()
    with pytest.raises(PayloadError, match="the space cannot be sent"):
        pack({"lock": lock}, FunctionalEvaluator(lambda m, t: 1.0),
             Objective({"default": "maximize"}), _dirs(tmp_path))


def test_capture_points_fds_at_the_trial_logs_and_back(tmp_path: Path) -> None:
    with _capture(tmp_path):
        os.write(1, b"to stdout\n")
        os.write(2, b"to stderr\n")
    assert (tmp_path / "stdout.log").read_bytes() == b"to stdout\n"
    assert (tmp_path / "stderr.log").read_bytes() == b"to stderr\n"


async def _run(fn: Any, tmp_path: Path, *, cancel_after_start: bool = False) -> list[Any]:
    sent: list[Any] = []
    runner = TrialRunner(sent.append)
    payload = load(pack({}, FunctionalEvaluator(fn), Objective({"default": "maximize"}),
                        _dirs(tmp_path)))
    message = RunTrial(experiment_id="e", trial_id=3, sample={"x": 1})
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            await tg.start(runner.run_pipe)
            if cancel_after_start:
                async def cancel() -> None:
                    await anyio.wait_all_tasks_blocked()
                    assert runner.cancel(3, 0, TrialState.EARLY_STOPPED, "median rule")
                tg.start_soon(cancel)
            await runner.run(message, payload)
            tg.cancel_scope.cancel()
    return sent


async def reports_then_returns(model: Any, trial: Trial) -> float:
    assert current_trial() is trial
    trial.report(0.5)
    return 2.0


async def waits_forever(model: Any, trial: Trial) -> float:
    await anyio.sleep_forever()
    return 0.0


async def test_the_runner_sends_a_trials_events_in_order(tmp_path: Path) -> None:
    sent = await _run(reports_then_returns, tmp_path)
    assert [type(m) for m in sent] == [TrialStarted, Metric, FinalMetric, TrialEnded]
    assert sent[-1].state is TrialState.SUCCEEDED and sent[2].value == 2.0


async def test_a_cancelled_async_trial_ends_in_the_asked_state(tmp_path: Path) -> None:
    sent = await _run(waits_forever, tmp_path, cancel_after_start=True)
    assert [type(m) for m in sent] == [TrialStarted, TrialEnded]
    assert sent[-1].state is TrialState.EARLY_STOPPED
    assert sent[-1].error.message == "median rule"


async def test_a_setup_sent_again_is_the_workers_newest() -> None:
    """The worker's account of its setups must match the manager's (``WORKER_SETUPS``, the
    last ones sent): a setup it already holds, sent again, counts as sent last, or the
    worker would drop it while the manager believes it is there (``SetupMissing``)."""
    from nasflow import _payload
    from nasflow.protocol import WORKER_SETUPS, Setup
    from nasflow.worker._main import Worker

    worker = Worker("ws://127.0.0.1:9", "token", "worker-test")
    ids = [f"e{i}" for i in range(WORKER_SETUPS)]
    for i, exp_id in enumerate(ids):
        worker._payloads[exp_id] = (_payload.digest(bytes([i])), object())  # loaded
    await worker._setup(Setup(experiment_id="e0", payload=bytes([0])))
    assert list(worker._payloads) == [*ids[1:], "e0"]
