"""The messages of both command channels, as frozen dataclasses.

Every message is one JSON object ``{"type": "<name>", ...fields}``; the class attribute
``TYPE`` holds the name. *Control* messages (``hello``, ``welcome``, ``ack``, ``error``,
``bye``, ``heartbeat``) are about the connection and carry no sequence number. Every other
message is *sequenced*: the session gives it a ``seq``, keeps it until the peer acks it and
resends it after a reconnect, so it is delivered exactly once.

Who sends what (the client is the side that connects)::

    tuner channel   experiment -> manager   setup, submit, cancel
                    manager -> experiment   capacity (its answer to a setup lists the
                                            trials the manager holds), setup_failed,
                                            trial_started, metric, metrics, final_metric,
                                            checkpoint, trial_ended
    trial channel   manager -> worker       setup, run_trial, cancel
                    worker -> manager       setup_failed, trial_started, metric, metrics,
                                            final_metric, checkpoint, trial_ended

The trial events are the same classes on both channels, so the manager forwards what a
worker sent without rebuilding it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, ClassVar

from nasflow._kernel import TrialError, TrialState

__all__ = [
    "Ack",
    "Bye",
    "Cancel",
    "Capacity",
    "Checkpoint",
    "Concurrency",
    "ControlMessage",
    "ErrorMessage",
    "FinalMetric",
    "Heartbeat",
    "HeldTrial",
    "Hello",
    "Message",
    "Metric",
    "MetricValue",
    "Metrics",
    "PROTOCOL_VERSION",
    "Role",
    "RunTrial",
    "SequencedMessage",
    "Setup",
    "SetupFailed",
    "Submit",
    "TrialEnded",
    "TrialRef",
    "TrialStarted",
    "Welcome",
    "accepted_by_client",
    "accepted_by_server",
]

PROTOCOL_VERSION = 2
"""The version in ``hello``/``welcome``; both sides must match exactly. Bump it on any
change an older peer would reject or misread (adding an optional field is not one:
receivers ignore fields they do not know). Version 2 added the ``metrics`` message."""

MetricValue = float | dict[str, float]
"""A metric as the evaluator reported it: a float, or a dict of named floats."""


class Role(enum.StrEnum):
    """Who the client of a channel is; the role names the channel."""

    EXPERIMENT = "experiment"
    """The experiment's ``ManagerEngine``, on the tuner command channel."""
    WORKER = "worker"
    """A warm worker process, on the trial command channel."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TrialRef:
    """Names one attempt of one trial of one experiment (used in ``hello.running``)."""

    experiment_id: str
    trial_id: int
    attempt: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class HeldTrial:
    """One attempt of one trial the manager holds for an experiment (``capacity.held``)."""

    trial_id: int
    attempt: int = 0
    queued: bool = False
    """No worker has taken it yet (else it runs, or it ended and some of its events have
    not been acked by the experiment yet)."""


# ---- control messages (no seq) ---------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Hello:
    """The client's first message on every connection.

    ``session`` is the client's session id, stable across reconnects and unique per process
    (a process that lost its state must use a new one). ``peer_session`` is the server
    session id from the last ``welcome`` (``None`` on first contact); ``last_seq`` is the
    highest seq from that server the client has acked; every seq below ``resend_from`` was
    acked by the server. ``running`` lists the trials the client has in flight, so a
    manager that lost its memory can rebuild (worker) or fail (experiment) them.
    """

    TYPE: ClassVar[str] = "hello"
    version: int = PROTOCOL_VERSION
    role: Role
    session: str
    peer_session: str | None = None
    last_seq: int = 0
    resend_from: int = 1
    running: tuple[TrialRef, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Welcome:
    """The server's answer to a ``hello``; the connection is open once it arrives.

    ``session`` is the server's session id (a new one after a manager restart);
    ``last_seq`` is the highest seq of this client the server has acked; every server seq
    below ``resend_from`` was acked by the client.
    """

    TYPE: ClassVar[str] = "welcome"
    version: int = PROTOCOL_VERSION
    session: str
    last_seq: int = 0
    resend_from: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Ack:
    """Every message with a seq up to and including ``seq`` is durable on the receiver."""

    TYPE: ClassVar[str] = "ack"
    seq: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorMessage:
    """The sender found a protocol error and will close the connection.

    ``code`` is a ``ProtocolError.code``, ``message`` the error in words.
    """

    TYPE: ClassVar[str] = "error"
    code: str
    message: str
    offending_type: str | None = None
    offending_seq: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Bye:
    """The sender ends the session for good: it will not reconnect with this session id.

    Unacked messages of either side are dropped; send ``bye`` only once nothing is unacked.
    """

    TYPE: ClassVar[str] = "bye"
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Heartbeat:
    """Keeps an idle connection alive through proxies; the receiver does nothing with it."""

    TYPE: ClassVar[str] = "heartbeat"


# ---- sequenced messages ----------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Setup:
    """The experiment's space and evaluator, cloudpickled (base64 on the wire).

    Experiment → manager once per experiment (with ``concurrency``, the most slots it
    wants at once, ``trial_timeout`` in seconds, and ``devices``, the slots one trial takes);
    manager → worker once per experiment before its first ``run_trial``. Accepted only over
    an authenticated connection.
    """

    TYPE: ClassVar[str] = "setup"
    experiment_id: str
    payload: bytes = field(default=b"", repr=False)
    """The pickled setup itself; empty when it travels out of band (``payload_file``)."""
    concurrency: int | None = None
    trial_timeout: float | None = None
    payload_file: str | None = None
    """A setup too large for a frame travels out of band: the absolute path of a file (on
    the receiver's machine, mode 0600) that holds the payload bytes. The receiver reads it
    and checks ``payload_size`` and ``payload_sha256`` before unpickling anything."""
    payload_sha256: str | None = None
    """With ``payload_file``: the SHA-256 of the payload bytes (hex)."""
    payload_size: int | None = None
    """With ``payload_file``: the payload's size in bytes."""
    devices: int | None = None
    """The processes (and so the slots) one trial of this experiment takes: a trial with
    ``devices=N`` runs on one worker while N - 1 other workers are held idle for it.
    ``None`` means 1."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SetupFailed:
    """A worker could not load an experiment's payload (e.g. ``ModuleNotFoundError``).

    Worker → manager, forwarded manager → experiment, which should fail with ``error``.
    """

    TYPE: ClassVar[str] = "setup_failed"
    experiment_id: str
    error: TrialError
    origin: str | None = None
    """Set by the manager when it forwards the event to the experiment: the session id of
    the worker that sent it (``None`` from a worker, and on events the manager made)."""
    origin_seq: int | None = None
    """With ``origin``: the event's seq in that worker's session. A restarted manager may
    forward a worker's resent event twice; the experiment drops it by (origin, origin_seq)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Submit:
    """Experiment → manager: run this sample when capacity allows."""

    TYPE: ClassVar[str] = "submit"
    experiment_id: str
    trial_id: int
    attempt: int = 0
    sample: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class RunTrial:
    """Manager → worker: run this sample now, with the experiment's ``setup``."""

    TYPE: ClassVar[str] = "run_trial"
    experiment_id: str
    trial_id: int
    attempt: int = 0
    sample: dict[str, Any]
    gpus: str | None = None
    """For a trial on several processes (``devices=N``) on GPU slots: the
    ``CUDA_VISIBLE_DEVICES`` its ranks get, the worker's own GPU first, then those of the
    workers lent to it (each once). ``None``: the ranks see what the worker sees."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Cancel:
    """Stop a trial; it ends in ``state`` (CANCELED, EARLY_STOPPED or TIMEOUT).

    Experiment → manager and manager → worker. The worker stops the evaluator at its next
    report; the manager kills the worker's process tree if it does not end in time.
    """

    TYPE: ClassVar[str] = "cancel"
    experiment_id: str
    trial_id: int
    attempt: int = 0
    state: TrialState = TrialState.CANCELED
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Concurrency:
    """Experiment → manager: from now on the experiment wants up to ``concurrency``
    trials at once (``exp.update(concurrency=...)``). The manager answers with a new
    ``capacity`` grant (its fair share; an embedded manager first starts workers up to
    it)."""

    TYPE: ClassVar[str] = "concurrency"
    experiment_id: str
    concurrency: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Capacity:
    """Manager → experiment: you may have ``slots`` trials in flight (submitted, not ended).

    An absolute number, not an increment, so a grant can neither leak nor double.

    ``held`` is set in the manager's answer to a ``setup`` only (``None`` otherwise, and
    from managers that predate it): every trial of this experiment the manager still
    holds -- queued, running, or ended with events the experiment has not acked. A
    resumed experiment re-attaches those it still wants and cancels the others; the
    events of the held trials follow this message.
    """

    TYPE: ClassVar[str] = "capacity"
    slots: int
    held: tuple[HeldTrial, ...] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TrialStarted:
    """The evaluator was entered (``time`` is the worker's wall clock)."""

    TYPE: ClassVar[str] = "trial_started"
    experiment_id: str
    trial_id: int
    attempt: int = 0
    time: float
    origin: str | None = None
    """Set by the manager when it forwards the event to the experiment: the session id of
    the worker that sent it (``None`` from a worker, and on events the manager made)."""
    origin_seq: int | None = None
    """With ``origin``: the event's seq in that worker's session. A restarted manager may
    forward a worker's resent event twice; the experiment drops it by (origin, origin_seq)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Metric:
    """An intermediate metric: ``trial.report(value, step=step)``."""

    TYPE: ClassVar[str] = "metric"
    experiment_id: str
    trial_id: int
    attempt: int = 0
    step: int
    value: MetricValue
    time: float
    origin: str | None = None
    """Set by the manager when it forwards the event to the experiment: the session id of
    the worker that sent it (``None`` from a worker, and on events the manager made)."""
    origin_seq: int | None = None
    """With ``origin``: the event's seq in that worker's session. A restarted manager may
    forward a worker's resent event twice; the experiment drops it by (origin, origin_seq)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Metrics:
    """Intermediate metrics of one trial, oldest first: ``len(steps)`` reports, the i-th
    being ``trial.report(values[i], step=steps[i])`` at ``times[i]``.

    The three tuples have the same length, at least 1 and at most ``Limits.max_batch``.
    A worker sends one for the reports made in quick succession (what came in during one
    event-loop tick), so that a trial reporting thousands of metrics a second costs one
    message, one seq and one ack per batch instead of per metric. It is delivered, acked,
    resent and dropped as a duplicate as a whole; receivers publish its entries one by one.
    """

    TYPE: ClassVar[str] = "metrics"
    experiment_id: str
    trial_id: int
    attempt: int = 0
    steps: tuple[int, ...]
    values: tuple[MetricValue, ...]
    times: tuple[float, ...]
    origin: str | None = None
    """Set by the manager when it forwards the event to the experiment: the session id of
    the worker that sent it (``None`` from a worker, and on events the manager made)."""
    origin_seq: int | None = None
    """With ``origin``: the event's seq in that worker's session. A restarted manager may
    forward a worker's resent event twice; the experiment drops it by (origin, origin_seq)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FinalMetric:
    """The trial's final result (at most one per attempt)."""

    TYPE: ClassVar[str] = "final_metric"
    experiment_id: str
    trial_id: int
    attempt: int = 0
    value: MetricValue
    time: float
    origin: str | None = None
    """Set by the manager when it forwards the event to the experiment: the session id of
    the worker that sent it (``None`` from a worker, and on events the manager made)."""
    origin_seq: int | None = None
    """With ``origin``: the event's seq in that worker's session. A restarted manager may
    forward a worker's resent event twice; the experiment drops it by (origin, origin_seq)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Checkpoint:
    """The trial saved a checkpoint at ``path`` (a file the manager's host can read)."""

    TYPE: ClassVar[str] = "checkpoint"
    experiment_id: str
    trial_id: int
    attempt: int = 0
    path: str
    step: int | None = None
    time: float
    origin: str | None = None
    """Set by the manager when it forwards the event to the experiment: the session id of
    the worker that sent it (``None`` from a worker, and on events the manager made)."""
    origin_seq: int | None = None
    """With ``origin``: the event's seq in that worker's session. A restarted manager may
    forward a worker's resent event twice; the experiment drops it by (origin, origin_seq)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TrialEnded:
    """The attempt ended in a finished ``state``; ``error`` says why when it failed."""

    TYPE: ClassVar[str] = "trial_ended"
    experiment_id: str
    trial_id: int
    attempt: int = 0
    state: TrialState
    error: TrialError | None = None
    time: float
    origin: str | None = None
    """Set by the manager when it forwards the event to the experiment: the session id of
    the worker that sent it (``None`` from a worker, and on events the manager made)."""
    origin_seq: int | None = None
    """With ``origin``: the event's seq in that worker's session. A restarted manager may
    forward a worker's resent event twice; the experiment drops it by (origin, origin_seq)."""


ControlMessage = Hello | Welcome | Ack | ErrorMessage | Bye | Heartbeat
"""Messages about the connection: no seq, never resent."""

SequencedMessage = (
    Setup
    | SetupFailed
    | Submit
    | RunTrial
    | Cancel
    | Concurrency
    | Capacity
    | TrialStarted
    | Metric
    | Metrics
    | FinalMetric
    | Checkpoint
    | TrialEnded
)
"""Messages that must not be lost: sent with a seq, kept until acked."""

Message = ControlMessage | SequencedMessage
"""Any message of either channel."""

_TRIAL_EVENTS: frozenset[type[Any]] = frozenset(
    {SetupFailed, TrialStarted, Metric, Metrics, FinalMetric, Checkpoint, TrialEnded}
)
_FROM_CLIENT: dict[Role, frozenset[type[Any]]] = {
    Role.EXPERIMENT: frozenset({Setup, Submit, Cancel, Concurrency}),
    Role.WORKER: _TRIAL_EVENTS,
}
_FROM_SERVER: dict[Role, frozenset[type[Any]]] = {
    Role.EXPERIMENT: _TRIAL_EVENTS | {Capacity},
    Role.WORKER: frozenset({Setup, RunTrial, Cancel}),
}


def accepted_by_server(role: Role) -> frozenset[type[Any]]:
    """The sequenced message classes a server accepts from a client of ``role``."""
    return _FROM_CLIENT[role]


def accepted_by_client(role: Role) -> frozenset[type[Any]]:
    """The sequenced message classes a client of ``role`` accepts from its server."""
    return _FROM_SERVER[role]
