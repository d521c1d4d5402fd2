"""One supernet trained on N processes: a one-shot search with ``devices=N``.

NNI's users found every rank of a multi-GPU one-shot search picking its own
architecture. Here the ranks cannot drift apart, because each does exactly what the
others do, on its share of the data:

* the same strategy, seed and space on every rank: the same initial weights and
  architecture parameters, and path-sampling generators (``rt.gen``, ``rt.rng``) in
  lock-step, so every step samples the same path (Gumbel noise, a SPOS path, an ENAS
  controller sample, a Proxyless gate) everywhere;
* every gradient is averaged over the ranks as it is accumulated (a hook on each
  parameter of the supernet and of the strategy's parts, in backward order as DDP does),
  before any clipping or optimiser step, so the weights, the architecture parameters and
  the controllers take the same step on every rank: the step of one process on the
  ranks' batches together;
* training and architecture batches are sharded as the evaluator's DDP does (``Shard``:
  the same shuffled order, batch ``i`` on rank ``i % N``); validation runs whole on every
  rank, which keeps the generators it draws from in lock-step too;
* the little state that is neither a gradient nor a draw (ENAS's reward baseline) is
  averaged through ``Run.mean``; batch-norm statistics follow rank 0's at every epoch's
  end, as DDP broadcasts them.

The ranks are started by the evaluator's launcher (``evaluator._ddp.launch``: fresh
interpreters, an owner-only payload, a ``FileStore`` rendezvous, a failed rank failing
the search with its cause and no rank left behind). Rank 0 sends each epoch's checkpoint
and progress up its pipe, and the strategy on the event loop saves and publishes them as
a one-process search would. Every rank ends by sending a summary of what it holds (its
architecture probabilities and choice, a digest of its parameters); the ranks must agree,
or the search fails saying so. The architectures are then exported from rank 0's state by
the strategy in this process, as without ranks.
"""

from __future__ import annotations

import copy
import functools
import hashlib
from typing import TYPE_CHECKING, Any, cast

import anyio
import anyio.from_thread
import torch

from nasflow.evaluator import RankTrial, Shard, backend_for, launch
from nasflow.exceptions import RankError
from nasflow.space import Sample
from nasflow.strategy._base import OneShotContext, StrategyContext, oneshot_context

if TYPE_CHECKING:
    from nasflow.strategy.oneshot._train import OneShotStrategy, Run

__all__ = ["train_on_ranks"]


# --- in the process running the search ------------------------------------------------------


async def train_on_ranks(strategy: OneShotStrategy, ctx: StrategyContext, rt: Run,
                         saved: dict[str, Any] | None) -> None:
    """Train ``rt``'s supernet on ``rt.evaluator.devices`` ranks from ``saved`` (a
    checkpoint, or ``None``); ``rt`` ends with rank 0's state."""
    tools = oneshot_context(ctx)
    job = _Job(strategy, tools.model_space, rt.evaluator, saved)
    host = _Host(tools, strategy, rt)
    world = rt.evaluator.devices
    ends = await anyio.to_thread.run_sync(functools.partial(
        launch, job, world, host, backend=backend_for(rt.evaluator), trial_id=0,
        what=f"the {type(strategy).__name__} search"))
    strategy._rank_ends = ends
    if any(end != ends[0] for end in ends[1:]):
        raise RankError(
            f"the {world} ranks of the {type(strategy).__name__} search ended with different "
            f"supernets (a nasflow bug: please report it with the strategy): {ends}")
    if host.last is not None:
        strategy._restore(rt, host.last)


class _Host:
    """The launcher's side of the search: rank 0's checkpoints and progress, saved and
    published on the event loop (the launcher runs in a worker thread)."""

    def __init__(self, tools: OneShotContext, strategy: OneShotStrategy, rt: Run) -> None:
        self.tools, self.strategy, self.rt = tools, strategy, rt
        self.last: dict[str, Any] | None = None
        """Rank 0's latest checkpoint (its state after its latest epoch)."""

    def should_stop(self) -> bool:
        anyio.from_thread.check_cancelled()  # a cancelled search ends its ranks
        return False

    def receive(self, kind: str, *args: Any) -> None:
        if kind == "checkpoint":
            name, snapshot = args
            self.last = snapshot
            anyio.from_thread.run(self.tools.save_checkpoint, name, snapshot)
            self.strategy._epoch = int(snapshot["epoch"])
        elif kind == "progress":
            step, values = args
            anyio.from_thread.run(functools.partial(self.tools.progress, step, **values))


# --- on a rank ------------------------------------------------------------------------------


class _Job:
    """What every rank runs: the strategy's own training loop on its share of the data."""

    def __init__(self, strategy: OneShotStrategy, space: Any, evaluator: Any,
                 saved: dict[str, Any] | None) -> None:
        self.strategy = copy.copy(strategy)
        self.strategy.supernet = None  # the ranks build their own
        self.space, self.evaluator, self.saved = space, evaluator, saved

    def __call__(self, link: RankTrial) -> dict[str, Any]:
        strategy = self.strategy
        if torch.cuda.is_available() and backend_for(self.evaluator) == "nccl":
            torch.cuda.set_device(link.rank % torch.cuda.device_count())
        rt = strategy._setup(self.space, self.evaluator)
        if self.saved is not None:
            strategy._restore(rt, self.saved)
        synced = getattr(strategy, "_sync_ranks", True)  # False: only to show the drift
        if not synced:  # each rank its own draws (what NNI's ranks did)
            rt.gen.manual_seed(strategy.seed + 1000 * link.rank)
            rt.rng.seed(strategy.seed + 1000 * link.rank)
        rt.world = link.world if synced else 1
        rt.train = Shard(rt.train, link.rank, link.world)
        rt.val_shuffled = Shard(rt.val_shuffled, link.rank, link.world)
        if synced:
            _average_gradients(rt, link.world)
        # the search's own loop: a ``_RankContext`` is what ``oneshot_context`` finds
        ctx = cast(StrategyContext, _RankContext(link, self.space, self.evaluator))
        anyio.run(strategy._train, ctx, rt)
        return summary(strategy, rt)


def _average_gradients(rt: Run, world: int) -> None:
    """Average each parameter's gradient over the ranks once backward has accumulated it."""
    import torch.distributed as dist

    def hook(p: torch.Tensor) -> None:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad.div_(world)

    modules = [rt.model, *(m for m in rt.parts.values() if isinstance(m, torch.nn.Module))]
    for module in modules:
        for p in module.parameters():
            p.register_post_accumulate_grad_hook(hook)  # type: ignore[no-untyped-call]


def summary(strategy: OneShotStrategy, rt: Run) -> dict[str, Any]:
    """What a rank holds at the end, to compare: the architecture probabilities, the
    most probable choice of every label, and a digest of every parameter and part."""
    probs = strategy._probs(rt)
    digest = hashlib.sha256()
    tensors = [*rt.model.parameters(),
               *(t for m in rt.parts.values() if isinstance(m, torch.nn.Module)
                 for t in m.state_dict().values())]
    for t in tensors:
        digest.update(t.detach().cpu().contiguous().numpy().tobytes())
    choice: Sample = {label: max(alts, key=alts.__getitem__) for label, alts in probs.items()}
    return {"probs": probs, "choice": choice, "digest": digest.hexdigest()}


class _RankContext(OneShotContext):
    """A rank's one-shot context: rank 0 sends checkpoints and progress to the launcher;
    the other ranks' are dropped (they hold the same state)."""

    def __init__(self, link: RankTrial, space: Any, evaluator: Any) -> None:
        self.link = link
        self.model_space = space
        self.evaluator = evaluator

    async def record(self, sample: Sample, value: Any, *, intermediates: Any = ()) -> Any:
        raise RuntimeError("a rank records nothing: the search's process exports")

    async def progress(self, step: int | None = None, **values: Any) -> None:
        if self.link.rank == 0:
            self.link.send("progress", step, values)

    async def save_checkpoint(self, name: str, obj: Any) -> None:
        if self.link.rank == 0:
            self.link.send("checkpoint", name, obj)

    async def load_checkpoint(self, name: str) -> Any | None:
        return None
