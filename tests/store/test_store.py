"""The SQLite store: durable results readable with nothing running, from another process,
and clear errors for missing or damaged stores."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import nasflow as nf

SCRIPT = textwrap.dedent("""
    import json, sys
    import nasflow as nf

    async def evaluate(model, trial):
        for step in range(3):
            trial.report(step * 0.1, step=step)
        return trial.sample["width"] / 100 + trial.sample["depth"] / 10

    space = {"width": nf.Categorical([8, 16, 32, 64]), "depth": nf.Categorical([1, 2, 3])}
    exp = nf.Experiment(space, evaluate, nf.strategy.Random(seed=0),
                        nf.ExperimentConfig(max_trials=6, concurrency=2), name="sub")
    nf.run(exp)
    print(json.dumps({"id": exp.id, "top": exp.export_top_models(3, formatter="dict")}))
""")


def test_export_after_the_process_exits(tmp_path: Path) -> None:
    script = tmp_path / "search.py"
    script.write_text(SCRIPT)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=120, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    with nf.load_experiment(result["id"]) as exp:
        assert exp.name == "sub" and exp.state is nf.ExperimentState.DONE
        assert exp.export_top_models(3, formatter="dict") == result["top"]
        records = exp.export_top_models(3)
        assert all(r.state is nf.TrialState.SUCCEEDED for r in records)
        assert [r.id for r in records] == sorted(
            (r.id for r in records), key=lambda i: -exp.trials()[i].metric)  # type: ignore[operator]
        assert len(exp.trials()) == 6
        assert exp.intermediates(records[0].id) == [(0, 0.0), (1, 0.1), (2, 0.2)]
        # the space of a dict search space is saved too: "instance" works from disk
        assert exp.export_top_models(1, formatter="instance") == result["top"][:1]
        assert exp.objective.directions == {"default": "maximize"}
    # by path as well as by id
    with nf.load_experiment(exp.directory) as again:
        assert again.id == result["id"]
    with nf.load_experiment(exp.directory / "experiment.db") as again:
        assert again.id == result["id"]


def test_unknown_experiment_lists_what_exists() -> None:
    with pytest.raises(nf.ExperimentNotFoundError, match="no experiment 'nope'"):
        nf.load_experiment("nope")


def test_a_damaged_store_names_the_file(home: Path) -> None:
    bad = home / "experiments" / "broken"
    bad.mkdir(parents=True)
    (bad / "experiment.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(nf.StoreError, match="experiment.db"):
        nf.load_experiment("broken")


async def test_a_new_experiment_never_reuses_an_existing_id() -> None:
    first = nf.Experiment({"x": nf.Categorical([1, 2])}, lambda m, t: 1.0,
                          nf.strategy.Random(), id="taken")
    await first.run()
    second = nf.Experiment({"x": nf.Categorical([1, 2])}, lambda m, t: 1.0,
                           nf.strategy.Random(), id="taken")
    with pytest.raises(nf.NasflowError, match="already exists"):
        await second.run()
    with nf.load_experiment("taken") as loaded:  # the first one is untouched
        assert len(loaded.trials()) == 2


async def test_instance_export_needs_the_space_when_it_could_not_be_saved() -> None:
    import threading

    lock = threading.Lock()  # not picklable: the space cannot be saved

    space = nf.SearchSpace({"x": nf.Categorical([1, 2]),
                            "c": nf.Constraint(lambda s: lock is not None, label="c")})
    exp = nf.Experiment(space, lambda m, t: float(t.sample["x"]), nf.strategy.GridSearch())
    await exp.run()
    with nf.load_experiment(exp.id) as loaded:
        assert loaded.export_top_models(1, formatter="dict") == [{"x": 2}]
        with pytest.raises(nf.NasflowError, match="Pass it yourself"):
            loaded.export_top_models(1, formatter="instance")
    with nf.load_experiment(exp.id, space=space) as loaded:
        assert loaded.export_top_models(1, formatter="instance") == [{"x": 2}]


async def test_a_store_that_cannot_be_opened_fails_the_run(home: Path) -> None:
    home.mkdir(parents=True)
    (home / "experiments").write_text("a file where a directory should be")
    exp = nf.Experiment({"x": nf.Categorical([1, 2])}, lambda m, t: 1.0, nf.strategy.Random())
    with pytest.raises(nf.StoreError, match="NASFLOW_HOME"):
        await exp.run()
    assert exp.state is nf.ExperimentState.FAILED


async def test_a_resubmitted_trial_in_one_commit_keeps_its_last_state(tmp_path: Path) -> None:
    """A trial ended by an update (its row predates this store object) and submitted again
    in the same commit must end with the new attempt's row, whatever the statement order."""
    import time

    from nasflow.events import TrialEnded, TrialStarted, TrialSubmitted
    from nasflow.store import ExperimentStore, StoreReader

    path = tmp_path / "experiment.db"
    first = ExperimentStore(path)
    await first.open({"id": "x"})
    first.put(TrialSubmitted(time=time.time(), trial_id=0, sample={"a": 1}, hash="h"))
    first.put(TrialStarted(time=time.time(), trial_id=0))
    await first.close()
    again = ExperimentStore(path)  # as after a resume: the row exists, this store has no copy
    await again.open({"id": "x"})
    again.put(TrialEnded(time=time.time(), trial_id=0, state=nf.TrialState.CANCELED,
                         error=nf.TrialError("Interrupted", "the process died")))
    again.put(TrialSubmitted(time=time.time(), trial_id=0, sample={"a": 1}, hash="h", attempt=1))
    again.put(TrialStarted(time=time.time(), trial_id=0, attempt=1))
    again.put(TrialEnded(time=time.time(), trial_id=0, state=nf.TrialState.SUCCEEDED))
    await again.close()
    (trial,) = StoreReader(path).trials()
    assert trial.state is nf.TrialState.SUCCEEDED and trial.attempt == 1 and trial.error is None
