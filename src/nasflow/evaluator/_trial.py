"""The evaluator's view of a trial: its sample, ``report()``, its folder, stop requests.

``report()`` is a plain function that works from the event loop and from worker threads.
It never blocks the loop: events go into a ``ReportPipe`` that a task on the loop drains
into the experiment's event hub. A thread that reports much faster than the loop can
drain waits (bounded backlog); nothing is dropped.
"""

from __future__ import annotations

import asyncio
import contextvars
import pickle
import sys
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, Any

import anyio

from nasflow._kernel import Objective, TrialState
from nasflow.events import CheckpointSaved, Event, IntermediateMetric
from nasflow.exceptions import MetricError, NasflowError, TrialStopped
from nasflow.space import sample_hash

__all__ = ["ReportPipe", "Trial", "TrialOutput", "current_trial"]

_CKPT = "checkpoint"  # checkpoint.<trial id>-<sample hash>.pt (or .pkl)

_current: contextvars.ContextVar[Trial | None] = contextvars.ContextVar(
    "nasflow_current_trial", default=None
)


def current_trial() -> Trial:
    """The trial being evaluated in this context (also inside threads it started through
    anyio/asyncio, which copy the context). Raises ``NasflowError`` outside a trial."""
    trial = _current.get()
    if trial is None:
        raise NasflowError(
            "nf.current_trial() was called outside a trial: it only works while an "
            "evaluator runs (inside evaluate(model, trial) and code it calls)"
        )
    return trial


class ReportPipe:
    """Thread-safe, non-blocking hand-off of trial events to the event loop."""

    def __init__(
        self, publish: Callable[[Event], Awaitable[None]], *, max_backlog: int = 65536
    ) -> None:
        self._publish = publish
        self._pending: deque[Event] = deque()
        self._max_backlog = max_backlog
        self._scheduled = False
        self._room = threading.Event()
        self._room.set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._wake = anyio.Event()

    def put(self, event: Event) -> None:
        """Queue ``event`` for publishing; callable from any thread."""
        loop = self._loop
        if loop is None:
            raise NasflowError("the report pipe is not running (the experiment has ended)")
        on_loop = threading.get_ident() == self._loop_thread
        if not on_loop and len(self._pending) >= self._max_backlog:
            self._room.clear()
            self._room.wait()  # a worker thread reporting faster than the loop drains
        self._pending.append(event)
        if not self._scheduled:
            self._scheduled = True
            if on_loop:
                loop.call_soon(self._wake.set)
            else:
                try:
                    loop.call_soon_threadsafe(self._wake.set)
                except RuntimeError:  # the loop closed under an abandoned thread
                    pass

    async def run(self) -> None:
        """Drain forever (run it in a task group; cancel it to stop)."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        try:
            while True:
                await self._wake.wait()
                self._wake = anyio.Event()
                await self.flush()
        finally:
            self._room.set()

    async def flush(self) -> None:
        """Publish everything queued so far."""
        self._scheduled = False  # before draining: a later put schedules a new wake-up
        room, low = self._room, self._max_backlog // 2
        while self._pending:
            await self._publish(self._pending.popleft())
            # Event.set takes a lock: only when a reporting thread may be waiting
            if not room.is_set() and len(self._pending) < low:
                room.set()
        if not room.is_set():
            room.set()

    def take_pending(self) -> list[Event]:
        """Remove and return what is queued (used when publishing must not wait)."""
        out = list(self._pending)
        self._pending.clear()
        self._room.set()
        return out


class Trial:
    """One evaluation: ``id``, ``sample``, ``report()``, ``directory``, ``should_stop()``."""

    def __init__(
        self,
        trial_id: int,
        sample: dict[str, Any],
        *,
        objective: Objective,
        pipe: ReportPipe | None,
        directory: Callable[[], Path],
        experiment_id: str | None = None,
        attempt: int = 0,
    ) -> None:
        self.id = trial_id
        """The trial id, unique within the experiment (0, 1, 2, ...)."""
        self.sample = sample
        """The architecture / hyper-parameters: a flat ``label -> value`` dict."""
        self.experiment_id = experiment_id
        """The id of the experiment this trial belongs to."""
        self.attempt = attempt
        """0 for the first run of this trial id, then 1, 2, ... when re-queued."""
        self._objective = objective
        self._pipe = pipe
        self._directory = directory
        self._dir: Path | None = None
        self._hash: str | None = None
        self._step = -1
        self._last: tuple[float, Any] | None = None
        self._stop_state: TrialState | None = None
        self._stop_reason = ""
        self._tensorboard: Any = None
        self._outputs: dict[str, IO[str]] = {}

    # --- reporting ----------------------------------------------------------------------

    def report(self, value: Any, step: int | None = None) -> None:
        """Report an intermediate result (a float, or a dict holding the objective).

        ``step`` defaults to one more than the last step. Raises ``TrialStopped`` once the
        trial was stopped (early stopping, timeout, cancel) and ``MetricError`` for a value
        that is not a finite number.
        """
        if self._stop_state is not None:
            raise TrialStopped(self._stop_message())
        primary, normal = self._objective.parse(value)
        if step is None:
            step = self._step + 1
        else:
            _check_step(step)
        self._step = step
        self._last = (primary, normal)
        if self._pipe is not None:
            self._pipe.put(IntermediateMetric(
                time=time.time(), trial_id=self.id, step=step, value=normal, metric=primary,
                attempt=self.attempt,
            ))

    def should_stop(self) -> bool:
        """Whether the experiment asked this trial to stop; loops may check it instead of
        relying on ``report()`` raising ``TrialStopped``."""
        return self._stop_state is not None

    @property
    def last_reported(self) -> Any:
        """The last value given to ``report()`` (normalised), or ``None``."""
        return None if self._last is None else self._last[1]

    # --- files --------------------------------------------------------------------------

    @property
    def directory(self) -> Path:
        """This trial's own folder (created on first use)."""
        if self._dir is None:
            path = self._directory()
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._dir = path
        return self._dir

    def save_checkpoint(self, obj: Any, *, step: int | None = None) -> Path:
        """Save ``obj`` as this trial's checkpoint (replacing the previous one atomically)
        and publish a ``CheckpointSaved`` event. A re-queued attempt of this trial (after a
        crash and resume) gets it back from ``load_checkpoint()``.

        Uses ``torch.save`` when torch is loaded, else pickle. Call it from a sync evaluator
        (a thread), or wrap it in ``anyio.to_thread.run_sync`` from an async one: large
        checkpoints take a while to write.
        """
        if step is not None:
            _check_step(step)
        use_torch = "torch" in sys.modules
        target = self.directory / self._checkpoint_name(".pt" if use_torch else ".pkl")
        tmp = target.with_name(target.name + ".tmp")
        if use_torch:
            import torch

            torch.save(obj, tmp)
        else:
            with tmp.open("wb") as f:
                pickle.dump(obj, f)
        tmp.replace(target)
        self._clear_checkpoints(keep=target.name)  # one checkpoint per trial
        if self._pipe is not None:
            self._pipe.put(CheckpointSaved(
                time=time.time(), trial_id=self.id, path=str(target), step=step,
                attempt=self.attempt,
            ))
        return target

    def load_checkpoint(self) -> Any | None:
        """The last object given to ``save_checkpoint`` by this trial (any attempt), or
        ``None``. A checkpoint is bound to its trial id and sample (both are in its file
        name): one left by another sample under this id (a trial id reused after a crash)
        is never returned, and is deleted."""
        torch_path = self.directory / self._checkpoint_name(".pt")
        pickle_path = self.directory / self._checkpoint_name(".pkl")
        if torch_path.is_file():
            import torch

            return torch.load(torch_path, weights_only=False)
        if pickle_path.is_file():
            with pickle_path.open("rb") as f:
                return pickle.load(f)
        self._clear_checkpoints(keep=None)
        return None

    def _checkpoint_name(self, suffix: str) -> str:
        if self._hash is None:
            self._hash = sample_hash(self.sample)
        return f"{_CKPT}.{self.id}-{self._hash}{suffix}"

    def _clear_checkpoints(self, *, keep: str | None) -> None:
        for path in self.directory.glob(f"{_CKPT}.*"):
            if path.name != keep and not path.name.endswith(".tmp"):
                path.unlink(missing_ok=True)

    def tensorboard(self) -> Any:
        """A ``torch.utils.tensorboard.SummaryWriter`` logging under this trial's
        ``tensorboard/`` folder; closed with the trial.

        Without TensorBoard installed it logs a warning (once per process) that says how to
        install it (``pip install 'nasflow[tensorboard]'``) and returns a
        ``NullWriter`` whose methods do nothing, so the trial goes on; ``bool(writer)`` is
        ``False`` for it."""
        if self._tensorboard is None:
            from nasflow.integrations.tensorboard import summary_writer

            self._tensorboard = summary_writer(self.directory / "tensorboard",
                                               where="trial.tensorboard()")
        return self._tensorboard

    def _close(self) -> None:
        """Release what the trial opened (called by the engine when the trial ends)."""
        if self._tensorboard is not None:
            self._tensorboard.close()
            self._tensorboard = None
        for f in self._outputs.values():
            f.close()
        self._outputs.clear()

    def _output(self, name: str) -> IO[str]:
        f = self._outputs.get(name)
        if f is None:
            f = (self.directory / f"{name}.log").open("a", encoding="utf-8", buffering=1)
            self._outputs[name] = f
        return f

    # --- the executor's side (``nasflow.evaluator._execute``; not for evaluators) --------

    def _stop(self, state: TrialState, reason: str) -> None:
        """Mark the trial stopped (the first stop counts): ``report()`` raises from now on."""
        if self._stop_state is None:
            self._stop_state = state
            self._stop_reason = reason

    def _stopped_as(self) -> tuple[TrialState, str] | None:
        """The stop's state and reason, or ``None`` if the trial was not stopped."""
        if self._stop_state is None:
            return None
        return self._stop_state, self._stop_reason

    def _final(self, result: Any) -> tuple[float, Any]:
        """The final result ``(primary, normalised)`` of an evaluator that returned
        ``result``: the last report when it returned ``None``. ``MetricError`` if there is
        none, or the value is not a metric of this trial's objective."""
        if result is None:
            if self._last is None:
                raise MetricError(
                    "the evaluator returned None and reported nothing: return the final "
                    "metric, or call trial.report(value) at least once"
                )
            return self._last
        return self._objective.parse(result)

    def _stop_message(self) -> str:
        state = self._stop_state.value if self._stop_state else "STOPPED"
        reason = f": {self._stop_reason}" if self._stop_reason else ""
        return f"trial {self.id} was stopped ({state}{reason})"

    def __repr__(self) -> str:
        return f"Trial(id={self.id}, sample={self.sample!r})"


class TrialOutput:
    """A stand-in for ``sys.stdout``/``sys.stderr`` that sends what a trial prints to that
    trial's ``stdout.log``/``stderr.log`` (found through ``current_trial``; threads started
    by the trial included) and everything else to the original stream.

    The in-process engine installs it while it runs; worker processes capture their real
    file descriptors instead.
    """

    def __init__(self, original: IO[str], name: str) -> None:
        self._original = original
        self._name = name

    def write(self, text: str) -> int:
        trial = _current.get()
        if trial is None:
            return self._original.write(text)
        try:
            return trial._output(self._name).write(text)
        except OSError:  # the trial folder vanished: do not lose the text
            return self._original.write(text)

    def flush(self) -> None:
        trial = _current.get()
        if trial is not None and self._name in trial._outputs:
            trial._outputs[self._name].flush()
        self._original.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._original, name)


def _check_step(step: Any) -> None:
    if isinstance(step, bool) or not isinstance(step, int):
        raise TypeError(f"step must be an int, got {step!r}")
    if step < 0:
        raise ValueError(f"step must be >= 0 (steps count up from 0), got {step}")
    if not -(2**63) <= step < 2**63:
        raise ValueError(f"step must fit in 64 bits (the store and the protocol hold 64-bit "
                         f"integers), got {step}")
