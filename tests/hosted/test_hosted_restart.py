"""A ``nasflow manager`` daemon that hosts experiments dies (``kill -9``, or SIGTERM, its
restart signal) mid-search and comes back on the same address: every hosted experiment
resumes by itself and completes, each trial kept once, and a client that followed across
the restart sees every event once, numbered without a gap."""

from __future__ import annotations

import signal
import socket
import sys
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from anyio.abc import Process
from anyio.streams.text import TextReceiveStream

import nasflow as nf
from nasflow.events import Event, TrialEnded
from nasflow.hosted import submit_file
from nasflow.manager import new_token

TRIALS = 30


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def daemon(port: int, token: str, home: Path, logs: Path) -> AsyncIterator[Process]:
    """``nasflow manager`` hosting experiments under ``home``; yields once it listens."""
    command = [sys.executable, "-m", "nasflow.manager", "--port", str(port),
               f"--token={token}", "--workers", "2", "--home", str(home),
               "--log-dir", str(logs)]
    process = await anyio.open_process(command, stderr=None)
    assert process.stdout is not None
    try:
        buffer = ""
        with anyio.fail_after(30):
            async for chunk in TextReceiveStream(process.stdout):
                buffer += chunk
                if "url: " in buffer and buffer.endswith("\n"):
                    break
        yield process
    finally:
        with anyio.CancelScope(shield=True):  # the test may be cancelling us
            if process.returncode is None:
                process.send_signal(signal.SIGINT)
                with anyio.move_on_after(20):
                    await process.wait()
            if process.returncode is None:
                process.kill()
            await process.aclose()


def _search(directory: Path) -> Path:
    path = directory / "search.py"
    path.write_text(textwrap.dedent(f"""\
        import anyio
        import nasflow as nf

        SPACE = {{"a": nf.Categorical(list(range(10))), "b": nf.Categorical(list(range(10)))}}

        async def evaluate(model, trial):
            trial.report(0.5, step=0)
            await anyio.sleep(0.05)
            return trial.sample["a"] * 10 + trial.sample["b"]

        experiment = nf.Experiment(SPACE, evaluate, nf.strategy.Random(seed=1),
                                   nf.ExperimentConfig(max_trials={TRIALS}, concurrency=1))
        """))
    return path


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
async def test_a_restarted_daemon_resumes_every_hosted_experiment(
        tmp_path: Path, home: Path, how: signal.Signals) -> None:
    port, token = _free_port(), new_token()
    url = f"ws://127.0.0.1:{port}"
    search = _search(tmp_path)
    seen: list[tuple[int, Event]] = []
    with anyio.fail_after(150):
        async with anyio.create_task_group() as tg:
            first = await tg.start(_run_daemon, port, token, home, tmp_path / "logs")
            handles = [await submit_file(str(search), manager=url, token=token)
                       for _ in range(2)]

            running = anyio.Event()

            async def follow() -> None:
                async for pair in handles[0].numbered_events():
                    seen.append(pair)
                    if sum(isinstance(e, TrialEnded) for _, e in seen) == 3:
                        running.set()

            tg.start_soon(follow)
            await running.wait()
            first.send_signal(how)  # mid-search: both experiments have trials in flight
            await first.wait()
            second = await tg.start(_run_daemon, port, token, home, tmp_path / "logs")
            states = [await h.wait() for h in handles]
            assert states == [nf.ExperimentState.DONE] * 2
            second.send_signal(signal.SIGINT)  # a clean stop: nothing left to resume
    assert [s for s, _ in seen] == list(range(1, len(seen) + 1))  # no gap, none twice
    assert seen[-1][1].__class__.__name__ == "ExperimentFinished"
    infos = {i.id: i for i in nf.list_experiments(home)}
    for handle in handles:
        assert infos[handle.id].resumed == 1  # by the second daemon, by itself
        with nf.load_experiment(home / "experiments" / handle.id) as results:
            trials = results.trials()
            assert results.state is nf.ExperimentState.DONE
        assert [t.id for t in trials] == list(range(TRIALS))  # each kept once
        assert all(t.state is nf.TrialState.SUCCEEDED for t in trials)
        assert len({t.hash for t in trials}) == TRIALS


async def _run_daemon(port: int, token: str, home: Path, logs: Path, *,
                      task_status: anyio.abc.TaskStatus[Process]) -> None:
    async with daemon(port, token, home, logs) as process:
        task_status.started(process)
        await process.wait()
