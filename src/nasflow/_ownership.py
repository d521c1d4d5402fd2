"""Who may run an experiment: one process at a time, decided atomically.

A run takes the experiment directory's lock (``store/_lock.py``) before it writes
anything and gives it up once its store is closed. Under the lock it checks what a check
made earlier (at ``restore()``) cannot settle: that the experiment is still new (a fresh
run) or still where ``restore()`` found it (a resume), so two ``restore()`` + ``run()``
pairs racing each other can never both run its remaining trials.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nasflow.exceptions import ExperimentLockedError, NasflowError, ResumeError
from nasflow.store import DB_NAME, StoreReader
from nasflow.store._lock import ExperimentLock, lock_owner, take_lock

if TYPE_CHECKING:
    from nasflow.experiment import Experiment

__all__ = ["locked_error", "running_owner", "take_ownership"]

_log = logging.getLogger("nasflow.experiment")


def locked_error(experiment_id: str, directory: Path, owner: dict[str, Any]
                 ) -> ExperimentLockedError:
    """The error for a run refused because ``owner`` holds the lock."""
    pid, host = owner.get("pid"), owner.get("host")
    since = owner.get("since")
    when = (f" since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(since))}"
            if isinstance(since, (int, float)) else "")
    lock = directory / "experiment.lock"
    return ExperimentLockedError(
        f"experiment {experiment_id} is still running: process {pid if pid else '?'} on "
        f"{host or '?'} holds its lock ({lock}){when}. Only one process runs an experiment "
        f"at a time. Wait for that run to end, or stop it (nasflow stop {experiment_id}), "
        "then resume again; if that process is gone, its lock is already free and "
        "resuming again works",
        pid=pid if isinstance(pid, int) else None,
        host=host if isinstance(host, str) else None, lock=lock,
    )


def running_owner(directory: Path) -> dict[str, Any] | None:
    """The holder of the experiment's lock, or ``None`` when no run holds it (or it cannot
    be told here: the lock file cannot be opened)."""
    try:
        return lock_owner(directory)
    except OSError:
        return None


def take_ownership(exp: Experiment) -> ExperimentLock | None:
    """Take ``exp``'s lock for its run (``None`` for an experiment without a store), or
    raise: ``ExperimentLockedError`` if another run holds it, ``NasflowError`` if a fresh
    experiment's id is taken, ``ResumeError`` if a run happened since ``restore()``."""
    if not exp.config.store:
        return None
    try:
        got = take_lock(exp.directory)
    except OSError as exc:
        # the directory cannot be made or written: opening the store fails next for the
        # same cause, says so, and the run ends FAILED (as it always did)
        _log.warning("cannot lock the experiment directory %s (%s)", exp.directory, exc)
        return None
    if not isinstance(got, ExperimentLock):
        raise locked_error(exp.id, exp.directory, got)
    try:
        _check_unchanged(exp)
    except BaseException:
        got.release()
        raise
    return got


def _check_unchanged(exp: Experiment) -> None:
    db = exp.directory / DB_NAME
    plan = exp._plan
    if plan is None:
        if db.exists():
            raise NasflowError(
                f"an experiment with id {exp.id!r} already exists in {exp.directory}; "
                "choose another id (or none, for a fresh one), or resume that experiment"
            )
        return
    reader = StoreReader(db)
    try:
        now = reader.meta()
    finally:
        reader.close()
    keys = ("started_at", "resumed")
    if any(now.get(k) != plan.meta.get(k) for k in keys):
        raise ResumeError(
            f"experiment {exp.id} was run again (by process {now.get('pid')}) after this "
            "Experiment was restored, so what restore() read is out of date and running it "
            "would repeat that run's trials. Call Experiment.restore() again to continue "
            "from where that run ended"
        )
