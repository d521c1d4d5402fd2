"""What the CLI commands share: ``--home``, finding an experiment by id or prefix, error
handling and exit codes, and tables that are rich on a terminal and plain text elsewhere.

Plain output (stdout not a terminal) has no colour, no box drawing and no wrapping:
columns separated by two spaces, one row per line, so ``grep``, ``awk`` and tests can rely
on it. Scripts should prefer ``--json``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import functools
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

import orjson

from nasflow.exceptions import ExperimentNotFoundError, NasflowError
from nasflow.store import DB_NAME, nasflow_home

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "add_home",
    "command",
    "find",
    "fmt_duration",
    "fmt_metric",
    "fmt_time",
    "print_json",
    "print_table",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

class Formatter(argparse.RawDescriptionHelpFormatter):
    """Help text: the description wrapped to the terminal, the epilog (examples) kept
    exactly as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("examples:"):
            return super()._fill_text(text, width, indent)
        return argparse.HelpFormatter._fill_text(self, text, width, indent)


def positive_int(text: str) -> int:
    """An argparse type: a positive integer, with a message naming the bad value."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def add_home(p: argparse.ArgumentParser) -> None:
    """The ``--home`` option every experiment command takes."""
    p.add_argument("--home", metavar="DIR", default=None,
                   help="where experiments live (default: $NASFLOW_HOME, else ~/.nasflow)")


def command(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Wrap a command: a ``NasflowError`` or ``OSError`` becomes ``error: ...`` on stderr
    and exit 1; a closed pipe (``nasflow trials ID | head``) ends quietly."""

    @functools.wraps(fn)
    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except NasflowError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_FAILED
        except BrokenPipeError:
            return _pipe_closed()
        except OSError as exc:  # e.g. NASFLOW_HOME unreadable: say so, no traceback
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_FAILED
        except BaseExceptionGroup as group:
            # the progress view runs in a task group: its BrokenPipeError arrives wrapped
            # (the experiment has been stopped and saved by then)
            if group.subgroup(BrokenPipeError) is None:
                raise
            return _pipe_closed()

    return run


def _pipe_closed() -> int:
    # the reader went away: point stdout at /dev/null so that the interpreter's final
    # flush does not raise again
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return EXIT_FAILED


def find(ref: str, home: str | None) -> Path:
    """The directory of the experiment ``ref``: an id, a unique id prefix, or a path to its
    directory or database; ``ExperimentNotFoundError`` saying which ids exist otherwise."""
    path = Path(ref).expanduser()
    if path.is_file() and path.name == DB_NAME:
        return path.parent
    if (path / DB_NAME).is_file() and (os.sep in ref or ref.startswith(".")):
        return path
    root = nasflow_home(home) / "experiments"
    exact = root / ref
    if exact.is_dir() and os.sep not in ref:
        return exact
    known = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    matches = [name for name in known if name.startswith(ref)] if ref else []
    if len(matches) == 1:
        return root / matches[0]
    if len(matches) > 1:
        raise ExperimentNotFoundError(
            f"{ref!r} is the start of several experiment ids ({', '.join(matches[:10])}); "
            "give more of the id")
    raise ExperimentNotFoundError(
        f"no experiment {ref!r} under {root} (known ids: {', '.join(known[-20:]) or 'none'}). "
        "Check the id (nasflow list), or pass --home / set NASFLOW_HOME to where it ran.")


# --- formatting -------------------------------------------------------------------------

def fmt_time(ts: float | None) -> str:
    """Local date and time to the second, or ``-``."""
    if not isinstance(ts, (int, float)):
        return "-"
    return _dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def fmt_duration(seconds: float | None) -> str:
    """``0.4s``, ``45s``, ``3m05s``, ``2h03m``, ``1d02h``, or ``-``."""
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{max(seconds, 0.0):.1f}s"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def fmt_metric(value: float | None) -> str:
    """Four decimals for everyday magnitudes, four significant digits beyond them."""
    if value is None:
        return "-"
    if value == 0 or 1e-3 <= abs(value) < 1e5:
        return f"{value:.4f}"
    return f"{value:.4g}"


def print_json(value: Any, out: IO[str] | None = None) -> None:
    """``value`` as indented JSON (NaN and infinities become ``null``)."""
    out = out or sys.stdout
    out.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def is_terminal(out: IO[str]) -> bool:
    """Whether ``out`` is an interactive terminal (rich output) rather than a pipe/file."""
    try:
        return out.isatty()
    except (AttributeError, ValueError):
        return False


def print_table(columns: Sequence[str], rows: Sequence[Sequence[str]], *,
                out: IO[str] | None = None, title: str | None = None,
                right: Sequence[str] = (), styles: Sequence[str | None] | None = None,
                wrap: Sequence[str] = ()) -> None:
    """A table: rich on a terminal, aligned plain text elsewhere.

    ``right``: columns aligned right (numbers); ``styles``: a rich style per row (terminal
    only); ``wrap``: columns that may wrap on a narrow terminal (others never do).
    """
    out = out or sys.stdout
    if is_terminal(out):
        from rich import box
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
        for col in columns:
            table.add_column(col, justify="right" if col in right else "left",
                             no_wrap=col not in wrap, overflow="fold")
        for i, row in enumerate(rows):
            style = styles[i] if styles else None
            # Text(), not markup: samples like "[op]" must not be read as rich tags
            table.add_row(*(Text(cell, style=style or "") for cell in row))
        Console(file=out).print(table)
        return
    if title:
        print(title, file=out)
    widths = [len(c) for c in columns]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        parts = [cell.rjust(w) if col in right else cell.ljust(w)
                 for col, cell, w in zip(columns, cells, widths, strict=True)]
        return "  ".join(parts).rstrip()

    print(line(columns), file=out)
    for row in rows:
        print(line(row), file=out)


def state_style(state: str) -> str | None:
    """The colour of an experiment or trial state on a terminal."""
    return {
        "RUNNING": "cyan", "DONE": "green", "SUCCEEDED": "green", "STOPPED": "yellow",
        "CANCELED": "yellow", "EARLY_STOPPED": "yellow", "FAILED": "red", "TIMEOUT": "red",
        "CRASHED": "red bold", "DAMAGED": "red bold", "WAITING": "dim",
    }.get(state)
