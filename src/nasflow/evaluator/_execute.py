"""The trial executor: runs an evaluator on one trial and says how it ended.

Shared by the in-process engine and the worker process (``worker/_runner.py``), so that a
trial behaves the same wherever it runs: ``build_model(space, sample)``, the evaluator with
``nf.current_trial()`` set, async evaluators on the loop and sync ones in a thread, and one
rule for how a trial ended (``Outcome``). What the callers do with the outcome -- publish
events, or send protocol messages -- is theirs.

How a trial that was stopped ends (the one fallback rule, see docs/decisions.md):

1. a stop asked for through ``Execution.stop`` ends it in that stop's state, reason and
   error type;
2. else, cut off by its deadline (``timeout``): ``TIMEOUT``, "the trial ran longer than
   trial_timeout=...s";
3. else (the evaluator raised ``TrialStopped`` on its own): the trial's own stop state, or
   ``CANCELED``.

Anything else the evaluator raises fails that trial alone (``FAILED``, with the error's
type, message and traceback) -- ``SystemExit`` and ``KeyboardInterrupt`` included: an
evaluator that calls ``sys.exit()`` must not take the experiment (or the worker) with it.
Only the cancellation of the caller itself goes on up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio

from nasflow._kernel import TrialError, TrialState
from nasflow.evaluator._base import Evaluator
from nasflow.evaluator._trial import Trial, _current
from nasflow.exceptions import TrialStopped

__all__ = ["Execution", "Executor", "Outcome", "Stop", "build_model"]


def build_model(space: Any, sample: dict[str, Any], seed: int | None = None) -> Any:
    """The model for ``sample``: ``space.freeze(sample)`` for a model space, else ``None``
    (a dict / ``SearchSpace`` is torch-free; the evaluator reads ``trial.sample``).

    ``seed`` (the evaluator's ``model_seed``) fixes the initial weights."""
    if getattr(space, "is_model_space", False):
        if seed is None:
            return space.freeze(sample)
        from nasflow.evaluator._seeding import seeded_freeze  # a model space has torch

        return seeded_freeze(space.freeze, sample, seed)
    return None


@dataclass(frozen=True, slots=True)
class Stop:
    """A request to end a running trial: its end state, the reason (the error's message)
    and the error's type (default: ``Timeout`` for ``TIMEOUT``, else ``Stopped``)."""

    state: TrialState = TrialState.CANCELED
    reason: str = ""
    error_type: str = ""

    @property
    def error(self) -> TrialError:
        """The ``TrialError`` the trial ends with."""
        kind = self.error_type or ("Timeout" if self.state is TrialState.TIMEOUT else "Stopped")
        return TrialError(kind, self.reason or self.state.value)


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a trial ended: its state, the error (unless it succeeded), and its final result
    (``metric``: the primary objective, ``value``: the result as normalised; both ``None``
    unless it succeeded)."""

    state: TrialState
    error: TrialError | None = None
    metric: float | None = None
    value: Any = None


class Execution:
    """One trial being executed: its ``Trial``, its cancel scope and the stop asked for."""

    __slots__ = ("executor", "requested", "scope", "trial")

    def __init__(self, executor: Executor, trial: Trial) -> None:
        self.executor = executor
        self.trial = trial
        """The evaluator's view of the trial."""
        self.scope = anyio.CancelScope()
        self.requested: Stop | None = None
        """The stop asked for (the first one counts)."""

    def stop(self, stop: Stop) -> None:
        """End the trial as ``stop`` says: its next ``trial.report()`` raises
        ``TrialStopped``, and an async evaluator (or, if the executor abandons threads, a
        sync one) is cut off at once. A second stop changes nothing."""
        if self.requested is not None:
            return
        self.requested = stop
        self.trial._stop(stop.state, stop.reason)
        if self.executor.evaluator.is_async or self.executor.abandon_threads:
            self.scope.cancel()

    @property
    def stopping(self) -> bool:
        """Whether a stop was asked for."""
        return self.requested is not None

    def close(self, reason: str = "the trial has ended") -> None:
        """Release what the trial opened; a thread it left behind may not report again."""
        self.trial._stop(TrialState.CANCELED, reason)
        self.trial._close()

    async def run(self) -> Outcome:
        """Run the evaluator to the trial's end; see the module docstring."""
        ex, trial = self.executor, self.trial
        scope = self.scope
        if ex.timeout is not None:
            scope.deadline = anyio.current_time() + ex.timeout
        token = _current.set(trial)
        try:
            with scope:
                result = await ex._call(trial)
            if scope.cancelled_caught or self.requested is not None:
                return self._stopped()
        except TrialStopped:
            return self._stopped()
        except anyio.get_cancelled_exc_class():
            raise  # the caller itself is cancelled: not this trial's business
        except GeneratorExit:
            raise
        except (SystemExit, KeyboardInterrupt) as exc:  # this trial only
            error = ex.describe(exc)
            return Outcome(TrialState.FAILED, TrialError(
                error.type, f"the evaluator raised {exc!r}; that ends this trial, not the "
                "experiment (to end the search, call Experiment.stop())", error.traceback))
        except BaseException as exc:
            return Outcome(TrialState.FAILED, ex.describe(exc))
        finally:
            _current.reset(token)
        try:
            metric, value = trial._final(result)
        except Exception as exc:  # a MetricError; anything else fails this trial too
            return Outcome(TrialState.FAILED, ex.describe(exc))
        return Outcome(TrialState.SUCCEEDED, None, metric, value)

    def _stopped(self) -> Outcome:
        stop = self.requested
        if stop is None:
            if self.scope.cancelled_caught:  # nobody asked: the deadline passed
                stop = Stop(TrialState.TIMEOUT, f"the trial ran longer than "
                                                f"trial_timeout={self.executor.timeout}s")
            else:  # the evaluator raised TrialStopped itself
                state, reason = self.trial._stopped_as() or (TrialState.CANCELED, "")
                stop = Stop(state, reason)
        self.trial._stop(stop.state, stop.reason)  # a thread left behind sees it too
        return Outcome(stop.state, stop.error)


class Executor:
    """Runs ``evaluator`` on trials of ``space``.

    ``abandon_threads``: a stopped sync evaluator's thread is left behind at once (the
    in-process engine), or awaited until it returns (a worker, whose manager kills the
    process after a grace period). ``timeout``: seconds a trial may run (``None``: no
    limit here; a manager enforces it for its workers). ``describe`` turns an exception
    into the ``TrialError`` a trial fails with (a worker bounds its size to fit a frame).
    """

    __slots__ = ("_model_space", "abandon_threads", "describe", "evaluator", "model_seed",
                 "space", "timeout")

    def __init__(
        self,
        space: Any,
        evaluator: Evaluator,
        *,
        abandon_threads: bool,
        timeout: float | None = None,
        describe: Callable[[BaseException], TrialError] = TrialError.from_exception,
    ) -> None:
        self.space = space
        self.evaluator = evaluator
        self.abandon_threads = abandon_threads
        self.timeout = timeout
        self.describe = describe
        self.model_seed: int | None = getattr(evaluator, "model_seed", None)
        """Repeatable initial weights (the evaluator's ``model_seed``)."""
        self._model_space = bool(getattr(space, "is_model_space", False))

    def execution(self, trial: Trial) -> Execution:
        """A new execution of ``trial`` (``await execution.run()`` runs it)."""
        return Execution(self, trial)

    async def _call(self, trial: Trial) -> Any:
        evaluator = self.evaluator
        if evaluator.is_async:
            model = None
            if self._model_space:  # freezing copies modules: keep it off the loop
                model = await anyio.to_thread.run_sync(
                    build_model, self.space, trial.sample, self.model_seed)
            return await evaluator.evaluate(model, trial)
        return await anyio.to_thread.run_sync(
            self._call_sync, trial, abandon_on_cancel=self.abandon_threads)

    def _call_sync(self, trial: Trial) -> Any:
        model = build_model(self.space, trial.sample, self.model_seed)
        return self.evaluator.evaluate(model, trial)
