"""The ``nasflow`` command. ``nasflow --help`` lists the subcommands."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from nasflow._version import __version__

if TYPE_CHECKING:
    from collections.abc import Sequence

    from nasflow.cli._loadfile import ExperimentFileError as ExperimentFileError
    from nasflow.cli._loadfile import load_experiment_file as load_experiment_file

__all__ = ["EXIT_USAGE", "build_parser", "main"]

# what the other nasflow packages may import from here besides __all__ (not for users;
# docs/architecture.md, "Internal APIs")
__internal__ = ["ExperimentFileError", "load_experiment_file"]

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    from nasflow.cli import (
        _control,
        _dashboard,
        _demo,
        _feed,
        _files,
        _live,
        _manager,
        _results,
        _submit,
        _tensorboard,
        _trials,
    )

    parser = argparse.ArgumentParser(
        prog="nasflow",
        description="nasflow: async-native neural architecture search for PyTorch.",
        epilog="Run 'nasflow <command> --help' for a command's options and examples.",
    )
    parser.add_argument("--version", action="version", version=f"nasflow {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="<command>")
    _demo.add_parser(sub)
    _control.add_parsers(sub)  # run, stop, resume
    _feed.add_parsers(sub)  # enqueue, import
    _live.add_parsers(sub)  # update, trial kill
    _results.add_parsers(sub)  # list, show
    _trials.add_parsers(sub)  # trials, export
    _files.add_parsers(sub)  # log, delete
    _manager.add_parser(sub)
    _submit.add_parser(sub)
    _tensorboard.add_parser(sub)
    _dashboard.add_parsers(sub)  # dashboard, plot
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``nasflow`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # what --detach starts again
    if not hasattr(args, "func"):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130


def __getattr__(name: str) -> Any:
    if name in __internal__:  # imported on first use: loading a file imports the experiment
        from nasflow.cli import _loadfile

        return getattr(_loadfile, name)
    raise AttributeError(f"module 'nasflow.cli' has no attribute {name!r}")


if __name__ == "__main__":
    sys.exit(main())
