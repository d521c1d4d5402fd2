"""The HTML summary a notebook shows for ``ExperimentResults`` (``_repr_html_``)."""

from __future__ import annotations

import datetime
import html
from typing import TYPE_CHECKING

from nasflow._types import TrialState

if TYPE_CHECKING:
    from nasflow._results import ExperimentResults

__all__ = ["results_html"]

_TOP = 5


def _when(t: float | None) -> str:
    if t is None:
        return "-"
    return datetime.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def results_html(res: ExperimentResults) -> str:
    """Id, state, trial counts by state and the top trials, as a small HTML table."""
    esc = html.escape
    trials = res.trials()
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.state.value] = counts.get(t.state.value, 0) + 1
    states = ", ".join(f"{esc(s)}: {n}" for s, n in counts.items()) or "no trials"
    budget = res.config.get("max_trials")
    head = (f"<b>{esc(res.name)}</b> <code>{esc(res.id)}</code> — "
            f"<b>{esc(res.state.value)}</b>, {len(trials)}"
            f"{'' if budget is None else f'/{budget}'} trials ({states})")
    names = list(res.objective.directions)
    rows = []
    for r in res.ranked()[:_TOP]:
        metrics = r.metrics if isinstance(r.metrics, dict) else {names[0]: r.metric}
        cells = "".join(f"<td>{esc(_fmt(metrics.get(n)))}</td>" for n in names)
        sample = ", ".join(f"{esc(k)}={esc(str(v))}" for k, v in r.sample.items())
        rows.append(f"<tr><td>{r.id}</td>{cells}<td style='text-align:left'>{sample}</td>"
                    f"<td>{_when(r.ended_at)}</td></tr>")
    failed = sum(1 for t in trials if t.state is TrialState.FAILED)
    header = "".join(f"<th>{esc(n)} ({esc(d[:3])})</th>"
                     for n, d in res.objective.directions.items())
    table = (f"<table><tr><th>trial</th>{header}<th>sample</th><th>ended</th></tr>"
             + "".join(rows) + "</table>") if rows else "<p>no succeeded trial yet</p>"
    note = f"<p>{failed} trial(s) failed: see <code>nasflow trials {esc(res.id)} " \
           "--state FAILED</code></p>" if failed else ""
    return f"<div class='nasflow-results'><p>{head}</p>{table}{note}</div>"


def _fmt(value: object) -> str:
    return f"{value:.6g}" if isinstance(value, float) else ("-" if value is None else str(value))
