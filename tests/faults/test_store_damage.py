"""A damaged store is refused before a resume writes to it, and listed DAMAGED (issue 10).

The outside probe damaged 14 single pages of stores: 2 let ``nasflow resume`` start
trials and then die with a raw ``ExceptionGroup``, 3 resumed to DONE on a database that
fails ``PRAGMA integrity_check``, and ``nasflow list`` showed such a store as CRASHED.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from tests.faults._crash import crash_experiment

import nasflow as nf
from nasflow.store import DAMAGED, experiment_info


def _crashed_store(tmp_path: Path, home: Path) -> Path:
    directory = crash_experiment(tmp_path, home, "damaged", budget=80, stop_at=60)
    db = directory / "experiment.db"
    conn = sqlite3.connect(db)  # fold the WAL in: every page now lives in the file
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    for extra in directory.glob("experiment.db-*"):
        extra.unlink()
    return db


def _passes_quick_check(db: Path) -> bool:
    conn = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)
    try:
        return bool(conn.execute("PRAGMA quick_check").fetchone()[0] == "ok")
    except sqlite3.DatabaseError:
        return False
    finally:
        conn.close()


def _damage_page(pristine: bytes, n: int) -> bytes:
    page = int.from_bytes(pristine[16:18], "big") or 65536
    damaged = bytearray(pristine)
    damaged[n * page + 8:(n + 1) * page] = bytes([0xA5]) * (page - 8)
    return bytes(damaged)


def test_every_damaged_page_is_refused_before_anything_runs(tmp_path: Path,
                                                             home: Path) -> None:
    db = _crashed_store(tmp_path, home)
    pristine = db.read_bytes()
    page = int.from_bytes(pristine[16:18], "big") or 65536
    pages = len(pristine) // page
    assert pages >= 4
    ran: list[int] = []

    def evaluate(model: None, trial: nf.Trial) -> float:
        ran.append(trial.id)
        return 1.0

    refused = 0
    for n in range(1, pages):  # page 0 holds the header
        db.write_bytes(_damage_page(pristine, n))
        if _passes_quick_check(db):
            continue  # the garbage fell on a free page: nothing is damaged
        refused += 1
        with pytest.raises(nf.StoreDamagedError) as caught:
            nf.Experiment.restore("damaged", evaluator=evaluate)
        message = str(caught.value)
        assert "damaged" in message and ".dump" in message, message
        assert "nasflow export damaged" in message, message
        assert caught.value.path == db and caught.value.problem
        info = experiment_info(db.parent)
        assert info.state == DAMAGED and info.error is not None and ".dump" in info.error
        assert db.read_bytes() == _damage_page(pristine, n)  # nothing was written to it
    assert ran == []
    assert refused >= 2, f"only {refused} of {pages - 1} damaged pages failed quick_check"


def test_nasflow_resume_and_list_say_damaged_and_the_way_out_works(tmp_path: Path,
                                                                   home: Path) -> None:
    db = _crashed_store(tmp_path, home)
    pristine = db.read_bytes()
    pages = len(pristine) // (int.from_bytes(pristine[16:18], "big") or 65536)
    n = next(n for n in range(pages - 1, 0, -1)
             if not _check_after(db, _damage_page(pristine, n)))
    db.write_bytes(_damage_page(pristine, n))
    env = {**os.environ, "NASFLOW_HOME": str(home)}
    resume = subprocess.run([sys.executable, "-m", "nasflow", "resume", "damaged"],
                            env=env, capture_output=True, text=True, timeout=120)
    assert resume.returncode == 1, resume.stdout + resume.stderr
    assert "damaged" in resume.stderr and ".dump" in resume.stderr, resume.stderr
    assert "Traceback" not in resume.stderr and "ExceptionGroup" not in resume.stderr
    listed = subprocess.run([sys.executable, "-m", "nasflow", "list"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert "DAMAGED" in listed.stdout and "CRASHED" not in listed.stdout, listed.stdout
    if shutil.which("sqlite3") is None:
        pytest.skip("the sqlite3 command-line tool is not installed: the way out not tried")
    # the way out the message gives, step by step
    shutil.copytree(db.parent, db.parent.with_name("damaged.damaged"))
    recovered = db.with_name("experiment.db.recovered")
    dump = subprocess.run(["sqlite3", str(db), ".dump"], capture_output=True, timeout=120)
    rows = dump.stdout.replace(b"\nROLLBACK; -- due to errors\n", b"\nCOMMIT;\n")
    subprocess.run(["sqlite3", str(recovered)], input=rows, check=True, timeout=120)
    recovered.replace(db)
    for extra in db.parent.glob("experiment.db-*"):
        extra.unlink()
    nf.run(nf.Experiment.restore("damaged"))
    with nf.load_experiment("damaged") as exp:
        assert exp.state is nf.ExperimentState.DONE
        assert len(exp.trials()) == 80
    assert _passes_quick_check(db)


def _check_after(db: Path, data: bytes) -> bool:
    db.write_bytes(data)
    return _passes_quick_check(db)
