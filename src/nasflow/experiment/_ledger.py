"""The trial table: every trial of an experiment, and the counters that go with it.

``TrialLedger`` is the one owner of that state: the records by id, the architecture
hashes, the next trial id, how many trials are in flight, how many were submitted (the
budget's count), the attempt each trial's retries count from, and the failed attempts
waiting to run again. Nothing else writes them.

It is pure: no event loop, no I/O. It changes by ``apply(event)`` (the trial events, in
order) and by a few explicit calls (``new_id``, ``restore``, the retry queue), so it is
tested with plain values (``tests/experiment/test_ledger.py``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator

from nasflow._kernel import KNOWN_ORIGINS, TrialRecord, TrialState
from nasflow.events import Event, FinalMetric, TrialEnded, TrialStarted, TrialSubmitted
from nasflow.strategy import Budget

__all__ = ["TrialLedger"]


class TrialLedger:
    """Every trial by id, and what is in flight (see the module docstring)."""

    def __init__(self, budget: Budget, directory: Callable[[int], str]) -> None:
        self.budget = budget
        """The budget whose ``submitted`` count this ledger keeps."""
        self._directory = directory  # trial id -> its folder (made on first write)
        self._records: dict[int, TrialRecord] = {}
        self._hashes: dict[str, int] = {}  # architecture hash -> first trial with it
        self._next_id = 0
        self._inflight = 0
        self._attempt0: dict[int, int] = {}  # the attempt retries count from (resumed trials)
        self._retries: deque[TrialRecord] = deque()  # failed attempts to run again

    # --- reading --------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[TrialRecord]:
        return iter(self._records.values())

    def __getitem__(self, trial_id: int) -> TrialRecord:
        return self._records[trial_id]

    @property
    def inflight(self) -> int:
        """Trials submitted and not yet ended (an attempt waiting to retry is not)."""
        return self._inflight

    @property
    def distinct(self) -> int:
        """How many distinct architectures were submitted."""
        return len(self._hashes)

    def seen(self, hash: str) -> bool:
        """Whether a sample with this hash was submitted (in any state)."""
        return hash in self._hashes

    def history(self, states: Iterable[TrialState] | None = None) -> list[TrialRecord]:
        """Ended trials (or those in ``states``), by id."""
        wanted = set(states) if states is not None else None
        return [r for r in self._records.values()
                if r.state.finished and (wanted is None or r.state in wanted)]

    def running(self) -> list[TrialRecord]:
        """Trials submitted and not yet ended."""
        return [r for r in self._records.values() if not r.state.finished]

    def first_attempt(self, trial_id: int) -> int:
        """The attempt the retries of ``trial_id`` count from (0 but for resumed trials)."""
        return self._attempt0.get(trial_id, 0)

    # --- writing --------------------------------------------------------------------------

    def new_id(self, *, counted: bool = True) -> int:
        """A fresh trial id; ``counted`` trials count against ``max_trials``."""
        trial_id = self._next_id
        self._next_id += 1
        if counted:
            self.budget.submitted += 1
        return trial_id

    def apply(self, event: Event) -> TrialRecord | None:
        """Follow one event; the trial's record when the event ended it, else ``None``.

        A ``TrialSubmitted`` of a known id is the next attempt of that trial (a retry, or
        a trial of a resumed experiment run again): its record is replaced.
        """
        # ``type(...) is``: the cheapest test, on the per-event hot path (as in the store)
        if type(event) is TrialSubmitted:
            self._records[event.trial_id] = TrialRecord(
                id=event.trial_id, sample=event.sample, hash=event.hash,
                submitted_at=event.time, attempt=event.attempt, origin=event.origin,
                # as load_experiment gives it (the folder is made when the trial first
                # writes into it)
                directory=self._directory(event.trial_id),
            )
            self._hashes.setdefault(event.hash, event.trial_id)
            self._inflight += 1
        elif type(event) is TrialStarted:
            record = self._records[event.trial_id]
            record.state = TrialState.RUNNING
            record.started_at = event.time
        elif type(event) is FinalMetric:
            record = self._records[event.trial_id]
            record.metric, record.metrics = event.metric, event.value
        elif type(event) is TrialEnded:
            record = self._records[event.trial_id]
            if record.state.finished:
                return None  # ended already (e.g. cancelled, then the engine's own end)
            record.state, record.ended_at, record.error = event.state, event.time, event.error
            self._inflight -= 1
            return record
        return None

    def penalise(self, record: TrialRecord, metric: float) -> None:
        """Give a trial that failed without a metric the configured penalty."""
        self._records[record.id].metric = metric

    def restore(self, records: Iterable[TrialRecord], next_id: int) -> None:
        """Load the trials of a stored experiment (a resume); ids continue at ``next_id``.
        Those still WAITING/RUNNING count as in flight until they end or run again."""
        count = 0
        for record in records:
            count += record.origin not in KNOWN_ORIGINS
            self._records[record.id] = record
            self._hashes.setdefault(record.hash, record.id)
            if not record.state.finished:
                self._inflight += 1
        self._next_id = next_id
        self.budget.submitted = count

    def rerun_from(self, trial_id: int, attempt: int) -> None:
        """A resumed trial runs again as ``attempt``: its retries count from there."""
        self._attempt0[trial_id] = attempt

    # --- failed attempts that run again (ExperimentConfig.retry) ----------------------------

    @property
    def retries(self) -> int:
        """Failed attempts waiting to run again."""
        return len(self._retries)

    def queue_retry(self, record: TrialRecord) -> None:
        """``record``'s attempt failed and runs again."""
        self._retries.append(record)

    def next_retry(self) -> TrialRecord | None:
        """The oldest attempt waiting to run again (still queued), or ``None``."""
        return self._retries[0] if self._retries else None

    def retry_submitted(self) -> None:
        """The oldest waiting attempt was submitted again."""
        self._retries.popleft()
