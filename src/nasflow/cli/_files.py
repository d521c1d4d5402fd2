"""``nasflow log`` and ``nasflow delete``: a trial's captured output, and removing an
experiment for good.

A trial's output is what its evaluator printed, captured by the engine into
``trials/<id>/stdout.log`` and ``stderr.log`` of the experiment directory (every attempt
appends to the same files). ``log --follow`` reads the file as it grows (like ``tail -f``,
which also re-reads: a file written by another process announces nothing) and ends once
the trial has ended -- its state in the store says so -- or its experiment is no longer
running.

``delete`` removes the experiment directory, which is also its registry entry (the
registry is a scan of the directories). It takes the experiment's run lock first, so it
can never remove an experiment that a process runs, nor race one that starts.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from nasflow._kernel import ExperimentState, TrialState
from nasflow.cli._output import EXIT_FAILED, EXIT_OK, Formatter, add_home, command, find
from nasflow.exceptions import NasflowError
from nasflow.store import DB_NAME, ExperimentLock, StoreReader, experiment_info, take_lock

__all__ = ["add_parsers", "follow_file"]

FOLLOW_INTERVAL = 0.2
"""Seconds between two reads of a followed log (``tail -f`` waits 1 s)."""

LOG_EXAMPLES = """examples:
  nasflow log k3j9x0ab 17                # what trial 17 printed (stdout)
  nasflow log k3j9x0ab 17 --stderr       # its stderr (tracebacks, warnings)
  nasflow log k3j9x0ab 17 --follow       # ... and what it prints next, until it ends

Every attempt of a trial appends to the same files. Exit codes: 0 shown, 1 no such
experiment or trial.
"""

DELETE_EXAMPLES = """examples:
  nasflow delete k3j9x0ab          # asks first (on a terminal)
  nasflow delete k3j9x0ab --yes    # no question (scripts; needed when not on a terminal)

Removes the experiment directory (database, trial logs, checkpoints) and so its entry in
nasflow list. A running experiment is refused: stop it first (nasflow stop ID --wait).
Exit codes: 0 deleted, 1 refused or not found.
"""


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``log`` and ``delete``."""
    p = sub.add_parser(
        "log", help="a trial's captured output (stdout or stderr); --follow tails it",
        description="Print what a trial printed, captured in its directory; works while "
        "the experiment runs and after it ended.",
        epilog=LOG_EXAMPLES, formatter_class=Formatter,
    )
    p.add_argument("id", help="experiment id, a unique prefix of it, or its directory")
    p.add_argument("trial", type=int, help="the trial id")
    p.add_argument("--stderr", action="store_true", help="its stderr instead of stdout")
    p.add_argument("--follow", "-f", action="store_true",
                   help="keep printing what it writes until the trial ends")
    add_home(p)
    p.set_defaults(func=log_main)

    p = sub.add_parser(
        "delete", help="delete an experiment (its directory and registry entry)",
        description="Delete an experiment that is not running: its directory with the "
        "database, trial logs and checkpoints.",
        epilog=DELETE_EXAMPLES, formatter_class=Formatter,
    )
    p.add_argument("id", help="experiment id, a unique prefix of it, or its directory")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask")
    add_home(p)
    p.set_defaults(func=delete_main)


# --- log --------------------------------------------------------------------------------

def _trial_state(directory: Path, trial_id: int, *, wait: bool = False) -> TrialState | None:
    """The state of the trial; ``None`` when it does not exist yet but may (``wait`` and
    the experiment runs); ``NasflowError`` naming the trials there are otherwise."""
    reader = StoreReader(directory / DB_NAME)
    try:
        record = reader.trial(trial_id)
        ids = reader.trial_ids() if record is None else None
    finally:
        reader.close()
    if record is not None:
        return record.state
    if wait and experiment_info(directory).state == ExperimentState.RUNNING:
        return None
    if ids is None:
        raise NasflowError(f"experiment {directory.name} has no trials yet; trial "
                           f"{trial_id} does not exist (nasflow trials {directory.name})")
    raise NasflowError(f"experiment {directory.name} has no trial {trial_id} (its trials "
                       f"are {ids[0]}..{ids[1]}; nasflow trials {directory.name})")


def follow_file(path: Path, done: Callable[[], bool], *, out: BinaryIO | None = None,
                interval: float = FOLLOW_INTERVAL) -> None:
    """Copy ``path`` to ``out`` (stdout's bytes) as it grows until ``done()`` is true,
    then copy what is left. The file may not exist yet."""
    sink = out if out is not None else sys.stdout.buffer
    offset = 0
    while True:
        finished = done()  # asked before the read: nothing written before it is lost
        try:
            with path.open("rb") as f:
                f.seek(offset)
                chunk = f.read()
        except FileNotFoundError:
            chunk = b""
        if chunk:
            offset += len(chunk)
            sink.write(chunk)
            sink.flush()
        if finished:
            return
        time.sleep(interval)  # tail -f: another process writes the file and announces nothing


@command
def log_main(args: argparse.Namespace) -> int:
    directory = find(args.id, args.home)
    state = _trial_state(directory, args.trial, wait=args.follow)
    name = "stderr.log" if args.stderr else "stdout.log"
    path = directory / "trials" / str(args.trial) / name
    if args.follow:
        if state is None:
            print(f"note: trial {args.trial} has not been submitted yet; waiting for it",
                  file=sys.stderr, flush=True)

        def ended() -> bool:
            # a trial never submitted before its experiment ended raises here, after
            # everything there was has been printed
            now = _trial_state(directory, args.trial, wait=True)
            return (now is not None and now.finished) or \
                experiment_info(directory).state != ExperimentState.RUNNING

        follow_file(path, ended)
        return EXIT_OK
    if not path.is_file():
        what = "has not started yet" if state is TrialState.WAITING else "printed nothing"
        print(f"note: trial {args.trial} ({state}) {what}: no {path}", file=sys.stderr)
        return EXIT_OK
    with path.open("rb") as f:
        shutil.copyfileobj(f, sys.stdout.buffer)
    sys.stdout.flush()
    return EXIT_OK


# --- delete -----------------------------------------------------------------------------

def _confirm(question: str) -> bool:
    print(question + " [y/N] ", end="", flush=True)
    answer = sys.stdin.readline().strip().lower()
    return answer in ("y", "yes")


@command
def delete_main(args: argparse.Namespace) -> int:
    directory = find(args.id, args.home)
    info = experiment_info(directory)
    if info.state == ExperimentState.RUNNING:
        print(f"error: experiment {info.id} is RUNNING (process {info.pid}); stop it first "
              f"(nasflow stop {info.id} --wait), then delete it", file=sys.stderr)
        return EXIT_FAILED
    if not args.yes:
        if not (sys.stdin.isatty() and sys.stdout.isatty()):
            print(f"error: deleting experiment {info.id} ({directory}) needs --yes when "
                  "not on a terminal", file=sys.stderr)
            return EXIT_FAILED
        what = "" if info.damaged else f" ({info.state}, {info.total} trials)"
        if not _confirm(f"delete experiment {info.id}{what} and everything in {directory}?"):
            print("nothing deleted")
            return EXIT_FAILED
    # the run lock: no process runs it now, and none can start it while it goes
    got = take_lock(directory)
    if not isinstance(got, ExperimentLock):
        print(f"error: experiment {info.id} was started again (process {got.get('pid')}); "
              "nothing deleted", file=sys.stderr)
        return EXIT_FAILED
    try:
        # rename first: a half-removed directory (a permission error deep inside) is no
        # longer listed as a damaged experiment under its id
        trash = directory.with_name(f".deleting-{directory.name}-{os.getpid()}")
        os.replace(directory, trash)
    finally:
        got.release()
    shutil.rmtree(trash)
    print(f"deleted experiment {info.id} ({directory})")
    return EXIT_OK
