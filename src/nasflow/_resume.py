"""Resuming: what an experiment's store says about where it stopped, and the checks that
keep a resumed experiment the same experiment."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nasflow._ownership import locked_error, running_owner
from nasflow._persist import decode_snapshot, load_object, owner_alive
from nasflow._types import INTERRUPTED, ExperimentState, TrialError, TrialRecord, TrialState
from nasflow.config import ExperimentConfig
from nasflow.engine import Engine, TrialSpec
from nasflow.events import Event, IntermediateMetric, TrialEnded, TrialSubmitted
from nasflow.exceptions import ExperimentNotFoundError, ResumeError, StoreError
from nasflow.space import SearchSpace
from nasflow.store import DB_NAME, StoreReader, experiment_dir, nasflow_home

__all__ = [
    "Replay",
    "ResumeError",
    "ResumePlan",
    "config_differences",
    "find_experiment",
    "plan_resume",
    "requeue",
    "restore_experiment",
    "restore_state",
    "space_signature",
]

if TYPE_CHECKING:
    from nasflow._context import ExperimentContext
    from nasflow.experiment import Experiment

# fields that may differ on resume: where results live, and a secret never stored
_FREE_FIELDS = ("home", "token")


def find_experiment(id_or_path: str | os.PathLike[str], home: str | os.PathLike[str] | None
                    ) -> Path:
    """The directory of an experiment given by id (under ``NASFLOW_HOME``) or by the path
    of its directory or database; ``ExperimentNotFoundError`` listing known ids else."""
    candidate = Path(id_or_path).expanduser()
    if candidate.is_file() and candidate.name == DB_NAME:
        candidate = candidate.parent
    if not (candidate / DB_NAME).is_file():
        candidate = experiment_dir(str(id_or_path), home)
    if not (candidate / DB_NAME).is_file():
        root = nasflow_home(home) / "experiments"
        known = sorted(p.name for p in root.iterdir()) if root.is_dir() else []
        raise ExperimentNotFoundError(
            f"no experiment {str(id_or_path)!r}: not a directory with {DB_NAME} and not an "
            f"id under {root} (known ids: {known[:20] or 'none'}). Check the id, or set "
            "NASFLOW_HOME to where it was run."
        )
    return candidate


def space_signature(space: SearchSpace) -> dict[str, str]:
    """``{label: kind and domain}``: what must match for a resume to be meaningful."""
    return {label: f"{type(c).__name__} {c.describe()}"
            for label, c in space.search_space().items()}


def config_differences(stored: dict[str, Any], given: ExperimentConfig
                       ) -> list[tuple[str, Any, Any]]:
    """The fields (but home and token) in which ``given`` differs from ``stored``."""
    now = given.to_dict()
    return [(k, stored.get(k), now[k]) for k in now
            if k not in _FREE_FIELDS and stored.get(k) != now[k]]


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
                      pending=pending, stored={i: keys for i, keys in stored.items() if keys})


def restore_experiment(cls: type[Experiment], id_or_path: str | os.PathLike[str], *,
                       space: Any, evaluator: Any, strategy: Any,
                       config: ExperimentConfig | None, scheduler: Any,
                       home: str | os.PathLike[str] | None) -> Experiment:
    """``Experiment.restore``: rebuild the experiment and check it is the same one."""
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
    if space is None:
        space = load_object(directory, "space")
    if evaluator is None:
        evaluator = load_object(directory, "evaluator")
    if strategy is None:
        strategy = load_object(directory, "strategy")
    if scheduler is None and meta.get("scheduler"):
        scheduler = load_object(directory, "scheduler")
    exp = cls(space, evaluator, strategy, stored, name=meta.get("name"), id=meta["id"],
              scheduler=scheduler)
    mine, theirs = space_signature(exp.search_space), meta.get("space") or {}
    if theirs and mine != theirs:
        diff = [(k, theirs.get(k), mine.get(k)) for k in sorted(set(mine) | set(theirs))
                if mine.get(k) != theirs.get(k)]
        listed = "; ".join(f"{k}: stored {a}, given {b}" for k, a, b in diff)
        raise ResumeError(
            f"the space differs from the one experiment {meta['id']} searched ({listed})",
            diff)
    exp.directory = directory
    exp._plan = plan
    return exp


def restore_state(exp: Experiment, plan: ResumePlan, ctx: ExperimentContext) -> None:
    """Load the stored trials, the strategy's snapshot and what it had not yet seen."""
    for record in plan.records:
        exp._records[record.id] = record
        exp._hashes.setdefault(record.hash, record.id)
        exp._penalise(record)
        if not record.state.finished:
            exp._inflight += 1  # in flight when the process died: requeue() settles it
    exp._next_id = plan.next_id
    exp._budget.submitted = len(plan.records)
    taken = 0
    if plan.snapshot is not None:
        snap = plan.snapshot
        exp.strategy.load_state_dict(snap["strategy"])
        if exp.scheduler is not None and snap.get("scheduler") is not None:
            exp.scheduler.load_state_dict(snap["scheduler"])
        taken = int(snap.get("taken", 0))
    # trials that ended after the strategy last looked: it sees them first
    pending = {r.id for r in plan.pending}
    late = sorted((i for i, seq in plan.end_order.items() if seq > taken and i not in pending),
                  key=plan.end_order.__getitem__)
    ctx._restore(taken, [exp._records[i] for i in late])


async def requeue(exp: Experiment, plan: ResumePlan, engine: Engine) -> None:
    """Trials in flight when the experiment stopped: re-attach those still running (a
    manager's workers), run the others again under the same id (attempt + 1)."""
    if not plan.pending:
        return
    specs = [TrialSpec(r.id, r.sample, r.attempt) for r in plan.pending]
    if plan.stored:
        # before reattach: the engine may publish a re-attached trial's events at once
        exp._replay = Replay(dict(plan.stored))
    attached = await engine.reattach(specs)
    if exp._replay is not None:
        exp._replay.keep(attached)
        if not exp._replay:
            exp._replay = None
    again = [r for r in plan.pending if r.id not in attached]
    now = time.time()
    for record in again:
        if not record.state.finished:  # the process died under it: record that first
            await exp._publish(TrialEnded(
                time=now, trial_id=record.id, state=TrialState.CANCELED,
                error=TrialError(INTERRUPTED, "the process running the experiment ended"),
            ))
    assert exp._ctx is not None
    for record in again:
        await exp._ctx.wait_capacity()
        attempt = record.attempt + 1
        exp._attempt0[record.id] = attempt  # retries (ExperimentConfig.retry) count from here
        await exp._publish(TrialSubmitted(time=time.time(), trial_id=record.id,
                                          sample=record.sample, hash=record.hash,
                                          attempt=attempt))
        await engine.submit(TrialSpec(record.id, record.sample, attempt))


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
