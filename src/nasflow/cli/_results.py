"""``nasflow list`` and ``nasflow show``: the experiments under ``NASFLOW_HOME``.

Everything here reads the experiments' databases and nothing else, so it works while they
run (in any process) and long after they ended; nothing needs a server.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from nasflow._kernel import ExperimentState, TrialRecord, TrialState
from nasflow._results import load_experiment
from nasflow.cli._output import (
    EXIT_FAILED,
    EXIT_OK,
    Formatter,
    add_home,
    command,
    find,
    fmt_duration,
    fmt_metric,
    fmt_time,
    positive_int,
    print_json,
    print_table,
    state_style,
)
from nasflow.cli._progress import describe_metric, short_sample
from nasflow.config import ExperimentConfig
from nasflow.store import (
    DAMAGED,
    DB_NAME,
    ExperimentInfo,
    StoreReader,
    experiment_info,
    nasflow_home,
)
from nasflow.store import list_experiments as _list_experiments

__all__ = ["add_parsers", "parse_states", "trial_json"]

_STATES = [s.value for s in ExperimentState] + [DAMAGED]

LIST_EXAMPLES = """examples:
  nasflow list                      # every experiment, newest last
  nasflow list --state RUNNING      # only those running now
  nasflow list --json | jq '.[] | select(.state == "DONE") | .id'

states: RUNNING, DONE, STOPPED, FAILED; CRASHED when it says RUNNING but its process is
gone (resume it: nasflow resume ID); DAMAGED when its database cannot be read.
"""

SHOW_EXAMPLES = """examples:
  nasflow show k3j9x0ab             # summary and the 5 best trials
  nasflow show k3j --top 10         # a unique prefix of the id is enough
  nasflow show k3j9x0ab --json      # everything, for scripts
"""


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``list`` and ``show``."""
    p = sub.add_parser(
        "list", help="list the experiments (state, trials, best metric)",
        description="List the experiments under NASFLOW_HOME: id, name, state, start, "
        "duration, trials and the best metric. Works while they run.",
        epilog=LIST_EXAMPLES, formatter_class=Formatter,
    )
    p.add_argument("--state", action="append", type=_experiment_state, metavar="STATE",
                   help="only experiments in this state (repeatable, or comma-separated)")
    p.add_argument("--json", action="store_true", help="a JSON list, for scripts")
    add_home(p)
    p.set_defaults(func=list_main)

    p = sub.add_parser(
        "show", help="an experiment's summary and its best trials",
        description="Show an experiment: state, times, objective, strategy, budget, trial "
        "counts, and its best trials (trial id, metric, duration, architecture).",
        epilog=SHOW_EXAMPLES, formatter_class=Formatter,
    )
    p.add_argument("id", help="experiment id, a unique prefix of it, or its directory")
    p.add_argument("--top", type=positive_int, default=5, metavar="K",
                   help="how many best trials to show (default 5)")
    p.add_argument("--json", action="store_true", help="JSON, for scripts")
    add_home(p)
    p.set_defaults(func=show_main)


# --- argument types ---------------------------------------------------------------------



def _split_states(text: str, allowed: list[str]) -> list[str]:
    names = [t.strip().upper() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in allowed]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"unknown state {', '.join(bad) or repr(text)}; choose from {', '.join(allowed)}")
    return names


def _experiment_state(text: str) -> list[str]:
    return _split_states(text, _STATES)


def parse_states(text: str) -> list[str]:
    """``--state`` of ``trials``: trial state names, comma-separated, any case."""
    return _split_states(text, [s.value for s in TrialState])


# --- list -------------------------------------------------------------------------------

def _trial_summary(info: ExperimentInfo) -> str:
    t = info.trials
    text = f"{t.get('SUCCEEDED', 0)}/{info.total}"
    busy = t.get("RUNNING", 0) + t.get("WAITING", 0)
    failed = t.get("FAILED", 0) + t.get("TIMEOUT", 0)
    extra = [f"{busy} running"] if busy else []
    extra += [f"{failed} failed"] if failed else []
    return text + (f" ({', '.join(extra)})" if extra else "")


def _score(info: ExperimentInfo) -> str:
    """The best metric as ``show`` prints it (a one-shot probability named as one)."""
    if isinstance(info.best_metrics, dict) and "arch_prob" in info.best_metrics:
        return describe_metric(info.best, info.best_metrics)
    return fmt_metric(info.best)


def _best(info: ExperimentInfo) -> str:
    if info.best is None:
        return "-"
    if isinstance(info.best_metrics, dict) and "arch_prob" in info.best_metrics:
        # a one-shot ranking: the metric is a probability, not a score to compare
        return f"arch prob {float(info.best_metrics['arch_prob']):.4g} #{info.best_trial}"
    arrow = "↑" if info.direction == "maximize" else "↓"
    return f"{fmt_metric(info.best)} {arrow} #{info.best_trial}"


@command
def list_main(args: argparse.Namespace) -> int:
    infos = _list_experiments(args.home)
    if args.state:
        wanted = {s for group in args.state for s in group}
        infos = [i for i in infos if str(i.state) in wanted]
    if args.json:
        print_json([i.to_dict() for i in infos])
        return EXIT_OK
    if not infos:
        root = nasflow_home(args.home) / "experiments"
        extra = " matching --state" if args.state else ""
        print(f"no experiments{extra} under {root}")
        return EXIT_OK
    rows: list[list[str]] = []
    for i in infos:
        name = "" if i.name == i.id else i.name
        where = i.manager or i.training_service or ""
        trials = "-" if i.damaged else _trial_summary(i)
        rows.append([i.id, name, str(i.state), fmt_time(i.started_at or i.created_at),
                     fmt_duration(i.duration), trials, _best(i), where])
    print_table(["ID", "NAME", "STATE", "STARTED", "DURATION", "TRIALS", "BEST", "WHERE"],
                rows, right=["DURATION"], styles=[state_style(str(i.state)) for i in infos])
    damaged = [i for i in infos if i.damaged]
    for i in damaged:
        print(f"{i.id}: {i.error}", file=sys.stderr)
    return EXIT_OK


# --- show -------------------------------------------------------------------------------

def trial_json(r: TrialRecord) -> dict[str, object]:
    """A trial for the CLI's JSON: ``trial_id`` first, then the record's fields."""
    data = r.to_dict()
    data.pop("id")
    return {"trial_id": r.id, **data, "duration": r.duration}


def _config_changes(config: dict[str, object]) -> dict[str, object]:
    """The config fields that differ from the defaults (what the user chose)."""
    defaults = ExperimentConfig().to_dict()
    skip = ("home", "token", "event_buffer")
    return {k: v for k, v in config.items() if k not in skip and defaults.get(k, v) != v}


@command
def show_main(args: argparse.Namespace) -> int:
    directory = find(args.id, args.home)
    info = experiment_info(directory)
    if info.damaged:
        if args.json:
            print_json({**info.to_dict(), "top": []})
        print(f"error: experiment {info.id} is damaged: {info.error}", file=sys.stderr)
        return EXIT_FAILED
    reader = StoreReader(directory / DB_NAME)
    try:
        meta = reader.meta()
        changes = reader.changes()
    finally:
        reader.close()
    with load_experiment(directory) as results:
        top = results.ranked()[: args.top]
    config = meta.get("config") or {}
    if args.json:
        print_json({
            **info.to_dict(), "objectives": meta.get("objective"), "config": config,
            "strategy": meta.get("strategy"), "evaluator": meta.get("evaluator"),
            "scheduler": meta.get("scheduler"), "labels": meta.get("labels"),
            "nasflow_version": meta.get("nasflow_version"), "changes": changes,
            "top": [trial_json(r) for r in top],
        })
        return EXIT_OK
    _print_summary(info, meta, config, changes)
    if not top:
        print("\nno trial has succeeded yet" if info.state == ExperimentState.RUNNING
              else "\nno trial succeeded")
        return EXIT_OK
    print()
    rows = [[str(rank), str(r.id), fmt_metric(r.metric), fmt_duration(r.duration),
             short_sample(r.sample, 120)] for rank, r in enumerate(top, 1)]
    print_table(["RANK", "TRIAL", "METRIC", "DURATION", "ARCHITECTURE"], rows,
                title=f"best {len(top)} trials ({info.direction} {info.objective})",
                right=["RANK", "TRIAL", "METRIC", "DURATION"], wrap=["ARCHITECTURE"])
    return EXIT_OK


def _print_summary(info: ExperimentInfo, meta: dict[str, object],
                   config: dict[str, object], changes: list[dict[str, Any]]) -> None:
    state = str(info.state)
    if info.state == ExperimentState.CRASHED:
        state += (f" (process {info.pid} on {info.host} is gone; resume it: "
                  f"nasflow resume {info.id})")
    elif info.end_reason and info.state != ExperimentState.RUNNING:
        state += f" ({info.end_reason})"
    counts = ", ".join(f"{n} {s}" for s, n in info.trials.items() if n)
    objectives = meta.get("objective")
    objectives = objectives if isinstance(objectives, dict) else {}
    labels = meta.get("labels")
    labels = labels if isinstance(labels, list) else []
    chosen = _config_changes(config)
    fields = [
        ("experiment", info.id + ("" if info.name == info.id else f"  ({info.name})")),
        ("state", state),
        ("directory", str(info.directory)),
        ("created", fmt_time(info.created_at)),
        ("started", fmt_time(info.started_at)
         + (f"  (resumed {info.resumed}x)" if info.resumed else "")),
        ("ended", fmt_time(info.ended_at) + f"  (ran {fmt_duration(info.duration)})"
         if info.ended_at else "-"),
        ("objective", ", ".join(f"{d} {n}" for n, d in objectives.items()) or "-"),
        ("strategy", str(meta.get("strategy") or "-")),
        ("evaluator", str(meta.get("evaluator") or "-")),
        ("space", f"{len(labels)} label{'' if len(labels) == 1 else 's'}: "
         f"{', '.join(map(str, labels[:12]))}"
         + (", ..." if len(labels) > 12 else "")),
        ("config", " ".join(f"{k}={v}" for k, v in chosen.items()) or "defaults"),
        ("trials", f"{info.total}" + (f": {counts}" if counts else "")),
        ("best", "-" if info.best is None
         else f"{_score(info)} (trial {info.best_trial})"),
    ]
    if meta.get("scheduler"):
        fields.insert(9, ("scheduler", str(meta["scheduler"])))
    if info.manager:
        fields.append(("manager", info.manager))
    for change in changes:  # the runtime changes (exp.update, nasflow trial kill, ...)
        result = change.get("result") or {}
        fields.append(("change", f"{fmt_time(change['time'])}  {change['op']} by "
                       f"{change['source']}: {result.get('message', change['args'])}"))
    width = max(len(k) for k, _ in fields)
    for key, value in fields:
        print(f"{key.ljust(width)}  {value}")
