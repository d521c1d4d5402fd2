"""``nasflow enqueue`` and ``nasflow import``: samples to evaluate first and known results
for an experiment's strategy, whether it runs or not.

A running experiment takes them through its control endpoint, as ``exp.enqueue`` /
``exp.add_results`` would (the change is validated, applied and recorded there). One that
is not running gets them recorded in its store (checked against its space first) and
takes them when it is next resumed (``nasflow resume ID``, ``--max-trials`` for a DONE
one).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from nasflow._control import send_request
from nasflow._kernel import ExperimentState, Objective
from nasflow._persist import load_object
from nasflow.cli._output import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Formatter, add_home, command, find
from nasflow.exceptions import NasflowError
from nasflow.experiment import check_results, check_samples
from nasflow.space import as_search_space, sample_hash
from nasflow.store import StoreReader, experiment_info, record_change_offline

__all__ = ["add_parsers"]

ENQUEUE_EXAMPLES = """examples:
  nasflow enqueue k3j9x0ab --sample '{"width": 64, "op": "conv3"}'
  nasflow enqueue k3j9x0ab --file samples.jsonl      # one sample (a JSON object) a line

The samples run before the strategy's next proposals and count toward max_trials (like
Optuna's enqueue_trial; NNI's "customised trial"). Each is checked against the space: one
that does not fit is refused with its label and value, and none is taken. Samples already
evaluated are skipped. A running experiment takes them at once; one that is not running
records them and runs them when resumed (nasflow resume ID [--max-trials N]).
"""

IMPORT_EXAMPLES = """examples:
  nasflow import k3j9x0ab results.jsonl
  nasflow export OTHER --format jsonl > r.jsonl && nasflow import k3j9x0ab r.jsonl

Each line is {"sample": {...}, "metric": value} (value a number, or a dict with every
objective), or a line of nasflow export --format jsonl (its succeeded trials). The results
are stored as trials that ended SUCCEEDED without running (origin "added"), the strategy
learns from them, and they do not count toward max_trials (like Optuna's add_trial).
"""

_CHUNK = 3000
"""Bytes of entries per control request (the endpoint reads requests of up to 4 KiB)."""


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``enqueue`` and ``import``."""
    p = sub.add_parser(
        "enqueue", help="evaluate given samples before the strategy's next proposals",
        description="Give an experiment samples to evaluate first.",
        epilog=ENQUEUE_EXAMPLES, formatter_class=Formatter,
    )
    p.add_argument("id", help="experiment id, a unique prefix of it, or its directory")
    given = p.add_mutually_exclusive_group(required=True)
    given.add_argument("--sample", metavar="JSON", help="one sample (a JSON object) or a list")
    given.add_argument("--file", metavar="FILE.jsonl", help="one sample (JSON object) a line")
    add_home(p)
    p.set_defaults(func=enqueue_main)

    p = sub.add_parser(
        "import", help="add known results the strategy learns from (not run)",
        description="Add results of architectures evaluated elsewhere to an experiment.",
        epilog=IMPORT_EXAMPLES, formatter_class=Formatter,
    )
    p.add_argument("id", help="experiment id, a unique prefix of it, or its directory")
    p.add_argument("file", help='JSON lines: {"sample": {...}, "metric": value}')
    add_home(p)
    p.set_defaults(func=import_main)


def _read_lines(path: str) -> list[Any]:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise NasflowError(f"cannot read {path}: {exc}") from exc
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except ValueError as exc:
            raise NasflowError(f"{path} line {number} is not JSON ({exc}): {line[:80]!r}; "
                               "give one JSON object a line. Nothing was taken.") from exc
    return out


@command
def enqueue_main(args: argparse.Namespace) -> int:
    if args.sample is not None:
        try:
            entries = json.loads(args.sample)
        except ValueError as exc:
            print(f"error: --sample is not JSON ({exc}): {args.sample!r}", file=sys.stderr)
            return EXIT_USAGE
        entries = [entries] if isinstance(entries, dict) else entries
    else:
        entries = _read_lines(args.file)
    return _feed(args, "enqueue", entries)


@command
def import_main(args: argparse.Namespace) -> int:
    return _feed(args, "add_results", _read_lines(args.file))


def _feed(args: argparse.Namespace, op: str, entries: Any) -> int:
    if not isinstance(entries, list) or not entries:
        print(f"error: nothing to {op}: give one JSON object, or several", file=sys.stderr)
        return EXIT_USAGE
    directory = find(args.id, args.home)
    info = experiment_info(directory)
    if info.state == ExperimentState.RUNNING:
        return _send(directory, info.id, op, entries)
    return _record(directory, info.id, op, entries)


def _send(directory: Path, exp_id: str, op: str, entries: list[Any]) -> int:
    """Through the control endpoint, in requests that fit its limit."""
    queued = 0
    for chunk in _chunks(entries):
        reply = send_request(directory, op, entries=chunk, source="cli")
        if not reply.get("ok"):
            print(f"error: experiment {exp_id} refused it: {reply.get('error')}"
                  + (f" ({queued} taken before)" if queued else ""), file=sys.stderr)
            return EXIT_FAILED
        queued += int(reply.get("queued", 0))
    skipped = len(entries) - queued
    print(f"experiment {exp_id} (RUNNING) took {queued} of {len(entries)}"
          + (f"; {skipped} skipped (already evaluated or queued)" if skipped else ""))
    return EXIT_OK


def _chunks(entries: list[Any]) -> list[list[Any]]:
    out: list[list[Any]] = [[]]
    size = 0
    for entry in entries:
        n = len(json.dumps(entry))
        if out[-1] and size + n > _CHUNK:
            out.append([])
            size = 0
        out[-1].append(entry)
        size += n
    return out


def _record(directory: Path, exp_id: str, op: str, entries: list[Any]) -> int:
    """Checked against the stored space, recorded for the next resume."""
    here = str(Path.cwd())  # modules next to the search file may be needed to unpickle
    if here not in sys.path and "" not in sys.path:
        sys.path.insert(0, here)
    space = as_search_space(load_object(directory, "space"))
    reader = StoreReader(directory / "experiment.db")
    try:
        meta = reader.meta()
        known = {t.hash for t in reader.trials()}
    finally:
        reader.close()
    if op == "enqueue":
        samples = check_samples(space, entries)
    else:
        objective = Objective(meta.get("objective") or {"default": "maximize"})
        samples = [r.sample for r in check_results(space, objective, entries)]
    fresh = [e for e, s in zip(entries, samples, strict=True) if sample_hash(s) not in known]
    if not fresh:
        print(f"experiment {exp_id}: all {len(entries)} were evaluated already; nothing "
              "recorded")
        return EXIT_OK
    holder = record_change_offline(directory, op, {"entries": fresh}, source="cli",
                                   result={"message": f"{len(fresh)} recorded for the "
                                                      "next resume"})
    if holder is not None:
        print(f"error: experiment {exp_id} started running (process {holder.get('pid')}) "
              f"meanwhile; run this command again to send it there", file=sys.stderr)
        return EXIT_FAILED
    print(f"experiment {exp_id} ({experiment_info(directory).state}) is not running: "
          f"{len(fresh)} recorded, taken when it resumes (nasflow resume {exp_id}"
          f"{' --max-trials N' if meta.get('state') == 'DONE' else ''})"
          + (f"; {len(entries) - len(fresh)} skipped (evaluated already)"
             if len(fresh) < len(entries) else ""))
    return EXIT_OK
