"""One trial on N processes: PyTorch's DistributedDataParallel, gloo on CPU, nccl on GPUs.

``Classification(..., devices=N)`` trains each trial's model on N processes ("ranks")
started by the process that runs the trial (the in-process engine's thread, or a local
or daemon worker). The ranks are fresh interpreters (``python -m nasflow.evaluator._ddp``),
not ``multiprocessing`` children: a spawned child would re-run the user's ``__main__``,
and a forked one would inherit the event loop and its threads. Each rank reads the
evaluator and the frozen model from one owner-only file (cloudpickled, so classes defined
in a script travel by value), meets the others through a ``FileStore`` rendezvous in a
temporary folder (no port to pick, nothing to race for), and trains its share of every
epoch's batches: the same shuffled order on every rank, batch ``i`` on rank ``i % N``.

Rank 0 alone scores the validation data (every rank holds the same weights after each
synchronised step) and sends its reports up a pipe; the launcher turns them into
``trial.report`` calls, so the metrics a user sees come from rank 0. A stop asked of the
trial reaches rank 0 as a file; rank 0's decision is all-reduced every batch, so every
rank stops at the same step and none waits forever in a collective. A rank that raises
sends its error up its pipe; a rank that dies (a signal, the OOM killer) is seen by its
exit status. Either way the trial fails with that cause and every other rank is killed:
no process outlives its trial (and each rank watches the launcher, so a killed launcher
takes its ranks with it).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import random
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from nasflow.exceptions import RankError, TrialStopped

__all__ = ["RankTrial", "Shard", "backend_for", "launch", "run_ranks"]

_HEADER = struct.Struct("!I")
_GRACE = 5.0
"""Seconds a rank gets to exit after its trial ended, before it is killed."""


# --- the launcher (the process running the trial) ---------------------------------------


def run_ranks(evaluator: Any, module: Any, trial: Any) -> float:
    """Train ``module`` with ``evaluator`` on ``evaluator.devices`` ranks; rank 0's reports
    become ``trial``'s; return its final metric (or raise the first rank's error)."""
    # every rank shuffles the same way: one data seed, the trial's or a fresh one
    data_seed = evaluator.seed if evaluator.seed is not None else random.SystemRandom(
    ).randrange(2**62)
    results = launch(_Fit(evaluator, module, data_seed), evaluator.devices, _TrialHost(trial),
                     backend=backend_for(evaluator), trial_id=trial.id,
                     what=f"trial {trial.id}")
    return float(results[0])


def launch(job: Any, world: int, host: Any, *, backend: str, trial_id: Any, what: str
           ) -> list[Any]:
    """Run ``job(link)`` on ``world`` fresh rank processes joined in one process group
    (``backend``: ``"gloo"`` or ``"nccl"``); return every rank's result, rank 0's first.

    ``job`` is cloudpickled to the ranks; on each it gets a ``RankTrial`` (its rank, the
    world, ``send`` up the pipe, the all-reduced ``should_stop``). ``host`` is asked
    ``should_stop()`` while the ranks run (True: rank 0 finds the stop file) and gets
    every message the ranks send besides their results (``host.receive(kind, *args)``).
    The first rank to fail fails the whole run with its error (``RankError`` for a rank
    that died silently, naming ``what`` it was part of); no rank outlives the call."""
    import cloudpickle

    with tempfile.TemporaryDirectory(prefix="nasflow-ddp-") as tmp:
        folder = Path(tmp)
        payload = folder / "payload.pkl"
        fd = os.open(payload, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            cloudpickle.dump({"job": job, "world": world, "backend": backend,
                              "trial_id": trial_id, "folder": str(folder),
                              "parent": os.getpid()}, f)
        ranks = [_Rank.start(rank, payload) for rank in range(world)]
        try:
            return _follow(ranks, host, folder / "stop", what)
        finally:
            for r in ranks:
                r.end()


def backend_for(evaluator: Any) -> str:
    """``"nccl"`` when ``evaluator`` trains on CUDA, else ``"gloo"``."""
    from nasflow.evaluator._args import resolve_device

    return "nccl" if resolve_device(evaluator.device).type == "cuda" else "gloo"


class _Fit:
    """The evaluator's training loop on one rank (``Classification(devices=N)``)."""

    def __init__(self, evaluator: Any, module: Any, data_seed: int) -> None:
        self.evaluator, self.module, self.data_seed = evaluator, module, data_seed

    def __call__(self, link: RankTrial) -> float:
        return float(self.evaluator._fit(self.module, link, rank=link.rank,
                                         world=link.world, data_seed=self.data_seed))


class _TrialHost:
    """The launcher's side of a trial: its stop, and rank 0's reports as its own."""

    def __init__(self, trial: Any) -> None:
        self.trial = trial

    def should_stop(self) -> bool:
        return bool(self.trial.should_stop())

    def receive(self, kind: str, *args: Any) -> None:
        if kind == "report":
            self.trial.report(args[0], step=args[1])


class _Rank:
    """One rank's process and the read end of its pipe."""

    def __init__(self, rank: int, process: subprocess.Popen[bytes], pipe: BinaryIO) -> None:
        self.rank = rank
        self.process = process
        self.pipe = pipe
        self.buffer = b""
        self.open = True

    @classmethod
    def start(cls, rank: int, payload: Path) -> _Rank:
        read, write = os.pipe()
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "nasflow.evaluator._ddp", str(payload), str(rank),
                 str(write)],
                pass_fds=(write,), stdin=subprocess.DEVNULL, env=_rank_env())
        except BaseException:
            os.close(read)
            raise
        finally:
            os.close(write)
        return cls(rank, process, os.fdopen(read, "rb", buffering=0))

    def messages(self) -> list[Any]:
        """What the rank sent since the last call (its pipe is readable)."""
        chunk = os.read(self.pipe.fileno(), 1 << 16)
        if not chunk:
            self.open = False
            return []
        self.buffer += chunk
        out = []
        while len(self.buffer) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(self.buffer)
            if len(self.buffer) < _HEADER.size + size:
                break
            out.append(pickle.loads(self.buffer[_HEADER.size:_HEADER.size + size]))
            self.buffer = self.buffer[_HEADER.size + size:]
        return out

    def end(self) -> None:
        """Wait a moment for the rank to exit, then kill it; close the pipe."""
        if self.process.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(_GRACE if not self.open else 0.1)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.pipe.close()

    def died(self) -> str:
        code = self.process.returncode
        if code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"rank {self.rank} was killed by {name}"
        return f"rank {self.rank} exited with code {code} without reporting an error"


def _follow(ranks: list[_Rank], host: Any, stop_file: Path, what: str) -> list[Any]:
    """Relay the ranks' messages to ``host`` until every rank has sent its result; raise
    the first failure."""
    sel = selectors.DefaultSelector()
    for r in ranks:
        sel.register(r.pipe, selectors.EVENT_READ, r)
    world = len(ranks)
    results: dict[int, Any] = {}
    stop_asked = False
    try:
        while len(results) < world:
            if not stop_asked and host.should_stop():
                stop_file.touch()
                stop_asked = True
            for key, _ in sel.select(timeout=0.05):  # the timeout paces the stop check
                r = key.data  # a _Rank, registered above
                for kind, *rest in r.messages():
                    if kind == "done":
                        results[r.rank] = rest[0]
                    elif kind == "error":
                        _raise_from_rank(r.rank, world, *rest)
                    else:
                        host.receive(kind, *rest)
                if not r.open:
                    sel.unregister(r.pipe)
                    r.process.wait()
                    if r.process.returncode != 0:
                        raise RankError(f"{r.died()} (one of {world} ranks of {what}); the "
                                        "others were stopped")
            if not sel.get_map() and len(results) < world:
                raise RankError(f"the {world} ranks of {what} all exited without a result")
        return [results[i] for i in range(world)]
    finally:
        sel.close()


def _raise_from_rank(rank: int, world: int, blob: bytes | None, text: str) -> None:
    error: BaseException | None = None
    if blob is not None:
        with contextlib.suppress(Exception):
            error = pickle.loads(blob)
    where = f"(rank {rank} of {world}; its traceback:)\n{text}"
    if isinstance(error, BaseException):
        if isinstance(error, TrialStopped):
            raise error
        with contextlib.suppress(Exception):
            error.add_note(where)
        raise error
    raise RankError(f"rank {rank} of {world} raised:\n{text}")


RANK_GPUS = "NASFLOW_RANK_GPUS"
"""Set by a worker while it runs a devices=N trial on GPU slots: the
``CUDA_VISIBLE_DEVICES`` of the trial's ranks (its own GPU and those of the slots the
manager lent it)."""


def _rank_env() -> dict[str, str]:
    env = dict(os.environ)
    gpus = env.pop(RANK_GPUS, None)
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = gpus
    # the ranks import what the launcher can (the user's modules the payload refers to)
    env["PYTHONPATH"] = os.pathsep.join(p or os.getcwd() for p in sys.path)
    # on one machine the ranks talk over loopback, not the outward interface
    if "GLOO_SOCKET_IFNAME" not in env:
        loopback = next((name for _, name in socket.if_nameindex()
                         if name.startswith("lo")), None)
        if loopback:
            env["GLOO_SOCKET_IFNAME"] = loopback
    return env


class Shard:
    """Rank ``rank``'s batches of an epoch: batch ``i`` when ``i % world == rank``. Every
    rank takes as many steps (DDP's collectives need it): a rank short of one at the end
    of the epoch takes the epoch's first batches again."""

    def __init__(self, batches: Iterable[tuple[Any, Any]], rank: int, world: int) -> None:
        self._batches, self._rank, self._world = batches, rank, world

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        taken, head = 0, []
        total = 0
        for i, batch in enumerate(self._batches):
            total = i + 1
            if i < self._world:
                head.append(batch)
            if i % self._world == self._rank:
                taken += 1
                yield batch
        steps = -(-total // self._world)
        for j in range(steps - taken):
            yield head[j % len(head)]


# --- a rank -------------------------------------------------------------------------------


class RankTrial:
    """What the training loop sees as its trial on a rank: rank 0 reports up the pipe;
    a stop is rank 0's reading of the stop file, all-reduced so that every rank agrees."""

    def __init__(self, trial_id: int, rank: int, world: int, out: BinaryIO,
                 stop_file: Path) -> None:
        self.id = trial_id
        self.rank = rank
        self.world = world
        self._out = out
        self._stop_file = stop_file

    def should_stop(self) -> bool:
        import torch
        import torch.distributed as dist

        flag = torch.tensor([1.0 if self.rank == 0 and self._stop_file.exists() else 0.0])
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def report(self, value: float, step: int) -> None:
        if self.rank == 0:
            self.send("report", float(value), step)

    def send(self, *message: Any) -> None:
        data = pickle.dumps(message)
        self._out.write(_HEADER.pack(len(data)) + data)
        self._out.flush()


def _rank_main(payload: str, rank: int, fd: int) -> int:
    import cloudpickle

    out = os.fdopen(fd, "wb", buffering=0)
    with open(payload, "rb") as f:
        job = cloudpickle.load(f)
    from nasflow.worker import watch_parent

    watch_parent(job["parent"])
    world, folder, backend = job["world"], Path(job["folder"]), job["backend"]
    trial = RankTrial(job["trial_id"], rank, world, out, folder / "stop")
    import torch.distributed as dist

    try:
        if backend == "gloo":  # the ranks share the machine's cores, not one each
            import torch

            torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
        store = dist.FileStore(str(folder / "rendezvous"), world)  # type: ignore[attr-defined]
        dist.init_process_group(backend, store=store, rank=rank, world_size=world)
        try:
            result = job["job"](trial)
        finally:
            dist.destroy_process_group()
        trial.send("done", result)
        return 0
    except BaseException as exc:  # every failure is sent up, then the rank exits
        try:
            blob: bytes | None = cloudpickle.dumps(exc)
        except Exception:  # an unpicklable error still sends its text
            blob = None
        with contextlib.suppress(OSError):
            trial.send("error", blob, "".join(traceback.format_exception(exc)))
        return 1


if __name__ == "__main__":
    sys.exit(_rank_main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
