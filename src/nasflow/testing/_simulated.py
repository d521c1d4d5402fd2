"""``SimulatedEngine``: whole searches on a fake clock, thousands of trials a second.

The engine replays a learning curve per architecture on simulated time instead of
training anything. Where the curve comes from:

* a **table**: ``{sample_hash(sample): (curve, seconds_per_epoch)}``, or a function
  ``sample -> (curve, seconds_per_epoch)``. ``curve`` holds one reported value per epoch
  (a float, or a metric dict); the last one is the final result.
* no table: the experiment's **evaluator** runs (for real, off the simulated clock) and
  its ``trial.report()`` calls become the curve, ``seconds_per_step`` simulated seconds
  each. Use it for cheap surrogate evaluators.

``concurrency`` simulated workers run trials. Simulated time moves only when every task
on the event loop is blocked -- the strategy has decided all it can at this instant --
and then jumps to the next thing that happens (a reported epoch, a trial's end), so
trials end in simulated-time order and results do not depend on the speed of the
machine. Events carry simulated times. ``cancel`` (and so early stopping and the
experiment's stop) ends a trial at the current simulated time and frees its worker then.
``trial_timeout`` counts simulated seconds.

To run an ``nf.Experiment`` on it, build the experiment with
``SimulatedEngine.experiment(space, strategy, table, config)``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import heapq
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup

from nasflow._kernel import INTERRUPTED, TrialError, TrialState
from nasflow.engine import Engine, EngineSetup, InProcessEngine, TrialSpec
from nasflow.evaluator import Stop
from nasflow.events import (
    Event,
    FinalMetric,
    IntermediateMetric,
    TrialEnded,
    TrialEvent,
    TrialStarted,
)
from nasflow.exceptions import MetricError, NasflowError
from nasflow.space import sample_hash

if TYPE_CHECKING:
    from nasflow.config import ExperimentConfig
    from nasflow.experiment import Experiment
    from nasflow.strategy import Scheduler, Strategy

__all__ = ["FakeClock", "SimulatedEngine", "Table"]

Curve = tuple[Sequence[Any], float]
"""``(values reported per epoch, simulated seconds per epoch)``."""
Table = Mapping[str, Curve] | Callable[[dict[str, Any]], Curve]
"""Per-architecture curves: keyed by ``sample_hash(sample)``, or a function of the sample."""


class FakeClock:
    """A clock that moves only when told to (simulated seconds, from ``start``)."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)

    def now(self) -> float:
        """The current simulated time."""
        return self._now

    def __call__(self) -> float:
        return self._now

    def advance_to(self, t: float) -> None:
        """Move to ``t``; a clock never goes back."""
        if t < self._now:
            raise ValueError(f"a clock cannot go back from {self._now} to {t}")
        self._now = float(t)

    def advance(self, seconds: float) -> None:
        """Move ``seconds`` forward."""
        self.advance_to(self._now + seconds)

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now})"


@dataclass(slots=True)
class _Sim:
    """One trial on a simulated worker."""

    spec: TrialSpec
    start: float
    # (offset from start, event builder); built once the curve is known
    timeline: list[tuple[float, Callable[[float], Event]]] | None = None
    cursor: int = 0
    version: int = 0  # bumped to invalidate heap entries (on cancel)
    kill: Stop | None = None
    ended: bool = False
    captured: list[Event] = field(default_factory=list)  # evaluator mode: what it reported


class SimulatedEngine(Engine):
    """Replays learning curves on a ``FakeClock``; see the module docstring."""

    clock: FakeClock
    """The simulated clock: every event of its trials (and of an experiment run on it)
    carries its times."""

    def __init__(
        self,
        setup: EngineSetup,
        table: Table | None = None,
        *,
        clock: FakeClock | None = None,
        seconds_per_step: float = 1.0,
    ) -> None:
        super().__init__(setup, clock=clock if clock is not None else FakeClock())
        if table is not None and not (isinstance(table, Mapping) or callable(table)):
            raise TypeError(
                f"table must map sample_hash -> (curve, seconds_per_epoch) or be a function "
                f"sample -> (curve, seconds_per_epoch), got {type(table).__name__}"
            )
        if not seconds_per_step > 0:
            raise ValueError(f"seconds_per_step must be positive, got {seconds_per_step!r}")
        self.table = table
        """Where curves come from (``None``: the evaluator)."""
        self.seconds_per_step = seconds_per_step
        """Simulated seconds per report in evaluator mode."""
        self._running: dict[int, _Sim] = self._entries  # the base's: running trials
        self._heap: list[tuple[float, int, _Sim, int]] = []
        self._seq = itertools.count()
        self._waiting_for_curve: set[int] = set()  # evaluator mode: still evaluating
        self._wake = asyncio.Event()  # something for the driver to look at
        self._oracle: InProcessEngine | None = None

    # --- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> SimulatedEngine:
        if self.table is None:
            # entered before the base's task group (and left after it, in _release)
            s = self.setup
            oracle = InProcessEngine(EngineSetup(
                space=s.space, evaluator=s.evaluator, objective=s.objective,
                publish=self._capture, trial_directory=s.trial_directory,
                experiment_id=s.experiment_id, concurrency=s.concurrency,
                trial_timeout=None,  # timeouts count simulated time, applied on replay
            ))
            await oracle.__aenter__()
            self._oracle = oracle
        await super().__aenter__()
        return self

    async def _open(self, tg: TaskGroup) -> None:
        tg.start_soon(self._drive)

    async def _drain(self, exc: BaseException | None) -> None:
        try:
            if exc is None:
                await self.wait_idle()  # like a real engine: what was accepted finishes
        finally:
            self._closed = True
            with anyio.CancelScope(shield=True):
                # exactly one TrialEnded per trial, also when the run is torn down
                for sim in list(self._running.values()):
                    await self._end(sim, TrialState.CANCELED,
                                    TrialError(INTERRUPTED, "the experiment was cancelled"),
                                    wait=False)
        # the base then cancels the task group: the driver

    async def _release(self) -> None:
        oracle, self._oracle = self._oracle, None
        if oracle is not None:
            for trial_id in oracle.running:
                oracle.cancel(trial_id)
            await oracle.__aexit__(None, None, None)

    # --- the contract (the base does the bookkeeping) --------------------------------------

    def _accept(self, spec: TrialSpec) -> _Sim:
        return _Sim(spec, self.clock.now())

    async def _begin(self, sim: _Sim) -> None:
        spec = sim.spec
        await self.setup.publish(TrialStarted(time=sim.start, trial_id=spec.id,
                                              attempt=spec.attempt))
        if self._oracle is None:
            self._set_timeline(sim, self._from_table(sim))
        elif not sim.ended:
            self._waiting_for_curve.add(spec.id)
            await self._oracle.submit(spec)
        self._wake.set()

    def _resize(self, concurrency: int) -> None:
        # evaluator mode: the oracle computes every running trial's curve, so it must hold
        # as many trials as the simulated workers (else a grown engine's new trials wait
        # for it forever, and simulated time with them)
        if self._oracle is not None:
            self._oracle.resize(concurrency)
        self._set_capacity(concurrency)
        self._wake.set()

    def _stop_trial(self, sim: _Sim, stop: Stop) -> bool:
        if sim.ended:
            return False
        if sim.kill is None:
            sim.kill = stop
            sim.version += 1  # drop its future events
            self._push(self.clock.now(), sim)
            trial_id = sim.spec.id
            if trial_id in self._waiting_for_curve:
                self._waiting_for_curve.discard(trial_id)
                assert self._oracle is not None
                self._oracle.cancel(trial_id, stop.state, stop.reason,
                                    error_type=stop.error_type)
            self._wake.set()
        return True

    # --- curves ---------------------------------------------------------------------------

    def _from_table(self, sim: _Sim) -> list[tuple[float, Callable[[float], Event]]]:
        """The trial's events from the table (a failing lookup fails the trial at once)."""
        table, trial_id = self.table, sim.spec.id
        try:
            if isinstance(table, Mapping):
                key = sample_hash(sim.spec.sample)
                if key not in table:
                    raise KeyError(
                        f"the table has no entry for sample_hash {key} of {sim.spec.sample!r}"
                    )
                curve, seconds = table[key]
            else:
                assert table is not None
                curve, seconds = table(dict(sim.spec.sample))
            curve = list(curve)
            if not curve:
                raise MetricError(f"the table gives an empty curve for {sim.spec.sample!r}")
            if not seconds >= 0:
                raise ValueError(f"seconds per epoch must be >= 0, got {seconds!r}")
        except Exception as exc:
            return [(0.0, _ended(trial_id, TrialState.FAILED, TrialError.from_exception(exc)))]
        timeline: list[tuple[float, Callable[[float], Event]]] = []
        parse = self.setup.objective.parse
        for step, value in enumerate(curve):
            at = (step + 1) * seconds
            try:
                primary, normal = parse(value)
            except MetricError as exc:
                timeline.append((at, _ended(trial_id, TrialState.FAILED,
                                            TrialError.from_exception(exc))))
                return timeline
            timeline.append((at, functools.partial(_intermediate, trial_id, step, normal,
                                                   primary)))
        end = len(curve) * seconds
        timeline.append((end, functools.partial(_final, trial_id, normal, primary)))
        timeline.append((end, _ended(trial_id, TrialState.SUCCEEDED, None)))
        return timeline

    async def _capture(self, event: Event, *, wait: bool = True) -> None:
        """Evaluator mode: what the evaluator published, kept until it has finished."""
        assert isinstance(event, TrialEvent)
        sim = self._running.get(event.trial_id)
        if sim is None or sim.kill is not None or sim.ended:
            return  # stopped on the simulated side already
        if isinstance(event, TrialStarted):
            return  # published at the simulated start already
        sim.captured.append(event)
        if isinstance(event, TrialEnded):
            self._waiting_for_curve.discard(event.trial_id)
            self._set_timeline(sim, self._replay(sim.captured))
            self._wake.set()

    def _replay(self, events: list[Event]) -> list[tuple[float, Callable[[float], Event]]]:
        """Evaluator mode: reports ``seconds_per_step`` apart, the end after the last."""
        sps, at, reports = self.seconds_per_step, 0.0, 0
        timeline: list[tuple[float, Callable[[float], Event]]] = []
        for ev in events:
            if isinstance(ev, IntermediateMetric):
                reports += 1
                at = reports * sps
            elif isinstance(ev, (FinalMetric, TrialEnded)):
                at = max(reports, 1) * sps
            timeline.append((at, functools.partial(_retimed, ev)))
        return timeline

    def _set_timeline(self, sim: _Sim, timeline: list[tuple[float, Callable[[float], Event]]],
                      ) -> None:
        limit = self.setup.trial_timeout
        if limit is not None and timeline and timeline[-1][0] > limit:
            timeline = [(at, make) for at, make in timeline if at <= limit]
            timeline.append((limit, _ended(sim.spec.id, TrialState.TIMEOUT, TrialError(
                "Timeout", f"the trial ran longer than trial_timeout={limit}s (simulated)"))))
        sim.timeline = timeline
        self._push(sim.start + timeline[0][0], sim)

    # --- simulated time ---------------------------------------------------------------------

    def _push(self, at: float, sim: _Sim) -> None:
        heapq.heappush(self._heap, (at, next(self._seq), sim, sim.version))

    async def _drive(self) -> None:
        """Publish what happens next, moving the clock only when the loop is quiet."""
        while True:
            await _quiesce()
            now = self.clock.now()
            heap = self._heap
            while heap and heap[0][3] != heap[0][2].version:
                heapq.heappop(heap)  # invalidated by a cancel
            due = bool(heap) and heap[0][0] <= now
            # time may only move once every running trial's curve is known
            if not due and (not heap or self._waiting_for_curve):
                self._wake.clear()
                await self._wake.wait()
                continue
            self.clock.advance_to(max(now, heap[0][0]))
            now = self.clock.now()
            while heap and heap[0][0] <= now:
                _, _, sim, version = heapq.heappop(heap)
                if version == sim.version and not sim.ended:
                    await self._step(sim)

    async def _step(self, sim: _Sim) -> None:
        """Publish ``sim``'s events that are due now, and schedule its next one."""
        now = self.clock.now()
        if sim.kill is not None:
            await self._end(sim, sim.kill.state, sim.kill.error)
            return
        assert sim.timeline is not None
        timeline = sim.timeline
        while sim.cursor < len(timeline) and sim.start + timeline[sim.cursor][0] <= now:
            event = timeline[sim.cursor][1](now)
            sim.cursor += 1
            if isinstance(event, TrialEnded):
                await self._end(sim, event.state, event.error)
                return
            await self.setup.publish(event)
            if sim.kill is not None or sim.ended:  # stopped by a scheduler on that event
                return
        if sim.cursor < len(timeline):
            self._push(sim.start + timeline[sim.cursor][0], sim)

    async def _end(self, sim: _Sim, state: TrialState, error: TrialError | None, *,
                   wait: bool = True) -> None:
        sim.ended = True
        sim.version += 1
        self._waiting_for_curve.discard(sim.spec.id)
        event = TrialEnded(time=self.clock.now(), trial_id=sim.spec.id, state=state, error=error)
        try:
            await self.setup.publish(event, wait=wait)
        finally:
            self._ended(sim.spec.id)

    # --- experiments ------------------------------------------------------------------------

    @classmethod
    def experiment(
        cls,
        space: Any,
        strategy: Strategy,
        table: Table | None = None,
        config: ExperimentConfig | None = None,
        *,
        evaluator: Any = None,
        clock: FakeClock | None = None,
        seconds_per_step: float = 1.0,
        scheduler: Scheduler | None = None,
        name: str | None = None,
    ) -> Experiment:
        """An ``nf.Experiment`` whose trials run on a ``SimulatedEngine``.

        Give a ``table`` (see the module docstring), or an ``evaluator`` whose reports are
        replayed. ``config`` defaults to ``ExperimentConfig(store=False)``; keep
        ``store=False`` for bit-for-bit reproducible runs (the store writes from a thread).
        ``max_duration`` counts real seconds; bound simulated searches with ``max_trials``.
        """
        from nasflow.config import ExperimentConfig
        from nasflow.experiment import Experiment

        if table is None and evaluator is None:
            raise TypeError("SimulatedEngine.experiment needs a table or an evaluator")
        exp = Experiment(
            space, evaluator if evaluator is not None else _table_only, strategy,
            config if config is not None else ExperimentConfig(store=False),
            name=name, scheduler=scheduler,
        )
        cls.attach(exp, table, clock=clock, seconds_per_step=seconds_per_step)
        return exp

    @classmethod
    def attach(cls, exp: Experiment, table: Table | None = None, *,
               clock: FakeClock | None = None, seconds_per_step: float = 1.0) -> None:
        """Run ``exp``'s trials on a ``SimulatedEngine`` (e.g. an experiment rebuilt by
        ``Experiment.restore``, to resume a simulated search)."""
        clock = clock if clock is not None else FakeClock()
        exp.engine_factory = functools.partial(
            cls, table=table, clock=clock, seconds_per_step=seconds_per_step)

    def __repr__(self) -> str:
        source = "evaluator" if self.table is None else "table"
        return (f"SimulatedEngine({source}, concurrency={self.setup.concurrency}, "
                f"now={self.clock.now()})")


# --- event builders (called with the simulated time the event happens at) ----------------------

def _intermediate(trial_id: int, step: int, value: Any, metric: float, now: float) -> Event:
    return IntermediateMetric(time=now, trial_id=trial_id, step=step, value=value, metric=metric)


def _final(trial_id: int, value: Any, metric: float, now: float) -> Event:
    return FinalMetric(time=now, trial_id=trial_id, value=value, metric=metric)


def _ended(trial_id: int, state: TrialState, error: TrialError | None,
           ) -> Callable[[float], Event]:
    return lambda now: TrialEnded(time=now, trial_id=trial_id, state=state, error=error)


def _retimed(event: Event, now: float) -> Event:
    return dataclasses.replace(event, time=now)


def _table_only(model: Any, trial: Any) -> float:
    raise NasflowError(
        "this experiment's trials are simulated from a table; the placeholder evaluator "
        "should never run"
    )


async def _quiesce() -> None:
    """Return once no other task on this event loop can run.

    asyncio has no public check for this; anyio's ``wait_all_tasks_blocked`` polls every
    0.1 s, far too slow for thousands of simulated trials a second. The standard loop keeps
    its runnable callbacks in ``_ready``: when it is empty while we run, every other task is
    waiting for something (an event, a thread, a timer). Other loops fall back to anyio.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # another async backend (trio): its check is exact and fast
        await anyio.wait_all_tasks_blocked()
        return
    ready = getattr(loop, "_ready", None)
    if ready is None:
        await anyio.wait_all_tasks_blocked()
        return
    # not a poll on time: sleep(0) only yields, letting every ready task run until none
    # is left (how the fake clock knows the loop is idle)
    await asyncio.sleep(0)
    while ready:  # noqa: ASYNC110
        await asyncio.sleep(0)
