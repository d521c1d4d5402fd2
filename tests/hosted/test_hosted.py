"""Hosted experiments on a daemon (in this process: a ``TrialManager`` with its ``Host``):
submit returns at once, clients detach and re-attach and see every event once, two
clients see the same feed, a wrong token gets nothing, a failing strategy fails alone."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

import nasflow as nf
from nasflow._event_json import event_to_dict
from nasflow.events import Event, ExperimentFinished, TrialEnded, TrialSubmitted
from nasflow.hosted import Host, hosting
from nasflow.manager import TrialManager

SPACE = {"a": nf.Categorical(list(range(8))), "b": nf.Categorical(list(range(8)))}


async def quick(model: None, trial: nf.Trial) -> float:
    trial.report(0.5, step=0)
    await anyio.sleep(0.01)
    return float(trial.sample["a"] * 8 + trial.sample["b"])


class Boom(nf.strategy.Random):
    """Submits two trials, then raises."""

    async def run(self, ctx: Any) -> None:
        first = await ctx.submit({"a": 0, "b": 0})
        await ctx.submit({"a": 1, "b": 1})
        await ctx.wait_trial(first.id)
        raise RuntimeError("the strategy broke")


def experiment(trials: int = 12, strategy: Any = None) -> nf.Experiment:
    return nf.Experiment(SPACE, quick, strategy or nf.strategy.Random(seed=3),
                         nf.ExperimentConfig(max_trials=trials, concurrency=2))


@asynccontextmanager
async def daemon(home: Path, workers: int = 2) -> AsyncIterator[tuple[TrialManager, Host]]:
    async with TrialManager(workers=workers) as manager:
        host = hosting(manager, home)
        async with anyio.create_task_group() as tg:
            await tg.start(host.run)
            yield manager, host
            await host.close()


def _key(event: Event) -> str:
    return repr(event_to_dict(event))


async def test_submit_detach_reattach_sees_every_event_once(home: Path) -> None:
    with anyio.fail_after(90):
        async with daemon(home) as (manager, _):
            handle = await nf.submit(experiment(), manager=manager.url, token=manager.token)
            assert isinstance(handle, nf.HostedExperiment)
            seen: list[tuple[int, Event]] = []
            async for seq, event in handle.numbered_events():
                seen.append((seq, event))
                if isinstance(event, TrialEnded) and event.trial_id == 2:
                    break  # the client detaches mid-search
            later = nf.attach(handle.id, manager=manager.url, token=manager.token)
            async for seq, event in later.numbered_events(after=seen[-1][0]):
                seen.append((seq, event))
            assert [s for s, _ in seen] == list(range(1, len(seen) + 1))  # none twice
            whole = [e async for e in later.events()]  # a new client: from the start
            assert [_key(e) for _, e in seen] == [_key(e) for e in whole]
            assert isinstance(whole[-1], ExperimentFinished)
            assert whole[-1].state is nf.ExperimentState.DONE
            assert sum(isinstance(e, TrialSubmitted) for e in whole) == 12
            assert sum(isinstance(e, TrialEnded) for e in whole) == 12
            assert await later.wait() is nf.ExperimentState.DONE
    with nf.load_experiment(home / "experiments" / handle.id) as results:
        assert [t.id for t in results.trials()] == list(range(12))  # the daemon's store
        assert all(t.state is nf.TrialState.SUCCEEDED for t in results.trials())


async def test_two_clients_follow_one_experiment(home: Path) -> None:
    with anyio.fail_after(90):
        async with daemon(home) as (manager, _):
            handle = await nf.submit(experiment(20), manager=manager.url,
                                     token=manager.token)
            feeds: dict[str, list[str]] = {"a": [], "b": []}

            async def follow(name: str) -> None:
                client = nf.attach(handle.id, manager=manager.url, token=manager.token)
                feeds[name] = [_key(e) async for e in client.events()]

            async with anyio.create_task_group() as tg:
                tg.start_soon(follow, "a")
                tg.start_soon(follow, "b")
    assert feeds["a"] == feeds["b"] and len(feeds["a"]) > 40


async def test_a_wrong_token_gets_nothing(home: Path) -> None:
    with anyio.fail_after(60):
        async with daemon(home) as (manager, host):
            with pytest.raises(nf.NasflowError, match="refused the token"):
                await nf.submit(experiment(), manager=manager.url, token="not-the-token")
            assert host.experiments == {}
            good = await nf.submit(experiment(2), manager=manager.url, token=manager.token)
            spy = nf.attach(good.id, manager=manager.url, token="not-the-token")
            with pytest.raises(nf.NasflowError, match="refused the token"):
                async for _ in spy.events():
                    pytest.fail("an event reached a client with a wrong token")
            assert await good.wait() is nf.ExperimentState.DONE


async def test_a_failing_hosted_experiment_fails_alone(home: Path) -> None:
    with anyio.fail_after(90):
        async with daemon(home) as (manager, host):
            fine = await nf.submit(experiment(16), manager=manager.url, token=manager.token)
            bad = await nf.submit(experiment(16, Boom()), manager=manager.url,
                                  token=manager.token)
            assert await bad.wait() is nf.ExperimentState.FAILED
            status = await bad.status()
            assert "the strategy broke" in status["error"]
            assert await fine.wait() is nf.ExperimentState.DONE
            assert not host.experiments[fine.id].error
    with nf.load_experiment(home / "experiments" / fine.id) as results:
        assert len(results.trials()) == 16


async def test_a_core_error_does_not_fail_a_hosted_experiment(
        home: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Hosted engines call the daemon's core in memory: an error the core raises (a bug
    of its own) must not reach the experiment's submit, as over a socket it would only
    drop a connection. The experiment sets up again and every trial runs once."""
    with anyio.fail_after(90):
        async with daemon(home) as (manager, host):
            core = manager.core
            real_submit, failed = core.submit, []

            def submit(port: Any, message: Any) -> None:
                if message.trial_id == 2 and not failed:
                    failed.append(message)
                    raise RuntimeError("a bug in the core")
                real_submit(port, message)

            core.submit = submit
            other = await nf.submit(experiment(8), manager=manager.url, token=manager.token)
            handle = await nf.submit(experiment(), manager=manager.url, token=manager.token)
            assert await handle.wait() is nf.ExperimentState.DONE
            assert await other.wait() is nf.ExperimentState.DONE
            assert failed and not host.experiments[handle.id].error
    assert "a bug in the core" in caplog.text
    with nf.load_experiment(home / "experiments" / handle.id) as results:
        assert [t.id for t in results.trials()] == list(range(12))
        assert all(t.state is nf.TrialState.SUCCEEDED for t in results.trials())


async def test_nasflow_submit_and_the_cli_on_a_hosted_experiment(home: Path,
                                                                  tmp_path: Path) -> None:
    search = tmp_path / "search.py"
    search.write_text(
        "import anyio\nimport nasflow as nf\n\n"
        "SPACE = {'a': nf.Categorical(list(range(100))), 'b': nf.Categorical(list(range(100)))}"
        "\n\n"
        "async def evaluate(model, trial):\n"
        "    print('hello from', trial.id)\n"
        "    await anyio.sleep(0.2 if trial.id >= 3 else 0.01)\n"
        "    return float(trial.sample['a'])\n\n"
        "experiment = nf.Experiment(SPACE, evaluate, nf.strategy.Random(seed=2),\n"
        "                           nf.ExperimentConfig(max_trials=9000, concurrency=2))\n")
    # (far more than it can run: only the stop ends it, however slow the CLI calls are)

    async def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return await anyio.run_process([sys.executable, "-m", "nasflow", *args], check=False)

    with anyio.fail_after(120):
        async with daemon(home) as (manager, host):
            out = await cli("submit", str(search), "--manager", manager.url, "--token",
                            manager.token, "--max-trials", "4000")
            assert out.returncode == 0, out.stderr
            exp_id = out.stdout.decode().strip().rsplit(" ", 1)[-1]
            assert host.experiments[exp_id].exp.config.max_trials == 4000  # the override
            log = await cli("log", exp_id, "2", "--follow", "--home", str(home))
            assert log.stdout.decode() == "hello from 2\n"  # trial 2 of the daemon's store
            shown = await cli("show", exp_id, "--home", str(home))
            assert b"RUNNING" in shown.stdout
            stop = await cli("stop", exp_id, "--wait", "--home", str(home))
            assert stop.returncode == 0, stop.stderr
            assert await nf.attach(exp_id, manager=manager.url,
                                   token=manager.token).wait() is nf.ExperimentState.STOPPED
            bad = await cli("submit", str(tmp_path / "missing.py"), "--manager", manager.url,
                            "--token", manager.token)
            assert bad.returncode == 1 and b"no such file" in bad.stderr
    mark = json.loads((home / "experiments" / exp_id / "hosted.json").read_text())
    assert mark["resume"] is False  # a user's stop: a restart leaves it stopped


class Blocking(nf.strategy.Random):
    """Blocks the loop for a second before searching (what a strategy must not do)."""

    async def run(self, ctx: Any) -> None:
        time.sleep(1.0)  # sync work on the loop
        await super().run(ctx)


async def test_a_strategy_that_blocks_the_loop_is_reported(home: Path,
                                                          caplog: pytest.LogCaptureFixture
                                                          ) -> None:
    with anyio.fail_after(90):
        async with daemon(home) as (manager, host):
            fine = await nf.submit(experiment(6), manager=manager.url, token=manager.token)
            slow = await nf.submit(experiment(6, Blocking(seed=1)), manager=manager.url,
                                   token=manager.token)
            assert await slow.wait() is nf.ExperimentState.DONE
            assert await fine.wait() is nf.ExperimentState.DONE
    (_, seconds, running), *_ = host.blocked
    assert seconds >= 0.5 and slow.id in running
    assert "event loop was blocked" in caplog.text


async def test_runtime_changes_from_the_cli_reach_a_hosted_experiment(home: Path,
                                                                       tmp_path: Path) -> None:
    # issue 15 on a daemon that hosts the experiment: update, trial kill, enqueue and
    # import from another process (--home: the daemon's), through its control endpoint
    search = tmp_path / "search.py"
    search.write_text(
        "import anyio\nimport nasflow as nf\n\n"
        "SPACE = {'a': nf.Categorical(list(range(100))), 'b': nf.Categorical(list(range(100)))}"
        "\n\n"
        "async def evaluate(model, trial):\n"
        "    if trial.id == 0:\n"
        "        await anyio.sleep_forever()  # until it is killed\n"
        "    return float(trial.sample['a'])\n\n"
        "experiment = nf.Experiment(SPACE, evaluate, nf.strategy.Random(seed=2),\n"
        "                           nf.ExperimentConfig(max_trials=5, concurrency=1))\n")

    async def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return await anyio.run_process([sys.executable, "-m", "nasflow", *args, "--home",
                                        str(home)], check=False)

    results = tmp_path / "r.jsonl"
    results.write_text('{"sample": {"a": 98, "b": 98}, "metric": 98.0}\n')
    with anyio.fail_after(120):
        async with daemon(home) as (manager, host):
            out = await anyio.run_process(
                [sys.executable, "-m", "nasflow", "submit", str(search), "--manager",
                 manager.url, "--token", manager.token], check=False)
            assert out.returncode == 0, out.stderr
            exp_id = out.stdout.decode().strip().rsplit(" ", 1)[-1]
            exp = host.experiments[exp_id].exp
            # built by the daemon: its first events may precede any subscription of ours
            while not any(t.state is nf.TrialState.RUNNING for t in exp.trials()):  # noqa: ASYNC110
                await anyio.sleep(0.05)  # until trial 0 holds the only slot
            refused = await cli("update", exp_id, "--concurrency", "0")
            assert refused.returncode == 1 and b"concurrency must be" in refused.stderr
            # queued while the slot is held; the raised concurrency runs it first
            for args in (("enqueue", exp_id, "--sample", '{"a": 99, "b": 99}'),
                         ("import", exp_id, str(results)),
                         ("update", exp_id, "--concurrency", "2", "--max-trials", "6"),
                         ("trial", "kill", exp_id, "0")):
                done = await cli(*args)
                assert done.returncode == 0, (args, done.stderr)
            state = await nf.attach(exp_id, manager=manager.url, token=manager.token).wait()
    assert state is nf.ExperimentState.DONE
    assert (exp.config.concurrency, exp.config.max_trials) == (2, 6)
    trials = {t.id: t for t in exp.trials()}
    assert trials[0].state is nf.TrialState.CANCELED and trials[0].error is not None
    assert trials[0].error.type == "Killed"
    by_sample = {(t.sample["a"], t.sample["b"]): t for t in exp.trials()}
    assert by_sample[99, 99].origin == "enqueued"
    assert by_sample[99, 99].state is nf.TrialState.SUCCEEDED
    assert (by_sample[98, 98].origin, by_sample[98, 98].metric) == ("added", 98.0)
    assert len(trials) == 7  # six counted, one added
    from nasflow.store import DB_NAME, StoreReader

    reader = StoreReader(exp.directory / DB_NAME)
    try:
        assert [(c["op"], c["source"]) for c in reader.changes()] == [
            ("enqueue", "cli"), ("add_results", "cli"), ("update", "cli"), ("kill", "cli")]
    finally:
        reader.close()
