"""Search quality: how many trials each strategy needs to find a tabular benchmark's
top-1% architectures, and the best architecture found against the trial budget.

Every strategy searches the table ``--seeds`` times on the simulated engine (each trial
is a table lookup replayed on a fake clock, so a whole study takes seconds)::

    python benchmarks/search_quality.py          # the small digits table if built, else synthetic
    python benchmarks/search_quality.py benchmarks/data/digits_table.json.gz
    python benchmarks/search_quality.py --synthetic --seeds 30 --budget 150

Two real tables come from ``benchmarks/build_digits_table.py``: ``digits_small_table``
(the default: a quarter of the digits to train on, cosine learning rate) and
``digits_table`` (the demo's setting, saturated at the top: its accuracies come in steps
of 1/360 and 2.7% of the architectures tie at the top-1% line). 100 seeds by default: how
many trials random search needs varies a lot from seed to seed (on the small table its
median was 33 over seeds 0-29 and 70 over seeds 0-199), and a ratio to it is only as good
as that median.

TABLE is in the format ``benchmarks/build_digits_table.py`` writes (JSON, gzipped if the
name ends in ``.gz``)::

    {"space": "package.module.ModelSpaceClass", "epochs": E, "labels": [...],
     "signature": {label: domain}, "rows": [[sample, [metric per epoch], [s per epoch]], ...]}

A table may instead describe a torch-free space in ``"choices"``:
``{label: {"values": [...], "n_chosen": k (a subset choice), "when": {parent: [values]}}}``.
Metrics are maximised unless the table says ``"objective": "minimize"``.

Without TABLE the real digits table is used when it exists, else a synthetic table over
the same space, generated deterministically (``synthetic_table``): the output says which.
Prints one JSON document; writes a PNG plot and a markdown table (``--out``).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib
import json
import math
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import emit

import nasflow as nf
from nasflow.space import (
    Categorical,
    CategoricalMultiple,
    SearchSpace,
    SpaceBuilder,
    as_search_space,
    sample_hash,
)
from nasflow.strategy import Strategy
from nasflow.testing import SimulatedEngine

ROOT = Path(__file__).resolve().parent.parent
REAL_TABLE = ROOT / "benchmarks" / "data" / "digits_small_table.json.gz"

STRATEGIES: dict[str, tuple[str, Callable[[int], Strategy]]] = {
    "random": ("Random()", lambda s: nf.strategy.Random(seed=s)),
    "regularized_evolution": (
        "RegularizedEvolution(population_size=10, sample_size=5)",
        lambda s: nf.strategy.RegularizedEvolution(population_size=10, sample_size=5, seed=s),
    ),
    "tpe": ("TPE()", lambda s: nf.strategy.TPE(seed=s)),
    "local_search": ("LocalSearch()", lambda s: nf.strategy.LocalSearch(seed=s)),
    "policy_rl": ("PolicyBasedRL()", lambda s: nf.strategy.PolicyBasedRL(seed=s)),
}
TARGETS = ("regularized_evolution", "tpe", "local_search")
"""Strategies that must need at most a third of random search's trials."""


# --- tables ------------------------------------------------------------------------------------

@dataclass
class Table:
    """A tabular benchmark: every architecture's curve, and the space they come from."""

    name: str
    source: str
    space: SearchSpace
    rows: dict[str, tuple[list[float], float]]  # sample_hash -> (curve, seconds per epoch)
    objective: str

    def finals(self) -> list[float]:
        return [curve[-1] for curve, _ in self.rows.values()]

    def top_threshold(self, fraction: float = 0.01) -> float:
        """The worst final metric among the best ``fraction`` of architectures."""
        ordered = sorted(self.finals(), reverse=self.objective == "maximize")
        return ordered[max(1, math.ceil(fraction * len(ordered))) - 1]


DIGITS_CHOICES: dict[str, dict[str, Any]] = {
    # the space of nasflow.demo.DigitsNet, torch-free
    "width": {"values": [8, 16, 32]},
    "op": {"values": ["conv3", "conv5", "sep3", "pool"]},
    "skip": {"values": [0, 1], "n_chosen": 1},
    "depth": {"values": [1, 2, 3]},
    "blocks.0.op": {"values": ["conv3", "sep3", "skip"]},
    "blocks.1.op": {"values": ["conv3", "sep3", "skip"], "when": {"depth": [2, 3]}},
    "blocks.2.op": {"values": ["conv3", "sep3", "skip"], "when": {"depth": [3]}},
    "dropout": {"values": [0.0, 0.25]},
}


def space_from_choices(choices: dict[str, dict[str, Any]]) -> SearchSpace:
    b = SpaceBuilder()
    for label, spec in choices.items():
        condition: Any = ()
        for parent, allowed in spec.get("when", {}).items():
            condition = b.gate(parent, allowed, condition)
        if "n_chosen" in spec:
            choice: Any = CategoricalMultiple(spec["values"], n_chosen=spec["n_chosen"],
                                              label=label)
        else:
            choice = Categorical(spec["values"], label=label)
        b.add(choice, label_hint=label, condition=condition)
    return b.build()


def _noise(sample: dict[str, Any], scale: float) -> float:
    digest = hashlib.blake2b(sample_hash(sample).encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "big")).gauss(0.0, scale)


def synthetic_table(epochs: int = 10) -> dict[str, Any]:
    """A table over the DigitsNet space whose accuracies follow main effects, a few
    interactions and per-architecture noise, like a real one (deterministic)."""
    space = space_from_choices(DIGITS_CHOICES)
    width = {8: -0.040, 16: 0.0, 32: 0.020}
    op = {"conv3": 0.010, "conv5": 0.016, "sep3": 0.004, "pool": -0.030}
    block = {"conv3": 0.012, "sep3": 0.008, "skip": 0.0}
    rows = []
    for s in space.grid():
        blocks = [s[f"blocks.{i}.op"] for i in range(3) if f"blocks.{i}.op" in s]
        residual = s["skip"] == [1]
        acc = 0.86 + width[s["width"]] + op[s["op"]] + sum(block[b] for b in blocks)
        acc += (0.010 if len(blocks) > 1 else -0.003) if residual else 0.0
        acc -= 0.012 if not residual and len(blocks) == 3 else 0.0  # deep plain nets suffer
        acc += (0.006 if s["width"] == 32 else -0.006) if s["dropout"] else 0.0
        acc -= 0.020 if s["op"] == "pool" and blocks[0] == "skip" else 0.0
        final = min(0.995, acc + _noise(s, 0.004))
        tau = 1.0 + 0.5 * len(blocks)  # deeper nets learn slower
        curve = [round(final * (1 - 0.5 * math.exp(-(e + 1) / tau)) / (1 - 0.5 * math.exp(
            -epochs / tau)), 5) for e in range(epochs)]
        convs = sum(b != "skip" for b in blocks) + (s["op"] != "pool")
        seconds = round(0.05 + 0.02 * convs * s["width"] / 8, 4)
        rows.append([s, curve, [seconds] * epochs])
    return {"name": "synthetic-digits-v1", "space": "synthetic", "choices": DIGITS_CHOICES,
            "epochs": epochs, "labels": space.labels, "rows": rows}


def load_table(path: Path | None) -> Table:
    if path is None:
        raw, source = synthetic_table(), "synthetic (generated by synthetic_table())"
    else:
        opener: Any = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt") as f:
            raw = json.load(f)
        source = str(path)
    if "choices" in raw:
        space = space_from_choices(raw["choices"])
    else:
        module, _, cls = raw["space"].rpartition(".")
        space = as_search_space(getattr(importlib.import_module(module), cls)())
    if "signature" in raw:  # the table was built from this very space
        from nasflow.experiment._resume import space_signature

        if raw["signature"] != space_signature(space):
            sys.exit(f"{source}: the table's space differs from {raw['space']} as it is now")
    rows: dict[str, tuple[list[float], float]] = {}
    for sample, curve, seconds in raw["rows"]:
        sample = space.canonicalize(sample)
        rows[sample_hash(sample)] = (list(curve), statistics.fmean(seconds))
    name = raw.get("name") or (path.name.split(".")[0] if path else "synthetic")
    return Table(name, source, space, rows, raw.get("objective", "maximize"))


# --- measuring ---------------------------------------------------------------------------------

def search(table: Table, strategy: Strategy, budget: int, concurrency: int) -> list[float]:
    """Final metrics in the order the trials ended."""
    exp = SimulatedEngine.experiment(
        table.space, strategy, table.rows,
        nf.ExperimentConfig(max_trials=budget, concurrency=concurrency, store=False,
                            objective=table.objective),
    )
    nf.run(exp)
    ended = sorted(exp.trials(["SUCCEEDED"]), key=lambda t: (t.ended_at, t.id))
    return [t.metric for t in ended if t.metric is not None]


def _quantiles(values: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], statistics.median(values), q[2]


def measure(table: Table, names: list[str], seeds: int, budget: int,
            concurrency: int) -> dict[str, Any]:
    maximize = table.objective == "maximize"
    threshold = table.top_threshold()
    better = (lambda a, b: a >= b) if maximize else (lambda a, b: a <= b)
    out: dict[str, Any] = {}
    for name in names:
        label, make = STRATEGIES[name]
        hits, curves = [], []
        t0 = time.perf_counter()
        for seed in range(seeds):
            finals = search(table, make(seed), budget, concurrency)
            hit = next((i + 1 for i, v in enumerate(finals) if better(v, threshold)), None)
            hits.append(hit)
            best, running = [], None
            for v in finals:
                running = v if running is None or better(v, running) else running
                best.append(running)
            best += [best[-1]] * (budget - len(best))
            curves.append(best)
        censored = [h if h is not None else budget + 1 for h in hits]
        q1, med, q3 = _quantiles([float(h) for h in censored])
        out[name] = {
            "strategy": label,
            "median_trials_to_top1pct": med if med <= budget else None,
            "iqr_trials_to_top1pct": [q1, q3 if q3 <= budget else None],
            "found_top1pct": sum(h is not None for h in hits),
            "trials_to_top1pct": hits,
            "best_found_median": [statistics.median(col) for col in zip(*curves, strict=True)],
            "best_found_iqr": [_quantiles(list(col))[::2] for col in zip(*curves, strict=True)],
            "seconds": round(time.perf_counter() - t0, 2),
        }
        print(f"{name:>22}: median {med:g} trials to the top 1% "
              f"({out[name]['found_top1pct']}/{seeds} found)", file=sys.stderr)
    return out


# --- reporting ---------------------------------------------------------------------------------

def markdown(table: Table, results: dict[str, Any], seeds: int, budget: int,
             concurrency: int) -> str:
    random_med = results.get("random", {}).get("median_trials_to_top1pct")
    marks = [k for k in (10, 25, 50, 100, 150, 200) if k <= budget]
    lines = [
        f"Table: **{table.name}** ({table.source.replace(str(ROOT) + '/', '')}), "
        f"{len(table.rows)} architectures, "
        f"objective {table.objective}; top 1% = {table.objective[:3]} metric "
        f"{'>=' if table.objective == 'maximize' else '<='} {table.top_threshold():.4f}. "
        f"{seeds} seeds, {budget} trials each, concurrency {concurrency}.",
        "",
        "| strategy | median trials to top 1% (IQR) | found | vs random | "
        + " | ".join(f"best @{k}" for k in marks) + " |",
        "|---|---|---|---|" + "---|" * len(marks),
    ]
    for r in results.values():
        med = r["median_trials_to_top1pct"]
        q1, q3 = r["iqr_trials_to_top1pct"]
        ratio = "" if med is None or not random_med else f"{med / random_med:.2f}x"
        cells = [
            f"`{r['strategy']}`",
            f"{med:g} ({q1:g}-{q3:g})" if med is not None and q3 is not None
            else (f"{med:g} ({q1:g}->{budget})" if med is not None else f">{budget}"),
            f"{r['found_top1pct']}/{seeds}",
            ratio,
            *(f"{r['best_found_median'][k - 1]:.4f}" for k in marks),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(table: Table, results: dict[str, Any], path: Path, seeds: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for r in results.values():
        xs = range(1, len(r["best_found_median"]) + 1)
        ax.plot(xs, r["best_found_median"], label=r["strategy"].split("(")[0])
        lo, hi = zip(*r["best_found_iqr"], strict=True)
        ax.fill_between(xs, lo, hi, alpha=0.15)
    ax.axhline(table.top_threshold(), color="grey", linestyle="--", linewidth=1,
               label="top 1%")
    finals = table.finals()
    ax.set_ylim(statistics.median(finals), max(finals) + 0.002)
    ax.set_xscale("log")
    ax.set_xlabel("trials")
    ax.set_ylabel("best metric found (median, IQR)")
    ax.set_title(f"{table.name}: best found vs budget ({seeds} seeds)")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("table", nargs="?", type=Path, help="a table file (see above)")
    parser.add_argument("--synthetic", action="store_true", help="use the synthetic table")
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--budget", type=int, default=150)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img",
                        help="where the PNG and the markdown table go")
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args()
    path = args.table
    if path is None and not args.synthetic and REAL_TABLE.is_file():
        path = REAL_TABLE
    table = load_table(None if args.synthetic else path)
    names = [n.strip() for n in args.strategies.split(",") if n.strip()]
    results = measure(table, names, args.seeds, args.budget, args.concurrency)
    random_med = results.get("random", {}).get("median_trials_to_top1pct")
    targets = {}
    for name in TARGETS:
        med = results.get(name, {}).get("median_trials_to_top1pct")
        if name in results and random_med:
            targets[name] = {"ratio_to_random": None if med is None else round(med / random_med, 3),
                             "meets_one_third": med is not None and med <= random_med / 3}
    md = markdown(table, results, args.seeds, args.budget, args.concurrency)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"search_quality_{table.name}.md").write_text(md)
    if not args.no_plot:
        plot(table, results, args.out / f"search_quality_{table.name}.png", args.seeds)
    for r in results.values():  # the per-trial curves are for the plot, not the JSON
        r.pop("best_found_iqr")
        curve = r.pop("best_found_median")
        r["best_found_median_at"] = {k: curve[k - 1] for k in (10, 25, 50, 100, 150, 200)
                                     if k <= len(curve)}
    emit("search_quality", {
        "table": {"name": table.name, "source": table.source,
                  "architectures": len(table.rows), "objective": table.objective,
                  "top1pct_threshold": table.top_threshold()},
        "seeds": args.seeds, "budget": args.budget, "concurrency": args.concurrency,
        "results": results, "targets": targets,
    })


if __name__ == "__main__":
    main()
