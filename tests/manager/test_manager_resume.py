"""Resuming an experiment whose process was killed while a daemon ran its trials: a trial
still held by the daemon is re-attached (same id, same attempt, run once, every metric
stored once); a trial whose workers are gone runs again as attempt 1."""

from __future__ import annotations

import signal
import sqlite3
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import anyio
import pytest
from _mgr_helpers import daemon, free_port
from anyio.abc import SocketAttribute, SocketListener, SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream
from anyio.streams.text import TextReceiveStream

import nasflow as nf
from nasflow.engine import ManagerEngine, TrialSpec
from nasflow.manager import new_token

SCRIPT = Path(__file__).parent / "scripts" / "reattach_search.py"
ID = "reattach-me"  # the script's experiment id
STEPS = [(step, step / 10) for step in range(6)]  # what trial 0 reports, in all


class Gate:
    """The test's end of the socket trial 0's evaluator blocks on."""

    def __init__(self, stream: SocketStream) -> None:
        self.stream = stream
        self._lines = BufferedByteReceiveStream(stream)

    async def line(self) -> str:
        """The evaluator's next line (``""``: its process is gone)."""
        try:
            return (await self._lines.receive_until(b"\n", 64)).decode()
        except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError):
            return ""

    async def release(self) -> None:
        await self.stream.send(b"g")
        assert await self.line() == "done"  # its last metric is reported


async def gate_listener() -> SocketListener:
    (listener,) = (await anyio.create_tcp_listener(local_host="127.0.0.1")).listeners
    assert isinstance(listener, SocketListener)
    return listener


async def blocked(listener: SocketListener, stack: AsyncExitStack) -> Gate:
    """The next evaluator that reached the gate (it reported steps 0-2 and waits)."""
    gate = Gate(await stack.enter_async_context(await listener.accept()))
    assert await gate.line() == "blocked"
    return gate


async def killed_mid_trial(url: str, listener: SocketListener, log: Path,
                           stack: AsyncExitStack) -> Gate:
    """Run the script until trial 0 blocks with its first metrics stored; ``kill -9`` it."""
    port = listener.extra(SocketAttribute.local_port)
    process = await anyio.open_process([sys.executable, str(SCRIPT), url, str(port), str(log)],
                                       stderr=None)
    async with process:
        assert process.stdout is not None
        gate = await blocked(listener, stack)
        out = ""
        async for chunk in TextReceiveStream(process.stdout):
            out += chunk
            if "STORED\n" in out:
                break
        process.send_signal(signal.SIGKILL)  # no goodbye to the manager, nothing flushed
        await process.wait()
    return gate


@asynccontextmanager
async def spied_reattach(monkeypatch: pytest.MonkeyPatch
                         ) -> AsyncIterator[tuple[list[set[int]], anyio.Event]]:
    """What ``ManagerEngine.reattach`` returned, and an event set once it did."""
    answers: list[set[int]] = []
    done = anyio.Event()
    original = ManagerEngine.reattach

    async def spy(self: ManagerEngine, specs: list[TrialSpec]) -> set[int]:
        ids = await original(self, specs)
        answers.append(ids)
        done.set()
        return ids

    monkeypatch.setattr(ManagerEngine, "reattach", spy)
    yield answers, done


def starts(log: Path) -> list[str]:
    return sorted(log.read_text().splitlines())


@pytest.mark.parametrize("ends_before_resume", [False, True],
                         ids=["runs-through-the-resume", "ends-while-nobody-listens"])
async def test_a_killed_experiment_reattaches_to_its_running_trial(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ends_before_resume: bool) -> None:
    token, log = new_token(), tmp_path / "log.txt"
    monkeypatch.setenv("NASFLOW_TOKEN", token)
    with anyio.fail_after(90):
        async with AsyncExitStack() as stack:
            d = await stack.enter_async_context(daemon(
                free_port(), token, "--workers", "1", "--log-dir", str(tmp_path / "logs")))
            listener = await stack.enter_async_context(await gate_listener())
            gate = await killed_mid_trial(d.url, listener, log, stack)
            if ends_before_resume:
                # its last metrics, final result and end reach the daemon while no
                # experiment is attached: the daemon must keep them for the resumed one
                await gate.release()
            async with spied_reattach(monkeypatch) as (answers, reattached):
                exp = nf.Experiment.restore(ID)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(exp.run)
                    await reattached.wait()
                    assert answers == [{0}]
                    if not ends_before_resume:
                        await gate.release()  # it goes on, reporting to the new process
    assert starts(log) == ["start 0 0", "start 1 0", "start 2 0"]  # trial 0 ran once
    with nf.load_experiment(ID) as saved:
        assert saved.state is nf.ExperimentState.DONE
        trials = saved.trials()
        assert [(t.id, t.attempt, t.state) for t in trials] == [
            (i, 0, nf.TrialState.SUCCEEDED) for i in range(3)]  # ids continue after 0
        assert trials[0].metric == 1.0
        # reported before the kill (stored by the dead process) and after it: each once
        assert saved.intermediates(0, attempt=0) == STEPS


async def test_a_trial_whose_daemon_restarted_runs_again_as_attempt_1(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token, log, port = new_token(), tmp_path / "log.txt", free_port()
    monkeypatch.setenv("NASFLOW_TOKEN", token)
    logs = ("--log-dir", str(tmp_path / "logs"))
    with anyio.fail_after(90):
        async with AsyncExitStack() as stack:
            listener = await stack.enter_async_context(await gate_listener())
            async with daemon(port, token, "--workers", "1", *logs) as first:
                gate = await killed_mid_trial(first.url, listener, log, stack)
                first.process.send_signal(signal.SIGINT)  # a stop: it stops its workers
                await first.process.wait()
            assert await gate.line() == ""  # the evaluator's process is gone
            second = await stack.enter_async_context(daemon(port, token, "--workers", "1",
                                                            *logs))
            async with spied_reattach(monkeypatch) as (answers, _):
                exp = nf.Experiment.restore(ID)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(exp.run)
                    again = await blocked(listener, stack)  # attempt 1, on the new daemon
                    assert answers == [set()]
                    await again.release()
            assert second.process.returncode is None
    assert starts(log) == ["start 0 0", "start 0 1", "start 1 0", "start 2 0"]
    with nf.load_experiment(ID) as saved:
        assert saved.state is nf.ExperimentState.DONE
        trials = saved.trials()
        assert [(t.id, t.attempt, t.state) for t in trials] == [
            (0, 1, nf.TrialState.SUCCEEDED), (1, 0, nf.TrialState.SUCCEEDED),
            (2, 0, nf.TrialState.SUCCEEDED)]
        assert saved.intermediates(0, attempt=0) == STEPS[:3]  # what the first attempt got to
        assert saved.intermediates(0, attempt=1) == STEPS


async def test_a_trial_the_dead_process_never_recorded_is_cancelled_then_run_afresh(
        tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed within a group commit of submitting it, the experiment never stored trial 0,
    but the daemon runs it: the resumed experiment submits its own trial 0 (same id, same
    attempt), which the daemon would ignore while it still has the old one. The old one
    is cancelled first, and the new one runs."""
    token, log = new_token(), tmp_path / "log.txt"
    monkeypatch.setenv("NASFLOW_TOKEN", token)
    with anyio.fail_after(90):
        async with AsyncExitStack() as stack:
            d = await stack.enter_async_context(daemon(
                free_port(), token, "--workers", "1", "--kill-grace", "0.5",
                "--log-dir", str(tmp_path / "logs")))
            listener = await stack.enter_async_context(await gate_listener())
            old = await killed_mid_trial(d.url, listener, log, stack)
            db = sqlite3.connect(home / "experiments" / ID / "experiment.db")
            with db:
                db.execute("DELETE FROM metrics")  # the commits the kill beat
                db.execute("DELETE FROM trials")
            db.close()
            async with spied_reattach(monkeypatch) as (answers, _):
                exp = nf.Experiment.restore(ID)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(exp.run)
                    assert await old.line() == ""  # cancelled, and killed: it was stuck
                    new = await blocked(listener, stack)
                    await new.release()
            assert answers == []  # nothing was in flight as far as the store knew
    assert starts(log) == ["start 0 0", "start 0 0", "start 1 0", "start 2 0"]
    with nf.load_experiment(ID) as saved:
        assert saved.state is nf.ExperimentState.DONE
        assert [(t.id, t.attempt, t.state) for t in saved.trials()] == [
            (i, 0, nf.TrialState.SUCCEEDED) for i in range(3)]
        assert saved.intermediates(0, attempt=0) == STEPS  # the new run's only
