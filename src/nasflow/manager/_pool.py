"""Worker processes of the local training service: start, watch, kill.

Each worker is ``sys.executable -m nasflow.worker`` in a new session (so its own process
group), given the token through an inherited pipe it reads and closes (``--token-fd``: not
on its command line, where ``ps`` would show it, nor in its environment, which
``/proc/<pid>/environ`` shows for the process's whole life), for GPU slots its own
``CUDA_VISIBLE_DEVICES``, and unless this process sets one, ``OMP_NUM_THREADS`` = its
share of the CPUs (like Ray's workers). Killing a worker kills its whole process group:
whatever a trial started (data loader workers, shell commands) goes with it. Its own
output, outside trials, goes to ``<log_dir>/<session>.log``.

A process is watched by awaiting its exit (a child) or a pidfd (a worker adopted after a
manager restart, whose parent is gone); nothing polls.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import anyio
from anyio.abc import Process, TaskGroup

__all__ = ["LocalPool", "WorkerProcess", "tail"]

_log = logging.getLogger("nasflow.manager.pool")


class WorkerProcess:
    """One worker OS process, started here or adopted; ``description`` says how it ended."""

    def __init__(self, session_id: str, gpu: str | None, log: Path | None) -> None:
        self.session_id = session_id
        """The worker's protocol session id."""
        self.gpu = gpu
        """Its ``CUDA_VISIBLE_DEVICES`` (``None``: inherited)."""
        self.log = log
        """Where its own output goes (outside trials)."""
        self.pid: int | None = None
        """The process id (also its process group id), once started."""
        self.description: str | None = None
        """How it ended (``"was killed by signal SIGKILL"``), once it has."""
        self.adopted = False
        """Whether an earlier manager started it."""
        self.cause = "WorkerDied"
        """The error type its running trial ends with if it dies (a Ray worker:
        ``WorkerLost``, ``NodeLost``)."""
        self._process: Process | None = None

    def kill(self) -> None:
        """SIGKILL the worker's whole process group (a no-op once the group is empty).

        Workers lead their own group, so the group id is the worker's pid; Linux does not
        hand that id to another process while any member of the group is alive.
        """
        pid = self.pid
        if pid is None or self.description is not None:
            return
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def __repr__(self) -> str:
        return f"<WorkerProcess {self.session_id} pid={self.pid} gpu={self.gpu}>"


def _describe(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        text = f"was killed by {name} ({-returncode})"
        if -returncode == signal.SIGKILL:
            text += " -- by the out-of-memory killer, by the manager, or by someone else"
        return text
    return f"exited with code {returncode}"


def tail(path: Path | None, *, lines: int = 20, limit: int = 8192) -> str:
    """The last ``lines`` lines of a log file (at most ``limit`` bytes), or ``""``."""
    if path is None:
        return ""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            data = f.read()
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


class LocalPool:
    """Starts and watches worker processes; ``on_exit(worker)`` is awaited when one ends.

    ``bind(tg, url)`` must be called before ``spawn``: the pool's watchers run in ``tg``,
    and workers dial ``url``.
    """

    def __init__(
        self,
        *,
        token: str,
        reattach_timeout: float,
        log_dir: Path,
        parent_pid: int | None,
        on_exit: Callable[[WorkerProcess], Awaitable[None]],
        threads: int | None = None,
        preload: Sequence[str] = (),
    ) -> None:
        self.log_dir = log_dir
        """Where workers write their own output."""
        self.threads = threads
        """``OMP_NUM_THREADS`` for workers when this process has none set (``None``: leave
        it unset)."""
        self.preload = tuple(preload)
        """Modules every worker imports before it connects."""
        self._token = token
        self._reattach_timeout = reattach_timeout
        self._parent_pid = parent_pid
        self._on_exit = on_exit
        self._tg: TaskGroup | None = None
        self._url = ""
        self.processes: dict[str, WorkerProcess] = {}
        """Live (or starting) worker processes by session id."""
        self.all_gone = asyncio.Event()
        """Set while no worker process is alive."""
        self.all_gone.set()

    def bind(self, tg: TaskGroup, url: str) -> None:
        """Run watchers in ``tg``; workers dial the trial channel at ``url``."""
        self._tg = tg
        self._url = url

    def spawn(self, session_id: str, gpu: str | None) -> WorkerProcess:
        """Start a worker for ``session_id`` (in the background); returns its handle."""
        if self._tg is None:
            raise RuntimeError("LocalPool.bind() was not called")
        proc = WorkerProcess(session_id, gpu, self.log_dir / f"{session_id}.log")
        self._add(proc)
        self._tg.start_soon(self._run, proc)
        return proc

    def adopt(self, session_id: str, pid: int) -> WorkerProcess | None:
        """Watch a worker an earlier manager started (it re-attached and told its pid).

        ``None`` if ``pid`` is not a nasflow worker leading its own process group (it is
        never signalled then).
        """
        if self._tg is None or not _is_worker(pid):
            return None
        proc = WorkerProcess(session_id, os.environ.get("CUDA_VISIBLE_DEVICES"), None)
        proc.pid, proc.adopted = pid, True
        self._add(proc)
        self._tg.start_soon(self._watch_adopted, proc)
        return proc

    def earlier_workers(self) -> dict[str, int] | None:
        """Live workers that an earlier manager on this address started, which may still
        re-attach here: session id -> pid. ``None`` where this cannot be told (no
        ``/proc``); empty for an embedded manager (nothing outlives its experiment)."""
        if self._parent_pid is not None:
            return {}
        try:
            pids = [int(name) for name in os.listdir("/proc") if name.isdigit()]
        except OSError:
            return None
        found: dict[str, int] = {}
        for pid in pids:
            try:
                args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            argv = args.split("\0")
            if "nasflow.worker" not in argv or not _is_worker(pid):
                continue
            option = dict(itertools.pairwise(argv))
            if option.get("--url") == self._url and "--session" in option:
                found[option["--session"]] = pid
        return found

    def on_gone(self, pid: int, callback: Callable[[], None]) -> None:
        """Call ``callback`` once process ``pid`` has exited (a pidfd: no polling)."""
        if self._tg is None:
            raise RuntimeError("LocalPool.bind() was not called")
        self._tg.start_soon(self._await_gone, pid, callback)

    async def _await_gone(self, pid: int, callback: Callable[[], None]) -> None:
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            callback()  # gone already
            return
        try:
            await anyio.wait_readable(fd)
        finally:
            os.close(fd)
        callback()

    elastic = False
    """Whether capacity is the workers that connected (a cluster's) rather than the
    pool's size (this machine's, known up front)."""

    def closing(self) -> None:
        """The manager shuts down: stop what would never hear its goodbye."""

    def kill_all(self) -> None:
        """SIGKILL every worker's process group."""
        for proc in list(self.processes.values()):
            proc.kill()

    def _add(self, proc: WorkerProcess) -> None:
        self.processes[proc.session_id] = proc
        self.all_gone.clear()

    def _remove(self, proc: WorkerProcess) -> None:
        self.processes.pop(proc.session_id, None)
        if not self.processes:
            self.all_gone.set()

    # --- watchers ---------------------------------------------------------------------------

    async def _run(self, proc: WorkerProcess) -> None:
        command = [sys.executable, "-m", "nasflow.worker", "--url", self._url,
                   "--session", proc.session_id,
                   "--reattach-timeout", str(self._reattach_timeout)]
        if self._parent_pid is not None:
            command += ["--parent-pid", str(self._parent_pid)]
        if self.preload:
            command += ["--preload", ",".join(self.preload)]
        # the token travels through a pipe the worker reads and closes: an environment
        # variable would stay readable in /proc/<pid>/environ (by trial code too) for the
        # process's whole life, whatever the worker does with os.environ
        env = {k: v for k, v in os.environ.items() if k != "NASFLOW_TOKEN"}
        if self.threads is not None:
            # N workers each running torch with one thread per core would oversubscribe
            # the machine many times over (OpenMP threads spin while they wait)
            env.setdefault("OMP_NUM_THREADS", str(self.threads))
        if proc.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = proc.gpu
        try:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            assert proc.log is not None
            log = os.open(proc.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            token_in, token_out = os.pipe()
            try:
                # a token is far below a pipe's buffer: this write never blocks
                os.write(token_out, self._token.encode())
                os.close(token_out)
                token_out = -1
                process = await anyio.open_process(
                    [*command, "--token-fd", str(token_in)], stdin=subprocess.DEVNULL,
                    stdout=log, stderr=log, env=env, pass_fds=(token_in,),
                    start_new_session=True,  # its own process group: killed as a whole
                )
            finally:
                os.close(log)  # the child has its own copies
                os.close(token_in)
                if token_out != -1:
                    os.close(token_out)
        except OSError as exc:
            proc.description = f"could not be started: {exc}"
        else:
            proc.pid, proc._process = process.pid, process
            try:
                returncode = await process.wait()
            finally:
                # whatever the trial left in the group goes too (and, when the manager is
                # cancelled, the worker itself)
                proc.kill()
                self._remove(proc)
            proc.description = _describe(returncode)
        self._remove(proc)
        await self._on_exit(proc)

    async def _watch_adopted(self, proc: WorkerProcess) -> None:
        assert proc.pid is not None
        try:
            fd = os.pidfd_open(proc.pid)
        except OSError:
            proc.description = "had exited before it could be watched"
        else:
            try:
                await anyio.wait_readable(fd)
            finally:
                os.close(fd)
                self._remove(proc)
            proc.description = ("exited (an earlier manager started it, so its exit status "
                                "is unknown)")
        self._remove(proc)
        await self._on_exit(proc)


def _is_worker(pid: int) -> bool:
    try:
        if os.getpgid(pid) != pid:
            return False
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"nasflow.worker" in cmdline
