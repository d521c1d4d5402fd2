"""What a user feeds a search besides its strategy's proposals: samples to evaluate first
(``exp.enqueue``) and known results to learn from (``exp.add_results``, ``warm_start``).

``Feed`` holds what was given and not taken yet; the run takes it: the strategy's
context submits queued samples before the strategy's next proposal (every submission
waits for capacity in ``ExperimentContext.wait_capacity``, which serves the queue first),
and the run publishes queued results as trials that ended SUCCEEDED without running.

Everything given is checked before any of it is queued (``check_samples``,
``check_results``): one bad entry refuses the whole call, naming the entry, the label and
the value, and nothing changes. Samples and results equal to a trial of the experiment's
history, or to one queued already, are dropped, as a strategy's repeated proposal would be.

Pure, like the ledger: no event loop, no I/O (``tests/experiment/test_feed.py``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from nasflow._kernel import Objective, TrialState
from nasflow.events import (
    Event,
    FinalMetric,
    IntermediateMetric,
    TrialEnded,
    TrialStarted,
    TrialSubmitted,
)
from nasflow.exceptions import MetricError, SampleValidationError
from nasflow.space import Sample, SearchSpace, sample_hash

__all__ = ["FEED_OPS", "Feed", "KnownResult", "check_results", "check_samples",
           "known_trial_events"]

FEED_OPS = ("enqueue", "add_results")
"""The runtime changes that feed a search (recorded in the store's ``changes`` table with
their entries as the arguments; a resume takes them again)."""

Seen = Callable[[str], bool]
"""Whether a sample hash is in the experiment's history."""


@dataclass(frozen=True, slots=True)
class KnownResult:
    """A result to store as a trial that ended SUCCEEDED without running."""

    sample: Sample
    hash: str
    metric: float
    """The primary objective."""
    value: float | dict[str, float]
    """The whole result (a dict for several objectives)."""
    origin: str | None
    """``"added"`` (``exp.add_results``), ``"imported"`` (``warm_start``), or ``None``
    (a one-shot strategy's ``record``)."""

    def to_dict(self) -> dict[str, Any]:
        """The entry as ``add_results`` takes it."""
        return {"sample": self.sample, "metric": self.value}


def known_trial_events(result: KnownResult, trial_id: int, now: float,
                       intermediates: Iterable[tuple[int, float, Any]] = ()) -> list[Event]:
    """The events of a trial that ended SUCCEEDED with ``result`` without running (and
    ``(step, primary, value)`` intermediates): one sequence, so that it is stored,
    exported and shown to the strategy like any trial."""
    events: list[Event] = [
        TrialSubmitted(time=now, trial_id=trial_id, sample=result.sample, hash=result.hash,
                       origin=result.origin),
        TrialStarted(time=now, trial_id=trial_id),
    ]
    events += [IntermediateMetric(time=now, trial_id=trial_id, step=step, value=value,
                                  metric=metric) for step, metric, value in intermediates]
    events += [FinalMetric(time=now, trial_id=trial_id, value=result.value, metric=result.metric),
               TrialEnded(time=now, trial_id=trial_id, state=TrialState.SUCCEEDED)]
    return events


def _one(samples: Mapping[str, Any] | Iterable[Mapping[str, Any]]) -> list[Any]:
    # one dict, or several: a dict is never taken for an iterable of its labels
    return [samples] if isinstance(samples, Mapping) else list(samples)


def _refused(exc: SampleValidationError, index: int, count: int, what: str
             ) -> SampleValidationError:
    where = f" ({what} {index} of the {count} given; none was taken)" if count > 1 else ""
    return SampleValidationError(exc.label, exc.value, exc.allowed,
                                 reason=f"{exc.reason}{where}", constraint=exc.constraint)


def check_samples(space: SearchSpace,
                  samples: Mapping[str, Any] | Iterable[Mapping[str, Any]]) -> list[Sample]:
    """Each sample canonicalised; ``SampleValidationError`` naming the first bad one."""
    given = _one(samples)
    out = []
    for i, sample in enumerate(given):
        try:
            out.append(space.canonicalize(sample))
        except SampleValidationError as exc:
            raise _refused(exc, i, len(given), "sample") from None
    return out


def check_results(space: SearchSpace, objective: Objective,
                  results: Mapping[str, Any] | Iterable[Mapping[str, Any]], *,
                  origin: str = "added") -> list[KnownResult]:
    """Each ``{"sample": {...}, "metric": value}`` checked against the space and the
    objective (``value`` as an evaluator returns it: a number, or a dict with every
    objective); the first bad one raises ``SampleValidationError`` or ``MetricError``.

    An entry may carry the other fields of an exported trial (``nasflow export``, JSON
    lines): ``metrics`` (the whole result) is then used, and a ``state`` other than
    SUCCEEDED is refused.
    """
    given = _one(results)
    out = []
    for i, entry in enumerate(given):
        where = f"result {i} of the {len(given)} given" if len(given) > 1 else "the result"
        if not isinstance(entry, Mapping) or "sample" not in entry or (
                "metric" not in entry and "metrics" not in entry):
            raise MetricError(
                f"{where} is {entry!r}; each result is a dict "
                '{"sample": {label: value, ...}, "metric": value}. None was added.')
        state = entry.get("state", "SUCCEEDED")
        if state != "SUCCEEDED":
            raise MetricError(
                f"{where} has state {state!r}: only results of trials that succeeded can "
                "be added (leave the others out). None was added.")
        try:
            sample = space.canonicalize(entry["sample"])
        except SampleValidationError as exc:
            raise _refused(exc, i, len(given), "result") from None
        value = entry.get("metrics")
        if value is None:
            value = entry.get("metric")
        try:
            metric, normal = objective.parse(value)
        except MetricError as exc:
            raise MetricError(f"{where}: {exc}. None was added.") from None
        out.append(KnownResult(sample, sample_hash(sample), metric, normal, origin))
    return out


class Feed:
    """Samples to evaluate first and results to learn from, until the run takes them."""

    def __init__(self) -> None:
        self._samples: deque[tuple[Sample, str]] = deque()
        self._results: deque[KnownResult] = deque()
        # hashes of everything queued, kept once taken: until its TrialSubmitted has
        # reached the ledger (publishing may wait for a subscriber), a taken sample is
        # neither queued nor seen
        self._queued: set[str] = set()
        self.listener: Callable[[], None] | None = None
        """Called when something is queued (the run wakes what takes it)."""

    def __bool__(self) -> bool:
        return bool(self._samples or self._results)

    @property
    def samples(self) -> int:
        """How many samples wait to be evaluated."""
        return len(self._samples)

    # --- giving -------------------------------------------------------------------------

    def enqueue(self, samples: Iterable[Sample], seen: Seen) -> list[Sample]:
        """Queue the (checked) samples that are new; those queued, in order."""
        out = []
        for sample in samples:
            h = sample_hash(sample)
            if seen(h) or h in self._queued:
                continue
            self._queued.add(h)
            self._samples.append((sample, h))
            out.append(sample)
        self._changed(out)
        return out

    def add(self, results: Iterable[KnownResult], seen: Seen) -> list[KnownResult]:
        """Queue the (checked) results whose samples are new; those queued, in order."""
        out = []
        for result in results:
            if seen(result.hash) or result.hash in self._queued:
                continue
            self._queued.add(result.hash)
            self._results.append(result)
            out.append(result)
        self._changed(out)
        return out

    def give(self, op: str, entries: Any, space: SearchSpace, objective: Objective,
             seen: Seen) -> list[dict[str, Any]]:
        """``enqueue`` or ``add_results`` (``FEED_OPS``): check ``entries``, queue the new
        ones; the entries queued (samples, or ``{"sample", "metric"}``), as the store
        records them and a resume takes them again."""
        if op == "enqueue":
            return self.enqueue(check_samples(space, entries), seen)
        if op == "add_results":
            return [r.to_dict() for r in self.add(check_results(space, objective, entries),
                                                 seen)]
        raise ValueError(f"not a feeding op: {op!r}; the ops are {FEED_OPS}")

    def _changed(self, queued: list[Any]) -> None:
        if queued and self.listener is not None:
            self.listener()

    # --- taking -------------------------------------------------------------------------

    def next_sample(self, seen: Seen) -> tuple[Sample, str] | None:
        """The oldest queued sample not in the history by now (a strategy may have
        proposed it meanwhile), and its hash; ``None`` when none is left."""
        while self._samples:
            sample, h = self._samples.popleft()
            if not seen(h):
                return sample, h
        return None

    def take_results(self) -> list[KnownResult]:
        """Every queued result, oldest first."""
        out = list(self._results)
        self._results.clear()
        return out
