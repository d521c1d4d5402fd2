"""Live progress of a running experiment: a rich table on a terminal, plain lines else."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from typing import IO, Any

from nasflow._types import TrialRecord, TrialState
from nasflow.events import (
    Event,
    EventStream,
    ExperimentFinished,
    FinalMetric,
    IntermediateMetric,
    TrialEnded,
    TrialStarted,
    TrialSubmitted,
)

__all__ = ["ProgressView", "describe_metric", "short_sample"]

_STYLE = {
    TrialState.SUCCEEDED: "green", TrialState.FAILED: "red", TrialState.TIMEOUT: "red",
    TrialState.CANCELED: "yellow", TrialState.EARLY_STOPPED: "yellow",
    TrialState.RUNNING: "cyan", TrialState.WAITING: "dim",
}


def short_sample(sample: dict[str, Any], width: int = 70) -> str:
    """``label=value`` pairs, shortened to ``width`` characters."""
    text = " ".join(f"{k}={v}" for k, v in sample.items())
    return text if len(text) <= width else text[: width - 1] + "…"


def describe_metric(metric: float | None, metrics: Any = None) -> str:
    """A trial's metric as people should read it. A one-shot strategy records each ranked
    architecture with its probability as the metric (so that exports rank as it does):
    that is shown as a probability, after the supernet's own score where there is one,
    never as if it were an accuracy."""
    if isinstance(metrics, dict) and "arch_prob" in metrics:
        scores = [f"supernet {k.removeprefix('supernet_')} {v:.4f}"
                  for k, v in metrics.items() if k.startswith("supernet_")
                  and isinstance(v, (int, float))]
        return ", ".join([*scores, f"arch prob {float(metrics['arch_prob']):.4g}"])
    return "—" if metric is None else f"{metric:.4f}"


class _Row:
    __slots__ = ("ended", "error", "id", "last", "metric", "metrics", "sample", "started",
                 "state", "step")

    def __init__(self, trial_id: int, sample: dict[str, Any]) -> None:
        self.id = trial_id
        self.sample = sample
        self.state = TrialState.WAITING
        self.step: int | None = None
        self.last: float | None = None
        self.metric: float | None = None
        self.metrics: Any = None
        self.started: float | None = None
        self.ended: float | None = None
        self.error = ""


class ProgressView:
    """Consumes an experiment's events and shows them (``await view.run(exp.events())``)."""

    def __init__(self, *, total: int | None, maximize: bool = True,
                 out: IO[str] | None = None, live: bool | None = None,
                 history: Iterable[TrialRecord] = (), epochs: int | None = None) -> None:
        self.out = out or sys.stdout
        self.total = total
        self.maximize = maximize
        self.epochs = epochs
        """The evaluator's epochs per trial, for "epoch 3/8" (``None``: unknown)."""
        self.live = self.out.isatty() if live is None else live
        self.rows: dict[int, _Row] = {}
        self.best: _Row | None = None
        self.t0 = time.monotonic()
        self.finished: ExperimentFinished | None = None
        self.earlier = 0
        """Trials of a resumed experiment's earlier runs (counted in "done")."""
        for record in history:  # trials of a resumed experiment's earlier runs
            row = _Row(record.id, record.sample)
            row.state, row.metric, row.metrics = record.state, record.metric, record.metrics
            self.earlier += record.state.finished
            self.rows[record.id] = row
            if row.state is TrialState.SUCCEEDED and row.metric is not None and (
                self.best is None or self._better(row.metric, self.best.metric)
            ):
                self.best = row

    async def run(self, events: EventStream) -> None:
        """Show events until the experiment finishes."""
        if not self.live:
            async for ev in events:
                self._apply(ev)
                self._line(ev)
            return
        from rich.console import Console
        from rich.live import Live

        console = Console(file=self.out)
        with Live(self._table(), console=console, refresh_per_second=8,
                  transient=False) as live:
            async for ev in events:
                self._apply(ev)
                live.update(self._table())

    def _apply(self, ev: Event) -> None:
        if isinstance(ev, TrialSubmitted):
            old = self.rows.get(ev.trial_id)
            if old is not None and old.state.finished:
                self.earlier -= 1  # an interrupted trial of an earlier run, run again
            self.rows[ev.trial_id] = _Row(ev.trial_id, ev.sample)
            return
        if isinstance(ev, ExperimentFinished):
            self.finished = ev
            return
        row = self.rows.get(getattr(ev, "trial_id", -1))
        if row is None:
            return
        if isinstance(ev, TrialStarted):
            row.state, row.started = TrialState.RUNNING, ev.time
        elif isinstance(ev, IntermediateMetric):
            row.step, row.last = ev.step, ev.metric
        elif isinstance(ev, FinalMetric):
            row.metric, row.metrics = ev.metric, ev.value
        elif isinstance(ev, TrialEnded):
            row.state, row.ended = ev.state, ev.time
            row.error = str(ev.error) if ev.error else ""
            if row.state is TrialState.SUCCEEDED and row.metric is not None and (
                self.best is None or self._better(row.metric, self.best.metric)
            ):
                self.best = row

    def _better(self, a: float, b: float | None) -> bool:
        return b is None or (a > b if self.maximize else a < b)

    def _counts(self, *, running: bool = True) -> str:
        done = sum(r.state.finished for r in self.rows.values())
        total = self.total if self.total is not None else "?"
        elapsed = time.monotonic() - self.t0
        best = (f"{describe_metric(self.best.metric, self.best.metrics)} "
                f"(trial {self.best.id})" if self.best else "—")
        parts = [f"{done}/{total} done"
                 + (f" ({self.earlier} in earlier runs)" if self.earlier else "")]
        if running:
            # not on a plain line: it is printed as a trial ends, before the next one
            # starts, so it would always show one fewer than the concurrency
            parts.append(f"{sum(r.state is TrialState.RUNNING for r in self.rows.values())}"
                         " running")
        return " · ".join([*parts, f"best {best}", f"{elapsed:.0f}s"])

    def _epoch(self, row: _Row) -> str:
        """The last reported step as people count epochs: step 0 is "epoch 1"."""
        if row.step is None:
            return ""
        return f"{row.step + 1}/{self.epochs}" if self.epochs else str(row.step + 1)

    def _line(self, ev: Event) -> None:
        if isinstance(ev, TrialEnded):
            row = self.rows[ev.trial_id]
            metric = (describe_metric(row.metric, row.metrics) if row.metric is not None
                      else row.error)
            epoch = f" epoch {self._epoch(row)}" if row.step is not None else ""
            print(f"trial {row.id:>4} {row.state.value:<13} {metric:<10} "
                  f"{short_sample(row.sample)}{epoch}  [{self._counts(running=False)}]",
                  file=self.out, flush=True)
        elif isinstance(ev, ExperimentFinished):
            print(f"experiment {ev.state.value}: {ev.reason}", file=self.out, flush=True)

    def _table(self) -> Any:
        from rich.table import Table

        table = Table(title=self._counts(), title_justify="left", expand=False)
        for col in ("trial", "state", "epoch", "metric", "architecture"):
            table.add_column(col, no_wrap=col != "architecture")
        rows = sorted(self.rows.values(), key=lambda r: r.id)
        # keep the screen short: running trials, the last few ended, and the best
        shown = [r for r in rows if not r.state.finished][-8:]
        shown += [r for r in rows if r.state.finished][-8:]
        if self.best is not None and self.best not in shown:
            shown.append(self.best)
        for r in sorted(shown, key=lambda r: r.id):
            if r.metric is not None:
                metric = describe_metric(r.metric, r.metrics)
            else:
                metric = "" if r.last is None else f"{r.last:.4f}"
            star = " ★" if r is self.best else ""
            table.add_row(str(r.id), f"[{_STYLE[r.state]}]{r.state.value}[/]",
                          self._epoch(r), metric + star,
                          short_sample(r.sample, 60) if not r.error else r.error[:60])
        return table
