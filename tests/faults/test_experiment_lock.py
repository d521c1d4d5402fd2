"""One run of an experiment at a time: two resumes racing each other (issue 10).

The outside probe: two processes calling ``restore()`` + ``run()`` within ~20 ms both
proceeded (19 of 19 at <= 10 ms apart), every remaining trial ran twice and 128-136
metrics were stored twice. Ownership is now an exclusive ``flock`` held for the run.
"""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
import textwrap
from pathlib import Path

import anyio
import pytest
from tests.faults._crash import crash_experiment

import nasflow as nf
from nasflow.events import TrialStarted

RESUMER = textwrap.dedent("""
    import os, sys
    import nasflow as nf

    exp_id, log, gate, go = sys.argv[1:5]
    first = [True]

    def evaluate(model, trial):
        with open(log, "a") as f:
            f.write(f"{os.getpid()} {trial.id} {trial.attempt}\\n")
        trial.report(0.1, step=0)
        if first[0]:  # the run's first trial waits until the test saw the other refused
            first[0] = False
            with open(gate) as f:  # a FIFO
                f.read()
        trial.report(0.2, step=1)
        return float(trial.sample["a"] * 30 + trial.sample["b"])

    exp = nf.Experiment.restore(exp_id, evaluator=evaluate)
    with open(go) as f:  # a FIFO: the test lets both resumers go at once
        f.read()
    try:
        nf.run(exp)
    except nf.ResumeError as exc:
        print("REFUSED", type(exc).__name__, exc, flush=True)
        sys.exit(3)
    print("RAN", flush=True)
""")


def test_two_resumes_a_few_ms_apart_one_runs_the_other_names_its_pid(
        tmp_path: Path, home: Path) -> None:
    directory = crash_experiment(tmp_path, home, "twice")
    script, log = tmp_path / "resume.py", tmp_path / "starts.txt"
    gate = tmp_path / "gate"
    gos = [tmp_path / f"go{i}" for i in range(2)]
    for fifo in (gate, *gos):
        os.mkfifo(fifo)
    script.write_text(RESUMER)
    env = {**os.environ, "NASFLOW_HOME": str(home)}
    procs = [subprocess.Popen([sys.executable, str(script), "twice", str(log), str(gate),
                               str(go)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for go in gos]
    try:
        # each open returns once that resumer has restored (nothing refused either: no run
        # has begun) and waits at its FIFO; closing both lets them go together, a few
        # microseconds apart (the probe raced them at <= 10 ms)
        fds = [os.open(go, os.O_WRONLY) for go in gos]
        for fd in fds:
            os.close(fd)
        refused = _first_line(procs)
        assert refused is not None, "neither resumer was refused"
        loser, line = refused
        winner = next(p for p in procs if p is not loser)
        assert line.startswith("REFUSED ExperimentLockedError"), line
        assert f"process {winner.pid} on" in line and "still running" in line, line
        assert "nasflow stop twice" in line, line
        with gate.open("w") as f:  # the winner goes on
            f.write("go")
        outs = {p.pid: p.communicate(timeout=120) for p in procs}
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert winner.returncode == 0, outs[winner.pid][1].decode()[-2000:]
    assert loser.returncode == 3, outs[loser.pid][1].decode()[-2000:]
    starts = [tuple(map(int, line.split())) for line in log.read_text().splitlines()]
    assert {pid for pid, _, _ in starts} == {winner.pid}  # the loser ran nothing
    assert len({(i, a) for _, i, a in starts}) == len(starts)  # nothing ran twice
    with nf.load_experiment("twice") as exp:
        trials = exp.trials()
        assert [t.id for t in trials] == list(range(12))
        assert all(t.state is nf.TrialState.SUCCEEDED for t in trials)
        for t in trials:  # no metric stored twice
            assert [s for s, _ in exp.intermediates(t.id)] == [0, 1], t.id
    assert not (directory / "experiment.db").with_name("experiment.lock").stat().st_mode & 0o077


def _first_line(procs: list[subprocess.Popen[bytes]]) -> tuple[subprocess.Popen[bytes],
                                                                 str] | None:
    """The first line either process prints, with that process (the winner prints only
    once the test opens the gate, so this is the loser's)."""
    with selectors.DefaultSelector() as sel:
        for p in procs:
            assert p.stdout is not None
            sel.register(p.stdout, selectors.EVENT_READ, p)
        for key, _ in sel.select(timeout=120):  # a bound for a hang, never reached
            proc = key.data
            return proc, proc.stdout.readline().decode().strip()
    return None


async def test_a_second_run_in_the_same_process_is_refused_at_once(tmp_path: Path,
                                                                   home: Path) -> None:
    # flock belongs to an open file: two Experiment objects of one process exclude each other
    crash_experiment(tmp_path, home, "inproc")
    first = nf.Experiment.restore("inproc")
    second = nf.Experiment.restore("inproc")  # before the first runs: nothing refuses it
    started = first.events(TrialStarted)
    with anyio.fail_after(120):
        async with first:
            async for _ in started:
                break
            with pytest.raises(nf.ExperimentLockedError) as caught:
                await second.run()
            assert caught.value.pid == os.getpid()
            assert f"process {os.getpid()} on" in str(caught.value)
            with pytest.raises(nf.ExperimentLockedError, match="still running"):
                nf.Experiment.restore("inproc")  # restore() itself asks the lock too
    assert first.state is nf.ExperimentState.DONE
    # the first run is over: the stale second is refused, not run over the first's trials
    with pytest.raises(nf.ResumeError, match=r"restore\(\) again"):
        await second.run()
    with nf.load_experiment("inproc") as exp:
        assert [t.id for t in exp.trials()] == list(range(12))
    await nf.Experiment.restore("inproc").run()  # a fresh restore is fine


async def test_nasflow_resume_while_it_runs_fails_at_once_naming_the_owner() -> None:
    release = anyio.Event()

    async def evaluate(model: None, trial: nf.Trial) -> float:
        await release.wait()
        return 1.0

    exp = nf.Experiment({"x": nf.Categorical([1, 2])}, evaluate, nf.strategy.GridSearch(),
                        id="busy")
    started = exp.events(TrialStarted)
    with anyio.fail_after(120):
        async with exp:
            async for _ in started:
                break
            proc = await anyio.run_process(
                [sys.executable, "-m", "nasflow", "resume", "busy"], check=False)
            release.set()
    err = proc.stderr.decode()
    assert proc.returncode == 1, err
    assert "still running" in err and f"process {os.getpid()} on" in err, err
    with nf.load_experiment("busy") as saved:
        assert [t.state for t in saved.trials()] == [nf.TrialState.SUCCEEDED] * 2


async def test_nasflow_list_tells_a_running_experiment_by_its_lock() -> None:
    from nasflow.store import experiment_info

    release = anyio.Event()

    async def evaluate(model: None, trial: nf.Trial) -> float:
        await release.wait()
        return 1.0

    exp = nf.Experiment({"x": nf.Categorical([1])}, evaluate, nf.strategy.GridSearch())
    started = exp.events(TrialStarted)
    with anyio.fail_after(60):
        async with exp:
            async for _ in started:
                break
            assert experiment_info(exp.directory).state == nf.ExperimentState.RUNNING
            release.set()
    assert experiment_info(exp.directory).state == nf.ExperimentState.DONE


def test_a_killed_owner_frees_the_lock_and_list_says_crashed(tmp_path: Path,
                                                             home: Path) -> None:
    from nasflow.store import experiment_info

    directory = crash_experiment(tmp_path, home, "killed")
    assert (directory / "experiment.lock").is_file()
    assert experiment_info(directory).state == nf.ExperimentState.CRASHED
    nf.run(nf.Experiment.restore("killed"))  # the kernel freed the lock at the kill
    with nf.load_experiment("killed") as exp:
        assert len(exp.trials()) == 12
