"""The trial runner turns reports made in quick succession into ``metrics`` batches.

Deterministic: an async evaluator reports without awaiting, so everything it reports
before its next ``await`` (or its return) is queued when the loop first looks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from nasflow._payload import Payload
from nasflow.evaluator import FunctionalEvaluator, Trial
from nasflow.protocol import (
    Checkpoint,
    ClientSession,
    FinalMetric,
    Limits,
    Metric,
    Metrics,
    Role,
    RunTrial,
    TrialEnded,
    TrialStarted,
)
from nasflow.worker._runner import TrialRunner


async def _run(fn: Any, tmp_path: Path, send: Any, *, max_batch: int = 1024,
               objective: str = "default") -> None:
    runner = TrialRunner(send, max_batch=max_batch)
    # no pickling round trip: the evaluators below share events with the test
    payload = Payload({}, FunctionalEvaluator(fn), {objective: "maximize"},
                      lambda i: tmp_path / "trials" / str(i))
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            await tg.start(runner.run_pipe)
            await runner.run(RunTrial(experiment_id="e", trial_id=3, sample={}), payload)
            tg.cancel_scope.cancel()


def _steps(sent: list[Any]) -> list[int]:
    out: list[int] = []
    for m in sent:
        if isinstance(m, Metric):
            out.append(m.step)
        elif isinstance(m, Metrics):
            out.extend(m.steps)
    return out


async def reports_a_burst(model: Any, trial: Trial) -> float:
    for step in range(7):
        trial.report(step / 10, step=step)
    return 1.0


async def test_a_burst_of_reports_leaves_as_one_metrics_message(tmp_path: Path) -> None:
    sent: list[Any] = []
    await _run(reports_a_burst, tmp_path, sent.append)
    assert [type(m) for m in sent] == [TrialStarted, Metrics, FinalMetric, TrialEnded]
    batch = sent[1]
    assert batch.steps == tuple(range(7))
    assert batch.values == tuple(s / 10 for s in range(7))
    assert len(batch.times) == 7 and (batch.experiment_id, batch.trial_id) == ("e", 3)


async def test_batches_are_split_at_max_batch_entries(tmp_path: Path) -> None:
    sent: list[Any] = []
    await _run(reports_a_burst, tmp_path, sent.append, max_batch=3)
    assert [type(m) for m in sent] == [TrialStarted, Metrics, Metrics, Metric, FinalMetric,
                                       TrialEnded]
    assert [len(m.steps) for m in sent[1:3]] == [3, 3]
    assert _steps(sent) == list(range(7))


async def test_a_lone_report_leaves_at_once_as_a_metric(tmp_path: Path) -> None:
    sent: list[Any] = []
    seen = anyio.Event()

    def send(message: Any) -> None:
        sent.append(message)
        if isinstance(message, Metric):
            seen.set()

    async def reports_then_waits(model: Any, trial: Trial) -> float:
        trial.report(0.5, step=1)
        await seen.wait()  # only the loop's first look, not the trial's end, sends it
        return 1.0

    await _run(reports_then_waits, tmp_path, send)
    assert [type(m) for m in sent] == [TrialStarted, Metric, FinalMetric, TrialEnded]


async def test_checkpoints_keep_their_place_between_batches(tmp_path: Path) -> None:
    sent: list[Any] = []

    async def reports_around_a_checkpoint(model: Any, trial: Trial) -> float:
        trial.report(0.1, step=1)
        trial.report(0.2, step=2)
        trial.save_checkpoint({"w": 1}, step=2)
        trial.report(0.3, step=3)
        trial.report(0.4, step=4)
        return 1.0

    await _run(reports_around_a_checkpoint, tmp_path, sent.append)
    assert [type(m) for m in sent] == [TrialStarted, Metrics, Checkpoint, Metrics,
                                       FinalMetric, TrialEnded]
    assert (sent[1].steps, sent[2].step, sent[3].steps) == ((1, 2), 2, (3, 4))


async def test_a_batch_too_large_for_a_frame_is_split_in_halves(tmp_path: Path) -> None:
    session = ClientSession(Role.WORKER, limits=Limits(max_message_size=4096, max_batch=64))

    async def reports_big_dicts(model: Any, trial: Trial) -> float:
        for step in range(40):
            trial.report({"acc": step / 40, **{f"m{i}": 1.0 for i in range(8)}}, step=step)
        return 1.0

    await _run(reports_big_dicts, tmp_path, session.send, max_batch=64, objective="acc")
    messages = [m for _, m in session.unacked_messages()]
    batches = [m for m in messages if isinstance(m, (Metric, Metrics))]
    assert len(batches) > 1  # 40 entries of ~200 characters do not fit 4096
    assert _steps(batches) == list(range(40))
    assert [m.value["acc"] for m in batches if isinstance(m, Metric)] + [
        v["acc"] for m in batches if isinstance(m, Metrics) for v in m.values
    ] == sorted(s / 40 for s in range(40))


def sync_reporter(model: Any, trial: Trial) -> float:
    for step in range(5000):
        trial.report(step * 1e-6, step=step)
    return 1.0


async def test_a_reporting_thread_loses_nothing_and_keeps_the_order(tmp_path: Path) -> None:
    sent: list[Any] = []
    await _run(sync_reporter, tmp_path, sent.append)
    assert _steps(sent) == list(range(5000))
    assert type(sent[0]) is TrialStarted and type(sent[-1]) is TrialEnded


async def reports_a_step_beyond_64_bits(model: Any, trial: Trial) -> float:
    trial.report(0.1, step=0)
    with pytest.raises(ValueError, match="64 bits"):  # where it was made, not when sent
        trial.report(0.2, step=2**63)
    for step in range(1, 4):
        trial.report(0.3, step=step)
        await anyio.sleep(0.002)  # several windows: streaming must go on
    return 1.0


async def test_a_refused_step_is_an_error_in_the_evaluator_and_streaming_goes_on(
        tmp_path: Path) -> None:
    session = ClientSession(Role.WORKER)
    sent: list[Any] = []

    def send(message: Any) -> None:
        session.send(message)
        sent.append(message)

    await _run(reports_a_step_beyond_64_bits, tmp_path, send)
    assert _steps(sent) == [0, 1, 2, 3]
    assert isinstance(sent[-1], TrialEnded) and sent[-1].state.value == "SUCCEEDED"


async def test_a_metric_the_session_refuses_is_dropped_alone_and_said_in_stderr(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    session = ClientSession(Role.WORKER)
    sent: list[Any] = []

    def send(message: Any) -> None:
        steps = message.steps if isinstance(message, Metrics) else (
            (message.step,) if isinstance(message, Metric) else ())
        if 5 in steps:  # as the session refuses a message the manager would reject
            from nasflow.protocol import MalformedMessageError
            raise MalformedMessageError("step 5 is refused")
        session.send(message)
        sent.append(message)

    await _run(reports_a_burst, tmp_path, send)
    assert _steps(sent) == [0, 1, 2, 3, 4, 6]
    assert isinstance(sent[-1], TrialEnded) and sent[-1].state.value == "SUCCEEDED"
    # (in a worker process sys.stderr is fd 2, which points at the trial's stderr.log)
    assert "dropped the metric of step 5" in capsys.readouterr().err


def saves_checkpoints(model: Any, trial: Trial) -> float:
    with pytest.raises(ValueError, match="64 bits"):
        trial.save_checkpoint({"w": 0}, step=2**63)
    trial.report(0.1, step=0)
    trial.save_checkpoint({"w": 1}, step=0)  # the session below refuses its event
    trial.report(0.2, step=1)
    return 1.0


def test_a_checkpoint_event_the_session_refuses_is_dropped_and_the_trial_goes_on(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from nasflow.protocol import MalformedMessageError

    session = ClientSession(Role.WORKER)
    sent: list[Any] = []

    def send(message: Any) -> None:
        if isinstance(message, Checkpoint):
            raise MalformedMessageError("a path too long")
        session.send(message)
        sent.append(message)

    anyio.run(_run, saves_checkpoints, tmp_path, send)
    assert _steps(sent) == [0, 1]
    assert isinstance(sent[-1], TrialEnded) and sent[-1].state.value == "SUCCEEDED"
    assert "dropped the checkpoint event" in capsys.readouterr().err
