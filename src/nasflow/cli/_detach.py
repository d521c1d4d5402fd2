"""``nasflow run FILE --detach`` (and ``resume ID --detach``): the experiment runs in a
background process of its own, which owns it as a foreground run would; the command
prints the id once the run is RUNNING and exits.

The parent starts ``nasflow`` again with the same arguments (less ``--detach``) in a new
session (no terminal: Ctrl-C in the shell does not reach it), with stdin from
``/dev/null`` and its output in a temporary ``.detached-*.log`` under
``$NASFLOW_HOME/experiments/`` (the experiment's directory does not exist before the run
takes it), and one end of a pipe. Once the run is RUNNING -- its lock taken, its control
endpoint listening, so ``nasflow stop ID`` works the moment the parent returns -- the child
appends what it printed so far to ``<experiment>/run.log``, points its stdout and stderr
there, and writes the experiment id into the pipe. A child that ends before that (a file
that does not load, an id that exists) closes the pipe by exiting: the parent shows its
output and exits 1.
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from nasflow.cli._output import EXIT_FAILED, EXIT_OK
from nasflow.store import experiment_info, nasflow_home

__all__ = ["READY_FD_ENV", "RUN_LOG", "add_option", "detach", "ready_callback"]

READY_FD_ENV = "NASFLOW_DETACHED_READY_FD"
"""The pipe a detached child reports its experiment id into."""
_LOG_ENV = "NASFLOW_DETACHED_LOG"
RUN_LOG = "run.log"
"""A detached run's output, in its experiment directory."""


def add_option(p: argparse.ArgumentParser) -> None:
    """``--detach`` of ``run`` and ``resume``."""
    p.add_argument("--detach", action="store_true",
                   help="run in a background process: print the experiment id once it "
                        "runs, then return (its output goes to <experiment>/run.log)")


def _child_argv(argv: list[str]) -> list[str]:
    # argparse accepts any unambiguous prefix of an option: drop each spelling
    rest = [a for a in argv if not (len(a) > 4 and "--detach".startswith(a))]
    if "--quiet" not in rest and "--plain" not in rest:
        rest.append("--plain")
    return rest


def detach(argv: list[str], home: str | None) -> int:
    """Start ``nasflow argv`` in the background; print its experiment id once it runs.
    Returns the exit code of this (the parent's) command."""
    root = nasflow_home(home) / "experiments"
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    log = root / f".detached-{secrets.token_hex(6)}.log"
    read_end, write_end = os.pipe()
    env = {**os.environ, READY_FD_ENV: str(write_end), _LOG_ENV: str(log)}
    try:
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "nasflow", *_child_argv(argv)], stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT, env=env, pass_fds=(write_end,),
                start_new_session=True)
    finally:
        os.close(write_end)
    with os.fdopen(read_end, "rb") as ready:
        exp_id = ready.read().decode().strip()  # EOF: the child reported, or it ended
    if not exp_id:
        code = proc.wait()
        text = log.read_text(errors="replace") if log.is_file() else ""
        log.unlink(missing_ok=True)
        sys.stderr.write(text)
        print(f"error: the detached run ended before its experiment started (exit {code})",
              file=sys.stderr)
        return EXIT_FAILED
    info = experiment_info(root / exp_id)
    print(f"experiment {info.name!r} runs in the background (process {proc.pid}); its "
          f"output: {info.directory / RUN_LOG}; experiment {exp_id}")
    print(f"  follow it: nasflow show {exp_id} / nasflow log {exp_id} TRIAL --follow; "
          f"stop it: nasflow stop {exp_id}")
    return EXIT_OK


def ready_callback(directory: Callable[[], Path], exp_id: str) -> Callable[[], None] | None:
    """In a detached child: what to do once the run is RUNNING (move the output into the
    experiment directory, tell the parent); ``None`` in any other process."""
    fd_text = os.environ.pop(READY_FD_ENV, None)
    log_text = os.environ.pop(_LOG_ENV, None)
    if fd_text is None or log_text is None:
        return None
    fd, early = int(fd_text), Path(log_text)

    def ready() -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        target = directory() / RUN_LOG
        out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(out, early.read_bytes())  # what it printed before it had a directory
            os.dup2(out, 1)
            os.dup2(out, 2)
        finally:
            os.close(out)
        early.unlink(missing_ok=True)
        os.write(fd, exp_id.encode() + b"\n")
        os.close(fd)

    return ready
