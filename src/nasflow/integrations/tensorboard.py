"""TensorBoard: each trial's metrics as scalars under its folder, and the writer that
``trial.tensorboard()`` returns.

``ExperimentConfig(tensorboard=True)`` adds a ``TensorBoardSink`` to the experiment's
event hub: every ``trial.report(value, step)`` becomes a scalar (``metric`` for a float,
each key of a dict) at that step in ``trials/<id>/tensorboard``, beside what the trial's
own ``trial.tensorboard()`` writer logs there, and the final result a ``final/...``
scalar. ``nasflow tensorboard ID`` points TensorBoard at the experiment's ``trials``
folder, so each trial is one run.

Without the ``tensorboard`` package (``pip install 'nasflow[tensorboard]'``) nothing
fails: ``trial.tensorboard()`` logs a warning that says how to install it and returns a
``NullWriter``, and the sink logs the same warning once and writes nothing.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nasflow.events import Event, ExperimentFinished, FinalMetric, IntermediateMetric, TrialEnded

__all__ = ["INSTALL_HINT", "NullWriter", "TensorBoardSink", "summary_writer"]

_log = logging.getLogger("nasflow.tensorboard")

INSTALL_HINT = (
    "TensorBoard is not installed, so nothing is logged for TensorBoard; install it with "
    "pip install 'nasflow[tensorboard]' (or pip install tensorboard)"
)
"""What nasflow says when TensorBoard is asked for and missing."""

_warned = threading.Event()


def _warn_missing(where: str) -> None:
    if not _warned.is_set():  # once per process: every trial would say the same
        _warned.set()
        _log.warning("%s: %s", where, INSTALL_HINT)


class NullWriter:
    """Stands in for a ``SummaryWriter`` when TensorBoard is missing: every method (and
    ``with writer:``) works and does nothing."""

    log_dir: str | None = None

    def __getattr__(self, name: str) -> Callable[..., None]:
        if name.startswith("__"):
            raise AttributeError(name)
        return _nothing

    def __enter__(self) -> NullWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def __bool__(self) -> bool:
        return False  # ``if writer:`` tells a real writer from this one

    def __repr__(self) -> str:
        return "NullWriter()  # TensorBoard is not installed"


def _nothing(*args: Any, **kwargs: Any) -> None:
    return None


def summary_writer(log_dir: Path, *, where: str) -> Any:
    """A ``torch.utils.tensorboard.SummaryWriter`` on ``log_dir``, or a ``NullWriter``
    (with a warning, once) when TensorBoard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        _warn_missing(where)
        return NullWriter()
    return SummaryWriter(log_dir=str(log_dir))


class TensorBoardSink:
    """An event-hub sink that writes trial metrics as TensorBoard scalars.

    The hub calls it on the event loop, so it only queues the event; one thread of its own
    opens the writers and writes (TensorBoard's writer does file I/O). The thread ends
    after ``ExperimentFinished``, once everything queued is flushed.
    """

    def __init__(self, trial_directory: Callable[[int], Path]) -> None:
        self._trial_directory = trial_directory
        self._queue: queue.SimpleQueue[Event | None] | None = None
        self._threads: list[threading.Thread] = []

    def __call__(self, event: Event) -> None:
        if isinstance(event, (IntermediateMetric, FinalMetric, TrialEnded)):
            if self._queue is None:  # one thread (and queue) per run of the experiment
                self._queue = queue.SimpleQueue()
                thread = threading.Thread(target=self._write_all, args=(self._queue,),
                                          daemon=True, name="nasflow-tensorboard")
                self._threads.append(thread)
                thread.start()
            self._queue.put(event)
        elif isinstance(event, ExperimentFinished):
            self._end()

    def join(self) -> None:
        """Stop taking events and wait until everything queued is written and closed (the
        experiment awaits it, in a thread, before its run returns)."""
        self._end()
        while self._threads:
            self._threads.pop().join()

    def _end(self) -> None:
        if self._queue is not None:
            self._queue.put(None)  # after everything queued before it
            self._queue = None

    # --- the writing thread ------------------------------------------------------------

    def _write_all(self, events: queue.SimpleQueue[Event | None]) -> None:
        writers: dict[int, Any] = {}
        try:
            while (event := events.get()) is not None:
                try:
                    self._write(event, writers)
                except Exception:  # a full disk must not end the experiment
                    _log.exception("writing TensorBoard scalars for %r failed", event)
        finally:
            for writer in writers.values():
                writer.close()

    def _write(self, event: Event, writers: dict[int, Any]) -> None:
        trial_id: int = event.trial_id  # type: ignore[attr-defined]
        if isinstance(event, TrialEnded):
            writer = writers.pop(trial_id, None)
            if writer is not None:
                writer.close()
            return
        writer = writers.get(trial_id)
        if writer is None:
            path = self._trial_directory(trial_id) / "tensorboard"
            writer = summary_writer(path, where="ExperimentConfig(tensorboard=True)")
            writers[trial_id] = writer
        if isinstance(event, IntermediateMetric):
            for tag, value in _scalars(event.value):
                writer.add_scalar(tag, value, event.step)
        elif isinstance(event, FinalMetric):
            for tag, value in _scalars(event.value):
                writer.add_scalar(f"final/{tag}", value, 0)
        writer.flush()


def _scalars(value: float | dict[str, float]) -> list[tuple[str, float]]:
    if isinstance(value, dict):
        return [(str(k), float(v)) for k, v in value.items()]
    return [("metric", float(value))]
