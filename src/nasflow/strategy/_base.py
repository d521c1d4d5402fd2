"""The strategy contract: a coroutine that decides what to evaluate, and what it can see.

A strategy never does I/O. It talks to the experiment only through the
``StrategyContext`` it is given: it submits samples (``submit`` waits for free capacity,
it never polls), reads finished trials (as ``FrozenTrial`` values, never the experiment's
live records), and may stop trials. Strategies that evaluate on their own (one-shot) get
what they need besides from a separate ``OneShotContext`` (``oneshot_context(ctx)``).
"""

from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

from nasflow._kernel import Objective, RecordView, TrialError, TrialRecord, TrialState
from nasflow.space import Sample, SearchSpace

__all__ = [
    "Budget",
    "ForwardsOneShot",
    "FrozenTrial",
    "OneShotContext",
    "Strategy",
    "StrategyContext",
    "TrialHandle",
    "oneshot_context",
    "rng_from_state",
    "rng_state",
]


@dataclass(frozen=True, slots=True)
class FrozenTrial(RecordView):
    """A trial as a strategy sees it: the fields of ``TrialRecord``, frozen (the sample is
    the strategy's own copy). What ``take_results``, ``next_result``, ``history`` and
    ``TrialHandle.result`` give."""

    id: int
    sample: dict[str, Any]
    hash: str
    state: TrialState = TrialState.WAITING
    metric: float | None = None
    metrics: Any = None
    submitted_at: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    error: TrialError | None = None
    attempt: int = 0
    directory: str | None = None
    origin: str | None = None
    """``None``: proposed by the strategy; ``"enqueued"``, ``"added"`` or ``"imported"``:
    given by the user (``exp.enqueue``, ``exp.add_results``, ``warm_start``)."""

    @classmethod
    def of(cls, record: TrialRecord | FrozenTrial) -> FrozenTrial:
        """A frozen copy of ``record`` (itself if it is frozen already)."""
        if isinstance(record, FrozenTrial):
            return record
        return cls(id=record.id, sample=dict(record.sample), hash=record.hash,
                   state=record.state, metric=record.metric, metrics=record.metrics,
                   submitted_at=record.submitted_at, started_at=record.started_at,
                   ended_at=record.ended_at, error=record.error, attempt=record.attempt,
                   directory=record.directory, origin=record.origin)


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

    async def result(self) -> FrozenTrial:
        """Wait for the trial to end; its final record."""
        return await self._ctx.wait_trial(self.id)

    def __repr__(self) -> str:
        return f"TrialHandle(id={self.id}, sample={self.sample!r})"


class StrategyContext(ABC):
    """What a running multi-trial strategy can see and do. Implemented by the experiment.

    Nine abstract members (and three attributes): submit and wait for capacity, read
    ended trials (``take_results``/``next_result``/``wait_trial``/``history``), stop one
    (``kill``), ask what was submitted (``seen``/``distinct_submitted``). The experiment's
    context offers more (``capacity``, ``running()``, and the ``OneShotContext`` members,
    for code written against the earlier, wider contract); a strategy that needs only
    this contract runs under any implementation of it.
    """

    space: SearchSpace
    """The search space (torch-free), for sampling and validation."""
    objective: Objective
    """The objective: ``objective.score(metric)`` is larger for better trials."""
    budget: Budget
    """The live budget."""

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
    def take_results(self) -> list[FrozenTrial]:
        """Trials that ended since the last call (any final state), oldest first."""

    @abstractmethod
    async def next_result(self) -> FrozenTrial | None:
        """The next trial to end; ``None`` at once if none is queued or running."""

    async def results(self) -> AsyncIterator[FrozenTrial]:
        """Ended trials as they come, until nothing is left running."""
        while True:
            record = await self.next_result()
            if record is None:
                return
            yield record

    @abstractmethod
    async def wait_trial(self, trial_id: int) -> FrozenTrial:
        """Wait for trial ``trial_id`` to end; its record."""

    @abstractmethod
    def history(self, states: Iterable[TrialState] | None = None) -> list[FrozenTrial]:
        """Finished trials (or those in ``states``), by id, including earlier runs."""

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


class OneShotContext(ABC):
    """What a strategy that evaluates on its own (one-shot) needs besides its
    ``StrategyContext``: the space and evaluator as given, a way to record what it
    evaluated, progress, and checkpoints. Get it with ``oneshot_context(ctx)``."""

    model_space: Any
    """The space exactly as given to the experiment (e.g. a ``nasflow.nn.ModelSpace``)."""
    evaluator: Any
    """The experiment's evaluator (one-shot strategies read its data and settings)."""
    ray: tuple[str | None, dict[str, float]] | None = None
    """With ``training_service="ray"``: ``(ray_address, trial_resources)``, and the
    supernet trains as one Ray task asking those resources (``None``: in this process)."""

    @abstractmethod
    async def record(self, sample: Sample, value: Any, *,
                     intermediates: Iterable[tuple[int, Any]] = ()) -> FrozenTrial:
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


class ForwardsOneShot:
    """A context's one-shot members, forwarded to its ``oneshot``: the earlier, wider
    ``StrategyContext`` had them on the context itself, and strategies written against it
    still call them there."""

    oneshot: OneShotContext

    @property
    def model_space(self) -> Any:
        """``self.oneshot.model_space``."""
        return self.oneshot.model_space

    @property
    def evaluator(self) -> Any:
        """``self.oneshot.evaluator``."""
        return self.oneshot.evaluator

    async def record(self, sample: Sample, value: Any, *,
                     intermediates: Iterable[tuple[int, Any]] = ()) -> FrozenTrial:
        """``self.oneshot.record``."""
        return await self.oneshot.record(sample, value, intermediates=intermediates)

    async def progress(self, step: int | None = None, **values: Any) -> None:
        """``self.oneshot.progress``."""
        await self.oneshot.progress(step, **values)

    async def save_checkpoint(self, name: str, obj: Any) -> None:
        """``self.oneshot.save_checkpoint``."""
        await self.oneshot.save_checkpoint(name, obj)

    async def load_checkpoint(self, name: str) -> Any | None:
        """``self.oneshot.load_checkpoint``."""
        return await self.oneshot.load_checkpoint(name)


def oneshot_context(ctx: StrategyContext) -> OneShotContext:
    """The ``OneShotContext`` that comes with ``ctx`` (an experiment's context has one,
    as ``ctx.oneshot``); ``TypeError`` saying so if it has none."""
    tools = getattr(ctx, "oneshot", None)
    if isinstance(tools, OneShotContext):
        return tools
    if isinstance(ctx, OneShotContext):
        return ctx
    raise TypeError(
        f"a one-shot strategy needs the experiment's one-shot context, and {ctx!r} has "
        "none: run it in an nf.Experiment, or give your StrategyContext a `oneshot` "
        "attribute that is an nf.strategy.OneShotContext"
    )


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
