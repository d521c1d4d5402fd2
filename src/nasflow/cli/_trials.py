"""``nasflow trials`` and ``nasflow export``: one experiment's trials, and its best
architectures ready to paste into code or feed to a script.

Every trial this module prints carries its trial id (NNI's exported dicts had none, so a
result could not be traced back to its logs and checkpoints): ``trial_id`` in JSON and
CSV, a ``# trial N`` comment above each sample in the ``dict`` format.
"""

from __future__ import annotations

import argparse
import csv
import json
import pprint
import sys
from pathlib import Path
from typing import Any

from nasflow._kernel import TrialRecord
from nasflow._results import ExperimentResults, load_experiment
from nasflow.cli._output import (
    EXIT_OK,
    EXIT_USAGE,
    Formatter,
    add_home,
    command,
    find,
    fmt_duration,
    fmt_metric,
    positive_int,
    print_json,
    print_table,
    state_style,
)
from nasflow.cli._progress import short_sample
from nasflow.cli._results import parse_states, trial_json
from nasflow.store import DB_NAME, StoreReader

__all__ = ["add_parsers", "format_dict"]

TRIALS_EXAMPLES = """examples:
  nasflow trials k3j9x0ab                          # every trial, by id
  nasflow trials k3j9x0ab --sort metric --limit 10 # the 10 best (any state)
  nasflow trials k3j9x0ab --state FAILED           # what failed, with the error
  nasflow trials k3j9x0ab --state succeeded,early_stopped --csv > trials.csv
  nasflow trials k3j9x0ab --json | jq '.[] | {trial_id, metric}'

--sort metric puts the best first (per the experiment's direction; trials without a metric
last), --sort duration the longest first, --sort id the lowest first; --reverse flips.
CSV columns: trial_id, state, metric, duration, attempt, started_at, ended_at, error,
metrics (JSON), then one column per architecture label.
"""

EXPORT_EXAMPLES = """examples:
  nasflow export k3j9x0ab                  # the best architecture, as a Python dict
  nasflow export k3j9x0ab --top 5 > best.py
  nasflow export k3j9x0ab --top 5 --format json > best.json   # or --json
  nasflow export k3j9x0ab --top 3 --format code -o exported/
  nasflow export k3j9x0ab --intermediate --format csv > curves.csv

--format dict prints a Python list literal of samples (paste it into code, or read it
with ast.literal_eval), each preceded by a '# trial N: metric M' comment; --format json
prints [{"trial_id", "sample", "metric", "metrics"}, ...]. Best first; for several
objectives the Pareto front. Rebuild a model with space.freeze(sample).
--format code writes DIR/trial_N.py for each trial: a standalone torch.nn.Module class
that rebuilds the architecture with torch alone (no nasflow); load the trained weights
with load_state_dict. It needs the experiment's model space to be importable here.
--intermediate prints every report (trial.report(value, step=...)) of every trial and
attempt: CSV columns trial_id, attempt, step, time, then "value" (a float reported) or one
column per key (a dict reported); --format json gives a list of those rows.
"""

_SORTS = ("id", "metric", "duration")


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``trials`` and ``export``."""
    p = sub.add_parser(
        "trials", help="an experiment's trials: filter, sort, JSON or CSV",
        description="List the trials of an experiment (works while it runs): id, state, "
        "metric, duration, error or attempt, architecture.",
        epilog=TRIALS_EXAMPLES, formatter_class=Formatter,
    )
    p.add_argument("id", help="experiment id, a unique prefix of it, or its directory")
    p.add_argument("--state", action="append", type=parse_states, metavar="STATE",
                   help="only trials in this state (repeatable, or comma-separated)")
    p.add_argument("--sort", choices=_SORTS, default="id", help="order (default id)")
    p.add_argument("--reverse", action="store_true", help="reverse the order")
    p.add_argument("--limit", type=positive_int, default=None, metavar="N",
                   help="at most N trials (after sorting)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="a JSON list, for scripts")
    fmt.add_argument("--csv", action="store_true", help="CSV with a header row")
    add_home(p)
    p.set_defaults(func=trials_main)

    p = sub.add_parser(
        "export", help="the best architectures, as Python dicts or JSON",
        description="Export an experiment's best architectures (samples), each with its "
        "trial id and metric, with no experiment running.",
        epilog=EXPORT_EXAMPLES, formatter_class=Formatter,
    )
    p.add_argument("id", help="experiment id, a unique prefix of it, or its directory")
    p.add_argument("--top", type=positive_int, default=1, metavar="K",
                   help="how many, best first (default 1)")
    p.add_argument("--format", choices=("dict", "json", "code", "csv"), default=None,
                   help="dict: a Python literal with '# trial N' comments (default); "
                        "json: a list of {trial_id, sample, metric, metrics}; "
                        "code: one standalone nn.Module source file per trial (needs -o); "
                        "csv: with --intermediate only (its default)")
    p.add_argument("--intermediate", action="store_true",
                   help="every trial's intermediate metrics (one row per report: trial_id, "
                        "attempt, step, time, value), as CSV or JSON, instead of the best "
                        "architectures")
    p.add_argument("-o", "--output", default=None, metavar="DIR",
                   help="with --format code: the directory to write trial_N.py files to "
                        "(created if missing)")
    # list, show and trials take --json: export does too (same as --format json)
    p.add_argument("--json", action="store_const", const="json", dest="format",
                   help="the same as --format json")
    add_home(p)
    p.set_defaults(func=export_main)


# --- trials -----------------------------------------------------------------------------

def _sorted(records: list[TrialRecord], by: str, results: ExperimentResults,
            reverse: bool) -> list[TrialRecord]:
    score = results.objective.score

    def by_metric(r: TrialRecord) -> tuple[bool, float, int]:
        # best first; trials without a metric after all that have one
        return (r.metric is None, 0.0 if r.metric is None else -score(r.metric), r.id)

    def by_duration(r: TrialRecord) -> tuple[bool, float, int]:
        return (r.duration is None, -(r.duration or 0.0), r.id)

    def by_id(r: TrialRecord) -> tuple[bool, float, int]:
        return (False, 0.0, r.id)

    key = {"metric": by_metric, "duration": by_duration}.get(by, by_id)
    ordered = sorted(records, key=key)
    return ordered[::-1] if reverse else ordered


def _note(r: TrialRecord) -> str:
    parts = [str(r.error)[:80]] if r.error else []
    if r.attempt:
        parts.append(f"re-run (attempt {r.attempt})")
    return "; ".join(parts)


def _cell(value: Any) -> Any:
    """A CSV cell: scalars as they are, lists and dicts as JSON, ``None`` empty."""
    if value is None:
        return ""
    if isinstance(value, (list, dict, tuple)):
        return json.dumps(value)
    return value


def _write_csv(records: list[TrialRecord]) -> None:
    fixed = ["trial_id", "state", "metric", "duration", "attempt", "started_at", "ended_at",
             "error", "metrics"]
    labels: dict[str, None] = {}
    for r in records:
        labels.update(dict.fromkeys(r.sample))
    # a label that clashes with a fixed column keeps its data under "sample.<label>"
    names = [f"sample.{k}" if k in fixed else k for k in labels]
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(fixed + names)
    for r in records:
        writer.writerow([
            r.id, r.state.value, _cell(r.metric), _cell(r.duration), r.attempt,
            _cell(r.started_at), _cell(r.ended_at), "" if r.error is None else str(r.error),
            _cell(r.metrics),
        ] + [_cell(r.sample.get(k)) for k in labels])


@command
def trials_main(args: argparse.Namespace) -> int:
    directory = find(args.id, args.home)
    states = None if not args.state else sorted({s for group in args.state for s in group})
    with load_experiment(directory) as results:
        records = _sorted(results.trials(states), args.sort, results, args.reverse)
    if args.limit is not None:
        records = records[: args.limit]
    if args.json:
        print_json([trial_json(r) for r in records])
        return EXIT_OK
    if args.csv:
        _write_csv(records)
        return EXIT_OK
    if not records:
        print("no trials" + (" in state " + ", ".join(states) if states else ""))
        return EXIT_OK
    rows = [[str(r.id), r.state.value, fmt_metric(r.metric), fmt_duration(r.duration),
             _note(r), short_sample(r.sample, 120)] for r in records]
    print_table(["TRIAL", "STATE", "METRIC", "DURATION", "NOTE", "ARCHITECTURE"], rows,
                right=["TRIAL", "METRIC", "DURATION"], wrap=["NOTE", "ARCHITECTURE"],
                styles=[state_style(r.state.value) for r in records])
    return EXIT_OK


# --- export -----------------------------------------------------------------------------

def _write_code(results: ExperimentResults, top: list[TrialRecord], out: Path) -> int:
    """Write ``out/trial_N.py`` per trial in ``top`` (best first); print each path."""
    if not top:
        print(f"note: no trial of experiment {results.id} has succeeded; nothing to export",
              file=sys.stderr)
        return EXIT_OK
    sources = results.export_top_models(len(top), formatter="code")
    out.mkdir(parents=True, exist_ok=True)
    for record, source in zip(top, sources, strict=True):
        path = out / f"trial_{record.id}.py"
        path.write_text(source)
        print(f"{path}  # trial {record.id}: metric {fmt_metric(record.metric)}")
    return EXIT_OK


def format_dict(records: list[TrialRecord], header: str) -> str:
    """A Python list literal of the samples, each preceded by ``# trial N: metric M``
    (comments, so ``ast.literal_eval`` reads it back as the bare samples)."""
    lines = [f"# {header}", "["]
    for r in records:
        lines.append(f"    # trial {r.id}: metric {fmt_metric(r.metric)}"
                     + (f" {json.dumps(r.metrics)}" if isinstance(r.metrics, dict) else ""))
        text = pprint.pformat(r.sample, width=84, sort_dicts=False)
        lines += ["    " + line for line in text.splitlines()]
        lines[-1] += ","
    lines.append("]")
    return "\n".join(lines)


_FIXED_CURVE_COLUMNS = ("trial_id", "attempt", "step", "time")


def _export_intermediate(directory: Path, fmt: str) -> int:
    reader = StoreReader(directory / DB_NAME)
    try:
        rows = reader.all_intermediates()
    finally:
        reader.close()
    if not rows:
        print(f"note: no trial of experiment {directory.name} has reported an intermediate "
              "metric (trial.report(value, step=...))", file=sys.stderr)
    if fmt == "json":
        print_json([dict(zip((*_FIXED_CURVE_COLUMNS, "value"), row, strict=True))
                    for row in rows])
        return EXIT_OK
    # a float reported is a "value"; a dict reported gives one column per key
    keys: dict[str, None] = {}
    for *_, value in rows:
        keys.update(dict.fromkeys(value if isinstance(value, dict) else ["value"]))
    names = [f"metric.{k}" if k in _FIXED_CURVE_COLUMNS else k for k in keys]
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow([*_FIXED_CURVE_COLUMNS, *names])
    for tid, attempt, step, t, value in rows:
        values = value if isinstance(value, dict) else {"value": value}
        writer.writerow([tid, attempt, step, t, *(_cell(values.get(k)) for k in keys)])
    return EXIT_OK


@command
def export_main(args: argparse.Namespace) -> int:
    if args.intermediate:
        if args.format not in (None, "csv", "json") or args.output is not None:
            print("error: --intermediate exports the metrics as --format csv (the default) "
                  "or --format json, to stdout", file=sys.stderr)
            return EXIT_USAGE
        return _export_intermediate(find(args.id, args.home), args.format or "csv")
    if args.format == "csv":
        print("error: --format csv is for --intermediate (the metrics); for the trials "
              "use nasflow trials ID --csv", file=sys.stderr)
        return EXIT_USAGE
    args.format = args.format or "dict"
    if (args.format == "code") != (args.output is not None):
        print("error: --format code writes files and needs -o DIR; -o DIR is only for "
              "--format code", file=sys.stderr)
        return EXIT_USAGE
    directory = find(args.id, args.home)
    with load_experiment(directory) as results:
        top = results.export_top_models(args.top)
        if args.format == "code":
            return _write_code(results, top, Path(args.output))
        total = len(results.trials())
        objective = ", ".join(f"{d} {n}" for n, d in results.objective.directions.items())
        exp_id, front = results.id, results.objective.multi
    if not top:
        print(f"note: no trial of experiment {exp_id} has succeeded; nothing to export",
              file=sys.stderr)
    if args.format == "json":
        print_json([{"trial_id": r.id, "sample": r.sample, "metric": r.metric,
                     "metrics": r.metrics} for r in top])
        return EXIT_OK
    what = "Pareto front" if front else f"best {len(top)}"
    header = f"experiment {exp_id}: the {what} of {total} trials ({objective}), best first"
    print(format_dict(top, header))
    return EXIT_OK
