"""A one-shot search's supernet trained as one Ray task (``training_service="ray"``).

The task asks Ray for the experiment's ``trial_resources`` (Ray picks the node and sets
``CUDA_VISIBLE_DEVICES``), rebuilds the search there (the strategy, space, evaluator and
the checkpoint to continue from travel as the task's argument, through Ray's object
store), and runs the strategy's own training loop, as a rank of ``devices=N`` does
(``_ranks``). It is a streaming generator: what the loop saves and reports -- each epoch's
checkpoint and progress -- comes back as it happens, and the strategy in the experiment
process saves and publishes it as a one-process search would (``_ranks._Host``); the last
checkpoint is then restored here, and the architectures are exported here. Where it ran
is published first, as a ``StrategyProgress`` with ``phase="placed"`` (``ray_node``,
``ip``, ``pid``).

A failing task fails the search with the task's error; a cancelled search cancels the
task.
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import anyio

from nasflow.strategy._base import StrategyContext, oneshot_context
from nasflow.strategy.oneshot._ranks import _Host, _Job, _RankContext, summary

if TYPE_CHECKING:
    from nasflow.strategy.oneshot._train import OneShotStrategy, Run

__all__ = ["train_on_ray"]

_log = logging.getLogger("nasflow.strategy.oneshot")


async def train_on_ray(strategy: OneShotStrategy, ctx: StrategyContext, rt: Run,
                       saved: dict[str, Any] | None, address: str | None,
                       resources: Mapping[str, float]) -> None:
    """Train ``rt``'s supernet in one Ray task from ``saved`` (a checkpoint, or
    ``None``); ``rt`` ends with the task's last checkpoint."""
    import cloudpickle

    import ray
    from nasflow.manager import ray_options  # the actors' resource mapping, for the task

    tools = oneshot_context(ctx)
    job = _Job(strategy, tools.model_space, rt.evaluator, saved)
    host = _Host(tools, strategy, rt)
    owned = await anyio.to_thread.run_sync(_connect, address)
    try:
        task = ray.remote(_train).options(num_returns="streaming", max_retries=0,
                                          **ray_options(resources))
        # with this process's import path: modules next to the user's script (the
        # space's) import there as here
        stream: Any = task.remote(list(sys.path), os.getcwd(), cloudpickle.dumps(job))
        try:
            async for ref in stream:
                kind, *args = await ref
                if kind == "placed":
                    node, ip, pid = args
                    _log.info("%s: the supernet trains on Ray node %s (%s), pid %s",
                              type(strategy).__name__, node, ip, pid)
                    await tools.progress(step=None, strategy=type(strategy).__name__,
                                         phase="placed", ray_node=node, ip=ip, pid=pid)
                elif kind == "end":
                    strategy._rank_ends = [args[0]]
                else:
                    await anyio.to_thread.run_sync(host.receive, kind, *args)
        except BaseException:
            ray.cancel(stream, force=True)
            raise
    except ray.exceptions.RayTaskError as exc:
        raise exc.as_instanceof_cause() from None  # type: ignore[no-untyped-call]
    finally:
        if owned:
            await anyio.to_thread.run_sync(ray.shutdown)
    if host.last is not None:
        await anyio.to_thread.run_sync(strategy._restore, rt, host.last)


def _connect(address: str | None) -> bool:
    """Connect to Ray unless this process is; True if it started Ray and must stop it."""
    import ray

    if ray.is_initialized():
        return False
    ray.init(address=address, logging_level=logging.WARNING, configure_logging=False)
    return True


class _Link:
    """Rank 0 of a world of one: what it sends goes up the task's stream."""

    rank, world = 0, 1

    def __init__(self, out: queue.Queue[tuple[Any, ...]]) -> None:
        self._out = out

    def send(self, *message: Any) -> None:
        self._out.put(message)


def _train(path: list[str], cwd: str, blob: bytes) -> Iterator[tuple[Any, ...]]:
    """The Ray task: the training loop in a thread, its messages yielded as they come."""
    import cloudpickle

    import ray

    for entry in path:
        entry = entry or cwd  # "" is the experiment's working directory, not ours
        if entry not in sys.path:
            sys.path.append(entry)
    job: _Job = cloudpickle.loads(blob)
    out: queue.Queue[tuple[Any, ...]] = queue.Queue()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            strategy = job.strategy
            rt = strategy._setup(job.space, job.evaluator)
            if job.saved is not None:
                strategy._restore(rt, job.saved)
            ctx: Any = _RankContext(_Link(out), job.space, job.evaluator)  # type: ignore[arg-type]
            anyio.run(strategy._train, ctx, rt)
            out.put(("end", summary(strategy, rt)))
        except BaseException as exc:
            failure.append(exc)
            out.put(("failed",))

    yield ("placed", ray.get_runtime_context().get_node_id(),
           ray.util.get_node_ip_address(), os.getpid())  # type: ignore[no-untyped-call]
    threading.Thread(target=run, name="nasflow-oneshot", daemon=True).start()
    while True:
        message = out.get()
        if message[0] == "failed":
            raise failure[0]
        yield message
        if message[0] == "end":
            return
