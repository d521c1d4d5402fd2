"""The experiment store: one SQLite database (WAL) per experiment.

Commits happen on a dedicated writer thread, never on the event loop. ``put(event)`` turns
the event into rows at once, on the loop (trial rows are coalesced: a trial that starts
and ends between two commits is one row); ``GROUP_COMMIT_SECONDS`` after the first event,
or once ``GROUP_COMMIT_EVENTS`` are put (an event-loop timer, not a poll), the rows become
multi-row statements handed to the writer, which runs them in one transaction and
commits. ``await flush()`` commits at once and returns when everything put before it is
durable.

Why this split: SQLite releases the GIL while it works, Python code does not. A writer
thread that did the per-event Python work competed with the event loop for the GIL, and
while it waited, every GIL release by the loop (each ``epoll``) woke it: that halved the
throughput of B1. Now the writer holds the GIL only to bind parameters.

Durability: WAL with ``synchronous=NORMAL`` survives a killed process (``kill -9``) once
committed; a power loss may lose the last commits. A crash loses at most the events of
the last group-commit window that no ``flush`` covered. Readers use their own connections
and never block the writer.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import orjson

from nasflow._kernel import TrialState
from nasflow.events import (
    ChangeApplied,
    CheckpointSaved,
    Event,
    FinalMetric,
    IntermediateMetric,
    StrategyProgress,
    TrialEnded,
    TrialStarted,
    TrialSubmitted,
)
from nasflow.exceptions import StoreError

__all__ = ["SCHEMA_VERSION", "ExperimentStore", "connect"]

SCHEMA_VERSION = 1
GROUP_COMMIT_SECONDS = 0.05
"""How long an event may wait before the writer is woken (unless a flush forces it)."""
GROUP_COMMIT_EVENTS = 8192
"""How many queued events wake the writer at once."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trials (
    id INTEGER PRIMARY KEY,
    hash TEXT NOT NULL,
    sample TEXT NOT NULL,
    state TEXT NOT NULL,
    metric REAL,
    metrics TEXT,
    submitted_at REAL,
    started_at REAL,
    ended_at REAL,
    error_type TEXT,
    error_message TEXT,
    traceback TEXT,
    attempt INTEGER NOT NULL DEFAULT 0,
    end_seq INTEGER,
    origin TEXT
);
CREATE INDEX IF NOT EXISTS trials_hash ON trials (hash);
CREATE INDEX IF NOT EXISTS trials_state ON trials (state);
CREATE TABLE IF NOT EXISTS metrics (
    trial_id INTEGER NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0,
    step INTEGER NOT NULL,
    value TEXT NOT NULL,
    metric REAL NOT NULL,
    time REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS metrics_trial ON metrics (trial_id, step);
CREATE TABLE IF NOT EXISTS checkpoints (
    trial_id INTEGER NOT NULL,
    path TEXT NOT NULL,
    step INTEGER,
    time REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS progress (
    time REAL NOT NULL,
    step INTEGER,
    "values" TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    source TEXT NOT NULL,
    op TEXT NOT NULL,
    args TEXT NOT NULL,
    result TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS snapshots (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    time REAL NOT NULL,
    ended INTEGER NOT NULL,
    state BLOB NOT NULL
);
"""

_TRIAL_COLUMNS = (
    "id", "hash", "sample", "state", "metric", "metrics", "submitted_at", "started_at",
    "ended_at", "error_type", "error_message", "traceback", "attempt", "end_seq", "origin",
)
_UPSERT_HEAD = f"INSERT OR REPLACE INTO trials ({', '.join(_TRIAL_COLUMNS)}) VALUES "
_METRICS_HEAD = "INSERT INTO metrics (trial_id, attempt, step, value, metric, time) VALUES "
_MAX_VARIABLES = 32766  # SQLite >= 3.32 accepts this many ? per statement


def _rows_statements(head: str, width: int, rows: list[Any]) -> list[tuple[str, list[Any]]]:
    """Multi-row ``INSERT`` statements for ``rows`` (parameters copied into flat lists).

    ``executemany`` steps once per row, releasing and re-acquiring the GIL each time; a
    multi-row ``VALUES`` list steps once per thousands of rows.
    """
    per = _MAX_VARIABLES // width
    one = "(" + ", ".join("?" * width) + ")"
    return [
        (head + ", ".join([one] * len(chunk)), [v for r in chunk for v in r])
        for chunk in (rows[i:i + per] for i in range(0, len(rows), per))
    ]


_COL = {name: i for i, name in enumerate(_TRIAL_COLUMNS)}
_STATE, _METRIC, _METRICS, _STARTED, _ENDED = (
    _COL["state"], _COL["metric"], _COL["metrics"], _COL["started_at"], _COL["ended_at"])
_ERROR_TYPE, _ERROR_MESSAGE, _TRACEBACK, _END_SEQ = (
    _COL["error_type"], _COL["error_message"], _COL["traceback"], _COL["end_seq"])
_WAITING, _RUNNING = TrialState.WAITING.value, TrialState.RUNNING.value


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


_ADDED_COLUMNS = {"origin": "TEXT"}
"""Columns of ``trials`` added after schema 1 was first written: a store from before gets
them when it is next opened for writing (readers of such a store see them as NULL)."""


def trial_columns(conn: sqlite3.Connection) -> set[str]:
    """The columns the ``trials`` table of ``conn`` has."""
    return {row[1] for row in conn.execute("PRAGMA table_info(trials)")}


def add_missing_columns(conn: sqlite3.Connection) -> None:
    """Add the columns of ``_ADDED_COLUMNS`` that an older store lacks."""
    have = trial_columns(conn)
    for name, kind in _ADDED_COLUMNS.items():
        if name not in have:
            conn.execute(f"ALTER TABLE trials ADD COLUMN {name} {kind}")


def connect(path: Path, *, readonly: bool) -> sqlite3.Connection:
    """A connection to an experiment database (WAL for the writer, read-only else)."""
    try:
        if readonly:
            # as_uri() escapes ?, # and % in the path, which a bare "file:" URI would misread
            conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True,
                                   check_same_thread=False)
        else:
            conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=5000")
        return conn
    except sqlite3.Error as exc:
        raise StoreError(
            f"cannot open the experiment store {path}: {exc}. If the file is damaged, move "
            "it away; the trial folders next to it are kept."
        ) from exc


class ExperimentStore:
    """The writing side of an experiment's database; see the module docstring."""

    def __init__(self, path: Path, *, high_water: int = 100_000) -> None:
        self.path = path
        """Where the database lives."""
        self._batch = _Batch()  # loop thread only: what the next commit writes
        self._sealed: deque[_Sealed | None] = deque()  # for the writer (None: stop)
        self._wake = threading.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._high_water = high_water
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._live: dict[int, list[Any]] = {}  # loop thread only: rows of unfinished trials
        self._end_seq = 0  # loop thread only: the order in which trials ended
        self._snapshot: Callable[[], bytes] | None = None
        self._snapshot_due = False

    async def open(self, meta: dict[str, Any]) -> None:
        """Create or open the database, write ``meta`` and start the writer thread."""
        self._loop = asyncio.get_running_loop()
        conn = await anyio.to_thread.run_sync(self._open_sync, meta)
        self._thread = threading.Thread(
            target=self._writer, args=(conn,), name=f"nasflow-store-{self.path.parent.name}",
            daemon=True,
        )
        self._thread.start()

    def _open_sync(self, meta: dict[str, Any]) -> sqlite3.Connection:
        conn = self._open_db(meta)
        row = conn.execute("SELECT max(end_seq) FROM trials").fetchone()
        self._end_seq = row[0] or 0
        return conn

    def _open_db(self, meta: dict[str, Any]) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise StoreError(
                f"cannot create the experiment directory {self.path.parent}: {exc}. Check "
                "NASFLOW_HOME (or ExperimentConfig.home) points to a writable directory"
            ) from exc
        self.path.parent.chmod(0o700)  # it holds pickled code: owner-only
        if not self.path.exists():
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        conn = connect(self.path, readonly=False)
        try:
            conn.executescript(_SCHEMA)
            add_missing_columns(conn)
            version = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if version is not None and orjson.loads(version[0]) != SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} has store schema {version[0]}, this nasflow writes "
                    f"{SCHEMA_VERSION}; open it with a matching nasflow version"
                )
            conn.execute("BEGIN")
            rows = [("schema_version", _dumps(SCHEMA_VERSION))]
            rows += [(k, _dumps(v)) for k, v in meta.items()]
            conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", rows)
            conn.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StoreError(
                f"the experiment store {self.path} is not a valid nasflow database ({exc}); "
                "move it away or point NASFLOW_HOME elsewhere"
            ) from exc
        return conn

    async def close(self) -> None:
        """Commit everything and stop the writer thread."""
        if self._thread is None or self._closing:
            return
        await self.flush()
        self._closing = True  # a flush from now on has nothing left to wait for
        self._sealed.append(None)
        self._wake.set()
        await anyio.to_thread.run_sync(self._thread.join)
        self._thread = None

    # --- writing (on the event loop) ------------------------------------------------------

    def put(self, event: Event) -> None:
        """Queue an event for writing (never blocks; event-loop thread only).

        The event becomes rows right here, on the loop: the writer thread then only runs
        prepared statements, whose SQLite work releases the GIL. (A writer that did this
        Python work itself competed with the loop for the GIL and, while it did, every
        release of the GIL by the loop cost both threads a wake-up: that halved B1.)
        """
        if self._error is not None:
            raise StoreError(f"the experiment store {self.path} failed: {self._error!r}")
        b = self._batch
        b.events += 1
        r: list[Any] | None  # a trial's row, when this process holds it
        # one branch per event type, most frequent first: the store's hot path (``type(...)
        # is`` is the cheapest test, and the type checker narrows on it: no cast to call)
        if type(event) is IntermediateMetric:
            b.metrics.append((event.trial_id, event.attempt, event.step, _dumps(event.value),
                              event.metric, event.time))
        elif type(event) is TrialSubmitted:
            r = [event.trial_id, event.hash, _dumps(event.sample), _WAITING, None, None,
                 event.time, None, None, None, None, None, event.attempt, None, event.origin]
            self._live[event.trial_id] = b.dirty[event.trial_id] = r
        elif type(event) is TrialStarted:
            r = self._live.get(event.trial_id)
            if r is None:
                b.update(event.trial_id, state=_RUNNING, started_at=event.time)
            else:
                r[_STATE], r[_STARTED] = _RUNNING, event.time
                b.dirty[event.trial_id] = r
        elif type(event) is FinalMetric:
            r = self._live.get(event.trial_id)
            if r is None:
                b.update(event.trial_id, metric=event.metric, metrics=_dumps(event.value))
            else:
                r[_METRIC], r[_METRICS] = event.metric, _dumps(event.value)
                b.dirty[event.trial_id] = r
        elif type(event) is TrialEnded:
            err = event.error
            self._end_seq += 1
            r = self._live.pop(event.trial_id, None)
            if r is None:
                b.update(event.trial_id, state=event.state.value, ended_at=event.time,
                         error_type=err.type if err else None,
                         error_message=err.message if err else None,
                         traceback=err.traceback if err else None, end_seq=self._end_seq)
            else:
                r[_STATE], r[_ENDED], r[_END_SEQ] = event.state.value, event.time, self._end_seq
                if err is not None:
                    r[_ERROR_TYPE], r[_ERROR_MESSAGE], r[_TRACEBACK] = (
                        err.type, err.message, err.traceback)
                b.dirty[event.trial_id] = r
        elif isinstance(event, CheckpointSaved):
            b.statements.append(("INSERT INTO checkpoints (trial_id, path, step, time) "
                                 "VALUES (?, ?, ?, ?)",
                                 (event.trial_id, event.path, event.step, event.time)))
        elif isinstance(event, StrategyProgress):
            b.statements.append(('INSERT INTO progress (time, step, "values") VALUES (?, ?, ?)',
                                 (event.time, event.step, _dumps(event.values))))
        elif isinstance(event, ChangeApplied):
            b.statements.append(("INSERT INTO changes (time, source, op, args, result) "
                                 "VALUES (?, ?, ?, ?, ?)",
                                 (event.time, event.source, event.op, _dumps(event.args),
                                  _dumps(event.result))))
        if b.events >= GROUP_COMMIT_EVENTS:
            self._kick()
        elif self._timer is None and self._loop is not None:
            self._timer = self._loop.call_later(GROUP_COMMIT_SECONDS, self._kick)

    def _kick(self) -> None:
        """Hand everything put so far to the writer, as one transaction."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._snapshot_due and self._snapshot is not None:
            # taken now, on the loop, it matches exactly the events before it, and lands in
            # the same transaction: a snapshot per commit, not per trial
            self._snapshot_due = False
            self._batch.statements.append((
                "INSERT OR REPLACE INTO snapshots (id, time, ended, state) VALUES (1, ?, ?, ?)",
                (time.time(), self._end_seq, self._snapshot())))
        batch, self._batch = self._batch, _Batch()
        if batch.events or batch.statements or batch.callbacks:
            self._sealed.append(batch.seal())
            self._wake.set()

    def set_meta(self, **values: Any) -> None:
        """Queue metadata updates (JSON values)."""
        self._batch.statements.append((
            "INSERT OR REPLACE INTO meta (key, value) VALUES "
            + ", ".join(["(?, ?)"] * len(values)),
            [x for k, v in values.items() for x in (k, _dumps(v))]))
        self._kick()

    def snapshot_with(self, provider: Callable[[], bytes]) -> None:
        """Use ``provider()`` for snapshots: called on the loop at the next commit after
        ``snapshot_due()``, its bytes committed with the events queued before it."""
        self._snapshot = provider

    def snapshot_due(self) -> None:
        """Ask for a snapshot with the next commit (e.g. after a trial ended)."""
        self._snapshot_due = True

    @property
    def backlogged(self) -> bool:
        """Whether the writer is more than the high-water mark of events behind."""
        return len(self._sealed) * GROUP_COMMIT_EVENTS > self._high_water

    async def wait_room(self) -> None:
        """Wait until the backlog handed to the writer so far is committed."""
        while self.backlogged:
            room = anyio.Event()
            self._batch.callbacks.append(room.set)
            self._kick()
            await room.wait()

    async def flush(self) -> None:
        """Commit now; return once everything queued before this call is durable."""
        if self._thread is None or self._closing:
            return
        done = anyio.Event()
        self._batch.callbacks.append(done.set)
        self._kick()
        await done.wait()
        if self._error is not None:
            raise StoreError(f"the experiment store {self.path} failed: {self._error!r}")

    # --- the writer thread ----------------------------------------------------------------

    def _writer(self, conn: sqlite3.Connection) -> None:
        sealed = self._sealed
        try:
            while True:
                self._wake.wait()
                self._wake.clear()
                work: list[Any] = []
                while sealed:
                    work.append(sealed.popleft())
                stop = None in work
                batches = [w for w in work if w is not None]
                if batches and self._error is None:
                    try:
                        self._commit(conn, batches)
                    except Exception as exc:  # keep running so flush() can report it
                        self._error = exc
                for batch in batches:
                    for cb in batch.callbacks:
                        self._call_on_loop(cb)
                if stop:
                    return
        finally:
            conn.close()

    def _call_on_loop(self, cb: Callable[[], None]) -> None:
        if self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(cb)
            except RuntimeError:  # the loop is gone; nobody waits any more
                pass

    @staticmethod
    def _commit(conn: sqlite3.Connection, batches: list[_Sealed]) -> None:
        conn.execute("BEGIN")
        try:
            for batch in batches:
                for sql, params in batch.statements:
                    conn.execute(sql, params)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


@dataclass(slots=True)
class _Sealed:
    statements: list[tuple[str, Any]]
    callbacks: list[Callable[[], None]]


@dataclass(slots=True)
class _Batch:
    """What is put between two commits, turned into statements by ``seal``."""

    events: int = 0
    dirty: dict[int, list[Any]] = field(default_factory=dict)
    metrics: list[tuple[Any, ...]] = field(default_factory=list)
    statements: list[tuple[str, Any]] = field(default_factory=list)
    callbacks: list[Callable[[], None]] = field(default_factory=list)

    def update(self, trial_id: int, **cols: Any) -> None:
        # a trial submitted before this process's store existed (e.g. before a resume)
        sets = ", ".join(f"{k} = ?" for k in cols)
        self.statements.append(
            (f"UPDATE trials SET {sets} WHERE id = ?", (*cols.values(), trial_id)))

    def seal(self) -> _Sealed:
        """The statements, with the parameters copied now (live rows change later)."""
        # updates first: they are for rows this process did not write, and a later event
        # of the batch (a trial submitted again on resume) may have replaced the row whole
        out = list(self.statements)  # updates, checkpoints, progress, meta, snapshot
        if self.dirty:
            out += _rows_statements(_UPSERT_HEAD, len(_TRIAL_COLUMNS), list(self.dirty.values()))
        if self.metrics:
            out += _rows_statements(_METRICS_HEAD, 6, self.metrics)
        return _Sealed(out, self.callbacks)
