"""Resuming: what an experiment's store says about where it stopped, and the checks that
keep a resumed experiment the same experiment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nasflow._kernel import (
    INTERRUPTED,
    KNOWN_ORIGINS,
    ExperimentState,
    Objective,
    TrialRecord,
    TrialState,
)
from nasflow._persist import decode_snapshot, load_object, owner_alive
from nasflow.config import ExperimentConfig
from nasflow.events import Event, IntermediateMetric, TrialEnded
from nasflow.exceptions import (
    ConfigError,
    ResumeError,
    SampleValidationError,
    StoreError,
)
from nasflow.experiment._feed import FEED_OPS, KnownResult, check_results
from nasflow.experiment._ledger import TrialLedger
from nasflow.experiment._ownership import locked_error, running_owner
from nasflow.experiment._policy import penalty_for
from nasflow.space import SearchSpace
from nasflow.store import DB_NAME, StoreReader, find_experiment
from nasflow.strategy import Scheduler, Strategy

__all__ = [
    "BUDGET_FIELDS",
    "Replay",
    "ResumeError",
    "ResumePlan",
    "Restored",
    "check_space",
    "config_differences",
    "load_for_resume",
    "plan_resume",
    "restore_state",
    "space_signature",
    "warm_start_results",
]

# fields that may differ on resume: where results live, and a secret never stored
_FREE_FIELDS = ("home", "token")
BUDGET_FIELDS = ("max_trials", "max_duration", "concurrency")
"""What a resume may change (``nnictl update trialnum|duration|concurrency``): the
budgets and how many trials run at once; any other difference is refused."""


def space_signature(space: SearchSpace) -> dict[str, str]:
    """``{label: kind and domain}``: what must match for a resume to be meaningful."""
    return {label: f"{type(c).__name__} {c.describe()}"
            for label, c in space.search_space().items()}


def config_differences(stored: dict[str, Any], given: ExperimentConfig
                       ) -> list[tuple[str, Any, Any]]:
    """The fields (but home, token and the budgets) in which ``given`` differs from
    ``stored``."""
    now = given.to_dict()
    return [(k, stored.get(k), now[k]) for k in now
            if k not in _FREE_FIELDS + BUDGET_FIELDS and stored.get(k) != now[k]]


@dataclass
class ResumePlan:
    """Where a stored experiment stands."""

    meta: dict[str, Any]
    records: list[TrialRecord]
    """Every trial, by id."""
    end_order: dict[int, int]
    """``{trial id: position in the end order}`` of ended trials."""
    snapshot: dict[str, Any] | None
    """The newest snapshot (strategy and scheduler state, results the strategy took)."""
    pending: list[TrialRecord] = field(default_factory=list)
    """Trials that were in flight: re-attached if still running, else run again."""
    fed: list[tuple[str, Any]] = field(default_factory=list)
    """``(op, entries)`` of every ``enqueue`` / ``add_results`` recorded, oldest first:
    taken again by the resumed run (what already ran or was added is dropped then)."""
    killed: dict[int, str] = field(default_factory=dict)
    """``{trial id: reason}`` of the trials a recorded ``kill`` change ended (``nasflow
    trial kill``): never run again, even if their end did not reach the store."""
    stored: dict[int, set[tuple[int, float]]] = field(default_factory=dict)
    """``(step, time)`` of the metrics stored for the attempt of each trial that was still
    WAITING/RUNNING (one that is re-attached may send some of them again)."""

    @property
    def next_id(self) -> int:
        return max((r.id for r in self.records), default=-1) + 1


def _interrupted(record: TrialRecord) -> bool:
    if record.state in (TrialState.WAITING, TrialState.RUNNING):
        return True  # the process died (kill -9, power) while it was in flight
    return (record.state is TrialState.CANCELED and record.error is not None
            and record.error.type == INTERRUPTED)


def plan_resume(directory: Path) -> ResumePlan:
    """Read the store of a stopped, crashed or finished experiment; ``ResumeError`` if its
    owner still runs (``ExperimentLockedError`` when it holds the lock)."""
    holder = running_owner(directory)
    if holder is not None:
        raise locked_error(directory.name, directory, holder)
    reader = StoreReader(directory / DB_NAME)
    try:
        reader.check()  # before anything trusts it (or a run writes to it)
        meta = reader.meta()
        state = ExperimentState(meta.get("state", "CREATED"))
        alive = owner_alive(meta.get("pid"), meta.get("pid_start"), meta.get("host"))
        if state is ExperimentState.RUNNING and alive is not False:
            where = f"process {meta.get('pid')} on {meta.get('host')}"
            raise ResumeError(
                f"experiment {meta.get('id')} is still running ({where}); stop it first "
                f"(nasflow stop {meta.get('id')}), or wait for it to end"
            )
        records = reader.trials()
        stored = {r.id: reader.metric_keys(r.id, r.attempt)
                  for r in records if not r.state.finished}
        end_order = reader.end_order()
        fed = [(c["op"], c["args"].get("entries")) for c in reader.changes(FEED_OPS)]
        killed = {c["args"]["trial"]: str(c["args"].get("reason") or "killed by the user")
                  for c in reader.changes(("kill",))
                  if (c["result"] or {}).get("killed")}
        raw = reader.latest_snapshot()
        try:
            snapshot = decode_snapshot(raw[1]) if raw else None
        except Exception as exc:
            raise StoreError(
                f"the strategy snapshot in {directory / DB_NAME} cannot be read ({exc!r}); "
                "resume with a fresh strategy by deleting the snapshots table row, or start "
                "a new experiment"
            ) from exc
    finally:
        reader.close()
    pending = [r for r in records if _interrupted(r)]
    return ResumePlan(meta=meta, records=records, end_order=end_order, snapshot=snapshot,
                      pending=pending, fed=fed, killed=killed,
                      stored={i: keys for i, keys in stored.items() if keys})


@dataclass
class Restored:
    """What ``Experiment.restore`` builds the experiment from."""

    directory: Path
    plan: ResumePlan
    config: ExperimentConfig
    space: Any
    evaluator: Any
    strategy: Any
    scheduler: Any

    @property
    def id(self) -> str:
        return str(self.plan.meta["id"])

    @property
    def name(self) -> str | None:
        return self.plan.meta.get("name")


def load_for_resume(id_or_path: str | os.PathLike[str], *, space: Any, evaluator: Any,
                    strategy: Any, config: ExperimentConfig | None, scheduler: Any,
                    home: str | os.PathLike[str] | None,
                    budget: dict[str, Any] | None = None) -> Restored:
    """``Experiment.restore``: where the experiment stopped, and the objects to rebuild it
    with (those not given are unpickled); ``ResumeError`` if the config differs but for
    ``BUDGET_FIELDS`` (``budget`` changes those of the stored or given config), or if a
    trial budget is below what already ran."""
    directory = find_experiment(id_or_path, home)
    plan = plan_resume(directory)
    meta = plan.meta
    stored = ExperimentConfig.from_dict(meta["config"])
    if config is not None:
        diff = config_differences(meta["config"], config)
        if diff:
            listed = "; ".join(f"{k}: stored {a!r}, given {b!r}" for k, a, b in diff)
            raise ResumeError(
                f"the config differs from the one experiment {meta['id']} was run with "
                f"({listed}). Resume without a config to use the stored one, or start "
                "a new experiment.", diff)
        stored = config
    if budget:
        stored = stored.replace(**budget)
    ran = sum(r.origin not in KNOWN_ORIGINS for r in plan.records)
    if stored.max_trials is not None and stored.max_trials < ran:
        raise ResumeError(
            f"max_trials={stored.max_trials} is below the {ran} trials experiment "
            f"{meta['id']} ran already; give at least {ran} (or None for no limit)",
            [("max_trials", meta["config"].get("max_trials"), stored.max_trials)])
    if space is None:
        space = load_object(directory, "space")
    if evaluator is None:
        evaluator = load_object(directory, "evaluator")
    if strategy is None:
        strategy = load_object(directory, "strategy")
    if scheduler is None and meta.get("scheduler"):
        scheduler = load_object(directory, "scheduler")
    return Restored(directory=directory, plan=plan, config=stored, space=space,
                    evaluator=evaluator, strategy=strategy, scheduler=scheduler)


def check_space(plan: ResumePlan, space: SearchSpace) -> None:
    """``ResumeError`` listing the labels whose domains differ from the stored space's."""
    meta = plan.meta
    mine, theirs = space_signature(space), meta.get("space") or {}
    if theirs and mine != theirs:
        diff = [(k, theirs.get(k), mine.get(k)) for k in sorted(set(mine) | set(theirs))
                if mine.get(k) != theirs.get(k)]
        listed = "; ".join(f"{k}: stored {a}, given {b}" for k, a, b in diff)
        raise ResumeError(
            f"the space differs from the one experiment {meta['id']} searched ({listed})",
            diff)


def restore_state(plan: ResumePlan, ledger: TrialLedger, strategy: Strategy,
                  scheduler: Scheduler | None, penalty: float | None
                  ) -> tuple[int, list[TrialRecord]]:
    """Load the stored trials into ``ledger`` and the strategy's (and scheduler's)
    snapshot; ``(results the strategy had taken, the ended trials it has not seen)``."""
    # those in flight when the process died count as in flight: the run settles them
    ledger.restore(plan.records, plan.next_id)
    for record in plan.records:
        metric = penalty_for(record, penalty)
        if metric is not None:
            ledger.penalise(record, metric)
    taken = 0
    if plan.snapshot is not None:
        snap = plan.snapshot
        strategy.load_state_dict(snap["strategy"])
        if scheduler is not None and snap.get("scheduler") is not None:
            scheduler.load_state_dict(snap["scheduler"])
        taken = int(snap.get("taken", 0))
    # trials that ended after the strategy last looked: it sees them first
    pending = {r.id for r in plan.pending}
    late = sorted((i for i, seq in plan.end_order.items() if seq > taken and i not in pending),
                  key=plan.end_order.__getitem__)
    return taken, [ledger[i] for i in late]


def warm_start_results(source: str | os.PathLike[str], space: SearchSpace,
                       objective: Objective, home: str | os.PathLike[str] | None
                       ) -> list[KnownResult]:
    """The succeeded trials of experiment ``source`` as known results for a warm start
    (origin ``"imported"``); refused, naming the trial, label and value, when one does
    not fit ``space``, or when the objectives differ."""
    directory = find_experiment(source, home)
    reader = StoreReader(directory / DB_NAME)
    try:
        meta = reader.meta()
        records = reader.trials([TrialState.SUCCEEDED])
    finally:
        reader.close()
    theirs = meta.get("objective")
    if theirs and dict(theirs) != dict(objective.directions):
        raise ConfigError(
            "warm_start", str(source),
            f"an experiment with the objective {dict(objective.directions)} (experiment "
            f"{meta.get('id')} optimised {theirs}); set ExperimentConfig(objective=...) to "
            "match, or add the results you mean with exp.add_results")
    out = []
    for r in records:
        if r.metric is None:
            continue
        entry = {"sample": r.sample, "metric": r.metrics if r.metrics is not None else r.metric}
        try:
            out += check_results(space, objective, [entry], origin="imported")
        except SampleValidationError as exc:
            raise SampleValidationError(
                exc.label, exc.value, exc.allowed, constraint=exc.constraint,
                reason=f"{exc.reason} (trial {r.id} of experiment {meta.get('id')}, taken "
                "by warm_start; warm-start from an experiment of the same space, or add "
                "the results that fit with exp.add_results)") from None
    return out


class Replay:
    """Metrics of re-attached trials that the store already holds, to drop once each.

    A process killed after its store committed some events but before it acked them to
    the manager gets them again when it resumes: the manager cannot know they were kept.
    They come first, in the order they were reported, so the first metric of a trial that
    is not stored means the rest of that trial's are new.
    """

    __slots__ = ("_stored",)

    def __init__(self, stored: dict[int, set[tuple[int, float]]]) -> None:
        self._stored = stored  # trial id -> {(step, time)} stored for its attempt

    def __bool__(self) -> bool:
        return bool(self._stored)

    def keep(self, trial_ids: set[int]) -> None:
        """Forget all but ``trial_ids`` (the trials that were re-attached)."""
        for trial_id in set(self._stored) - trial_ids:
            del self._stored[trial_id]

    def stored(self, event: Event) -> bool:
        """Whether ``event`` is a metric the store already holds (then drop it)."""
        if type(event) is IntermediateMetric:
            keys = self._stored.get(event.trial_id)
            if keys is None:
                return False
            key = (event.step, event.time)
            if key in keys:
                keys.discard(key)
                return True
            del self._stored[event.trial_id]
        elif type(event) is TrialEnded:
            self._stored.pop(event.trial_id, None)
        return False
