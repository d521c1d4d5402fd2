"""``nasflow run``, ``nasflow stop`` and ``nasflow resume``: starting, stopping and
continuing experiments from the command line.

``run`` and ``resume`` show live progress and stop gracefully on SIGINT/SIGTERM (exit 130 /
143): running trials end CANCELED (error type ``Interrupted``) and everything is saved, so
``resume`` continues from there. ``stop`` asks an experiment running in another process to
do the same, through the control endpoint it listens on (127.0.0.1, a token in its
directory readable by its owner only).
"""

from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path
from typing import Any

import anyio

from nasflow._control import send_request
from nasflow._kernel import INTERRUPTED, ExperimentState, TrialState
from nasflow.cli._detach import add_option, detach, ready_callback
from nasflow.cli._loadfile import ExperimentFileError, load_experiment_file
from nasflow.cli._output import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    Formatter,
    add_home,
    command,
    find,
    positive_int,
)
from nasflow.cli._running import print_best, run_experiment
from nasflow.config import parse_duration
from nasflow.exceptions import ConfigError, NasflowError
from nasflow.experiment import Experiment
from nasflow.store import ExperimentInfo, experiment_info, list_experiments

__all__ = ["add_parsers"]

RUN_EXAMPLES = """examples:
  nasflow run search.py                    # runs the experiment search.py defines
  nasflow run search.py --max-trials 8     # a shorter search (overrides the config)
  nasflow run search.py --plain > log.txt  # one line per finished trial
  nasflow run search.py --experiment small # pick one of several experiments by name

search.py builds, but does not run, an experiment:

  import nasflow as nf
  experiment = nf.Experiment(space, evaluate, nf.strategy.Random(),
                             nf.ExperimentConfig(max_trials=50, concurrency=4))

(or defines make_experiment() returning one). The file runs with
__name__ == "__nasflow_run__", so its `if __name__ == "__main__":` block is skipped.
Ctrl-C stops gracefully (exit 130; SIGTERM: 143); continue with nasflow resume ID.
Exit codes: 0 done or stopped with nasflow stop, 1 failed, 2 usage, 130/143 signals.
"""

STOP_EXAMPLES = """examples:
  nasflow stop k3j9x0ab            # ask it to stop; returns at once
  nasflow stop k3j9x0ab --wait     # ... and wait until it has stopped
  nasflow stop --all --wait        # every experiment running on this machine

Running trials end CANCELED and everything is saved; nasflow resume ID continues.
Exit codes: 0 stop requested (with --wait: stopped), 1 not running (DONE, STOPPED,
FAILED, CRASHED), unreachable, or --wait timed out.
"""

RESUME_EXAMPLES = """examples:
  nasflow resume k3j9x0ab                # continue where it stopped or crashed
  nasflow resume k3j9x0ab --file search.py  # take space/evaluator/strategy from a file
  nasflow resume k3j9x0ab --max-trials 300  # continue a DONE one, up to 300 trials

Completed trials are kept and never run again; trials cut off by a stop or a crash run
again under their own id (attempt + 1); new trial ids continue after the last; the
strategy continues from its last snapshot. The space, evaluator and strategy are
unpickled from the experiment directory unless --file gives them; the stored config is
used, but --max-trials, --max-duration and --concurrency may change it (a max-trials below
the trials already run is refused). A DONE experiment continues once one of them gives it
room. Exit codes as for nasflow run.
"""


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``run``, ``stop`` and ``resume``."""
    p = sub.add_parser(
        "run", help="run the experiment a Python file defines",
        description="Run an experiment defined in a Python file (the file is the config), "
        "with live progress; its results stay under NASFLOW_HOME.",
        epilog=RUN_EXAMPLES, formatter_class=Formatter,
    )
    p.add_argument("file", help="a Python file that defines the experiment")
    p.add_argument("--experiment", metavar="NAME", default=None,
                   help="the variable or zero-argument function that gives the experiment "
                        "(default: `experiment`, else `make_experiment()`, else the only one)")
    _add_budget_options(p)
    p.add_argument("--name", default=None, help="override the experiment's name")
    p.add_argument("--id", default=None, help="the experiment id (default: a new one)")
    _add_view_options(p)
    add_option(p)
    add_home(p)
    p.set_defaults(func=run_main)

    p = sub.add_parser(
        "stop", help="stop a running experiment gracefully (state saved)",
        description="Ask an experiment running in another process (on this machine) to "
        "stop: no new trials, running ones CANCELED, everything saved.",
        epilog=STOP_EXAMPLES, formatter_class=Formatter,
    )
    p.add_argument("id", nargs="?", help="experiment id, a unique prefix of it, or its "
                                         "directory")
    p.add_argument("--all", action="store_true", help="stop every running experiment")
    p.add_argument("--wait", action="store_true", help="return once it has stopped")
    p.add_argument("--timeout", type=_duration, default=120.0, metavar="TIME",
                   help="how long --wait waits (default 120s)")
    p.add_argument("--reason", default=None, help="recorded as the end reason")
    add_home(p)
    p.set_defaults(func=stop_main)

    p = sub.add_parser(
        "resume", help="continue a stopped or crashed experiment",
        description="Resume an experiment that was stopped, cancelled or killed, with live "
        "progress, until its budget is spent or its strategy is done.",
        epilog=RESUME_EXAMPLES, formatter_class=Formatter,
    )
    p.add_argument("id", help="experiment id, a unique prefix of it, or its directory")
    p.add_argument("--file", default=None, metavar="FILE.py",
                   help="take the space, evaluator, strategy and scheduler from the "
                        "experiment this file defines (when the pickled ones cannot load)")
    p.add_argument("--experiment", metavar="NAME", default=None,
                   help="with --file: which experiment of the file")
    _add_budget_options(p)
    _add_view_options(p)
    add_option(p)
    add_home(p)
    p.set_defaults(func=resume_main)


def _add_budget_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-trials", type=positive_int, metavar="N", help="override max_trials")
    p.add_argument("--max-duration", type=_duration, metavar="TIME",
                   help="override max_duration (seconds, or e.g. 90s, 1h30m)")
    p.add_argument("--concurrency", type=positive_int, metavar="N", help="override concurrency")


def _budget_changes(args: argparse.Namespace) -> dict[str, Any]:
    return {k: v for k, v in (("max_trials", args.max_trials),
                              ("max_duration", args.max_duration),
                              ("concurrency", args.concurrency)) if v is not None}


def _add_view_options(p: argparse.ArgumentParser) -> None:
    view = p.add_mutually_exclusive_group()
    view.add_argument("--plain", action="store_true",
                      help="one line per finished trial, even on a terminal")
    view.add_argument("--quiet", action="store_true",
                      help="no progress, only the summary at the end")


def _duration(text: str) -> float:
    try:
        return parse_duration(text, field="duration")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(f"expected seconds or e.g. 90s, 1h30m; got {text!r}"
                                         ) from exc


def _report_file_error(exc: ExperimentFileError) -> int:
    if exc.details:
        print(exc.details, file=sys.stderr, end="")
    print(f"error: {exc}", file=sys.stderr)
    return EXIT_FAILED


def _run(exp: Experiment, args: argparse.Namespace) -> int:
    live = False if args.plain else None
    ready = ready_callback(lambda: exp.directory, exp.id)
    code = anyio.run(lambda: run_experiment(exp, live=live, quiet=args.quiet,
                                            on_running=ready))
    print_best(exp)
    return code


# --- run --------------------------------------------------------------------------------

def _with_overrides(exp: Experiment, args: argparse.Namespace) -> Experiment:
    changes = _budget_changes(args)
    if args.home is not None:
        changes["home"] = args.home
    if not changes and args.id is None and args.name is None:
        return exp
    config = exp.config.replace(**changes)
    name = args.name or (None if exp.name == exp.id else exp.name)
    # the file's experiment never ran: a new one from the same parts replaces it
    return Experiment(exp.space, exp.evaluator, exp.strategy, config, name=name,
                      id=args.id or exp.id, scheduler=exp.scheduler)


def _budget(exp: Experiment) -> str:
    cfg = exp.config
    parts = [f"max_trials={cfg.max_trials}" if cfg.max_trials else "no trial limit"]
    if cfg.max_duration:
        parts.append(f"max_duration={cfg.max_duration:g}s")
    parts.append(f"{cfg.concurrency} at a time")
    return ", ".join(parts)


@command
def run_main(args: argparse.Namespace) -> int:
    if args.detach:
        return detach(args.argv, args.home)
    try:
        exp = _with_overrides(load_experiment_file(args.file, args.experiment), args)
    except ExperimentFileError as exc:
        return _report_file_error(exc)
    name = "" if exp.name == exp.id else f" {exp.name!r}"
    print(f"{args.file}: experiment{name} ({_budget(exp)}) in {exp.directory}; "
          f"experiment {exp.id}", flush=True)
    return _run(exp, args)


# --- resume -----------------------------------------------------------------------------

def _resume_summary(directory: Path) -> str:
    from nasflow._results import load_experiment

    with load_experiment(directory) as results:
        records = results.trials()
    again = [r for r in records if not r.state.finished or (
        r.state is TrialState.CANCELED and r.error is not None
        and r.error.type == INTERRUPTED)]
    kept = len(records) - len(again)
    done = sum(r.state is TrialState.SUCCEEDED for r in records)
    return (f"{kept} trials kept ({done} succeeded), {len(again)} interrupted to run again "
            f"(ids {', '.join(str(r.id) for r in again[:10]) or '-'})")


@command
def resume_main(args: argparse.Namespace) -> int:
    directory = find(args.id, args.home)
    if args.detach and experiment_info(directory).state not in (
            ExperimentState.DONE, "DAMAGED"):  # those are answered here, not in the background
        return detach(args.argv, args.home)
    # like `python -m`: modules in the current folder (the space.py an experiment file
    # imported) can be imported while unpickling; the console script's sys.path[0] is the
    # folder of the `nasflow` executable, not this one
    here = str(Path.cwd())
    if here not in sys.path and "" not in sys.path:
        sys.path.insert(0, here)
    parts = {}
    if args.file is not None:
        try:
            source = load_experiment_file(args.file, args.experiment)
        except ExperimentFileError as exc:
            return _report_file_error(exc)
        parts = {"space": source.space, "evaluator": source.evaluator,
                 "strategy": source.strategy, "scheduler": source.scheduler}
    info = experiment_info(directory)
    if info.damaged:
        raise NasflowError(f"experiment {info.id} cannot be resumed: {info.error}")
    budget = _budget_changes(args)
    if info.state == ExperimentState.DONE and not budget:
        # a DONE experiment has nothing in flight and its budget or strategy is spent:
        # resuming as it is would only rewrite its metadata
        print(f"experiment {info.id} is DONE ({info.end_reason}); nothing to resume as it "
              f"is. Give it more room to continue: nasflow resume {info.id} --max-trials N "
              "(or --max-duration TIME)")
        return EXIT_OK
    exp = Experiment.restore(directory, home=args.home, **parts, **budget)
    print(f"resuming experiment {info.id} ({info.state}): {_resume_summary(directory)}; "
          f"experiment {exp.id}", flush=True)
    return _run(exp, args)


# --- stop -------------------------------------------------------------------------------

def _stop_one(info: ExperimentInfo, args: argparse.Namespace) -> int:
    if info.state != ExperimentState.RUNNING:
        hint = {
            ExperimentState.CRASHED: f"; its process {info.pid} is gone (nasflow resume "
                                     f"{info.id} continues it)",
            "DAMAGED": f": {info.error}",
        }.get(info.state, "")
        print(f"error: experiment {info.id} is not running ({info.state}){hint}",
              file=sys.stderr)
        return EXIT_FAILED
    if info.host is not None and info.host != socket.gethostname():
        print(f"error: experiment {info.id} runs on host {info.host}; run nasflow stop "
              "there", file=sys.stderr)
        return EXIT_FAILED
    print(f"stopping experiment {info.id}: running trials are cancelled, everything is saved",
          flush=True)
    try:
        # with --wait the experiment answers only once it has ended and saved everything
        reply = send_request(info.directory, "stop", wait=args.wait,
                             timeout=args.timeout if args.wait else 10.0,
                             reason=args.reason or "stopped with nasflow stop")
    except NasflowError as exc:
        if args.wait and "did not answer" in str(exc):
            print(f"error: experiment {info.id} still RUNNING after {args.timeout:g}s (its "
                  "running trials may be slow to cancel); check again with nasflow show "
                  f"{info.id}", file=sys.stderr)
            return EXIT_FAILED
        raise
    if not reply.get("ok"):
        print(f"error: experiment {info.id} refused to stop: {reply.get('error')}",
              file=sys.stderr)
        return EXIT_FAILED
    if args.wait:
        now = experiment_info(info.directory)
        reason = f" ({now.end_reason})" if now.end_reason else ""
        print(f"experiment {info.id} {now.state}{reason}; {now.total} trials")
    return EXIT_OK


@command
def stop_main(args: argparse.Namespace) -> int:
    if args.all == (args.id is not None):
        print("error: give an experiment id, or --all (not both)", file=sys.stderr)
        return EXIT_USAGE
    if not args.all:
        return _stop_one(experiment_info(find(args.id, args.home)), args)
    running = [i for i in list_experiments(args.home) if i.state == ExperimentState.RUNNING]
    if not running:
        print("no running experiments")
        return EXIT_OK
    codes = [_stop_one(i, args) for i in running]
    return max(codes)
