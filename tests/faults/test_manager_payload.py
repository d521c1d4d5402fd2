"""Faults of the manager/worker side found by the outside probe (issue 10), each pinned.

Large setups, huge error messages, metrics past a float, an experiment killed while its
workers start, the token in a worker's environment, and protocol errors / floods after the
handshake: all over real processes and sockets on 127.0.0.1.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import anyio
import orjson
import psutil
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

import nasflow as nf
from nasflow._kernel import TrialState
from nasflow._payload import PayloadError, read_spilled, spill
from nasflow.evaluator import Trial
from nasflow.manager import TrialManager
from nasflow.protocol import PROTOCOL_VERSION, Limits
from nasflow.store import experiment_dir

_MB = 1_000_000
HELLO = orjson.dumps({"type": "hello", "version": PROTOCOL_VERSION, "role": "experiment",
                      "session": "experiment-probe", "peer_session": None, "last_seq": 0,
                      "resend_from": 1, "running": []}).decode()


def _local(**changes: Any) -> nf.ExperimentConfig:
    return nf.ExperimentConfig(training_service="local", **changes)


class Holding:
    """An evaluator holding a large blob (a data set, in real life): it must reach the
    workers whole, so the metric is computed from it."""

    def __init__(self, size: int) -> None:
        self.blob = bytes(range(256)) * (size // 256)

    def __call__(self, model: Any, trial: Trial) -> float:
        return float(len(self.blob) + self.blob[-1] + trial.sample["x"])


# --- 1. a setup far over the frame limit -------------------------------------------------


async def test_a_200_mb_evaluator_runs_on_local_workers(home: Path) -> None:
    evaluator = Holding(200 * _MB)
    exp = nf.Experiment({"x": nf.Categorical([1, 2])}, evaluator,
                        nf.strategy.GridSearch(), _local(max_trials=2, concurrency=2))
    with anyio.fail_after(300):  # it hung forever (the worker re-dialled 1,000 times)
        await exp.run()
    assert exp.state is nf.ExperimentState.DONE
    trials = exp.trials()
    assert [t.state for t in trials] == [TrialState.SUCCEEDED] * 2
    expected = {float(len(evaluator.blob) + 255 + x) for x in (1, 2)}
    assert {t.metric for t in trials} == expected
    # the file the workers read is gone with the experiment's manager
    setups = exp.directory / "workers" / "setups"
    assert not setups.exists() or list(setups.iterdir()) == []


async def test_a_setup_over_max_payload_size_fails_once_with_payload_error() -> None:
    exp = nf.Experiment({"x": nf.Categorical([1, 2])}, Holding(3 * _MB),
                        nf.strategy.Random(seed=0),
                        _local(max_trials=5, max_payload_size=2 * _MB))
    with anyio.fail_after(60), pytest.raises(PayloadError, match="max_payload_size") as caught:
        await exp.run()
    assert "MiB" in str(caught.value)
    assert exp.trials() == []  # refused before any trial started


def test_max_payload_size_is_checked() -> None:
    with pytest.raises(nf.ConfigError, match="max_payload_size"):
        nf.ExperimentConfig(max_payload_size=0)


def test_a_spilled_setup_is_private_and_checked(tmp_path: Path) -> None:
    data = b"payload bytes" * 1000
    spilled = spill(data, tmp_path / "setups", "exp-1")
    assert spilled.path.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "setups").stat().st_mode & 0o077 == 0
    # an experiment id is no path: it cannot place the file elsewhere
    elsewhere = spill(data, tmp_path / "setups", "../../x").path
    assert elsewhere.parent == (tmp_path / "setups").resolve()
    assert bytes(read_spilled(str(spilled.path), spilled.sha256, spilled.size)) == data
    with pytest.raises(PayloadError, match="bytes, not the"):
        read_spilled(str(spilled.path), spilled.sha256, spilled.size + 1)
    spilled.path.write_bytes(b"X" + data[1:])  # same size, other bytes
    with pytest.raises(PayloadError, match="SHA-256"):
        read_spilled(str(spilled.path), spilled.sha256, spilled.size)
    with pytest.raises(PayloadError, match="cannot read"):
        read_spilled(str(tmp_path / "gone.pkl"), spilled.sha256, spilled.size)


# --- 2. an exception message over 1 MiB ----------------------------------------------------


def _raise_huge(model: Any, trial: Trial) -> float:
    if trial.sample["x"] == 1:
        raise ValueError("y" * (2 * 1024 * 1024))
    return 1.0


async def test_an_exception_message_over_1_mib_fails_only_its_trial() -> None:
    exp = nf.Experiment({"x": nf.Categorical([1, 2, 3])}, _raise_huge,
                        nf.strategy.GridSearch(), _local(max_trials=3))
    with anyio.fail_after(120):
        await exp.run()
    assert exp.state is nf.ExperimentState.DONE
    by_x = {t.sample["x"]: t for t in exp.trials()}
    assert by_x[2].state is by_x[3].state is TrialState.SUCCEEDED
    failed = by_x[1]
    assert failed.state is TrialState.FAILED and failed.error is not None
    assert failed.error.type == "ValueError"  # not WorkerDied: the real error arrived
    assert failed.error.message.startswith("yyyy")
    assert "truncated" in failed.error.message and "2097152 characters" in failed.error.message
    assert len(failed.error.message) < 64 * 1024
    # the last frames: where it was raised
    assert "_raise_huge" in failed.error.traceback
    assert 'raise ValueError("y"' in failed.error.traceback


# --- 3. a metric past a float's range ----------------------------------------------------


def _too_big(model: Any, trial: Trial) -> Any:
    if trial.sample["x"] == 1:
        return 10**400
    if trial.sample["x"] == 2:
        trial.report(10**5000, step=1)  # repr() itself refuses ints this long
    return 1.0


async def test_a_metric_that_does_not_fit_a_float_is_a_metric_error_of_its_trial() -> None:
    exp = nf.Experiment({"x": nf.Categorical([1, 2, 3])}, _too_big,
                        nf.strategy.GridSearch(), _local(max_trials=3))
    with anyio.fail_after(120):
        await exp.run()
    assert exp.state is nf.ExperimentState.DONE
    by_x = {t.sample["x"]: t for t in exp.trials()}
    for x in (1, 2):
        error = by_x[x].error
        assert by_x[x].state is TrialState.FAILED and error is not None
        assert error.type == "MetricError", error  # not WorkerDied
        assert "fit a float" in error.message
    assert by_x[3].state is TrialState.SUCCEEDED


def test_to_number_turns_an_overflow_into_a_metric_error() -> None:
    from nasflow._kernel import to_number

    with pytest.raises(nf.MetricError, match="fit a float"):
        to_number(10**400)
    with pytest.raises(nf.MetricError, match="integer of"):
        to_number(10**5000)


# --- 4. the experiment killed while its workers start -----------------------------------


_PARENT = textwrap.dedent("""
    import os, subprocess, sys
    worker = subprocess.Popen(
        [sys.executable, "-m", "nasflow.worker", "--url", sys.argv[1],
         "--session", "worker-orphan", "--parent-pid", str(os.getpid()),
         "--connect-timeout", "600"],
        env={**os.environ, "NASFLOW_TOKEN": "t"}, start_new_session=True,
        stderr=open(sys.argv[2], "wb"))
    print(worker.pid, flush=True)
    sys.stdin.read()  # until the test kills us
""")


def test_a_worker_leaves_at_once_when_the_experiment_dies_while_it_starts(
        tmp_path: Path) -> None:
    # nothing listens at this address: a worker that missed its parent's death would
    # keep dialling for its connect timeout (600 s here, 30 s by default)
    url = f"ws://127.0.0.1:{_free_port()}/trial"
    log = tmp_path / "worker.log"
    parent = subprocess.Popen([sys.executable, "-c", _PARENT, url, str(log)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert parent.stdout is not None
    worker = psutil.Process(int(parent.stdout.readline()))
    # the worker is still importing: its parent dies before it could start watching
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    try:
        worker.wait(timeout=60)  # not our child: its exit code is not ours to read
    finally:
        if worker.is_running():
            worker.kill()
        parent.stdin.close()  # type: ignore[union-attr]
        parent.stdout.close()
    assert f"the experiment process {parent.pid} exited" in log.read_text()


def _free_port() -> int:
    """A port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- 5. the token in the workers' environment -------------------------------------------


def _report_environment(model: Any, trial: Trial) -> float:
    environ = Path("/proc/self/environ").read_bytes()
    cmdline = Path("/proc/self/cmdline").read_bytes()
    print(environ, cmdline)
    leaked = b"NASFLOW_TOKEN" in environ or b"--token\x00" in cmdline
    return 0.0 if leaked else 1.0


async def test_workers_hold_the_token_in_neither_environment_nor_command_line(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # a user's daemon token in the experiment's environment must not reach workers either
    monkeypatch.setenv("NASFLOW_TOKEN", "inherited-secret")
    exp = nf.Experiment({"x": nf.Categorical([1, 2])}, _report_environment,
                        nf.strategy.GridSearch(), _local(max_trials=2, concurrency=2))
    with anyio.fail_after(120):
        await exp.run()
    assert [t.metric for t in exp.trials()] == [1.0, 1.0]


# --- 6. protocol errors and floods after the handshake ----------------------------------


async def _open(manager: TrialManager) -> Any:
    headers = {"Authorization": f"Bearer {manager.token}"}
    ws = await connect(manager.url + "/tuner", additional_headers=headers, proxy=None)
    await ws.send(HELLO)
    assert orjson.loads(await ws.recv())["type"] == "welcome"
    return ws


async def _until_closed(ws: Any) -> tuple[list[dict[str, Any]], ConnectionClosed]:
    frames = []
    with pytest.raises(ConnectionClosed) as caught:
        while True:
            frames.append(orjson.loads(await ws.recv()))
    return frames, caught.value


async def test_a_protocol_error_after_the_handshake_closes_with_1002_and_a_reason() -> None:
    with anyio.fail_after(60):
        async with TrialManager(workers=1) as manager:
            ws = await _open(manager)
            await ws.send('{"type": "no_such_message", "seq": 1}')
            frames, closed = await _until_closed(ws)
    assert frames[-1]["type"] == "error"
    assert closed.rcvd is not None and closed.rcvd.code == 1002
    assert "no_such_message" in closed.rcvd.reason


async def test_a_flood_of_frames_is_cut_off_by_the_rate_limit_with_1008() -> None:
    limits = Limits(max_frame_rate=20, max_frame_burst=50)
    heartbeat = '{"type": "heartbeat"}'
    with anyio.fail_after(60):
        async with TrialManager(workers=1, limits=limits) as manager:
            ws = await _open(manager)
            try:
                for _ in range(5000):
                    await ws.send(heartbeat)
            except ConnectionClosed:
                pass  # cut off while still sending
            frames, closed = await _until_closed(ws)
    assert closed.rcvd is not None and closed.rcvd.code == 1008
    assert "rate" in closed.rcvd.reason
    assert any(f.get("code") == "rate_limited" for f in frames)


def test_rate_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="max_frame_rate"):
        Limits(max_frame_rate=0)


def test_the_payload_limit_defaults_to_2_gib_everywhere() -> None:
    assert Limits().max_payload_size == 2 * 1024**3
    assert nf.ExperimentConfig().max_payload_size == 2 * 1024**3


class Inspecting(Holding):
    """Returns the permission bits of the setup files the workers read."""

    def __init__(self, size: int, where: Path) -> None:
        super().__init__(size)
        self.where = where

    def __call__(self, model: Any, trial: Trial) -> float:
        assert len(self.blob) == 20 * _MB // 256 * 256
        [written] = self.where.iterdir()
        return float(written.stat().st_mode & 0o777)


async def test_a_setup_over_the_frame_limit_reaches_a_daemon_as_a_file(tmp_path: Path) -> None:
    # an experiment attached to a daemon writes the file itself (in its directory): the
    # tuner channel's setup frame is limited too; 20 MB is the probe's Classification
    with anyio.fail_after(180):
        async with TrialManager(workers=1, log_dir=tmp_path / "daemon") as manager:
            config = nf.ExperimentConfig(max_trials=1, manager=manager.url,
                                         token=manager.token)
            setups = experiment_dir("big-setup") / "workers" / "setups"
            exp = nf.Experiment({"x": nf.Categorical([1])}, Inspecting(20 * _MB, setups),
                                nf.strategy.GridSearch(), config, id="big-setup")
            await exp.run()
    [trial] = exp.trials()
    assert trial.state is TrialState.SUCCEEDED, trial.error
    assert trial.metric == 0o600
    assert list(setups.iterdir()) == []  # removed when the experiment left


async def test_a_bad_first_frame_closes_with_a_code_and_a_reason_too() -> None:
    with anyio.fail_after(60):
        async with TrialManager(workers=1) as manager:
            headers = {"Authorization": f"Bearer {manager.token}"}
            async with connect(manager.url + "/tuner", additional_headers=headers,
                               proxy=None) as ws:
                await ws.send("not json")
                frames, closed = await _until_closed(ws)
    assert frames[-1]["code"] == "malformed"
    assert closed.rcvd is not None and closed.rcvd.code == 1002
    assert closed.rcvd.reason.startswith("nasflow malformed:")
