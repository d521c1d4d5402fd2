"""Live progress of a running experiment: a rich table on a terminal, plain lines else."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from typing import IO, Any

from nasflow._kernel import TrialRecord, TrialState
from nasflow._run_progress import ProgressRow, RunProgress
from nasflow.events import Event, EventStream, ExperimentFinished, TrialEnded

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


class ProgressView:
    """Consumes an experiment's events and shows them (``await view.run(exp.events())``)."""

    def __init__(self, *, total: int | None, maximize: bool = True,
                 out: IO[str] | None = None, live: bool | None = None,
                 history: Iterable[TrialRecord] = (), epochs: int | None = None) -> None:
        self.out = out or sys.stdout
        self.total = total
        self.epochs = epochs
        """The evaluator's epochs per trial, for "epoch 3/8" (``None``: unknown)."""
        self.live = self.out.isatty() if live is None else live
        self.progress = RunProgress(maximize=maximize, history=history)
        """What the view shows, folded from the events (shared with the notebook's)."""
        self.t0 = time.monotonic()

    @property
    def best(self) -> ProgressRow | None:
        """The best succeeded trial so far."""
        return self.progress.best

    async def run(self, events: EventStream) -> None:
        """Show events until the experiment finishes."""
        if not self.live:
            async for ev in events:
                self.progress.apply(ev)
                self._line(ev)
            return
        from rich.console import Console
        from rich.live import Live

        console = Console(file=self.out)
        with Live(self._table(), console=console, refresh_per_second=8,
                  transient=False) as live:
            async for ev in events:
                self.progress.apply(ev)
                live.update(self._table())

    def _counts(self, *, running: bool = True) -> str:
        p = self.progress
        total = self.total if self.total is not None else "?"
        elapsed = time.monotonic() - self.t0
        best = (f"{describe_metric(p.best.metric, p.best.metrics)} "
                f"(trial {p.best.id})" if p.best else "—")
        parts = [f"{p.done}/{total} done"
                 + (f" ({p.earlier} in earlier runs)" if p.earlier else "")]
        if running:
            # not on a plain line: it is printed as a trial ends, before the next one
            # starts, so it would always show one fewer than the concurrency
            parts.append(f"{len(p.running)} running")
        return " · ".join([*parts, f"best {best}", f"{elapsed:.0f}s"])

    def _epoch(self, row: ProgressRow) -> str:
        """The last reported step as people count epochs: step 0 is "epoch 1"."""
        if row.step is None:
            return ""
        return f"{row.step + 1}/{self.epochs}" if self.epochs else str(row.step + 1)

    def _line(self, ev: Event) -> None:
        if isinstance(ev, TrialEnded):
            row = self.progress.rows[ev.trial_id]
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
        rows = sorted(self.progress.rows.values(), key=lambda r: r.id)
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
