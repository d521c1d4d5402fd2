"""Resume: after a clean stop, a cancelled run or ``kill -9``, every completed trial is
kept once and never re-run, interrupted trials run again under their id, ids continue,
the strategy continues from its snapshot; mismatches and damage are clear errors."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

import nasflow as nf
from nasflow.engine import Engine, EngineSetup, TrialSpec
from nasflow.events import FinalMetric, IntermediateMetric, TrialEnded, TrialStarted
from nasflow.store import StoreReader
from nasflow.strategy import Strategy, StrategyContext

SPACE = {"a": nf.Categorical(list(range(10))), "b": nf.Categorical(list(range(10)))}


def value(sample: dict[str, Any]) -> float:
    return sample["a"] * 10 + sample["b"]


async def test_stop_then_resume_runs_interrupted_trials_again() -> None:
    gate = anyio.Event()
    seen: list[tuple[int, int]] = []

    async def evaluate(model: None, trial: nf.Trial) -> float:
        seen.append((trial.id, trial.attempt))
        if trial.id >= 4:
            await gate.wait()  # trials 4 and 5 are still running when we stop
        return value(trial.sample)

    exp = nf.Experiment(SPACE, evaluate, nf.strategy.Random(seed=1),
                        nf.ExperimentConfig(max_trials=10, concurrency=2))
    started = exp.events(TrialStarted)
    async with exp:
        async for ev in started:  # trials 0-3 finish at once; 4 and 5 then block
            if ev.trial_id == 5:
                break
        await exp.stop()
    before = {t.id: t for t in exp.trials()}
    assert [before[i].state for i in (4, 5)] == [nf.TrialState.CANCELED] * 2
    assert before[4].error is not None and before[4].error.type == "Interrupted"

    gate.set()
    resumed = nf.Experiment.restore(exp.id, evaluator=evaluate)
    await resumed.run()
    after = {t.id: t for t in resumed.trials()}
    assert sorted(after) == list(range(10))  # ids continue, budget respected
    assert all(t.state is nf.TrialState.SUCCEEDED for t in after.values())
    for i in range(4):  # completed before: kept as they were, never run again
        assert after[i].metric == before[i].metric and after[i].attempt == 0
        assert seen.count((i, 0)) == 1 and (i, 1) not in seen
    assert after[4].attempt == 1 and after[5].attempt == 1  # run again, same id
    assert len({t.hash for t in after.values()}) == 10  # Random's dedup survived
    with nf.load_experiment(exp.id) as saved:
        assert saved.state is nf.ExperimentState.DONE
        assert [t.attempt for t in saved.trials()][4:6] == [1, 1]


class TakeLater(Strategy):
    """Submits three trials, and only looks at results when run again: a resumed run must
    hand it the results that ended after its snapshot."""

    def __init__(self) -> None:
        self.told: list[int] = []
        self.submitted = False

    async def run(self, ctx: StrategyContext) -> None:
        self.told += [r.id for r in ctx.take_results()]
        if not self.submitted:
            self.submitted = True
            for sample in list(ctx.space.grid())[:3]:
                await ctx.submit(sample)

    def state_dict(self) -> dict[str, Any]:
        return {"told": self.told, "submitted": self.submitted}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.told, self.submitted = list(state["told"]), state["submitted"]


async def test_the_strategy_continues_from_its_snapshot() -> None:
    async def evaluate(model: None, trial: nf.Trial) -> float:
        return float(trial.sample["a"])  # the space has no "b": value() failed every trial

    exp = nf.Experiment({"a": nf.Categorical(list(range(6)))}, evaluate, TakeLater(),
                        nf.ExperimentConfig(max_trials=5))
    await exp.run()
    assert exp.strategy.told == []  # type: ignore[attr-defined]
    # the budgets and concurrency may change on resume (issue 15); nothing else may
    with pytest.raises(nf.ResumeError, match="retry"):
        nf.Experiment.restore(exp.id, config=nf.ExperimentConfig(max_trials=6, retry=1))
    more = nf.Experiment.restore(exp.id, config=nf.ExperimentConfig(max_trials=5))
    assert isinstance(more.strategy, TakeLater)
    await more.run()
    # restored from the snapshot (submitted=True: no new trials), then handed the three
    # results that had ended after it
    assert more.strategy.told == [0, 1, 2]
    assert len(more.trials()) == 3


async def test_mismatches_are_listed() -> None:
    exp = nf.Experiment(SPACE, lambda m, t: 1.0, nf.strategy.Random(),
                        nf.ExperimentConfig(max_trials=2, concurrency=1))
    await exp.run()
    with pytest.raises(nf.ResumeError, match="retry: stored 0, given 2") as err:
        nf.Experiment.restore(exp.id, config=nf.ExperimentConfig(max_trials=2, concurrency=2,
                                                                 retry=2))
    assert err.value.differences == [("retry", 0, 2)]  # concurrency may change (issue 15)
    other = {"a": nf.Categorical(list(range(9))), "b": nf.Categorical(list(range(10)))}
    with pytest.raises(nf.ResumeError, match="space differs.*'a'|space differs.*a:"):
        nf.Experiment.restore(exp.id, space=other)


async def test_a_running_experiment_is_not_resumed_twice() -> None:
    started = anyio.Event()

    async def forever(model: None, trial: nf.Trial) -> float:
        started.set()
        await anyio.sleep_forever()
        return 0.0

    exp = nf.Experiment(SPACE, forever, nf.strategy.Random())
    async with exp:
        await started.wait()
        with pytest.raises(nf.ResumeError, match="still running"):
            nf.Experiment.restore(exp.id)
        await exp.stop()


async def test_a_requeued_trial_continues_from_its_checkpoint() -> None:
    gate = anyio.Event()

    checkpointed = anyio.Event()

    def evaluate(model: None, trial: nf.Trial) -> float:
        state = trial.load_checkpoint() or {"step": 0}
        for step in range(state["step"], 4):
            trial.report(float(step), step=step)
            trial.save_checkpoint({"step": step + 1}, step=step)
            if step == 1 and trial.attempt == 0:
                anyio.from_thread.run_sync(checkpointed.set)
                anyio.from_thread.run(gate.wait)  # stopped here on the first attempt
        return float(state["step"])  # where this attempt started

    exp = nf.Experiment({"a": nf.Categorical([1])}, evaluate, nf.strategy.Random())
    async with exp:
        await checkpointed.wait()
        await exp.stop()
    gate.set()
    resumed = await nf.Experiment.resume(exp.id, evaluator=evaluate)
    (trial,) = resumed.trials()
    assert trial.state is nf.TrialState.SUCCEEDED and trial.attempt == 1
    assert trial.metric == 2.0  # the second attempt started at step 2, not 0
    with nf.load_experiment(exp.id) as saved:
        assert saved.intermediates(0) == [(2, 2.0), (3, 3.0)]  # the latest attempt's
        assert saved.intermediates(0, attempt=0) == [(0, 0.0), (1, 1.0)]


async def test_missing_pickles_say_what_to_pass(home: Path) -> None:
    exp = nf.Experiment(SPACE, lambda m, t: 1.0, nf.strategy.Random(),
                        nf.ExperimentConfig(max_trials=1))
    await exp.run()
    (exp.directory / "evaluator.pkl").unlink()
    with pytest.raises(nf.NasflowError, match=r"evaluator=\.\.\."):
        nf.Experiment.restore(exp.id)


async def test_a_damaged_snapshot_is_named() -> None:
    import sqlite3

    exp = nf.Experiment(SPACE, lambda m, t: 1.0, nf.strategy.Random(),
                        nf.ExperimentConfig(max_trials=2))
    await exp.run()
    with sqlite3.connect(exp.directory / "experiment.db") as db:
        db.execute("UPDATE snapshots SET state = ?", (b"Xgarbage",))
    with pytest.raises(nf.StoreError, match="snapshot"):
        nf.Experiment.restore(exp.id)


# --- kill -9 ----------------------------------------------------------------------------------

KILLED_SCRIPT = textwrap.dedent("""
    import sys, time
    import nasflow as nf

    LOG = sys.argv[3]
    space = {"a": nf.Categorical(list(range(20))), "b": nf.Categorical(list(range(20)))}

    def evaluate(model, trial):
        with open(LOG, "a") as f:
            f.write(f"start {trial.id} {trial.attempt}\\n")
        for step in range(3):
            time.sleep(0.04)  # simulated work
            trial.report(step / 10, step=step)
        return trial.sample["a"] * 20 + trial.sample["b"]

    if sys.argv[1] == "new":
        exp = nf.Experiment(space, evaluate, nf.strategy.Random(seed=7),
                            nf.ExperimentConfig(max_trials=int(sys.argv[2]), concurrency=2),
                            id="killme")
        nf.run(exp)
    else:
        nf.run(nf.Experiment.restore("killme"))
""")


def test_kill_9_at_random_moments_loses_nothing(tmp_path: Path, home: Path) -> None:
    budget, kills = 60, 5
    script, log = tmp_path / "search.py", tmp_path / "log.txt"
    script.write_text(KILLED_SCRIPT)
    env = {**os.environ, "NASFLOW_HOME": str(home)}
    rng = random.Random(int(os.environ.get("NASFLOW_KILL_SEED", "1234")))
    completed: dict[int, tuple[float, int]] = {}  # id -> (metric, attempt) when first seen
    survived = mid_run = 0
    for round_ in range(kills + 1):
        mode = "new" if round_ == 0 else "resume"
        proc = subprocess.Popen([sys.executable, str(script), mode, str(budget), str(log)],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if round_ < kills:
            time.sleep(rng.uniform(0.6, 1.6))  # a random moment in the run
            proc.send_signal(signal.SIGKILL)
            survived += 1
        _, err = proc.communicate(timeout=120)
        if round_ == kills:
            assert proc.returncode == 0, err.decode()[-2000:]
        if not (home / "experiments" / "killme" / "experiment.db").exists():
            continue  # killed before the store existed: the next round starts anew
        with nf.load_experiment("killme") as exp:
            trials = exp.trials()
        if round_ < kills and any(not t.state.finished for t in trials):
            mid_run += 1  # this kill hit while trials were in flight
        for t in trials:
            if t.state is nf.TrialState.SUCCEEDED:
                if t.id in completed:  # kept exactly as it was, never re-run
                    assert (t.metric, t.attempt) == completed[t.id], t
                else:
                    completed[t.id] = (t.metric, t.attempt)  # type: ignore[assignment]
    with nf.load_experiment("killme") as exp:
        final = exp.trials()
        assert exp.state is nf.ExperimentState.DONE
    assert [t.id for t in final] == list(range(budget))  # continuous ids, the whole budget
    assert all(t.state is nf.TrialState.SUCCEEDED for t in final)
    assert len({t.hash for t in final}) == budget  # none duplicated
    starts = [tuple(map(int, line.split()[1:])) for line in log.read_text().splitlines()]
    for trial_id, (_, attempt) in completed.items():
        later = [a for i, a in starts if i == trial_id and a > attempt]
        assert not later, f"completed trial {trial_id} was run again: attempts {later}"
    assert survived == kills and len(completed) == budget
    assert mid_run >= 2, "the kills should hit the search while trials run"
    print(f"kill -9: {survived} kills ({mid_run} mid-trial) survived, {budget} trials checked")


# --- re-attach --------------------------------------------------------------------------------

STORED_THEN_KILLED = textwrap.dedent("""
    import time
    import anyio
    import nasflow as nf
    from nasflow.events import IntermediateMetric

    def evaluate(model, trial):
        for step in range(2):
            trial.report(step / 10, step=step)
        time.sleep(3600)  # killed here

    async def main():
        exp = nf.Experiment({"x": nf.Categorical([1])}, evaluate, nf.strategy.GridSearch(),
                            nf.ExperimentConfig(max_trials=1), id="replayed")
        metrics = exp.events(IntermediateMetric)
        async with exp:
            async for event in metrics:
                if event.step == 1:
                    await exp._store.flush()
                    print("STORED", flush=True)

    anyio.run(main)
""")


class ReplayingEngine(Engine):
    """Re-attaches the trial it is offered and sends its events the way a manager does to
    a process that took over from one killed after its store committed some events but
    before it acked them: those events again, then the new ones."""

    def __init__(self, setup: EngineSetup, stored: set[tuple[int, float]]) -> None:
        super().__init__(setup)
        self._stored = sorted(stored)

    @property
    def capacity(self) -> int:
        return 1

    @property
    def running(self) -> frozenset[int]:
        return frozenset()

    async def submit(self, spec: TrialSpec) -> None:
        raise AssertionError(f"nothing should be submitted, got {spec}")

    def cancel(self, trial_id: int, state: nf.TrialState = nf.TrialState.CANCELED,
               reason: str = "", *, interrupted: bool = False) -> bool:
        return False

    async def wait_idle(self) -> None:
        return None

    async def reattach(self, specs: list[TrialSpec]) -> set[int]:
        (spec,) = specs
        publish = self.setup.publish
        for step, when in [*self._stored, (2, time.time()), (3, time.time())]:
            await publish(IntermediateMetric(time=when, trial_id=spec.id, step=step,
                                             value=step / 10, metric=step / 10))
        await publish(FinalMetric(time=time.time(), trial_id=spec.id, value=1.0, metric=1.0))
        await publish(TrialEnded(time=time.time(), trial_id=spec.id,
                                 state=nf.TrialState.SUCCEEDED))
        return {spec.id}


def test_metrics_a_reattached_trial_sends_again_are_stored_once(tmp_path: Path,
                                                                home: Path) -> None:
    script = tmp_path / "search.py"
    script.write_text(STORED_THEN_KILLED)
    env = {**os.environ, "NASFLOW_HOME": str(home)}
    proc = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"STORED\n"  # steps 0 and 1 are committed
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    reader = StoreReader(home / "experiments" / "replayed" / "experiment.db")
    stored = reader.metric_keys(0, 0)
    reader.close()
    assert [step for step, _ in sorted(stored)] == [0, 1]

    resumed = nf.Experiment.restore("replayed")
    resumed.engine_factory = lambda setup: ReplayingEngine(setup, stored)
    nf.run(resumed)
    with nf.load_experiment("replayed") as saved:
        assert saved.state is nf.ExperimentState.DONE
        [trial] = saved.trials()
        assert (trial.state, trial.attempt, trial.metric) == (nf.TrialState.SUCCEEDED, 0, 1.0)
        assert saved.intermediates(0) == [(0, 0.0), (1, 0.1), (2, 0.2), (3, 0.3)]


QUEUED_SCRIPT = textwrap.dedent("""
    import json, os, sys, time
    import nasflow as nf

    LOG, GATE = sys.argv[2], sys.argv[3]
    space = {"a": nf.Categorical(list(range(10))), "b": nf.Categorical(list(range(10)))}

    def evaluate(model, trial):
        with open(LOG, "a") as f:
            f.write(json.dumps([trial.id, trial.attempt, trial.sample]) + "\\n")
        while not os.path.exists(GATE):  # the first trial holds the only slot
            time.sleep(0.02)
        return trial.sample["a"] * 10 + trial.sample["b"]

    if sys.argv[1] == "new":
        nf.run(nf.Experiment(space, evaluate, nf.strategy.Random(seed=5),
                             nf.ExperimentConfig(max_trials=6, concurrency=1), id="queued"))
    else:
        nf.run(nf.Experiment.restore("queued"))
""")


def test_kill_9_while_enqueued_samples_wait_then_resume_runs_each_once(
        tmp_path: Path, home: Path) -> None:
    import json

    from nasflow.cli import main

    script, log, gate = tmp_path / "search.py", tmp_path / "log.jsonl", tmp_path / "gate"
    script.write_text(QUEUED_SCRIPT)
    env = {**os.environ, "NASFLOW_HOME": str(home)}
    queued = [{"a": 9, "b": i} for i in range(4)]
    proc = subprocess.Popen([sys.executable, str(script), "new", str(log), str(gate)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60  # a guard against hanging, not a timed assertion
        while not (log.exists() and log.read_text()):  # trial 0 runs, at the gate
            assert proc.poll() is None and time.monotonic() < deadline, proc.poll()
            time.sleep(0.05)
        samples = tmp_path / "s.jsonl"
        samples.write_text("".join(json.dumps(s) + "\n" for s in queued))
        # acknowledged by the running experiment: committed before it answers
        assert main(["enqueue", "queued", "--file", str(samples)]) == 0
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    starts = [json.loads(line) for line in log.read_text().splitlines()]
    assert [s[0] for s in starts] == [0]  # none of the queued samples had started
    gate.touch()
    resumed = subprocess.run([sys.executable, str(script), "resume", str(log), str(gate)],
                             env=env, capture_output=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr.decode()[-2000:]
    with nf.load_experiment("queued") as exp:
        trials = exp.trials()
        assert exp.state is nf.ExperimentState.DONE
    runs = [json.loads(line)[2] for line in log.read_text().splitlines()]
    for sample in queued:  # each queued sample ran exactly once, as an enqueued trial
        assert runs.count(sample) == 1, (sample, runs)
        (trial,) = [t for t in trials if t.sample == sample]
        assert (trial.state, trial.origin) == (nf.TrialState.SUCCEEDED, "enqueued")
    assert [t.id for t in trials] == list(range(6))  # ids contiguous, the whole budget
    assert trials[0].attempt == 1  # the trial the kill interrupted ran again
    # before the strategy's next proposal
    assert [t.origin for t in trials[1:5]] == ["enqueued"] * 4
