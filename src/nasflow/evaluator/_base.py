"""The evaluator contract and ``FunctionalEvaluator``."""

from __future__ import annotations

import functools
import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any

from nasflow.evaluator._trial import Trial

__all__ = ["Evaluator", "FunctionalEvaluator"]


def _is_async_callable(fn: Any) -> bool:
    while isinstance(fn, functools.partial):
        fn = fn.func
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - an object with an async __call__
    )


def _check_arguments(fn: Callable[..., Any], kwargs: dict[str, Any]) -> None:
    """Refuse, before any trial runs, a function that cannot take ``(model, trial)``:
    NNI's evaluators take ``fn(model)``, and every trial would fail with a TypeError."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # no signature to inspect (a builtin): let the call tell
    try:
        signature.bind(None, None, **kwargs)
    except TypeError as exc:
        name = getattr(fn, "__name__", type(fn).__name__)
        params = ", ".join(str(p.replace(annotation=inspect.Parameter.empty))
                           for p in signature.parameters.values())
        raise TypeError(
            f"the evaluator {name}({params}) cannot be called as fn(model, trial"
            f"{', **kwargs' if kwargs else ''}) ({exc}). nasflow passes the trial too: "
            "write `def evaluate(model, trial):` (or async def), report intermediate "
            "values with trial.report(value, step=...) and return the final metric "
            "(NNI's `fn(model)` with nni.report_final_result(...) becomes this)"
        ) from None


class Evaluator(ABC):
    """Trains and scores one model: ``evaluate(model, trial)``, a ``def`` or ``async def``.

    Report intermediate results with ``trial.report(value, step=...)`` and return the
    final one (or return ``None`` after reporting: the last report is then final).
    Sync evaluators run in worker threads, never on the event loop.
    """

    default_objective: str | Mapping[str, str] | None = None
    """The objective this evaluator's metric calls for, used when the experiment's config
    leaves ``objective`` unset (e.g. ``"minimize"`` for a loss)."""
    model_seed: int | None = None
    """When set, engines build each trial's model (``space.freeze(sample)``) with torch's
    generator seeded by it, so a trial's initial weights repeat from run to run."""
    devices: int = 1
    """How many of its engine's slots one trial takes: a trial that runs on N processes
    (``devices=N``) takes N, so an engine of ``concurrency`` slots runs at most
    ``concurrency // devices`` such trials at once (and always at least one)."""

    @abstractmethod
    def evaluate(self, model: Any, trial: Trial) -> Any:
        """Evaluate ``model`` (``None`` for a torch-free space); return the final metric."""

    @property
    def is_async(self) -> bool:
        """Whether ``evaluate`` is a coroutine function (runs on the event loop)."""
        return _is_async_callable(self.evaluate)


class FunctionalEvaluator(Evaluator):
    """Calls ``fn(model, trial, **kwargs)``; ``fn`` may be ``def`` or ``async def``."""

    def __init__(self, fn: Callable[..., Any], **kwargs: Any) -> None:
        if not callable(fn):
            raise TypeError(f"FunctionalEvaluator needs a function, got {fn!r}")
        _check_arguments(fn, kwargs)
        self.fn = fn
        """The wrapped function."""
        self.kwargs = kwargs
        """Extra keyword arguments passed on every call."""
        self._async = _is_async_callable(fn)

    @property
    def is_async(self) -> bool:
        return self._async

    def evaluate(self, model: Any, trial: Trial) -> Any:
        return self.fn(model, trial, **self.kwargs)

    def __repr__(self) -> str:
        name = getattr(self.fn, "__qualname__", repr(self.fn))
        return f"FunctionalEvaluator({name})"
