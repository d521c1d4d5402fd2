"""The one path every runtime change of an experiment takes: validate, apply, record.

Whether it comes from the API (``await exp.update(concurrency=8)``, ``await
exp.kill_trial(17)``), from another process (``nasflow update``, ``nasflow trial kill``,
through the control endpoint, ``_control.py``) or from the dashboard, a change is
``ChangeDesk.apply(op, args, source=...)``:

1. the handler registered for ``op`` validates ``args`` against the experiment as it is
   now, and refuses with ``ChangeRefusedError`` (saying what was wrong and what to do) before
   it changes anything;
2. it applies the change and returns what it did (a JSON-able dict with a ``message``);
3. the desk records a ``ChangeApplied`` event (who: ``source``; what: ``op`` and
   ``args``; when; the result): the hub's sinks put it into the store's ``changes`` table,
   and ``apply`` returns only once that is committed, so an acknowledged change survives
   ``kill -9``. ``nasflow show`` lists the table; a resume reads it back.

Changes are applied one at a time (a lock), so two clients cannot interleave a
validation and an application. A refused change records nothing.

The control endpoint serves every op of the desk (``ChangeDesk.ops``) without knowing
them: a new kind of change is one ``register(op, handler)`` call.

``update`` and ``kill`` (this module's ``check_update``/``check_kill`` validate, pure;
``RunChanges`` applies them to a running ``Run``) are the built-in ones.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import anyio

from nasflow._kernel import KILLED, TrialState
from nasflow.config import ExperimentConfig
from nasflow.exceptions import ChangeRefusedError, ConfigError
from nasflow.experiment._ledger import TrialLedger
from nasflow.store import ExperimentStore
from nasflow.strategy import Budget

__all__ = ["UPDATABLE", "ChangeDesk", "Handler", "LiveRun", "Recorder", "RunChanges", "check_kill",
           "check_update"]

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
"""Validates and applies one change: ``args -> result``; raises ``ChangeRefusedError``."""

Recorder = Callable[[str, dict[str, Any], str, dict[str, Any]], Awaitable[None]]
"""``(op, args, source, result)``: makes the change durable (the run's, while it runs)."""

UPDATABLE = ("concurrency", "max_trials", "max_duration")
"""The config fields ``update`` changes while the experiment runs."""

KILL_REASON = "killed by the user"


class ChangeDesk:
    """The handlers of an experiment's runtime changes, and the path through them."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}
        self._recorder: Recorder | None = None
        self._lock = anyio.Lock()

    def register(self, op: str, handler: Handler) -> None:
        """Make ``op`` a change (the API, the CLI and the dashboard all reach it)."""
        self._handlers[op] = handler

    @property
    def ops(self) -> tuple[str, ...]:
        """The changes this experiment accepts."""
        return tuple(sorted(self._handlers))

    def record_with(self, recorder: Recorder | None) -> None:
        """Record applied changes with ``recorder`` (``None``: no run, nothing to record)."""
        self._recorder = recorder

    async def apply(self, op: str, args: Mapping[str, Any], *, source: str = "api"
                    ) -> dict[str, Any]:
        """Validate, apply and record one change; its result. ``ChangeRefusedError`` (nothing
        changed, nothing recorded) if it is not acceptable."""
        handler = self._handlers.get(op)
        if handler is None:
            raise ChangeRefusedError(op, dict(args), f"there is no such change; the changes are "
                                f"{', '.join(self.ops)}")
        given = dict(args)
        async with self._lock:
            result = await handler(dict(given))
            if self._recorder is not None:
                await self._recorder(op, given, source, result)
        return result


# --- update -------------------------------------------------------------------------------

def check_update(args: Mapping[str, Any], *, config: ExperimentConfig, submitted: int,
                 elapsed: float) -> ExperimentConfig:
    """The config after ``update(**args)``, validated; ``ChangeRefusedError`` if a field is not
    updatable, has a bad value, or would set a budget below what already ran
    (``submitted`` trials, ``elapsed`` seconds of this run)."""
    unknown = sorted(set(args) - set(UPDATABLE))
    if unknown:
        raise ChangeRefusedError("update", dict(args), f"{', '.join(map(repr, unknown))} cannot "
                            f"be changed while the experiment runs; update changes "
                            f"{', '.join(UPDATABLE)}")
    if not args:
        raise ChangeRefusedError("update", {}, f"nothing to change: give one of "
                            f"{', '.join(UPDATABLE)}")
    concurrency = args.get("concurrency", config.concurrency)
    if "concurrency" in args and (isinstance(concurrency, bool)
                                  or not isinstance(concurrency, int) or concurrency < 1):
        raise ChangeRefusedError("update", dict(args), f"concurrency must be a whole number >= 1, "
                            f"got {concurrency!r}")
    try:
        new = config.replace(**args)
    except ConfigError as exc:
        raise ChangeRefusedError("update", dict(args), str(exc)) from exc
    if new.max_trials is not None and new.max_trials < submitted:
        raise ChangeRefusedError("update", dict(args), f"max_trials={new.max_trials} is below the "
                            f"{submitted} trials already submitted; give at least {submitted} "
                            "(or None for no limit)")
    duration = new.max_duration
    if duration is not None and float(duration) <= elapsed:
        raise ChangeRefusedError("update", dict(args), f"max_duration={duration}s is not more than "
                            f"the {elapsed:.0f}s this run has already taken; give more (or "
                            "None for no limit)")
    return new


def describe_update(old: ExperimentConfig, new: ExperimentConfig) -> dict[str, Any]:
    """``{"changed": {field: [old, new]}, "message": ...}``."""
    changed = {k: [getattr(old, k), getattr(new, k)] for k in UPDATABLE
               if getattr(old, k) != getattr(new, k)}
    text = ", ".join(f"{k} {a} -> {b}" for k, (a, b) in changed.items()) or "nothing changed"
    return {"changed": changed, "message": text}


# --- kill ---------------------------------------------------------------------------------

def check_kill(args: Mapping[str, Any], ledger: TrialLedger) -> tuple[int, str, str | None]:
    """``(trial id, reason, message)`` for ``kill``: ``message`` is set when there is
    nothing to kill (the trial has ended). ``ChangeRefusedError`` for a bad or unknown id."""
    trial = args.get("trial")
    if not isinstance(trial, int) or isinstance(trial, bool):
        raise ChangeRefusedError("kill", dict(args), f"trial must be an id, got {trial!r}")
    extra = sorted(set(args) - {"trial", "reason"})
    if extra:
        raise ChangeRefusedError("kill", dict(args), f"unknown field(s) {', '.join(extra)}; kill "
                            "takes trial and reason")
    reason = str(args.get("reason") or KILL_REASON)[:200]
    try:
        record = ledger[trial]
    except KeyError:
        ids = f"ids 0 to {len(ledger) - 1}" if len(ledger) else "none yet"
        raise ChangeRefusedError("kill", dict(args), f"experiment has no trial {trial} "
                            f"(trials: {ids}); see nasflow trials ID") from None
    if record.state.finished:
        return trial, reason, (f"trial {trial} had already ended ({record.state.value}); "
                               "nothing to kill")
    return trial, reason, None


class LiveRun(Protocol):
    """What ``RunChanges`` needs of a running ``Run``."""

    config: ExperimentConfig
    budget: Budget
    ledger: TrialLedger
    store: ExperimentStore | None

    def elapsed(self) -> float: ...

    def set_max_duration(self, seconds: float | None) -> None: ...

    def resize(self, concurrency: int) -> None: ...

    def kill(self, trial_id: int, state: TrialState, reason: str, *, error_type: str = ""
             ) -> bool: ...


class RunChanges:
    """``update`` and ``kill`` applied to a running ``Run`` (its engine, budget, deadline
    and store); the facade routes to it while the run goes on."""

    def __init__(self, run: LiveRun) -> None:
        self._run = run

    async def update(self, args: dict[str, Any]) -> dict[str, Any]:
        run = self._run
        old = run.config
        new = check_update(args, config=old, submitted=run.budget.submitted,
                           elapsed=run.elapsed())
        # applied: the budget at once, the deadline, the engine's capacity (it starts
        # trials now, or none until below a lower limit); the store's config, so that a
        # resume goes on with it
        run.config = new
        run.budget.max_trials = new.max_trials
        run.set_max_duration(None if new.max_duration is None
                             else float(new.max_duration))
        if new.concurrency != old.concurrency:
            run.resize(new.concurrency)
        if run.store is not None:
            run.store.set_meta(config=new.to_dict())
        return describe_update(old, new)

    async def kill(self, args: dict[str, Any]) -> dict[str, Any]:
        run = self._run
        trial, reason, message = check_kill(args, run.ledger)
        if message is not None:
            return {"trial": trial, "killed": False, "message": message}
        if not run.kill(trial, TrialState.CANCELED, reason, error_type=KILLED):
            raise ChangeRefusedError("kill", dict(args), f"trial {trial} is not held by the "
                                "engine yet (it waits for a worker); try again in a moment")
        return {"trial": trial, "killed": True,
                "message": f"trial {trial} ends CANCELED ({reason})"}


def deadline_after(start: float, seconds: float | None) -> float:
    """The ``anyio.current_time()`` deadline ``seconds`` after ``start`` (inf: none)."""
    return math.inf if seconds is None else start + seconds
