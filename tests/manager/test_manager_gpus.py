"""GPU slots: CUDA_VISIBLE_DEVICES per worker, and requests that can never be met."""

from __future__ import annotations

import os
import socket
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import SocketAttribute
from anyio.streams.buffered import BufferedByteReceiveStream

import nasflow as nf
from nasflow.evaluator import Trial
from nasflow.exceptions import ConfigError
from nasflow.manager import _gpus
from nasflow.manager._gpus import plan_slots, visible_gpus


def report_gpu_and_wait(model: Any, trial: Trial) -> float:
    # say which GPU this worker sees, then wait until every worker has said so
    port = int(os.environ["NASFLOW_TEST_PORT"])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        gpu = os.environ.get("CUDA_VISIBLE_DEVICES", "unset")
        sock.sendall(f"{os.getpid()} {gpu}\n".encode())
        sock.recv(1)
    return 1.0


async def test_each_worker_gets_its_gpu_share(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_gpus, "visible_gpus", lambda: ["0", "1"])  # no GPU needed
    listener = (await anyio.create_tcp_listener(local_host="127.0.0.1")).listeners[0]
    monkeypatch.setenv("NASFLOW_TEST_PORT", str(listener.extra(SocketAttribute.local_port)))
    exp = nf.Experiment(
        {"x": nf.Categorical([1, 2, 3, 4])}, report_gpu_and_wait, nf.strategy.GridSearch(),
        nf.ExperimentConfig(concurrency=4, training_service="local", gpus=[0, 1],
                            trials_per_gpu=2, store=False),
    )
    seen: list[tuple[str, str]] = []
    with anyio.fail_after(60):
        async with listener, exp:
            streams = [await listener.accept() for _ in range(4)]  # all four run at once
            for stream in streams:
                line = await BufferedByteReceiveStream(stream).receive_until(b"\n", 100)
                pid, gpu = line.decode().split()
                seen.append((pid, gpu))
            for stream in streams:
                await stream.send(b"x")
                await stream.aclose()
    assert len({pid for pid, _ in seen}) == 4
    assert Counter(gpu for _, gpu in seen) == {"0": 2, "1": 2}
    assert [t.state.value for t in exp.trials()] == ["SUCCEEDED"] * 4


@pytest.mark.parametrize(("shown", "config", "match"), [
    ([], {"gpus": [0]}, "no GPU"),
    (["0"], {"gpus": [0, 1]}, r"\[1\] can never be used"),
])
async def test_an_unsatisfiable_gpu_request_fails_at_once(
        monkeypatch: pytest.MonkeyPatch, shown: list[str], config: dict[str, Any],
        match: str) -> None:
    monkeypatch.setattr(_gpus, "visible_gpus", lambda: shown)
    exp = nf.Experiment({"x": nf.Categorical([1])}, report_gpu_and_wait,
                        nf.strategy.Random(),
                        nf.ExperimentConfig(training_service="local", store=False, **config))
    with anyio.fail_after(30), pytest.raises(ConfigError, match=match):
        await exp.run()
    assert exp.trials() == []


def test_more_trials_than_gpu_shares_is_refused_by_the_config() -> None:
    with pytest.raises(ConfigError, match=r"len\(gpus\) \* trials_per_gpu = 1 \* 2 = 2"):
        nf.ExperimentConfig(training_service="local", gpus=[0], concurrency=3,
                            trials_per_gpu=2)


def test_slots_spread_over_gpus_first() -> None:
    assert plan_slots([0, 1], 2, 2, available=["0", "1"]) == ["0", "1"]
    assert plan_slots([1, 0], 2, 3, available=["a", "b"]) == ["b", "a", "b"]
    assert plan_slots(None, 1, 2) == [None, None]
    with pytest.raises(ConfigError, match="at least one GPU"):
        plan_slots([], 1, 1, available=["0"])


def test_visible_gpus_follows_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,1")
    assert visible_gpus() == ["3", "1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert visible_gpus() == []
    assert plan_slots([1], 1, 1, available=["3", "1"]) == ["1"]


def test_no_gpu_driver_means_no_gpus(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(_gpus, "_NVIDIA_PROC", tmp_path / "missing")
    assert visible_gpus() == []


async def test_workers_started_by_a_raised_concurrency_get_their_gpu_share(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # an embedded manager that grows plans the new workers' CUDA_VISIBLE_DEVICES the way
    # it planned the first one's: spread over the GPUs, trials_per_gpu each
    monkeypatch.setattr(_gpus, "visible_gpus", lambda: ["0", "1"])  # no GPU needed
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    listener = (await anyio.create_tcp_listener(local_host="127.0.0.1")).listeners[0]
    monkeypatch.setenv("NASFLOW_TEST_PORT", str(listener.extra(SocketAttribute.local_port)))
    exp = nf.Experiment(
        {"x": nf.Categorical([1, 2, 3, 4])}, report_gpu_and_wait, nf.strategy.GridSearch(),
        nf.ExperimentConfig(concurrency=1, training_service="local", gpus=[0, 1],
                            trials_per_gpu=2, store=False),
    )
    seen: list[tuple[str, str]] = []
    with anyio.fail_after(90):  # a guard against hanging, not an assertion on time
        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(exp.run)
            streams = [await listener.accept()]  # the first worker's trial runs
            with pytest.raises(nf.ChangeRefusedError, match="trials_per_gpu"):
                await exp.update(concurrency=5)  # more than the GPU shares: refused
            await exp.update(concurrency=4)
            streams += [await listener.accept() for _ in range(3)]  # all four run at once
            for stream in streams:
                line = await BufferedByteReceiveStream(stream).receive_until(b"\n", 100)
                pid, gpu = line.decode().split()
                seen.append((pid, gpu))
            for stream in streams:
                await stream.send(b"x")
                await stream.aclose()
    assert len({pid for pid, _ in seen}) == 4
    assert Counter(gpu for _, gpu in seen) == {"0": 2, "1": 2}
    assert [t.state.value for t in exp.trials()] == ["SUCCEEDED"] * 4
