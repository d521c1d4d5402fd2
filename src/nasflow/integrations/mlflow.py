"""MLflow: one MLflow run per trial, under one MLflow experiment (``pip install
'nasflow[mlflow]'``).

An event subscriber: it follows ``exp.events()`` while the search runs.

    from nasflow.integrations import mlflow

    tracker = mlflow.MLflowTracker(exp, tracking_uri="sqlite:///mlflow.db")
    async with anyio.create_task_group() as tg:
        tg.start_soon(tracker.run)  # ends when the experiment's run ends
        await exp.run()

Each trial's run is named ``trial-<id>``; its params are the sample (lists and dicts as
JSON), its metrics every ``trial.report`` at its step (``metric`` for a float, each key of
a dict) and the final result as ``final/<name>``; the tag ``nasflow.state`` follows the
trial (WAITING, RUNNING, then its final state) and the run ends FINISHED (SUCCEEDED),
KILLED (CANCELED, EARLY_STOPPED) or FAILED (FAILED, TIMEOUT, with the error as the tag
``nasflow.error``). A re-queued attempt of a trial gets a run of its own.

MLflow's client does blocking I/O, so every call runs in a worker thread, one at a time
and in event order; a tracker slower than the search makes it wait (the subscription's
``buffer``), it never drops an event.
"""

from __future__ import annotations

import json
from typing import Any

import anyio

from nasflow._types import TrialState
from nasflow.events import (
    Event,
    FinalMetric,
    IntermediateMetric,
    TrialEnded,
    TrialStarted,
    TrialSubmitted,
)

__all__ = ["MLflowTracker"]

_RUN_STATUS = {
    TrialState.SUCCEEDED: "FINISHED",
    TrialState.CANCELED: "KILLED",
    TrialState.EARLY_STOPPED: "KILLED",
    TrialState.FAILED: "FAILED",
    TrialState.TIMEOUT: "FAILED",
}
_TRACKED = (TrialSubmitted, TrialStarted, IntermediateMetric, FinalMetric, TrialEnded)


def _client(tracking_uri: str | None) -> Any:
    try:
        from mlflow.tracking import MlflowClient
    except ImportError as exc:
        raise ImportError(
            "nasflow.integrations.mlflow needs MLflow; install it with pip install "
            "'nasflow[mlflow]' (or pip install mlflow)"
        ) from exc
    return MlflowClient(tracking_uri=tracking_uri)


class MLflowTracker:
    """Logs every trial of ``exp`` as an MLflow run (see the module docstring).

    It subscribes when built, so build it before ``exp.run()`` starts and no event is
    missed; then run ``await tracker.run()`` beside the search. ``tracking_uri`` is any
    MLflow tracking URI (``None``: MLflow's default, ``MLFLOW_TRACKING_URI``);
    ``experiment_name`` defaults to ``nasflow-<experiment name>`` and is created when
    missing.
    """

    def __init__(self, exp: Any, *, tracking_uri: str | None = None,
                 experiment_name: str | None = None, buffer: int | None = None) -> None:
        self.client = _client(tracking_uri)
        """The ``mlflow.tracking.MlflowClient`` it logs with."""
        self.experiment_name = experiment_name or f"nasflow-{exp.name}"
        """The MLflow experiment the runs go under."""
        self.experiment_id: str | None = None
        """Its MLflow id, once ``run`` has started."""
        self.runs: dict[int, str] = {}
        """``trial id -> MLflow run id`` of each trial's latest attempt."""
        self._nasflow_id = str(exp.id)
        self._events = exp.events(*_TRACKED, buffer=buffer)

    async def run(self) -> None:
        """Log events until the experiment's run ends."""
        self.experiment_id = await anyio.to_thread.run_sync(self._experiment)
        async with self._events:
            async for event in self._events:
                await anyio.to_thread.run_sync(self._log, event)

    # --- in the worker thread ----------------------------------------------------------

    def _experiment(self) -> str:
        found = self.client.get_experiment_by_name(self.experiment_name)
        if found is not None:
            return str(found.experiment_id)
        return str(self.client.create_experiment(
            self.experiment_name, tags={"nasflow.experiment_id": self._nasflow_id}))

    def _log(self, event: Event) -> None:
        c = self.client
        if isinstance(event, TrialSubmitted):
            run = c.create_run(self.experiment_id, run_name=f"trial-{event.trial_id}", tags={
                "nasflow.trial_id": str(event.trial_id),
                "nasflow.attempt": str(event.attempt),
                "nasflow.experiment_id": self._nasflow_id,
                "nasflow.hash": event.hash,
                "nasflow.state": TrialState.WAITING.value,
            })
            self.runs[event.trial_id] = run_id = run.info.run_id
            from mlflow.entities import Param

            c.log_batch(run_id, params=[Param(k, _param(v)) for k, v in event.sample.items()])
            return
        run_id = self.runs.get(event.trial_id)  # type: ignore[attr-defined]
        if run_id is None:  # a trial submitted before the tracker subscribed
            return
        if isinstance(event, TrialStarted):
            c.set_tag(run_id, "nasflow.state", TrialState.RUNNING.value)
        elif isinstance(event, IntermediateMetric):
            self._metrics(run_id, event.value, event.step, event.time, prefix="")
        elif isinstance(event, FinalMetric):
            self._metrics(run_id, event.value, 0, event.time, prefix="final/")
        elif isinstance(event, TrialEnded):
            c.set_tag(run_id, "nasflow.state", event.state.value)
            if event.error is not None:
                c.set_tag(run_id, "nasflow.error",
                          f"{event.error.type}: {event.error.message}"[:5000])
            c.set_terminated(run_id, _RUN_STATUS.get(event.state, "FAILED"),
                             end_time=int(event.time * 1000))

    def _metrics(self, run_id: str, value: float | dict[str, float], step: int,
                 time: float, *, prefix: str) -> None:
        from mlflow.entities import Metric

        items = value.items() if isinstance(value, dict) else [("metric", value)]
        stamp = int(time * 1000)
        self.client.log_batch(run_id, metrics=[
            Metric(f"{prefix}{k}", float(v), stamp, step) for k, v in items])


def _param(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)
