"""Every error nasflow raises on purpose.

The tree (``tests/test_exports.py`` checks it against the classes)::

    NasflowError
    ├── ConfigError                 a configuration field has a bad value
    ├── SpaceError                  a search space is not usable
    │   ├── SpaceBuildError         a model space could not be built
    │   ├── SampleValidationError   a sample does not belong to its space
    │   ├── SpaceExhaustedError     no (further) valid sample can be drawn
    │   └── UnsupportedSpaceError   no supernet part for it     (nasflow.strategy.oneshot)
    ├── MetricError                 an evaluator reported something that is not a metric
    ├── TrialStopped                raised inside an evaluator whose trial was stopped
    ├── RankError                   a rank of a devices=N trial died without saying why
    ├── BudgetExhausted             a strategy submitted past the experiment's budget
    ├── StrategyError               a strategy raised; the experiment failed
    ├── RepeatedFailureError        the first trials all failed the same way; it stopped
    ├── StoreError                  the experiment store is missing, corrupt or unwritable
    │   └── StoreDamagedError       its database fails SQLite's integrity check
    ├── ResumeError                 an experiment cannot be resumed as asked
    │   └── ExperimentLockedError   another run (process) holds the experiment's lock
    ├── ExperimentNotFoundError     no experiment with that id or path
    ├── ChangeRefusedError          a runtime change (update, kill, ...) was refused
    ├── WorkerSetupError            workers cannot load the experiment's space/evaluator
    ├── PayloadError                the space/evaluator cannot be sent to workers
    ├── ManagerGoneError            the trial manager went away for good
    ├── ManagerConnectionError      the manager cannot be reached         (nasflow.manager)
    ├── CheckpointMismatchError     a state dict does not fit a model         (nasflow.hub)
    ├── ExperimentFileError         a file for ``nasflow run`` yields no experiment (cli)
    └── ProtocolError               a command-channel message is unacceptable (.protocol)
        ├── MalformedMessageError   not JSON, or a field missing or of the wrong type
        ├── UnknownMessageTypeError no message of this protocol version has that type
        ├── UnexpectedMessageError  a message this side does not accept in its state
        ├── UnauthorizedError       pickled code over an unauthenticated connection
        ├── MessageTooLargeError    a frame or message over the size limit
        ├── SequenceError           sequence numbers do not line up
        ├── VersionMismatchError    the peer speaks another protocol version
        ├── RateLimitError          the peer sent too many messages per second
        ├── SessionEndedError       the session said or heard ``bye``
        └── PeerError               the peer sent an ``error`` message

The errors marked with a package are defined and exported there; the others are defined
here and exported by ``nasflow`` too.

Each error carries the offending values as attributes and says what to do in its message.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BudgetExhausted",
    "ChangeRefusedError",
    "ConfigError",
    "ExperimentLockedError",
    "ExperimentNotFoundError",
    "ManagerGoneError",
    "MetricError",
    "NasflowError",
    "PayloadError",
    "RankError",
    "RepeatedFailureError",
    "ResumeError",
    "SampleValidationError",
    "SpaceBuildError",
    "SpaceError",
    "SpaceExhaustedError",
    "StoreDamagedError",
    "StoreError",
    "StrategyError",
    "TrialStopped",
    "WorkerSetupError",
]


class NasflowError(Exception):
    """Base class of every error nasflow raises on purpose."""


class ConfigError(NasflowError, ValueError):
    """A configuration field has a bad value."""

    def __init__(self, field: str, value: Any, expected: str) -> None:
        self.field = field
        """The name of the offending field."""
        self.value = value
        """The value it was given."""
        self.expected = expected
        """What would have been accepted."""
        super().__init__(f"config field {field!r}: got {value!r}; expected {expected}")


class SpaceError(NasflowError):
    """A search space is not usable."""


class SpaceBuildError(SpaceError, TypeError):
    """A model space could not be built; the message names the module and the reason."""


class SampleValidationError(SpaceError, ValueError):
    """A sample does not belong to its space.

    ``label`` is the offending label (``None`` when the sample as a whole is wrong, e.g. it
    is not a dict), ``value`` the value found there, ``allowed`` a description of what the
    space accepts and ``reason`` what is wrong.
    """

    def __init__(
        self, label: str | None, value: Any, allowed: str, *, reason: str, constraint: bool = False
    ) -> None:
        self.label = label
        """The offending label, or ``None``."""
        self.value = value
        """The offending value."""
        self.allowed = allowed
        """What the space accepts there."""
        self.reason = reason
        """What is wrong, in words."""
        self.constraint = constraint
        """Whether ``label`` names a violated constraint rather than a choice."""
        kind = "constraint" if constraint else "sample label"
        where = f"{kind} {label!r}" if label is not None else "sample"
        super().__init__(f"{where}: {reason}; allowed: {allowed}")


class SpaceExhaustedError(SpaceError):
    """No (further) valid sample can be drawn from a space, e.g. constraints reject them all."""


class MetricError(NasflowError, ValueError):
    """An evaluator reported or returned something that is not a usable metric."""


class TrialStopped(NasflowError):  # noqa: N818 - reads as an event, like StopIteration
    """Raised by ``trial.report()`` once the trial was stopped, cancelled or timed out.

    Evaluators need not catch it: letting it propagate ends the trial in the state the
    experiment already chose (EARLY_STOPPED, CANCELED or TIMEOUT).
    """


class RankError(NasflowError, RuntimeError):
    """A rank of a multi-process (``devices=N``) trial died without saying why: a signal,
    the OOM killer, a crash in native code. The trial fails; its other ranks are killed."""


class BudgetExhausted(NasflowError):  # noqa: N818 - a condition, not a failure
    """A strategy submitted a trial after the experiment's budget ran out.

    Strategies may let it propagate: the experiment then ends normally.
    """


class StrategyError(NasflowError):
    """The search strategy raised; the experiment failed and kept every finished trial."""


class RepeatedFailureError(NasflowError):
    """The first ``ExperimentConfig.max_identical_failures`` trials all failed with the
    same error, so the experiment stopped (state FAILED) instead of repeating it.

    ``error`` is that error (a ``nasflow.TrialError``), ``count`` how many trials had it.
    """

    def __init__(self, message: str, error: Any, count: int) -> None:
        self.error = error
        """The error every one of those trials ended with (a ``nasflow.TrialError``)."""
        self.count = count
        """How many trials failed with it."""
        super().__init__(message)


class StoreError(NasflowError):
    """The experiment store is missing, corrupt or cannot be written."""


class StoreDamagedError(StoreError):
    """The experiment database fails SQLite's ``PRAGMA quick_check``: it is not resumed
    (nothing more is written to it); the message says how to salvage it."""

    def __init__(self, message: str, *, path: Any, problem: str) -> None:
        self.path = path
        """The damaged database file."""
        self.problem = problem
        """What ``quick_check`` reported."""
        super().__init__(message)


class ResumeError(NasflowError):
    """An experiment cannot be resumed as asked (it still runs, or the config or space
    differs); ``differences`` lists ``(name, stored, given)`` for each disagreement."""

    def __init__(self, message: str, differences: list[tuple[str, Any, Any]] | None = None):
        self.differences = differences or []
        """``[(name, stored value, given value), ...]``."""
        super().__init__(message)


class ExperimentLockedError(ResumeError):
    """Another run holds the experiment's lock (``experiment.lock``): only one process at
    a time runs an experiment. Raised at once, never waited on."""

    def __init__(self, message: str, *, pid: int | None, host: str | None, lock: Any):
        self.pid = pid
        """The process that holds the lock (``None`` if it could not be read)."""
        self.host = host
        """The host that process runs on."""
        self.lock = lock
        """The lock file."""
        super().__init__(message)


class ChangeRefusedError(NasflowError, ValueError):
    """A change to a running experiment (``exp.update``, ``exp.kill_trial``, ``nasflow
    update``, ...) was refused: nothing was changed, nothing was recorded."""

    def __init__(self, op: str, args: Any, reason: str) -> None:
        self.op = op
        """The change asked for (``"update"``, ``"kill"``, ...)."""
        self.args_given = args
        """Its arguments, as given."""
        self.reason = reason
        """What was wrong, and what to do instead."""
        super().__init__(f"{op} refused, nothing changed: {reason}")


class ExperimentNotFoundError(NasflowError, LookupError):
    """No experiment with that id (under ``NASFLOW_HOME``) or at that path."""


class WorkerSetupError(NasflowError):
    """A worker could not load the experiment's space and evaluator (e.g. an import error).

    ``error`` holds the worker's exception type, message and traceback.
    """

    def __init__(self, error: Any) -> None:
        self.error = error
        """What the worker raised (a ``nasflow.TrialError``)."""
        super().__init__(
            f"a worker could not load the experiment's space and evaluator: {error}. "
            "Everything they refer to must be importable in the worker processes (same "
            "Python environment; modules next to your script are found through sys.path). "
            f"Worker traceback:\n{error.traceback}"
        )


class PayloadError(NasflowError):
    """The space or the evaluator cannot be shipped to worker processes."""


class ManagerGoneError(NasflowError):
    """The trial manager went away for good (it shut down, or never came back)."""
