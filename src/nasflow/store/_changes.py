"""The ``changes`` table: every runtime change of an experiment (who, what, when, what it
did), and writing one into the store of an experiment that is not running.

A running experiment records its changes through its store writer (``ExperimentStore.
record_change``); ``nasflow enqueue`` / ``nasflow import`` on an experiment that is not
running write theirs here, under the experiment's lock, for the next resume to take.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import orjson

from nasflow.exceptions import StoreError
from nasflow.store._lock import ExperimentLock, take_lock
from nasflow.store._paths import DB_NAME

__all__ = ["CHANGES_SCHEMA", "INSERT_CHANGE", "record_change_offline"]

CHANGES_SCHEMA = """
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    source TEXT NOT NULL,
    op TEXT NOT NULL,
    args TEXT NOT NULL,
    result TEXT NOT NULL
);
"""

INSERT_CHANGE = "INSERT INTO changes (time, source, op, args, result) VALUES (?, ?, ?, ?, ?)"


def change_row(op: str, args: Any, source: str, result: dict[str, Any]
               ) -> tuple[float, str, str, str, str]:
    """The parameters of ``INSERT_CHANGE`` for one change, now."""
    return (time.time(), source, op, orjson.dumps(args).decode(),
            orjson.dumps(result).decode())


def record_change_offline(directory: Path, op: str, args: Any, *, source: str,
                          result: dict[str, Any]) -> dict[str, Any] | None:
    """Record a change in the store of an experiment no process runs; ``None`` once it is
    committed, else the lock holder's ``{"pid", "host", "since"}`` (it runs: send the
    change through its control endpoint instead)."""
    got = take_lock(directory)
    if not isinstance(got, ExperimentLock):
        return got
    try:
        conn = sqlite3.connect(directory / DB_NAME, isolation_level=None)
        try:
            conn.execute("PRAGMA busy_timeout=5000")
            conn.executescript(CHANGES_SCHEMA)
            conn.execute(INSERT_CHANGE, change_row(op, args, source, result))
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise StoreError(f"cannot record the change in {directory / DB_NAME}: {exc}") from exc
    finally:
        got.release()
    return None
