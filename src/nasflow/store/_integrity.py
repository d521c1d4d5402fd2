"""Is an experiment database sound? SQLite's ``PRAGMA quick_check``, asked before a resume
writes anything and by ``nasflow list``.

``quick_check`` reads every page and checks the b-trees' structure (not index contents
against their tables, which ``integrity_check`` adds at many times the cost): a torn or
overwritten page is found before a resume starts trials on it, instead of a raw
``DatabaseError`` mid-run or, worse, a run that "succeeds" on a store that fails the check.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

__all__ = ["damage", "damaged_message"]

_ROWS = 5  # what quick_check reports first is enough to say what is wrong


def damage(conn: sqlite3.Connection) -> str | None:
    """What ``PRAGMA quick_check`` finds wrong with ``conn``'s database, or ``None``."""
    try:
        rows = conn.execute(f"PRAGMA quick_check({_ROWS})").fetchall()
    except sqlite3.DatabaseError as exc:  # "database disk image is malformed", ...
        return str(exc)
    found = [str(r[0]) for r in rows]
    return None if found == ["ok"] else "; ".join(found)


def damaged_message(db: Path, problem: str) -> str:
    """Why a damaged store is refused, and the ways out."""
    d = db.parent
    return (
        f"the experiment store {db} is damaged, not a readable database (PRAGMA "
        f"quick_check: {problem}); it was not resumed and nothing was written to it. "
        f"To salvage it: copy the experiment directory aside first (cp -a {d} "
        f"{d}.damaged); copy out every row that can still be read with the sqlite3 "
        f"command-line tool (sqlite3 {db} .dump | sed 's/^ROLLBACK; -- due to "
        f"errors$/COMMIT;/' | sqlite3 {db}.recovered; or its .recover command); move "
        f"{db.name}.recovered in place of {db.name}, remove {db.name}-wal and "
        f"{db.name}-shm, and resume: trials whose rows were lost run again. "
        f"`nasflow export {d.name}` saves what can still be read."
    )
