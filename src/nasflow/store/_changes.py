"""Recording a runtime change in the store of an experiment that is not running.

A running experiment records its changes as ``ChangeApplied`` events (the store writer
puts them into the ``changes`` table); ``nasflow enqueue`` / ``nasflow import`` on an
experiment that is not running write theirs here, under the experiment's lock, for the
next resume to take.
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
from nasflow.store._sqlite import _SCHEMA, add_missing_columns

__all__ = ["record_change_offline"]


def record_change_offline(directory: Path, op: str, args: dict[str, Any], *, source: str,
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
            conn.executescript(_SCHEMA)  # a store from before the changes table
            add_missing_columns(conn)
            conn.execute(
                "INSERT INTO changes (time, source, op, args, result) VALUES (?, ?, ?, ?, ?)",
                (time.time(), source, op, orjson.dumps(args).decode(),
                 orjson.dumps(result).decode()))
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise StoreError(f"cannot record the change in {directory / DB_NAME}: {exc}") from exc
    finally:
        got.release()
    return None
