"""The worker process: ``python -m nasflow.worker --url ws://.../trial --session ID``.

A worker is started by the manager's local training service (never by hand in normal use).
It dials the manager's trial channel with the token it reads from an inherited pipe
(``--token-fd``; ``NASFLOW_TOKEN`` for a worker started by hand), loads each
experiment's ``setup`` once (cloudpickled space and evaluator), then runs the trials it is
given, one at a time, streaming their events back.

If the manager goes away, the running trial keeps running and its events wait in the
session; the worker re-dials with backoff and re-attaches to a manager that comes back on
the same address within ``--reattach-timeout`` seconds, which then receives every event
exactly once. After that the worker gives up and exits (code 3).

Exit codes: 0 the manager said goodbye; 2 the manager refused us (token, protocol);
3 the manager stayed away; 4 the parent process (``--parent-pid``) died -- watched from
the first line of ``main``, so also while the worker still imports or dials.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import faulthandler
import importlib
import logging
import os
import select
import sys
import threading
import time
from collections import deque
from typing import NoReturn

import anyio

from nasflow import _payload
from nasflow._kernel import TrialError, TrialState
from nasflow._payload import Payload
from nasflow.manager import PID_HEADER, ManagerConnectionError, SessionClient
from nasflow.protocol import (
    WORKER_SETUPS,
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
from nasflow.worker._runner import TrialRunner, bounded_error

__all__ = ["Worker", "main"]

_log = logging.getLogger("nasflow.worker")

EXIT_BYE, EXIT_REFUSED, EXIT_MANAGER_GONE, EXIT_PARENT_GONE = 0, 2, 3, 4


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
        fingerprint = message.payload_sha256 or _payload.digest(message.payload)
        known = self._payloads.pop(message.experiment_id, None)
        if known is not None and known[0] == fingerprint:
            # a manager that restarted (or forgot) sends it again: it is the newest now,
            # in this worker's account as in the manager's (WORKER_SETUPS)
            self._payloads[message.experiment_id] = known
            return
        try:
            # unpickling may import torch and user modules: seconds, off the loop
            loaded: Payload | TrialError = await anyio.to_thread.run_sync(
                _load_setup, message
            )
        except Exception as exc:
            loaded = bounded_error(exc)
            self._send(SetupFailed(experiment_id=message.experiment_id, error=loaded))
        self._payloads[message.experiment_id] = (fingerprint, loaded)
        while len(self._payloads) > WORKER_SETUPS:
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


def _load_setup(message: Setup) -> Payload:
    """The payload of ``message``: inline, or in the file it names (mapped, checked)."""
    if message.payload_file is None:
        return _payload.load(message.payload)
    assert message.payload_sha256 is not None and message.payload_size is not None
    data = _payload.read_spilled(message.payload_file, message.payload_sha256,
                                 message.payload_size)
    try:
        return _payload.load(data)
    finally:
        if not isinstance(data, bytes):
            data.close()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m nasflow.worker",
        description="A nasflow worker process (started by the manager's local training "
                    "service). The token is read from --token-fd, else from the "
                    "NASFLOW_TOKEN variable.",
    )
    parser.add_argument("--url", required=True, help="the manager's trial channel, "
                        "e.g. ws://127.0.0.1:8765/trial")
    parser.add_argument("--session", required=True, help="this worker's session id")
    parser.add_argument("--reattach-timeout", type=float, default=60.0,
                        help="seconds to wait for a vanished manager (default 60)")
    parser.add_argument("--connect-timeout", type=float, default=30.0,
                        help="seconds to wait for the first connection (default 30)")
    parser.add_argument("--parent-pid", type=int, default=None,
                        help="exit when this process (our parent: an embedded "
                             "manager's experiment) exits, or at once if it is gone")
    parser.add_argument("--token-fd", type=int, default=None,
                        help="read the token from this inherited file descriptor (a pipe "
                             "the manager writes and closes) instead of NASFLOW_TOKEN")
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


def watch_parent(pid: int) -> None:
    """Exit (code 4) as soon as process ``pid`` is gone, from now on: before anything is
    imported or dialled, so a worker never outlives an experiment killed early.

    A thread waits on a pidfd of ``pid``. If ``pid`` is already gone -- or is no longer
    our parent (it died and we were re-parented; the number may even be reused by now) --
    the worker exits at once.
    """
    try:
        fd = os.pidfd_open(pid)
    except AttributeError:
        return  # not Linux: the connection's failure ends the worker instead
    except OSError:
        _parent_gone(pid)
    if os.getppid() != pid:
        os.close(fd)
        _parent_gone(pid)

    def wait() -> None:
        select.select([fd], [], [])  # readable once the process has exited
        _parent_gone(pid)

    threading.Thread(target=wait, name="nasflow-parent-watch", daemon=True).start()


def _parent_gone(pid: int) -> NoReturn:
    # an embedded manager's workers cannot be re-attached once the experiment process is
    # gone (its port and token died with it): leave at once instead of lingering
    with contextlib.suppress(OSError, ValueError):
        print(f"nasflow worker {os.getpid()}: the experiment process {pid} exited",
              file=sys.stderr, flush=True)
    _flush_std()
    os._exit(EXIT_PARENT_GONE)


def read_token(fd: int | None) -> str:
    """The manager's token: read to its end from the inherited pipe ``fd`` (then closed),
    else taken out of ``NASFLOW_TOKEN`` (a worker started by hand)."""
    if fd is None:
        return os.environ.pop("NASFLOW_TOKEN", "")
    chunks = []
    try:
        while chunk := os.read(fd, 4096):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode().strip()


def main(argv: list[str] | None = None) -> int:
    """Run a worker; returns (and exits with) its exit code."""
    args = _parser().parse_args(argv)
    if args.parent_pid is not None:
        watch_parent(args.parent_pid)  # first: an experiment killed now takes us along
    try:
        token = read_token(args.token_fd)
    except OSError as exc:
        print(f"nasflow worker: cannot read the token from fd {args.token_fd}: {exc}",
              file=sys.stderr)
        return EXIT_REFUSED
    if not token:
        print("nasflow worker: no token (--token-fd, or the NASFLOW_TOKEN variable)",
              file=sys.stderr)
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
    )
    code = asyncio.run(worker.run())
    _flush_std()
    # leave even if an evaluator thread is still stuck (the manager kills those anyway)
    os._exit(code)


def _flush_std() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
