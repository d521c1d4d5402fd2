"""The engine contract: engines execute trials; they never decide what to run."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from nasflow._objective import Objective
from nasflow._types import TrialState
from nasflow.evaluator import Evaluator
from nasflow.events import Event

__all__ = ["Engine", "EngineSetup", "Publish", "TrialSpec", "build_model"]


class Publish(Protocol):
    """Deliver an event; ``wait=False`` never waits (used while shutting down)."""

    def __call__(self, event: Event, *, wait: bool = True) -> Awaitable[None]: ...


@dataclass(frozen=True, slots=True)
class TrialSpec:
    """What an engine runs: a trial id, its sample, and which attempt this is."""

    id: int
    sample: dict[str, Any]
    attempt: int = 0


@dataclass(frozen=True)
class EngineSetup:
    """Everything an engine needs from its experiment."""

    space: Any
    """The space given to the experiment; a model space is frozen into each trial's model."""
    evaluator: Evaluator
    objective: Objective
    publish: Publish
    trial_directory: Callable[[int], Path]
    experiment_id: str
    concurrency: int = 1
    trial_timeout: float | None = None
    flush: Callable[[], Awaitable[None]] | None = None
    """Returns once everything published so far is durable (the store's commit); engines
    that acknowledge events to remote workers await it before acking. ``None``: no store."""


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


class Engine(ABC):
    """Runs trials with some capacity and reports them as events through ``publish``.

    Use as an async context manager. ``submit`` waits until the engine can take the trial
    (backpressure, no polling); the engine then publishes ``TrialStarted``, metrics,
    ``FinalMetric`` and exactly one ``TrialEnded`` for it.
    """

    def __init__(self, setup: EngineSetup) -> None:
        self.setup = setup

    @property
    @abstractmethod
    def capacity(self) -> int:
        """How many trials can run at once."""

    @property
    @abstractmethod
    def running(self) -> frozenset[int]:
        """Ids of the trials accepted and not yet ended."""

    @abstractmethod
    async def submit(self, spec: TrialSpec) -> None:
        """Wait for capacity, then start ``spec``; returns once the engine holds it."""

    @abstractmethod
    def cancel(self, trial_id: int, state: TrialState = TrialState.CANCELED,
               reason: str = "", *, interrupted: bool = False) -> bool:
        """Stop a running trial; it ends in ``state`` with ``reason`` as its error message.
        ``interrupted``: the experiment is stopping, not judging the trial: the error's
        type is ``INTERRUPTED`` (so that a resume runs it again). False if it is not
        running here."""

    async def reattach(self, specs: list[TrialSpec]) -> set[int]:
        """On resume: take over those of ``specs`` that are still running somewhere (e.g. on
        a manager's workers); return their ids. The rest are submitted again."""
        return set()

    @abstractmethod
    async def wait_idle(self) -> None:
        """Return once no trial is running."""

    async def __aenter__(self) -> Engine:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None
