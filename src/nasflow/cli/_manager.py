"""``nasflow manager``: the trial manager daemon, handed to ``nasflow.manager``.

Imported lazily: the manager pulls in websockets and the worker machinery, which the
other commands do not need, and an installation without it still runs every other
command. Every argument after ``manager`` (``--help`` included) goes to it untouched.
"""

from __future__ import annotations

import argparse
import sys

from nasflow.cli._output import EXIT_FAILED

__all__ = ["add_parser"]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``manager``: a pass-through of everything after it."""
    # prefix_chars="+" makes options like --port plain strings for this sub-parser, so
    # they all reach the manager's own parser (argparse.REMAINDER drops leading options)
    p = sub.add_parser(
        "manager", add_help=False, prefix_chars="+",
        help="run the trial manager daemon (nasflow manager --help)",
    )
    p.add_argument("argv", nargs="*")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    try:
        from nasflow.manager import manager_command
    except ImportError as exc:
        print(f"error: nasflow manager is not available in this installation "
              f"(cannot import nasflow.manager: {exc}); reinstall nasflow, or run "
              "experiments in-process (the default)", file=sys.stderr)
        return EXIT_FAILED
    return int(manager_command(list(args.argv)))
