"""The live display ``await exp.run()`` shows in a notebook cell (Jupyter, VS Code).

Only under an IPython kernel: IPython is never imported here, only looked up in
``sys.modules`` (a kernel has it loaded), so a plain terminal or script keeps its output
and pays nothing. The display is an event-hub sink: each event updates a few counters
synchronously (no task, no buffer, so it can never make the search wait), and the cell is
redrawn in place through one ``IPython.display`` display handle at most
``UPDATES_PER_SECOND`` times a second; an event that arrives inside that interval schedules
one trailing redraw, so the cell never shows a stale state for long. When the run ends the
display is replaced by its final summary.
"""

from __future__ import annotations

import asyncio
import html
import logging
import sys
import time
from typing import Any

from nasflow._run_progress import ProgressRow, RunProgress
from nasflow.events import Event

__all__ = ["UPDATES_PER_SECOND", "NotebookProgress", "in_kernel"]

_log = logging.getLogger("nasflow.notebook")

UPDATES_PER_SECOND = 4
_RUNNING_SHOWN = 8
_TOP = 5


def in_kernel() -> bool:
    """Whether this process is an IPython kernel (a notebook), without importing IPython."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:  # an odd IPython: no display rather than a failed run
        return False
    return shell is not None and getattr(shell, "kernel", None) is not None


class NotebookProgress:
    """Progress vs budget, running trials and the best so far, in one updating display."""

    def __init__(self, exp: Any) -> None:  # the Experiment (only the facade imports it)
        from IPython.display import display

        self.exp = exp
        self.total = exp.config.max_trials
        self.metric_name = exp.objective.primary
        self.progress = RunProgress(maximize=exp.objective.sign > 0)
        """What the display shows, folded from the events (shared with ``nasflow run``'s)."""
        self.t0 = time.monotonic()
        self.updates = 0
        """How many times the display was redrawn (the first draw not counted)."""
        self._last_draw = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        self._handle = display(  # type: ignore[no-untyped-call]
            self._bundle(), raw=True, display_id=True)
        exp._hub.add_sink(self._on_event)

    # --- events ---------------------------------------------------------------------------

    def _on_event(self, ev: Event) -> None:
        if self._closed:
            return
        try:
            self.progress.apply(ev)
            self._draw_soon()
        except Exception:  # a display must never break the search it shows
            _log.exception("the notebook display failed; it stops updating")
            self._closed = True

    # --- drawing --------------------------------------------------------------------------

    def _draw_soon(self) -> None:
        wait = self._last_draw + 1 / UPDATES_PER_SECOND - time.monotonic()
        if wait <= 0:
            self._draw()
        elif self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # published from a thread: the next event (or the end) redraws
            self._timer = loop.call_later(wait, self._draw)

    def _draw(self) -> None:
        self._timer = None
        if self._closed:
            return
        self._last_draw = time.monotonic()
        self.updates += 1
        self._handle.update(self._bundle(), raw=True)

    def close(self) -> None:
        """Replace the live display by the final summary (the run has ended)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._closed:
            return
        self._closed = True
        self.updates += 1
        self._handle.update(self._bundle(final=True), raw=True)

    def _bundle(self, *, final: bool = False) -> dict[str, str]:
        return {"text/html": self._html(final), "text/plain": self._text(final)}

    def _state(self, final: bool) -> str:
        finished = self.progress.finished
        if finished is not None:
            return finished.state.value
        return self.exp.state.value if final else "RUNNING"

    def _best_text(self) -> str:
        best = self.progress.best
        if best is None or best.metric is None:
            return "no succeeded trial yet"
        name = "" if self.metric_name == "default" else f" {self.metric_name}"
        return f"{best.metric:.6g}{name} (trial {best.id})"

    def _text(self, final: bool) -> str:
        p = self.progress
        total = "?" if self.total is None else str(self.total)
        head = (f"nasflow {self.exp.name} [{self._state(final)}] {p.done}/{total} trials "
                f"done, {len(p.running)} running, best {self._best_text()}, "
                f"{time.monotonic() - self.t0:.0f}s")
        if final and p.finished is not None and p.finished.reason:
            head += f" — {p.finished.reason}"
        return head

    def _html(self, final: bool) -> str:
        esc = html.escape
        p = self.progress
        done = p.done
        pct = 0.0 if not self.total else min(100.0, 100.0 * done / self.total)
        budget = f"{done} / {self.total}" if self.total else f"{done}"
        counts = ", ".join(f"{esc(s.value)}: {n}" for s, n in p.counts().items())
        elapsed = time.monotonic() - self.t0
        state = self._state(final)
        bar = (f"<span style='display:inline-block;width:160px;height:8px;background:#e8eaf0;"
               f"border-radius:4px;vertical-align:middle;overflow:hidden'><span "
               f"class='nasflow-bar' style='display:block;height:100%;width:{pct:.1f}%;"
               f"background:#2f6fde'></span></span>")
        kind = "nasflow-summary" if final else "nasflow-live"
        out = [f"<div class='nasflow-progress {kind}'>",
               f"<p><b>{esc(self.exp.name)}</b> <code>{esc(self.exp.id)}</code> — "
               f"<b class='nasflow-state'>{esc(state)}</b> {bar} "
               f"<span class='nasflow-done'>{budget}</span> trials"
               f"{' (budget)' if self.total else ''}, {elapsed:.1f}s</p>",
               f"<p>{counts or 'no trials yet'}</p>",
               f"<p>best so far: <b class='nasflow-best'>{esc(self._best_text())}</b></p>"]
        if final:
            if p.finished is not None and p.finished.reason:
                out.append(f"<p>{esc(p.finished.reason)}</p>")
            out.append(self._table(p.ranked()[:_TOP], "top trials", "metric"))
        else:
            out.append(self._table(p.running[:_RUNNING_SHOWN], "running", "last reported"))
        out.append("</div>")
        return "".join(out)

    def _table(self, rows: list[ProgressRow], title: str, value: str) -> str:
        if not rows:
            return ""
        esc = html.escape
        body = []
        for r in rows:
            v = r.metric if r.metric is not None else r.last
            shown = "-" if v is None else f"{v:.6g}"
            step = "" if r.step is None else str(r.step)
            sample = ", ".join(f"{esc(k)}={esc(str(x))}" for k, x in r.sample.items())
            body.append(f"<tr><td>{r.id}</td><td>{shown}</td><td>{step}</td>"
                        f"<td style='text-align:left'>{sample}</td></tr>")
        return (f"<table class='nasflow-{title.split()[0]}'><caption style='text-align:left'>"
                f"{esc(title)}</caption><tr><th>trial</th><th>{esc(value)}</th>"
                f"<th>step</th><th>sample</th></tr>{''.join(body)}</table>")
