"""``nasflow submit FILE --manager ws://...``: hand an experiment to a daemon that hosts it
(strategy, store, events) and return; ``show``/``log``/``stop`` (with the daemon's
``--home``) and ``nf.attach`` follow it from there."""

from __future__ import annotations

import argparse
import os
import sys

import anyio

from nasflow.cli._output import EXIT_OK, Formatter, command, positive_int

__all__ = ["add_parser"]

SUBMIT_EXAMPLES = """examples:
  nasflow submit search.py --manager ws://127.0.0.1:8765          # prints the id, returns
  nasflow submit search.py --manager ws://127.0.0.1:8765 --follow # ... and shows its trials
  NASFLOW_TOKEN=... nasflow submit search.py --manager ws://gpu-box:8765 --max-trials 100

The daemon (nasflow manager) loads the file as nasflow run does (so the file must be
readable there: the same machine or a shared file system) and runs the experiment on its
workers, with its store under the daemon's NASFLOW_HOME. A daemon restart resumes it.
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``submit``."""
    p = sub.add_parser(
        "submit", help="have a nasflow manager daemon host the experiment a file defines",
        description="Submit the experiment a Python file defines to a nasflow manager "
        "daemon, which runs all of it (strategy, store, events) on its workers; returns "
        "with the experiment id.",
        epilog=SUBMIT_EXAMPLES, formatter_class=Formatter,
    )
    p.add_argument("file", help="a Python file that defines the experiment")
    p.add_argument("--manager", required=True, metavar="URL",
                   help="the daemon's address, ws://host:port")
    p.add_argument("--token", default=None,
                   help="the daemon's token (default: $NASFLOW_TOKEN)")
    p.add_argument("--experiment", metavar="NAME", default=None,
                   help="which experiment of the file (as for nasflow run)")
    p.add_argument("--max-trials", type=positive_int, metavar="N", help="override max_trials")
    p.add_argument("--concurrency", type=positive_int, metavar="N", help="override concurrency")
    p.add_argument("--follow", action="store_true",
                   help="then print each trial as it ends, until the experiment ends")
    p.set_defaults(func=submit_main)


@command
def submit_main(args: argparse.Namespace) -> int:
    from nasflow.events import ExperimentFinished, TrialEnded
    from nasflow.hosted import submit_file

    token = args.token or os.environ.get("NASFLOW_TOKEN")
    overrides = {"max_trials": args.max_trials, "concurrency": args.concurrency}

    async def go() -> int:
        handle = await submit_file(args.file, manager=args.manager, token=token,
                                   experiment=args.experiment, overrides=overrides)
        print(f"{args.file}: submitted to {args.manager}; experiment {handle.id}",
              flush=True)
        if not args.follow:
            return EXIT_OK
        async for event in handle.events():
            if isinstance(event, TrialEnded):
                print(f"trial {event.trial_id} {event.state.value}", flush=True)
            elif isinstance(event, ExperimentFinished):
                print(f"experiment {event.state.value}: {event.reason}", flush=True)
        return EXIT_OK

    code: int = anyio.run(go)
    sys.stdout.flush()
    return code
