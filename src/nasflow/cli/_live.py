"""``nasflow update`` and ``nasflow trial kill``: change an experiment while it runs.

Both send one runtime change to the experiment's control endpoint (another process on
this machine), where it takes the same path as ``exp.update`` / ``exp.kill_trial``:
validated (refused with the reason, nothing changed), applied, and recorded in the store
(``nasflow show ID`` lists the changes).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from nasflow._control import send_request
from nasflow.cli._output import EXIT_FAILED, EXIT_OK, Formatter, add_home, command, find
from nasflow.config import parse_duration
from nasflow.exceptions import ConfigError
from nasflow.store import experiment_info

__all__ = ["add_parsers"]

UPDATE_EXAMPLES = """examples:
  nasflow update k3j9x0ab --concurrency 8         # 8 trials at once, from now on
  nasflow update k3j9x0ab --max-trials 500        # a bigger (or smaller) trial budget
  nasflow update k3j9x0ab --max-duration 2h       # end 2 hours after this run began
  nasflow update k3j9x0ab --max-duration none     # no time limit

More concurrency starts trials at once (new workers for the local training service, a
bigger share of a daemon's); less lets running trials finish and starts none until below
the limit. A budget below what already ran is refused. The change is recorded (nasflow
show ID) and kept by nasflow resume. Exit codes: 0 applied, 1 refused or not running.
"""

KILL_EXAMPLES = """examples:
  nasflow trial kill k3j9x0ab 17       # trial 17 ends CANCELED (killed by the user)

The search goes on; the trial is not retried, nor run again on resume. Killing a trial
that has ended changes nothing. Exit codes: 0 killed (or already ended), 1 refused (an
unknown id) or the experiment is not running.
"""


_UNSET: Any = object()


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``update`` and ``trial``."""
    p = sub.add_parser(
        "update", help="change concurrency or budgets of a running experiment",
        description="Change a running experiment's concurrency, max_trials or max_duration "
        "(like nnictl update).", epilog=UPDATE_EXAMPLES, formatter_class=Formatter,
    )
    p.add_argument("id", help="experiment id, a unique prefix of it, or its directory")
    # left out: _UNSET ("--max-trials none" is None, no limit)
    p.add_argument("--concurrency", type=int, metavar="N", default=_UNSET,
                   help="trials at once")
    p.add_argument("--max-trials", type=_limit(int), metavar="N|none", default=_UNSET,
                   help="trial budget")
    p.add_argument("--max-duration", type=_limit(_seconds), metavar="TIME|none",
                   default=_UNSET, help="time budget of this run (seconds, or e.g. 90s, 1h30m)")
    add_home(p)
    p.set_defaults(func=update_main)

    p = sub.add_parser(
        "trial", help="act on one trial of a running experiment (kill)",
        description="Act on one trial of a running experiment.",
    )
    trial = p.add_subparsers(title="actions", metavar="<action>")
    k = trial.add_parser(
        "kill", help="end a running trial (CANCELED, killed by the user)",
        description="End one running trial; the search goes on (like nnictl trial kill).",
        epilog=KILL_EXAMPLES, formatter_class=Formatter,
    )
    k.add_argument("id", help="experiment id, a unique prefix of it, or its directory")
    k.add_argument("trial", type=int, help="the trial id")
    k.add_argument("--reason", default=None, help="recorded as the trial's error message "
                                                  "(default: killed by the user)")
    add_home(k)
    k.set_defaults(func=kill_main)


def _limit(parse: Any) -> Any:
    def convert(text: str) -> Any:
        return None if text.lower() in ("none", "null", "off") else parse(text)
    convert.__name__ = getattr(parse, "__name__", "value")
    return convert


def _seconds(text: str) -> float:
    try:
        return parse_duration(text, field="max_duration")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(
            f"expected seconds or e.g. 90s, 1h30m (or none); got {text!r}") from exc


def _send(args: argparse.Namespace, op: str, **fields: Any) -> int:
    info = experiment_info(find(args.id, args.home))
    if info.state != "RUNNING":
        print(f"error: experiment {info.id} is not running ({info.state}); a change reaches "
              "only a running experiment (nasflow resume continues a stopped one)",
              file=sys.stderr)
        return EXIT_FAILED
    reply = send_request(info.directory, op, source="cli", **fields)
    if not reply.get("ok"):
        print(f"error: {reply.get('error')}", file=sys.stderr)
        return EXIT_FAILED
    print(f"experiment {info.id}: {reply.get('message', 'done')}")
    return EXIT_OK


@command
def update_main(args: argparse.Namespace) -> int:
    fields = {name: getattr(args, name) for name in ("concurrency", "max_trials",
                                                     "max_duration")
              if getattr(args, name) is not _UNSET}
    if not fields:
        print("error: give --concurrency, --max-trials and/or --max-duration",
              file=sys.stderr)
        return EXIT_FAILED
    return _send(args, "update", **fields)


@command
def kill_main(args: argparse.Namespace) -> int:
    fields: dict[str, Any] = {"trial": args.trial}
    if args.reason:
        fields["reason"] = args.reason
    return _send(args, "kill", **fields)
