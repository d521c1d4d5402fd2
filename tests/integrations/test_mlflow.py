"""``nasflow.integrations.mlflow`` (issue 16): one MLflow run per trial under one MLflow
experiment, against real local MLflow stores (a file store and a SQLite database)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mlflow.tracking import MlflowClient

import nasflow as nf
from nasflow.integrations import mlflow as nf_mlflow

SPACE = {"a": nf.Categorical([1, 2, 3]), "ops": nf.Categorical([["conv", "pool"]])}


def evaluate(model: None, trial: nf.Trial) -> float:
    if trial.sample["a"] == 3:
        raise ValueError("a=3 does not train")
    for step in range(3):
        trial.report({"default": trial.sample["a"] * (step + 1), "loss": 1.0 / (step + 1)},
                     step=step)
    return float(trial.sample["a"] * 10)


async def search(uri: str) -> tuple[nf.Experiment, nf_mlflow.MLflowTracker]:
    exp = nf.Experiment(SPACE, evaluate, nf.strategy.GridSearch(),
                        nf.ExperimentConfig(max_trials=3, objective={"default": "maximize"}),
                        name="grid")
    tracker = nf_mlflow.MLflowTracker(exp, tracking_uri=uri)
    async with anyio.create_task_group() as tg:
        tg.start_soon(tracker.run)
        await exp.run()
    return exp, tracker


def check(uri: str, exp: nf.Experiment, tracker: nf_mlflow.MLflowTracker) -> None:
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("nasflow-grid")
    assert experiment is not None and experiment.experiment_id == tracker.experiment_id
    runs = {r.data.tags["nasflow.trial_id"]: r for r in
            client.search_runs([experiment.experiment_id])}
    assert sorted(runs) == ["0", "1", "2"]
    for t in exp.trials():
        run = runs[str(t.id)]
        assert run.info.run_name == f"trial-{t.id}"
        assert run.data.params == {"a": str(t.sample["a"]), "ops": '["conv", "pool"]'}
        assert run.data.tags["nasflow.state"] == t.state.value
        if t.state is nf.TrialState.SUCCEEDED:
            a = t.sample["a"]
            history = client.get_metric_history(run.info.run_id, "default")
            assert sorted((m.step, m.value) for m in history) == [(0, a), (1, 2 * a),
                                                                   (2, 3 * a)]
            assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] \
                == [0, 1, 2]
            assert run.data.metrics["final/metric"] == 10.0 * a  # a float was returned
            assert run.info.status == "FINISHED"
        else:
            assert t.state is nf.TrialState.FAILED
            assert run.info.status == "FAILED"
            assert "a=3 does not train" in run.data.tags["nasflow.error"]


async def test_each_trial_is_a_run_in_a_file_store(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps it opt-in
    uri = (tmp_path / "mlruns").as_uri()
    exp, tracker = await search(uri)
    check(uri, exp, tracker)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # SQLAlchemy 2.1 under MLflow
async def test_each_trial_is_a_run_in_a_sqlite_store(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    exp, tracker = await search(uri)
    check(uri, exp, tracker)
    # a second search under the same MLflow experiment adds runs beside the first ones
    _, again = await search(uri)
    assert again.experiment_id == tracker.experiment_id
    client: Any = MlflowClient(tracking_uri=uri)
    assert len(client.search_runs([tracker.experiment_id])) == 6


def test_without_mlflow_the_error_says_how_to_install_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    exp = nf.Experiment(SPACE, evaluate, nf.strategy.GridSearch(),
                        nf.ExperimentConfig(max_trials=1))
    with pytest.raises(ImportError, match=r"pip install 'nasflow\[mlflow\]'"):
        nf_mlflow.MLflowTracker(exp)
