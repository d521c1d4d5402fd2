"""The strategy contract: a coroutine that decides what to evaluate, and what it can see.

A strategy never does I/O. It talks to the experiment only through the
``StrategyContext`` it is given: it submits samples (``submit`` waits for free capacity,
it never polls), reads finished trials, and may stop trials.
"""

from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterable
from typing import Any

from nasflow._kernel import Objective, TrialRecord, TrialState
from nasflow.space import Sample, SearchSpace

__all__ = ["Budget", "Strategy", "StrategyContext", "TrialHandle", "rng_from_state", "rng_state"]


class Budget:
    """What is left of the experiment's budget (a live, read-only view)."""

    def __init__(self, max_trials: int | None, deadline: float | None) -> None:
        self.max_trials = max_trials
        """The trial budget, or ``None``."""
        self.deadline = deadline
        """``anyio.current_time()`` at which the search stops, or ``None``."""
        self.submitted = 0
        """Trials submitted so far (including those from before a resume)."""
        self.stopping = False
        """True once the experiment is ending (stop, target reached, deadline)."""

    @property
    def remaining(self) -> float:
        """Trials that may still be submitted (``math.inf`` without a trial budget)."""
        if self.stopping:
            return 0
        if self.max_trials is None:
            return math.inf
        return max(0, self.max_trials - self.submitted)

    @property
    def exhausted(self) -> bool:
        """Whether no further trial may be submitted."""
        return self.remaining <= 0

    def __repr__(self) -> str:
        return (f"Budget(submitted={self.submitted}, max_trials={self.max_trials}, "
                f"stopping={self.stopping})")


class TrialHandle:
    """A submitted trial: ``id``, ``sample``, ``hash``, and ``await result()``."""

    __slots__ = ("_ctx", "hash", "id", "sample")

    def __init__(self, ctx: StrategyContext, trial_id: int, sample: Sample, hash: str) -> None:
        self._ctx = ctx
        self.id = trial_id
        self.sample = sample
        self.hash = hash

    async def result(self) -> TrialRecord:
        """Wait for the trial to end; its final record."""
        return await self._ctx.wait_trial(self.id)

    def __repr__(self) -> str:
        return f"TrialHandle(id={self.id}, sample={self.sample!r})"


class StrategyContext(ABC):
    """What a running strategy can see and do. Implemented by the experiment."""

    space: SearchSpace
    """The search space (torch-free), for sampling and validation."""
    objective: Objective
    """The objective: ``objective.score(metric)`` is larger for better trials."""
    budget: Budget
    """The live budget."""

    @property
    @abstractmethod
    def capacity(self) -> int:
        """How many trials can run at once."""

    @abstractmethod
    async def submit(self, sample: Sample) -> TrialHandle:
        """Wait for free capacity, then start a trial of ``sample``.

        The sample is canonicalised (inactive labels dropped) and validated first; an
        invalid one raises ``SampleValidationError``. Raises ``BudgetExhausted`` once the
        budget is spent (letting it propagate ends the search normally).
        """

    @abstractmethod
    async def wait_capacity(self) -> None:
        """Wait until a trial could start right away. Steady-state strategies call this,
        then read ``take_results()``, then choose what to submit."""

    @abstractmethod
    def take_results(self) -> list[TrialRecord]:
        """Trials that ended since the last call (any final state), oldest first."""

    @abstractmethod
    async def next_result(self) -> TrialRecord | None:
        """The next trial to end; ``None`` at once if none is queued or running."""

    async def results(self) -> AsyncIterator[TrialRecord]:
        """Ended trials as they come, until nothing is left running."""
        while True:
            record = await self.next_result()
            if record is None:
                return
            yield record

    @abstractmethod
    async def wait_trial(self, trial_id: int) -> TrialRecord:
        """Wait for trial ``trial_id`` to end; its record."""

    @abstractmethod
    def history(self, states: Iterable[TrialState] | None = None) -> list[TrialRecord]:
        """Finished trials (or those in ``states``), by id, including earlier runs."""

    @abstractmethod
    def running(self) -> list[TrialRecord]:
        """Trials submitted and not yet ended."""

    @abstractmethod
    def kill(self, trial_id: int, state: TrialState = TrialState.CANCELED,
             reason: str = "") -> bool:
        """Stop a running trial; it ends in ``state``."""

    @abstractmethod
    def seen(self, sample: Sample) -> bool:
        """Whether an equal sample was already submitted (in any state)."""

    @property
    @abstractmethod
    def distinct_submitted(self) -> int:
        """How many distinct samples were submitted."""

    # --- for strategies that evaluate on their own (one-shot) -----------------------------

    model_space: Any
    """The space exactly as given to the experiment (e.g. a ``nasflow.nn.ModelSpace``)."""
    evaluator: Any
    """The experiment's evaluator (one-shot strategies read its data and settings)."""

    @abstractmethod
    async def record(self, sample: Sample, value: Any, *,
                     intermediates: Iterable[tuple[int, Any]] = ()) -> TrialRecord:
        """Record a trial the strategy evaluated itself (e.g. an architecture ranked by a
        supernet) as SUCCEEDED with final result ``value``; it is stored and exported like
        any trial. Not counted against ``max_trials``."""

    @abstractmethod
    async def progress(self, step: int | None = None, **values: Any) -> None:
        """Publish (and store) a ``StrategyProgress`` event with JSON-able ``values``."""

    @abstractmethod
    async def save_checkpoint(self, name: str, obj: Any) -> None:
        """Save ``obj`` (``torch.save``) under ``name`` in the experiment directory, off
        the event loop; replaces an earlier checkpoint of that name atomically."""

    @abstractmethod
    async def load_checkpoint(self, name: str) -> Any | None:
        """The object saved under ``name``, or ``None``."""


class Strategy(ABC):
    """A search strategy: ``async def run(self, ctx)`` plus ``state_dict`` /
    ``load_state_dict`` so that a resumed search continues where it stopped."""

    @abstractmethod
    async def run(self, ctx: StrategyContext) -> None:
        """Search until done (return) or out of budget (``BudgetExhausted`` may propagate)."""

    def state_dict(self) -> dict[str, Any]:
        """A JSON-able snapshot of the strategy's progress."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a snapshot taken by ``state_dict``."""


def rng_state(rng: random.Random) -> list[Any]:
    """A JSON-able form of ``rng.getstate()``."""
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def rng_from_state(state: list[Any]) -> random.Random:
    """A ``random.Random`` restored from ``rng_state``."""
    rng = random.Random()
    rng.setstate((state[0], tuple(state[1]), state[2]))
    return rng
