"""What a run is built from: the ``RunSetup`` (what the experiment is), the
``StopSwitch`` (the first request to end it), and what a run derives from them alone --
its engine (``make_engine``: the configured training service, or the experiment's engine
factory) and the metadata it writes into the store when it opens it (``store_meta``).

Pure construction: nothing here runs, waits or publishes; ``Run`` (``_run.py``) does.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from nasflow._kernel import ExperimentState, Objective
from nasflow._persist import process_start_time
from nasflow._version import __version__
from nasflow.config import ExperimentConfig
from nasflow.engine import Engine, EngineSetup, InProcessEngine, ManagerEngine, Publish
from nasflow.experiment._resume import ResumePlan, space_signature
from nasflow.protocol import Limits
from nasflow.space import SearchSpace
from nasflow.strategy import Budget, Scheduler, Strategy

__all__ = ["RunSetup", "StopSwitch", "make_engine", "store_meta"]


@dataclass(frozen=True)
class RunSetup:
    """What the experiment is: everything a run reads and never changes."""

    id: str
    name: str
    directory: Path
    config: ExperimentConfig
    space: Any
    search_space: SearchSpace
    evaluator: Any
    strategy: Strategy
    scheduler: Scheduler | None
    objective: Objective
    engine_factory: Callable[[EngineSetup], Engine] | None
    trial_directory: Callable[[int], Path]


class StopSwitch:
    """The first request to end the search (``stop()``, a target, a deadline, a failure),
    and the cancel scope it ends. May be thrown before the run starts."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.request: tuple[ExperimentState, str] | None = None
        """The first request: the state to end in and why."""
        self._scope: anyio.CancelScope | None = None

    def __call__(self, state: ExperimentState, reason: str) -> bool:
        """Ask the search to end; whether this was the first request."""
        first = self.request is None
        if first:
            self.request = (state, reason)
        self.budget.stopping = True
        if self._scope is not None:
            self._scope.cancel()
        return first

    def guard(self, scope: anyio.CancelScope) -> None:
        """Cancel ``scope`` on a request (at once, if one came already)."""
        self._scope = scope
        if self.request is not None:
            scope.cancel()


def make_engine(setup: RunSetup, config: ExperimentConfig, *, publish: Publish,
                flush: Callable[[], Awaitable[None]] | None) -> Engine:
    """The engine of one run: ``setup.engine_factory``'s, else the training service's of
    ``config`` (the config as it is now: a runtime update may have changed it)."""
    cfg = config
    engine_setup = EngineSetup(
        space=setup.space,
        evaluator=setup.evaluator,
        objective=setup.objective,
        publish=publish,
        trial_directory=setup.trial_directory,
        experiment_id=setup.id,
        concurrency=cfg.concurrency,
        trial_timeout=cfg.trial_timeout,  # type: ignore[arg-type]
        flush=flush,
    )
    if setup.engine_factory is not None:
        return setup.engine_factory(engine_setup)
    if cfg.manager is None and (
            cfg.training_service == "inprocess"
            # a one-shot search runs no trials: its supernet is one Ray task (ctx.ray)
            or getattr(setup.strategy, "evaluates_itself", False)):
        return InProcessEngine(engine_setup)
    return ManagerEngine(
        engine_setup,
        manager=cfg.manager,
        token=cfg.token or os.environ.get("NASFLOW_TOKEN"),
        gpus=cfg.gpus,  # type: ignore[arg-type]
        trials_per_gpu=cfg.trials_per_gpu,
        max_trials_per_worker=cfg.max_trials_per_worker,
        reattach_timeout=cfg.reattach_timeout,  # type: ignore[arg-type]
        log_dir=setup.directory / "workers",
        limits=Limits(max_payload_size=cfg.max_payload_size),
        ray=cfg.training_service == "ray",
        ray_address=cfg.ray_address,
        trial_resources=cfg.trial_resources,
    )


def store_meta(setup: RunSetup, plan: ResumePlan | None) -> dict[str, Any]:
    """What a run writes into the store's metadata as it opens it: who owns it now, and
    (a new experiment) what the experiment is, or (a resume) the config it goes on with."""
    owner = {
        "state": ExperimentState.RUNNING.value,
        "pid": os.getpid(),
        "pid_start": process_start_time(os.getpid()),
        "host": socket.gethostname(),
        "started_at": time.time(),
        "ended_at": None,
    }
    if plan is not None:
        # the budget and concurrency may have changed (BUDGET_FIELDS)
        return {**owner, "resumed": int(plan.meta.get("resumed", 0)) + 1,
                "config": setup.config.to_dict()}
    return {
        **owner,
        "id": setup.id,
        "name": setup.name,
        "created_at": owner["started_at"],
        "config": setup.config.to_dict(),
        "objective": setup.objective.directions,
        "labels": setup.search_space.labels,
        "space": space_signature(setup.search_space),
        "strategy": repr(setup.strategy),
        "evaluator": repr(setup.evaluator),
        "scheduler": None if setup.scheduler is None else repr(setup.scheduler),
        "nasflow_version": __version__,
    }
