"""``Host``: the daemon side of hosted experiments (``nasflow submit``, ``nf.submit``).

A hosted experiment is an ordinary ``Experiment`` run by the daemon, on the daemon's loop,
with its store under the daemon's ``NASFLOW_HOME`` and its trials on the daemon's workers
(its engine is a ``ManagerEngine`` that calls the daemon's manager core in memory: the
same fair shares, timeouts and re-attachment as any experiment of that daemon). Each runs
in a task of its own that catches what its run raises, so a failing strategy ends that
experiment alone.

Every event of a hosted experiment gets a sequence number (1, 2, ...) and is appended to
``<experiment>/events.jsonl`` (one JSON object a line) as it is published, and kept in
memory for the clients that follow it: a client asks for the events after the last number
it saw and gets the rest of the log, then the live ones, each exactly once. The log
outlives the daemon: a resumed experiment continues its numbering.

``<experiment>/hosted.json`` marks a hosted experiment; ``"resume": true`` until it ends
by itself (DONE, FAILED) or by a stop a user asked for. A daemon that starts resumes every
hosted experiment so marked that is not DONE: after a SIGTERM (its runs die with the
process, as after ``kill -9``) or a crash, with the guarantees of ``Experiment.restore``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import orjson

from nasflow._event_json import event_to_dict
from nasflow._kernel import ExperimentState
from nasflow.engine import Engine, EngineSetup
from nasflow.exceptions import NasflowError
from nasflow.experiment import Experiment
from nasflow.store import experiment_info, nasflow_home

__all__ = ["EVENTS_FILE", "HOSTED_FILE", "Host", "Hosted", "hosting"]

_log = logging.getLogger("nasflow.hosted")

EVENTS_FILE = "events.jsonl"
"""A hosted experiment's numbered events, in its directory."""
HOSTED_FILE = "hosted.json"
"""The mark of a hosted experiment (and whether a restarted daemon resumes it)."""


@dataclass(eq=False)
class Hosted:
    """One hosted experiment: its run and its numbered event log."""

    exp: Experiment
    log: list[bytes] = field(default_factory=list)
    """Each event as one JSON object (with ``seq``) and a newline, as in ``events.jsonl``,
    in order; ``log[i]`` has seq i + 1."""
    changed: anyio.Event = field(default_factory=anyio.Event)
    """Set (then replaced) whenever the log grows or the run ends."""
    durable: int = 0
    """How many of ``log`` are written to ``events.jsonl``: followers get no more, so an
    event a client saw is never numbered again by a daemon that resumes after a crash."""
    done: bool = False
    """The run has ended (``ended`` says whether for good)."""
    ended: bool = False
    """It ended by itself or by a user's stop: followers get the end."""
    error: str | None = None
    """What its run raised, if anything."""

    def wake(self) -> None:
        self.changed.set()
        self.changed = anyio.Event()


def _read_log(path: Path) -> list[bytes]:
    """The events already logged; a torn last line (a kill mid-write) is cut off."""
    if not path.is_file():
        return []
    data = path.read_bytes()
    good = data[: data.rfind(b"\n") + 1]
    if len(good) != len(data):
        with path.open("r+b") as f:
            f.truncate(len(good))
    return [line + b"\n" for line in good.split(b"\n") if line]


BLOCKED_SECONDS = 0.5
"""A loop this much late is reported as blocked (a warning in the daemon's log)."""
_WATCH_EVERY = 0.25


class Host:
    """Runs hosted experiments in a daemon; ``await tg.start(host.run)``."""

    def __init__(self, *, url: str, token: str, home: str | os.PathLike[str] | None,
                 engine: Callable[[EngineSetup, Path], Engine]) -> None:
        self.url = url
        self.token = token
        self.home = nasflow_home(home)
        self._engine = engine
        self.experiments: dict[str, Hosted] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self.closing = False
        """The daemon is going: runs that end now are resumed by the next one."""
        self.resumed: list[str] = []
        """The ids this host resumed when it started."""
        self.blocked: list[tuple[float, float, list[str]]] = []
        """``(when, seconds, running ids)`` of each time the loop was blocked for more
        than ``BLOCKED_SECONDS`` (a hosted strategy doing sync work on it)."""

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
                  ) -> None:
        """Resume the hosted experiments left running, then host until cancelled."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            for directory in self._left_running():
                try:
                    exp = Experiment.restore(directory, home=self.home)
                except NasflowError as exc:
                    _log.error("cannot resume hosted experiment %s: %s", directory.name, exc)
                    continue
                self._start(exp)
                self.resumed.append(exp.id)
            task_status.started()
            try:
                await self._watch_loop()
            finally:
                self.closing = True

    async def _watch_loop(self) -> None:
        """Report a blocked loop: every hosted experiment waits while one strategy (or an
        async evaluator of an in-process engine) computes without awaiting. A watchdog
        must tick to see the loop stand still; a quarter second costs nothing."""
        while True:
            before = anyio.current_time()
            await anyio.sleep(_WATCH_EVERY)  # a watchdog's tick (see above), not a poll
            late = anyio.current_time() - before - _WATCH_EVERY
            if late > BLOCKED_SECONDS:
                running = sorted(i for i, h in self.experiments.items() if not h.done)
                self.blocked.append((time.time(), late, running))
                _log.warning(
                    "the daemon's event loop was blocked for %.2f s: every hosted "
                    "experiment waited. A strategy (or async evaluator) of one of %s does "
                    "sync work without awaiting; move it to a thread "
                    "(await anyio.to_thread.run_sync(...))", late, ", ".join(running))

    async def close(self, reason: str = "the daemon stopped") -> None:
        """Stop every hosted run gracefully (everything saved); the next daemon on this
        home resumes them. Then ``run`` returns."""
        self.closing = True
        with anyio.CancelScope(shield=True):
            async with anyio.create_task_group() as tg:
                for hosted in self.experiments.values():
                    if not hosted.done:
                        tg.start_soon(hosted.exp.stop, reason)
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    def _left_running(self) -> list[Path]:
        root = self.home / "experiments"
        found = []
        for mark in sorted(root.glob(f"*/{HOSTED_FILE}")) if root.is_dir() else []:
            try:
                wanted = json.loads(mark.read_text()).get("resume")
            except (OSError, ValueError):
                continue
            state = experiment_info(mark.parent).state
            if wanted and state not in (ExperimentState.DONE, ExperimentState.FAILED):
                found.append(mark.parent)
        return found

    # --- hosting ----------------------------------------------------------------------------

    async def submit(self, parts: dict[str, Any]) -> str:
        """Host a new experiment built from ``parts`` (space, evaluator, strategy, config,
        name, id, scheduler); returns its id. Errors are ``NasflowError``/``TypeError``."""
        config = parts["config"].replace(home=str(self.home))
        exp = await anyio.to_thread.run_sync(lambda: Experiment(
            parts["space"], parts["evaluator"], parts["strategy"], config,
            name=parts.get("name"), id=parts.get("id"), scheduler=parts.get("scheduler")))
        if exp.id in self.experiments or (exp.directory / HOSTED_FILE).exists():
            raise NasflowError(f"experiment {exp.id} already exists on this daemon; submit "
                               "it under another id (or none, for a fresh one)")
        return self.host(exp)

    def host(self, exp: Experiment) -> str:
        """Host ``exp`` (not run yet, its home this daemon's); returns its id."""
        if exp.config.home is None or nasflow_home(exp.config.home) != self.home:
            exp = Experiment(exp.space, exp.evaluator, exp.strategy,
                             exp.config.replace(home=str(self.home)),
                             name=None if exp.name == exp.id else exp.name, id=exp.id,
                             scheduler=exp.scheduler)
        exp.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._mark(exp, resume=True)
        self._start(exp)
        return exp.id

    def _mark(self, exp: Experiment, *, resume: bool) -> None:
        path = exp.directory / HOSTED_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"resume": resume, "daemon": self.url}))
        os.replace(tmp, path)

    def _start(self, exp: Experiment) -> None:
        assert self._tg is not None, "Host.run is not running"
        exp.engine_factory = lambda setup: self._engine(setup, exp.directory)
        path = exp.directory / EVENTS_FILE
        logged = _read_log(path)
        hosted = Hosted(exp, log=logged, durable=len(logged))
        self.experiments[exp.id] = hosted
        events = exp.events()  # before run(): the log misses nothing
        self._tg.start_soon(self._record, hosted, events, path)
        self._tg.start_soon(self._run, hosted, name=f"hosted experiment {exp.id}")

    async def _record(self, hosted: Hosted, events: Any, path: Path) -> None:
        log = hosted.log
        with path.open("ab", buffering=0) as out:
            async with events:
                async for event in events:
                    # the event and every one already buffered behind it: one write, one
                    # wake-up of the followers for the burst
                    first = len(log)
                    while event is not None:
                        data = event_to_dict(event)
                        data["seq"] = len(log) + 1
                        log.append(orjson.dumps(data, option=orjson.OPT_APPEND_NEWLINE))
                        event = events.take_nowait()
                    out.write(b"".join(log[first:]))
                    hosted.durable = len(log)
                    hosted.wake()
        hosted.durable = len(log)
        hosted.wake()

    async def _run(self, hosted: Hosted) -> None:
        exp = hosted.exp
        try:
            await exp.run()
        except Exception as exc:  # this experiment fails alone; the daemon goes on
            hosted.error = f"{type(exc).__name__}: {exc}"
            _log.warning("hosted experiment %s ended %s: %s", exp.id, exp.state.value,
                         hosted.error)
        finally:
            hosted.done = True
            if not self.closing:
                hosted.ended = True
                self._mark(exp, resume=False)
            hosted.wake()

    def request_stop(self, hosted: Hosted, reason: str) -> None:
        """Make a hosted experiment stop (a user's stop: a restart does not resume it);
        returns at once, the run ends in its own time."""
        if not hosted.done and self._tg is not None:
            self._tg.start_soon(hosted.exp.stop, reason)

    def find(self, experiment_id: str) -> Hosted:
        """The hosted experiment ``experiment_id``; ``NasflowError`` naming those there are."""
        hosted = self.experiments.get(experiment_id)
        if hosted is None:
            known = ", ".join(sorted(self.experiments)) or "none"
            raise NasflowError(f"this daemon hosts no experiment {experiment_id!r} (it hosts: "
                               f"{known})")
        return hosted


def add_paths(paths: list[str]) -> None:
    """Make the submitter's module folders importable here (its space may live in a
    ``space.py`` beside its script), as a worker does with a setup payload."""
    for p in paths:
        if p and p not in sys.path and Path(p).is_dir():
            sys.path.append(p)


def hosting(manager: Any, home: str | os.PathLike[str] | None = None) -> Host:
    """A ``Host`` whose experiments run their trials on ``manager`` (a ``TrialManager``
    that serves), with ``/hosted`` added to its endpoints; ``await tg.start(host.run)``."""
    from functools import partial

    from nasflow.engine import ManagerEngine
    from nasflow.hosted._endpoint import serve_hosted

    def engine(setup: EngineSetup, directory: Path) -> Engine:
        # the daemon's own core, in memory: a hosted trial costs no loopback round trips
        return ManagerEngine(setup, manager=manager.url, token=manager.token,
                             log_dir=directory / "workers", limits=manager.limits,
                             local_manager=manager)

    host = Host(url=manager.url, token=manager.token, home=home, engine=engine)
    manager.endpoints["/hosted"] = partial(serve_hosted, host)
    return host
