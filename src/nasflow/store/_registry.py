"""The experiment registry: every experiment under ``$NASFLOW_HOME/experiments``.

There is no manifest file. Each experiment's own database is the record, so the registry
is a scan of ``experiments/*/experiment.db``: nothing to lock, nothing that falls out of
date, and it follows ``NASFLOW_HOME`` (NNI keeps a separate ``~/nni-experiments/.experiment``
that ignores the experiments directory and marks live experiments STOPPED when their pid
is unknown). Reading is safe while the experiments run: each database is opened read-only
(WAL readers never block the writer), and a running experiment's trial counts come from
one ``COUNT ... GROUP BY state`` on its trials table, not from loading the trials.

A damaged experiment never breaks the listing: it is returned with state ``DAMAGED`` and
an ``error`` that says what is wrong.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from nasflow._kernel import ExperimentState, TrialState
from nasflow._persist import owner_alive
from nasflow.store._integrity import damage, damaged_message
from nasflow.store._lock import LOCK_NAME, lock_owner
from nasflow.store._paths import DB_NAME, nasflow_home

__all__ = ["DAMAGED", "ExperimentInfo", "experiment_info", "list_experiments"]

DAMAGED = "DAMAGED"
"""The ``state`` of an experiment whose directory or database cannot be read."""


@dataclass(frozen=True)
class ExperimentInfo:
    """What the registry knows about one experiment, read from its database.

    ``state`` is an ``ExperimentState`` (``CRASHED`` when the database says RUNNING but
    the owning process is gone), or ``"DAMAGED"`` with ``error`` saying why.
    """

    id: str
    """The experiment id (its directory name)."""
    name: str
    """The human-readable name (the id unless one was given)."""
    state: str
    """An ``ExperimentState`` member, or ``"DAMAGED"``."""
    directory: Path
    """The experiment directory."""
    created_at: float | None = None
    """When the experiment first ran (Unix time)."""
    started_at: float | None = None
    """When its latest run (the first, or a resume) started."""
    ended_at: float | None = None
    """When its latest run ended; ``None`` while it runs (or if it crashed)."""
    end_reason: str = ""
    """Why the latest run ended."""
    trials: dict[str, int] = field(default_factory=dict)
    """``{trial state: count}`` for every ``TrialState`` (zeros included), in enum order."""
    best: float | None = None
    """The best primary metric among succeeded trials."""
    best_trial: int | None = None
    """The id of the trial with the ``best`` metric."""
    best_metrics: Any = None
    """That trial's whole result as stored (a float or a dict; a one-shot strategy's
    ranked architectures hold ``arch_prob``, their ``best`` being that probability)."""
    objective: str | None = None
    """The name of the primary metric."""
    direction: str | None = None
    """``"maximize"`` or ``"minimize"`` (the primary metric's)."""
    manager: str | None = None
    """The URL of the ``nasflow manager`` it uses (config ``manager``), else ``None``."""
    training_service: str | None = None
    """Where its trials run (config ``training_service``)."""
    pid: int | None = None
    """The process that ran it last."""
    host: str | None = None
    """The host that process ran on."""
    resumed: int = 0
    """How many times it has been resumed."""
    error: str | None = None
    """Why a ``DAMAGED`` experiment cannot be read; ``None`` otherwise."""

    @property
    def total(self) -> int:
        """How many trials it has (every state)."""
        return sum(self.trials.values())

    @property
    def damaged(self) -> bool:
        """Whether the experiment could not be read."""
        return self.error is not None

    @property
    def duration(self) -> float | None:
        """Seconds of its latest run (up to now while it runs), when known."""
        if self.started_at is None:
            return None
        if self.ended_at is not None:
            return self.ended_at - self.started_at
        if self.state == ExperimentState.RUNNING:
            return time.time() - self.started_at
        return None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (the directory as a string, the state as its name)."""
        return {
            "id": self.id,
            "name": self.name,
            "state": str(self.state),
            "directory": str(self.directory),
            "created_at": self.created_at,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "end_reason": self.end_reason,
            "trials": dict(self.trials),
            "total_trials": self.total,
            "best": self.best,
            "best_trial": self.best_trial,
            "objective": self.objective,
            "direction": self.direction,
            "manager": self.manager,
            "training_service": self.training_service,
            "pid": self.pid,
            "host": self.host,
            "resumed": self.resumed,
            "error": self.error,
        }


def _damaged(directory: Path, error: str) -> ExperimentInfo:
    return ExperimentInfo(id=directory.name, name=directory.name, state=DAMAGED,
                          directory=directory, error=error)


def _open_readonly(path: Path) -> sqlite3.Connection:
    # a URI built by as_uri() survives spaces, '?' and '#' in the path
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True,
                           check_same_thread=False)
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


def _still_running(directory: Path, meta: dict[str, Any]) -> bool:
    """Whether a run still owns an experiment whose store says RUNNING: its lock tells
    (the kernel frees it when the owner dies, whatever the pid does next); without a lock
    file (a store of an older nasflow) or one that cannot be opened, the recorded pid."""
    try:
        if (directory / LOCK_NAME).is_file():
            return lock_owner(directory) is not None
    except OSError:
        pass
    return owner_alive(meta.get("pid"), meta.get("pid_start"), meta.get("host")) is not False


def _read(conn: sqlite3.Connection, directory: Path) -> ExperimentInfo:
    meta = {k: orjson.loads(v) for k, v in conn.execute("SELECT key, value FROM meta")}
    if "state" not in meta:
        raise ValueError("its metadata has no state (not a nasflow experiment store?)")
    state: str = ExperimentState(meta["state"])
    if state is ExperimentState.RUNNING and not _still_running(directory, meta):
        state = ExperimentState.CRASHED
    counts = dict.fromkeys((s.value for s in TrialState), 0)
    for name, n in conn.execute("SELECT state, count(*) FROM trials GROUP BY state"):
        counts[str(TrialState(name))] = n
    directions = meta.get("objective") or {"default": "maximize"}
    objective, direction = next(iter(directions.items()))
    order = "DESC" if direction == "maximize" else "ASC"
    row = conn.execute(
        "SELECT id, metric, metrics FROM trials WHERE state = ? AND metric IS NOT NULL "
        f"ORDER BY metric {order}, id LIMIT 1", (TrialState.SUCCEEDED.value,)).fetchone()
    config = meta.get("config") or {}
    return ExperimentInfo(
        id=directory.name,
        name=str(meta.get("name") or directory.name),
        state=state,
        directory=directory,
        created_at=meta.get("created_at"),
        started_at=meta.get("started_at"),
        ended_at=meta.get("ended_at"),
        end_reason=str(meta.get("end_reason") or ""),
        trials=counts,
        best=None if row is None else row[1],
        best_trial=None if row is None else row[0],
        best_metrics=None if row is None or row[2] is None else orjson.loads(row[2]),
        objective=objective,
        direction=direction,
        manager=config.get("manager"),
        training_service=config.get("training_service"),
        pid=meta.get("pid"),
        host=meta.get("host"),
        resumed=int(meta.get("resumed") or 0),
    )


def experiment_info(directory: str | os.PathLike[str]) -> ExperimentInfo:
    """What the registry knows about the experiment in ``directory``.

    Never raises for damage: an unreadable experiment comes back with state ``DAMAGED``
    and ``error`` saying what is wrong and what to do.
    """
    directory = Path(directory)
    db = directory / DB_NAME
    if not db.is_file():
        return _damaged(directory, f"no {DB_NAME} in {directory}: it never started, or the "
                                   "file was removed; delete the directory if it is not needed")
    try:
        conn = _open_readonly(db)
    except sqlite3.Error as exc:
        return _damaged(directory, f"cannot open {db}: {exc}")
    try:
        problem = damage(conn)
        if problem is not None:
            return _damaged(directory, damaged_message(db, problem))
        return _read(conn, directory)
    except (sqlite3.Error, orjson.JSONDecodeError, ValueError, TypeError, AttributeError,
            StopIteration) as exc:
        return _damaged(directory, f"{db} is not a readable nasflow experiment store "
                                   f"({exc}); move it away, or restore it from a backup")
    finally:
        conn.close()


def list_experiments(home: str | os.PathLike[str] | None = None) -> list[ExperimentInfo]:
    """Every experiment under ``home`` (default ``$NASFLOW_HOME``, else ``~/.nasflow``),
    oldest first by the start of their latest run (a damaged one by its directory's
    modification time), so the newest is last, next to the prompt.

    Safe while experiments run; a damaged one is listed with state ``"DAMAGED"``.
    """
    root = nasflow_home(home) / "experiments"
    if not root.is_dir():
        return []
    found: list[tuple[float, ExperimentInfo]] = []
    for entry in root.iterdir():
        if entry.name.startswith(".") or not entry.is_dir():
            continue  # stray files (editor swap files, .DS_Store) are not experiments
        info = experiment_info(entry)
        when = next((t for t in (info.started_at, info.created_at)
                     if isinstance(t, (int, float))), None)
        if when is None:
            try:
                when = entry.stat().st_mtime
            except OSError:
                when = 0.0
        found.append((float(when), info))
    found.sort(key=lambda pair: (pair[0], pair[1].id))
    return [info for _, info in found]
