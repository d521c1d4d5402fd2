"""Tables and charts of an experiment's trials: ``to_dataframe`` and ``plot``.

Both are optional extras: pandas for the data frame, matplotlib (``pip install
'nasflow[plot]'``) for the charts. Every chart is computed from trial records and stored
intermediates only, so it works on a finished experiment with nothing running.
"""

from __future__ import annotations

import html
import io
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from nasflow._objective import Objective
from nasflow._types import TrialRecord, TrialState

__all__ = ["PLOT_KINDS", "label_importance", "plot", "save_figure", "to_dataframe"]

PLOT_KINDS = ("history", "curves", "parallel", "pareto", "importance")
"""The charts ``plot`` draws."""

_CURVES_MAX = 50  # more curves than this are unreadable; the best ones are drawn


def _need(module: str, extra: str) -> Any:
    try:
        return __import__(module)
    except ImportError as exc:
        raise ImportError(
            f"this needs {module}, which is not installed: pip install 'nasflow[{extra}]' "
            f"(or pip install {module})"
        ) from exc


# --- the data frame ------------------------------------------------------------------------


def to_dataframe(records: Sequence[TrialRecord], objective: Objective) -> Any:
    """One row per trial: ``id``, ``state``, ``metric``, one ``metric:<name>`` column per
    objective, one ``label:<label>`` column per sample label, the times (Unix seconds),
    ``duration``, ``attempt`` and ``error``."""
    pd = _need("pandas", "plot")
    names = list(objective.directions)
    labels: list[str] = []
    for r in records:
        for key in r.sample:
            if key not in labels:
                labels.append(key)
    rows = []
    for r in records:
        row: dict[str, Any] = {"id": r.id, "state": r.state.value, "metric": r.metric}
        metrics = r.metrics if isinstance(r.metrics, dict) else {}
        for n in names:
            value = metrics.get(n)
            if value is None and len(names) == 1:
                value = r.metric
            row[f"metric:{n}"] = value
        for label in labels:
            value = r.sample.get(label)
            # lists (InputChoice picks) stay hashable and sortable as their JSON text
            row[f"label:{label}"] = str(value) if isinstance(value, (list, dict)) else value
        row.update(submitted_at=r.submitted_at, started_at=r.started_at,
                   ended_at=r.ended_at, duration=r.duration, attempt=r.attempt,
                   error=str(r.error) if r.error else None)
        rows.append(row)
    columns = (["id", "state", "metric"] + [f"metric:{n}" for n in names]
               + [f"label:{label}" for label in labels]
               + ["submitted_at", "started_at", "ended_at", "duration", "attempt", "error"])
    return pd.DataFrame(rows, columns=columns).set_index("id")


# --- charts --------------------------------------------------------------------------------


def plot(kind: str, records: Sequence[TrialRecord], objective: Objective,
         intermediates: Callable[[int], list[tuple[int, Any]]], *,
         title: str = "") -> Any:
    """A matplotlib ``Figure`` of ``kind`` (one of ``PLOT_KINDS``)."""
    if kind not in PLOT_KINDS:
        raise ValueError(f"unknown plot kind {kind!r}; choose one of {', '.join(PLOT_KINDS)}")
    _need("matplotlib", "plot")
    from matplotlib.figure import Figure

    # a Figure, not pyplot: no global state, no GUI backend, safe in threads and servers
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.add_subplot()
    done = [r for r in records if r.state is TrialState.SUCCEEDED and r.metric is not None]
    draw = {"history": _history, "curves": _curves, "parallel": _parallel,
            "pareto": _pareto, "importance": _importance}[kind]
    draw(ax, done, objective, intermediates)
    ax.set_title(f"{title}: {kind}" if title else kind)
    return fig


def _primary(objective: Objective) -> tuple[str, bool]:
    name, direction = next(iter(objective.directions.items()))
    return name, direction == "maximize"


def _history(ax: Any, done: list[TrialRecord], objective: Objective, _: Any) -> None:
    name, maximize = _primary(objective)
    done = sorted(done, key=lambda r: (r.ended_at or 0.0, r.id))
    xs = list(range(1, len(done) + 1))
    ys = [float(r.metric) for r in done]  # type: ignore[arg-type]
    best: list[float] = []
    for y in ys:
        best.append(y if not best else (max if maximize else min)(best[-1], y))
    ax.scatter(xs, ys, s=14, alpha=0.6, label="trial")
    ax.step(xs, best, where="post", color="C3", label="best so far")
    ax.set_xlabel("trials ended")
    ax.set_ylabel(name)
    if done:
        ax.legend(loc="best")


def _curves(ax: Any, done: list[TrialRecord], objective: Objective,
            intermediates: Callable[[int], list[tuple[int, Any]]]) -> None:
    name = _primary(objective)[0]
    score = objective.score
    top = sorted(done, key=lambda r: -score(r.metric))[:_CURVES_MAX]  # type: ignore[arg-type]
    for r in top:
        points = intermediates(r.id)
        if not points:
            continue
        steps = [s for s, _ in points]
        values = [_primary_value(v, name) for _, v in points]
        ax.plot(steps, values, linewidth=1, alpha=0.8, label=f"#{r.id}")
    ax.set_xlabel("step")
    ax.set_ylabel(name)
    if 0 < len(top) <= 10:
        ax.legend(loc="best", fontsize="small")


def _primary_value(value: Any, name: str) -> float:
    if isinstance(value, dict):
        return float(value.get(name, next(iter(value.values()))))
    return float(value)


def _parallel(ax: Any, done: list[TrialRecord], objective: Objective, _: Any) -> None:
    name, _maximize = _primary(objective)
    labels = sorted({k for r in done for k in r.sample})
    axes = [*labels, name]
    columns: list[list[float]] = []
    ticks: list[tuple[list[float], list[str]] | None] = []
    for label in labels:
        values = [r.sample.get(label) for r in done]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            columns.append(_normalise([float(v) for v in values]))  # type: ignore[arg-type]
            ticks.append(None)
        else:
            # categories: evenly spaced in sorted order
            cats = sorted({str(v) for v in values})
            pos = {c: (i / (len(cats) - 1) if len(cats) > 1 else 0.5) for i, c in
                   enumerate(cats)}
            columns.append([pos[str(v)] for v in values])
            ticks.append((list(pos.values()), cats))
    metric = [float(r.metric) for r in done]  # type: ignore[arg-type]
    columns.append(_normalise(metric))
    ticks.append(None)
    colour = _normalise(metric)
    import matplotlib

    cm = matplotlib.colormaps["viridis"]
    xs = list(range(len(axes)))
    for i in range(len(done)):
        ax.plot(xs, [c[i] for c in columns], color=cm(colour[i]), alpha=0.5, linewidth=1)
    for x, tick in zip(xs, ticks, strict=True):
        ax.axvline(x, color="0.6", linewidth=0.8)
        if tick is not None:
            for y, text in zip(*tick, strict=True):
                ax.text(x, y, f" {text}", fontsize="x-small", va="center")
    ax.set_xticks(xs, axes, rotation=20, ha="right")
    ax.set_yticks([])
    ax.set_ylim(-0.05, 1.05)


def _normalise(values: list[float]) -> list[float]:
    if not values:
        return []
    lo, hi = min(values), max(values)
    return [0.5 if hi == lo else (v - lo) / (hi - lo) for v in values]


def _pareto(ax: Any, done: list[TrialRecord], objective: Objective, _: Any) -> None:
    from nasflow._results import pareto_front

    if not objective.multi:
        raise ValueError(
            "a Pareto plot needs two or more objectives; this experiment has one "
            f"({next(iter(objective.directions))}): try 'history' or 'parallel'"
        )
    x_name, y_name = list(objective.directions)[:2]
    front = {r.id for r in pareto_front(done, objective)}
    points = [(r, r.metrics) for r in done if isinstance(r.metrics, dict)
              and x_name in r.metrics and y_name in r.metrics]
    rest = [(m[x_name], m[y_name]) for r, m in points if r.id not in front]
    best = sorted((m[x_name], m[y_name]) for r, m in points if r.id in front)
    if rest:
        ax.scatter(*zip(*rest, strict=True), s=14, alpha=0.4, color="0.5", label="dominated")
    if best:
        ax.plot(*zip(*best, strict=True), "o-", color="C3", label="Pareto front")
        ax.legend(loc="best")
    ax.set_xlabel(f"{x_name} ({objective.directions[x_name]})")
    ax.set_ylabel(f"{y_name} ({objective.directions[y_name]})")


def label_importance(done: Sequence[TrialRecord]) -> dict[str, float]:
    """``{label: share of the metric's variance explained by it}`` (the correlation ratio
    eta², numbers binned in quintiles), largest first. Model-free and cheap; a label that
    is always the same value explains nothing."""
    metric = [float(r.metric) for r in done if r.metric is not None]
    if len(metric) < 2:
        return {}
    mean = sum(metric) / len(metric)
    total = sum((m - mean) ** 2 for m in metric)
    out: dict[str, float] = {}
    for label in sorted({k for r in done for k in r.sample}):
        groups: dict[str, list[float]] = {}
        values = [r.sample.get(label) for r in done if r.metric is not None]
        keys = _bins(values)
        for key, m in zip(keys, metric, strict=True):
            groups.setdefault(key, []).append(m)
        between = sum(len(g) * (sum(g) / len(g) - mean) ** 2 for g in groups.values())
        out[label] = 0.0 if total == 0 else between / total
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def _bins(values: list[Any]) -> list[str]:
    numeric = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if len(numeric) == len(values) and len(set(numeric)) > 5:
        ordered = sorted(numeric)
        edges = [ordered[min(len(ordered) - 1, math.floor(q * len(ordered) / 5))]
                 for q in range(1, 5)]
        return [str(sum(v >= e for e in edges)) for v in numeric]
    return [str(v) for v in values]


def _importance(ax: Any, done: list[TrialRecord], objective: Objective, _: Any) -> None:
    scores = label_importance(done)
    names = list(scores)[::-1]
    ax.barh(names, [scores[n] for n in names], color="C0")
    ax.set_xlabel(f"share of {_primary(objective)[0]}'s variance explained (eta²)")
    ax.set_xlim(0, 1)


# --- files ---------------------------------------------------------------------------------


def save_figure(fig: Any, path: str | Path) -> Path:
    """Write ``fig`` as .png, .svg or .html (an HTML page with the SVG inline)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".png", ".svg", ".pdf"):
        fig.savefig(path, format=suffix[1:], dpi=120)
    elif suffix in (".html", ".htm"):
        buf = io.StringIO()
        fig.savefig(buf, format="svg")
        title = html.escape(fig.axes[0].get_title() if fig.axes else "nasflow")
        path.write_text(f"<!doctype html><meta charset='utf-8'><title>{title}</title>"
                        f"<body style='margin:0'>{buf.getvalue()}</body>\n")
    else:
        raise ValueError(f"cannot write a chart as {path.name!r}: use a .png, .svg, .pdf or "
                         ".html file name")
    return path
