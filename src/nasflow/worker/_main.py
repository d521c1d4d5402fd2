"""The worker process: ``python -m nasflow.worker --url ws://.../trial --session ID``.

A worker is started by the manager's local training service (never by hand in normal use).
It dials the manager's trial channel with the token from ``NASFLOW_TOKEN``, loads each
experiment's ``setup`` once (cloudpickled space and evaluator), then runs the trials it is
given, one at a time, streaming their events back.

If the manager goes away, the running trial keeps running and its events wait in the
session; the worker re-dials with backoff and re-attaches to a manager that comes back on
the same address within ``--reattach-timeout`` seconds, which then receives every event
exactly once. After that the worker gives up and exits (code 3).

Exit codes: 0 the manager said goodbye; 2 the manager refused us (token, protocol);
3 the manager stayed away; 4 the parent process (``--parent-pid``) died.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import faulthandler
import importlib
import logging
import os
import sys
import time
from collections import deque

import anyio

from nasflow._types import TrialError, TrialState
from nasflow.manager._client import PID_HEADER, ManagerConnectionError, SessionClient
from nasflow.protocol import (
    Cancel,
    ClientSession,
    Deliver,
    Effect,
    PeerClosed,
    Role,
    RunTrial,
    SequencedMessage,
    Setup,
    SetupFailed,
    TrialEnded,
    TrialRef,
)
from nasflow.worker import _payload
from nasflow.worker._payload import Payload
from nasflow.worker._runner import TrialRunner

__all__ = ["Worker", "main"]

_log = logging.getLogger("nasflow.worker")

EXIT_BYE, EXIT_REFUSED, EXIT_MANAGER_GONE, EXIT_PARENT_GONE = 0, 2, 3, 4
_MAX_PAYLOADS = 16  # setups kept loaded; a daemon serving many experiments drops the oldest


class Worker:
    """One worker process's state: its session, loaded setups and trial runner."""

    def __init__(
        self,
        url: str,
        token: str,
        session_id: str,
        *,
        reattach_timeout: float = 60.0,
        connect_timeout: float = 30.0,
        parent_pid: int | None = None,
    ) -> None:
        self.session = ClientSession(Role.WORKER, session_id)
        self.runner = TrialRunner(self._send, max_batch=self.session.limits.max_batch)
        self.client = SessionClient(
            url, token, self.session,
            on_effects=self._on_effects,
            running=self._held_trials,
            headers={PID_HEADER: str(os.getpid())},
            connect_timeout=connect_timeout,
            reattach_timeout=reattach_timeout,
        )
        self.exit_code = EXIT_BYE
        self._parent_pid = parent_pid
        self._payloads: dict[str, tuple[str, Payload | TrialError]] = {}
        self._inbox: deque[Deliver] = deque()
        self._inbox_wake = asyncio.Event()
        # run_trial messages cancelled before they started: (experiment, trial, attempt)
        self._cancelled: dict[tuple[str, int, int], tuple[TrialState, str]] = {}
        # trials that ended here whose events the manager has not acked: ref -> the seq of
        # their trial_ended (a manager that restarted must take them over, not lose them)
        self._ended: dict[TrialRef, int] = {}
        self._last_seq = 0
        self._tg: anyio.abc.TaskGroup | None = None

    async def run(self) -> int:
        """Serve the manager until it says goodbye or stays away; return the exit code."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            await tg.start(self.runner.run_pipe)
            tg.start_soon(self._process)
            if self._parent_pid is not None:
                tg.start_soon(self._watch_parent, self._parent_pid)
            try:
                await self.client.run()
            except ManagerConnectionError as exc:
                print(f"nasflow worker {os.getpid()}: {exc}", file=sys.stderr, flush=True)
                self._leave(EXIT_REFUSED if exc.fatal else EXIT_MANAGER_GONE)
            self._leave(self.exit_code)
        return self.exit_code

    def _leave(self, code: int) -> None:
        """Stop serving. A trial still running is abandoned: its thread cannot be
        interrupted, so with one running the process exits at once."""
        self.exit_code = code
        if self.runner.current is not None:
            _flush_std()
            os._exit(code)
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    # --- messages from the manager ----------------------------------------------------------

    def _send(self, message: SequencedMessage) -> None:
        seq = self._last_seq = self.session.send(message)
        if type(message) is TrialEnded:
            self._forget_acked()  # keeps the record small in a long-lived worker
            ref = TrialRef(experiment_id=message.experiment_id, trial_id=message.trial_id,
                           attempt=message.attempt)
            self._ended[ref] = seq
        self.client.wake()

    def _forget_acked(self) -> None:
        first_unacked = self._last_seq + 1 - self.session.unacked
        for ref in [r for r, seq in self._ended.items() if seq < first_unacked]:
            del self._ended[ref]  # acked: durable at the experiment

    def _held_trials(self) -> tuple[TrialRef, ...]:
        """The trials whose events this worker still holds, for its ``hello``: those that
        ended here with events not acked yet (oldest first), then the one running now.

        A manager that restarted knows nothing of them; it takes each over and receives
        its events, the resent ones among them, instead of giving the trial up.
        """
        self._forget_acked()
        return (*self._ended, *self.runner.running)

    def _on_effects(self, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Deliver):
                message = effect.message
                if isinstance(message, Cancel):
                    self._cancel(message)
                    self.session.ack(effect)
                else:
                    self._inbox.append(effect)
                    self._inbox_wake.set()
            elif isinstance(effect, PeerClosed):
                # the manager retires this worker (or shuts down): nothing runs here any more
                self._leave(EXIT_BYE)

    def _cancel(self, message: Cancel) -> None:
        if not self.runner.cancel(message.trial_id, message.attempt, message.state,
                                  message.reason):
            key = (message.experiment_id, message.trial_id, message.attempt)
            self._cancelled[key] = (message.state, message.reason)

    async def _process(self) -> None:
        """Act on setups and trials in the order they came (a trial needs its setup)."""
        while True:
            await self._inbox_wake.wait()
            self._inbox_wake.clear()
            while self._inbox:
                delivery = self._inbox.popleft()
                message = delivery.message
                if isinstance(message, Setup):
                    await self._setup(message)
                    self.session.ack(delivery)
                    self.client.wake()
                elif isinstance(message, RunTrial):
                    self.session.ack(delivery)  # acted upon: it runs now
                    self.client.wake()
                    await self._run_trial(message)

    async def _setup(self, message: Setup) -> None:
        fingerprint = _payload.digest(message.payload)
        known = self._payloads.get(message.experiment_id)
        if known is not None and known[0] == fingerprint:
            return  # a manager that restarted (or forgot) sends it again
        try:
            # unpickling may import torch and user modules: seconds, off the loop
            loaded: Payload | TrialError = await anyio.to_thread.run_sync(
                _payload.load, message.payload
            )
        except Exception as exc:
            loaded = TrialError.from_exception(exc)
            self._send(SetupFailed(experiment_id=message.experiment_id, error=loaded))
        self._payloads.pop(message.experiment_id, None)
        self._payloads[message.experiment_id] = (fingerprint, loaded)
        while len(self._payloads) > _MAX_PAYLOADS:
            del self._payloads[next(iter(self._payloads))]

    async def _run_trial(self, message: RunTrial) -> None:
        key = (message.experiment_id, message.trial_id, message.attempt)
        stopped = self._cancelled.pop(key, None)
        loaded = self._payloads.get(message.experiment_id)
        error: TrialError | None = None
        state = TrialState.FAILED
        if stopped is not None:
            state, reason = stopped
            error = TrialError("Stopped", reason or state.value)
        elif loaded is None:
            error = TrialError("SetupMissing", "the worker has no setup for experiment "
                               f"{message.experiment_id!r} (a manager bug)")
        elif isinstance(loaded[1], TrialError):
            error = TrialError(
                "SetupFailed",
                f"the experiment's setup could not be loaded: {loaded[1]}",
                loaded[1].traceback,
            )
        if error is None and loaded is not None and isinstance(loaded[1], Payload):
            await self.runner.run(message, loaded[1])
            return
        self._send(TrialEnded(
            experiment_id=message.experiment_id, trial_id=message.trial_id,
            attempt=message.attempt, state=state, error=error, time=time.time(),
        ))

    # --- the parent (embedded managers only) ------------------------------------------------

    async def _watch_parent(self, pid: int) -> None:
        # an embedded manager's workers cannot be re-attached once the experiment process
        # is gone (its port and token died with it): leave at once instead of lingering
        try:
            fd = os.pidfd_open(pid)
        except (AttributeError, OSError):
            return  # not Linux, or already gone (then the connection fails soon)
        try:
            await anyio.wait_readable(fd)
        finally:
            os.close(fd)
        print(f"nasflow worker {os.getpid()}: the experiment process {pid} exited",
              file=sys.stderr, flush=True)
        self._leave(EXIT_PARENT_GONE)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m nasflow.worker",
        description="A nasflow worker process (started by the manager's local training "
                    "service). The token is read from the NASFLOW_TOKEN variable.",
    )
    parser.add_argument("--url", required=True, help="the manager's trial channel, "
                        "e.g. ws://127.0.0.1:8765/trial")
    parser.add_argument("--session", required=True, help="this worker's session id")
    parser.add_argument("--reattach-timeout", type=float, default=60.0,
                        help="seconds to wait for a vanished manager (default 60)")
    parser.add_argument("--connect-timeout", type=float, default=30.0,
                        help="seconds to wait for the first connection (default 30)")
    parser.add_argument("--parent-pid", type=int, default=None,
                        help="exit when this process exits (embedded managers)")
    parser.add_argument("--preload", default="",
                        help="comma-separated modules to import before connecting (e.g. "
                             "torch), so that trials do not pay for importing them")
    return parser


def preload(modules: str) -> str | None:
    """Import each of the comma-separated ``modules``; the error text if one fails."""
    for name in (m.strip() for m in modules.split(",")):
        if not name:
            continue
        try:
            importlib.import_module(name)
        except Exception as exc:  # any import error is the user's to see
            return (f"--preload: importing {name!r} failed ({type(exc).__name__}: {exc}); "
                    "install it in this interpreter or drop it from --preload")
    return None


def main(argv: list[str] | None = None) -> int:
    """Run a worker; returns (and exits with) its exit code."""
    args = _parser().parse_args(argv)
    token = os.environ.pop("NASFLOW_TOKEN", "")  # trials need not see the secret
    if not token:
        print("nasflow worker: NASFLOW_TOKEN is not set", file=sys.stderr)
        return EXIT_REFUSED
    faulthandler.enable()  # a segfault in a trial leaves a Python traceback in its stderr
    failed = preload(args.preload)
    if failed is not None:
        print(f"nasflow worker: {failed}", file=sys.stderr)
        return EXIT_REFUSED
    # a sync evaluator's thread holds the GIL for 5 ms slices by default; the loop thread
    # (streaming reports out, heartbeats, cancels) must get a turn sooner than that, or
    # reports leave in bursts only after the trial has ended
    sys.setswitchinterval(0.001)
    worker = Worker(
        args.url, token, args.session,
        reattach_timeout=args.reattach_timeout,
        connect_timeout=args.connect_timeout,
        parent_pid=args.parent_pid,
    )
    code = asyncio.run(worker.run())
    _flush_std()
    # leave even if an evaluator thread is still stuck (the manager kills those anyway)
    os._exit(code)


def _flush_std() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
