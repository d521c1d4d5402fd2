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
from typing import Any

from nasflow.exceptions import ExperimentLockedError, NasflowError, ResumeError
from nasflow.store import DB_NAME, ExperimentLock, StoreReader, lock_owner, take_lock

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


def take_ownership(experiment_id: str, directory: Path, *, store: bool,
                   restored_meta: dict[str, Any] | None) -> ExperimentLock | None:
    """Take the lock of the experiment in ``directory`` for its run (``None`` for an
    experiment without a store), or raise: ``ExperimentLockedError`` if another run holds
    it, ``NasflowError`` if a fresh experiment's id is taken, ``ResumeError`` if a run
    happened since ``restore()`` read ``restored_meta`` (``None``: a fresh run)."""
    if not store:
        return None
    try:
        got = take_lock(directory)
    except OSError as exc:
        # the directory cannot be made or written: opening the store fails next for the
        # same cause, says so, and the run ends FAILED (as it always did)
        _log.warning("cannot lock the experiment directory %s (%s)", directory, exc)
        return None
    if not isinstance(got, ExperimentLock):
        raise locked_error(experiment_id, directory, got)
    try:
        _check_unchanged(experiment_id, directory, restored_meta)
    except BaseException:
        got.release()
        raise
    return got


def _check_unchanged(experiment_id: str, directory: Path,
                     restored_meta: dict[str, Any] | None) -> None:
    db = directory / DB_NAME
    if restored_meta is None:
        if db.exists():
            raise NasflowError(
                f"an experiment with id {experiment_id!r} already exists in {directory}; "
                "choose another id (or none, for a fresh one), or resume that experiment"
            )
        return
    reader = StoreReader(db)
    try:
        now = reader.meta()
    finally:
        reader.close()
    keys = ("started_at", "resumed")
    if any(now.get(k) != restored_meta.get(k) for k in keys):
        raise ResumeError(
            f"experiment {experiment_id} was run again (by process {now.get('pid')}) after this "
            "Experiment was restored, so what restore() read is out of date and running it "
            "would repeat that run's trials. Call Experiment.restore() again to continue "
            "from where that run ended"
        )
