"""Reading an experiment database, safe while another process writes it (WAL)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from nasflow._kernel import TrialError, TrialRecord, TrialState
from nasflow.exceptions import StoreDamagedError, StoreError
from nasflow.store._integrity import damage, damaged_message
from nasflow.store._sqlite import _TRIAL_COLUMNS, connect

__all__ = ["StoreReader"]


class StoreReader:
    """Read-only access to an experiment database, safe while another process writes it."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise StoreError(
                f"no experiment store at {path}: the experiment directory is incomplete "
                "(it was never started, or the file was removed)"
            )
        self.path = path
        self._conn = connect(path, readonly=True)
        try:
            self._conn.execute("SELECT count(*) FROM trials").fetchone()
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise StoreDamagedError(damaged_message(path, str(exc)), path=path,
                                    problem=str(exc)) from exc

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def check(self) -> None:
        """``StoreDamagedError`` (saying how to salvage it) if the database fails SQLite's
        ``PRAGMA quick_check``."""
        problem = damage(self._conn)
        if problem is not None:
            raise StoreDamagedError(damaged_message(self.path, problem), path=self.path,
                                    problem=problem)

    def meta(self) -> dict[str, Any]:
        """Every metadata key with its (JSON-decoded) value."""
        rows = self._query("SELECT key, value FROM meta")
        return {k: orjson.loads(v) for k, v in rows}

    def trials(self, states: Iterable[TrialState] | None = None) -> list[TrialRecord]:
        """Every trial (or those in ``states``), by id."""
        sql = f"SELECT {', '.join(_TRIAL_COLUMNS)} FROM trials"
        params: tuple[Any, ...] = ()
        if states is not None:
            names = [TrialState(s).value for s in states]
            sql += f" WHERE state IN ({', '.join('?' for _ in names)})"
            params = tuple(names)
        return [_record(r) for r in self._query(sql + " ORDER BY id", params)]

    def trial_rows(self, columns: Iterable[str]) -> list[tuple[Any, ...]]:
        """The raw ``columns`` of every trial, by id, undecoded (JSON columns as stored):
        for readers that pass them on without building records (the dashboard's 100,000
        trials). Columns are those of the ``trials`` table; others raise ``ValueError``."""
        names = list(columns)
        unknown = [c for c in names if c not in _TRIAL_COLUMNS]
        if unknown:
            raise ValueError(f"not columns of the trials table: {unknown}")
        return self._query(f"SELECT {', '.join(names)} FROM trials ORDER BY id")

    def intermediates(self, trial_id: int, attempt: int | None = None) -> list[tuple[int, Any]]:
        """``[(step, value), ...]`` reported by one trial (its latest attempt unless
        ``attempt`` is given), in report order."""
        if attempt is None:
            row = self._query("SELECT attempt FROM trials WHERE id = ?", (trial_id,))
            attempt = row[0][0] if row else 0
        rows = self._query(
            "SELECT step, value FROM metrics WHERE trial_id = ? AND attempt = ? ORDER BY rowid",
            (trial_id, attempt))
        return [(step, orjson.loads(v)) for step, v in rows]

    def metric_keys(self, trial_id: int, attempt: int) -> set[tuple[int, float]]:
        """``{(step, time), ...}`` of the intermediate metrics stored for one attempt."""
        rows = self._query("SELECT step, time FROM metrics WHERE trial_id = ? AND attempt = ?",
                           (trial_id, attempt))
        return {(step, t) for step, t in rows}

    def end_order(self) -> dict[int, int]:
        """``{trial id: position in the order trials ended}`` for ended trials."""
        rows = self._query("SELECT id, end_seq FROM trials WHERE end_seq IS NOT NULL")
        return dict(rows)

    def progress(self) -> list[tuple[float, int | None, dict[str, Any]]]:
        """``[(time, step, values), ...]`` the strategy reported, in order."""
        rows = self._query('SELECT time, step, "values" FROM progress ORDER BY rowid')
        return [(t, step, orjson.loads(v)) for t, step, v in rows]

    def changes(self) -> list[dict[str, Any]]:
        """The runtime changes applied (``ChangeApplied``), oldest first: ``{"time",
        "source", "op", "args", "result"}`` each; ``[]`` for a store older than them."""
        try:
            rows = self._conn.execute(
                "SELECT time, source, op, args, result FROM changes ORDER BY seq").fetchall()
        except sqlite3.OperationalError:  # no such table: written before changes existed
            return []
        return [{"time": t, "source": source, "op": op, "args": orjson.loads(args),
                 "result": orjson.loads(result)} for t, source, op, args, result in rows]

    def latest_snapshot(self) -> tuple[int, bytes] | None:
        """``(ended, state)`` of the newest snapshot: ``ended`` trials had ended by then."""
        rows = self._query("SELECT ended, state FROM snapshots WHERE id = 1")
        return (rows[0][0], bytes(rows[0][1])) if rows else None

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        try:
            return self._conn.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"reading {self.path} failed: {exc}") from exc


def _record(r: tuple[Any, ...]) -> TrialRecord:
    (tid, h, sample, state, metric, metrics, sub, start, end, etype, emsg, tb, attempt, _) = r
    error = TrialError(etype, emsg or "", tb or "") if etype else None
    return TrialRecord(
        id=tid, sample=orjson.loads(sample), hash=h, state=TrialState(state), metric=metric,
        metrics=orjson.loads(metrics) if metrics is not None else None, submitted_at=sub,
        started_at=start, ended_at=end, error=error, attempt=attempt,
    )
