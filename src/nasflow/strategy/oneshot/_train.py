"""``OneShotStrategy``: the loop every one-shot strategy shares.

The strategy coroutine stays on the event loop and does only light work there: each
chunk of training steps, each validation and each checkpoint runs in a worker thread
(``anyio.to_thread.run_sync``), so the loop stays responsive and a cancelled experiment
stops between two chunks. After every epoch the strategy saves a checkpoint (supernet
weights, architecture parameters, optimizers and random states) and then publishes a
``StrategyProgress`` event, so an event always describes a state that is on disk.

A subclass says how one training step runs (``_step``), what architecture validation
uses (``_eval_arch``), the architecture probabilities it streams (``_probs``) and what
it records at the end (``_export``).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar, TypeVar

import anyio
import torch
import torch.nn as nn

from nasflow.evaluator import (
    Batches,
    Classification,
    Regression,
    Supervised,
    resolve_device,
)
from nasflow.exceptions import MetricError, NasflowError
from nasflow.space import Sample
from nasflow.strategy._base import Strategy, StrategyContext, oneshot_context
from nasflow.strategy.oneshot._run import Run
from nasflow.strategy.oneshot._supernet import Supernet

__all__ = ["OneShotStrategy", "Run"]

_log = logging.getLogger("nasflow.strategy.oneshot")

STATE_VERSION = 1

T = TypeVar("T")


class OneShotStrategy(Strategy):
    """Base class of the one-shot strategies (see the module docstring).

    ``epochs`` defaults to the evaluator's; ``top_k`` architectures are recorded at the
    end (``export_top_models`` ranks them); ``seed`` fixes path sampling and parameter
    initialisation; ``chunk_steps`` training steps run per worker-thread call (the
    granularity at which a stop or cancellation takes effect); ``checkpoint`` names the
    checkpoint file under the experiment directory.

    Speed switches (see docs/oneshot.md, "Threads and speed"): ``channels_last``
    ``None`` (default) runs a supernet fed 4-D inputs on the CPU channels-last when a
    probe pass shows the model takes it, back to contiguous for good if a later pass
    fails; ``True`` makes it channels-last on any device without the probe or the
    fallback; ``False`` keeps it contiguous. ``share_layers`` lets SOFT-mode candidates
    share the outputs of identical stateless layers on the same input (``_share``).
    """

    differentiable: ClassVar[bool] = False
    """Whether the strategy mixes candidates (SOFT / GATE modes)."""
    evaluates_itself: ClassVar[bool] = True
    """It submits no trials (it records what it ranked): the experiment starts no trial
    workers for it, and with ``training_service="ray"`` it places its own training."""
    # defaults for strategies pickled before these switches existed (resume unpickles
    # the stored strategy without calling __init__)
    channels_last: bool | None = None
    share_layers: bool = True
    cell_mixing: str = "slot"
    """How the supernet mixes cells with per-input ops (``Supernet``); strategies pickled
    before the switch resume per slot, as they ran."""
    _rank_ends: list[Any] | None = None
    """With ``devices=N``: what each rank held at the end (``_ranks.summary``), rank 0's
    first (they agree, or the search failed)."""

    def __init__(self, *, epochs: int | None = None, top_k: int = 5, seed: int = 0,
                 chunk_steps: int = 20, checkpoint: str | None = None,
                 channels_last: bool | None = None, share_layers: bool = True) -> None:
        name = type(self).__name__
        if epochs is not None and (not isinstance(epochs, int) or epochs < 1):
            raise ValueError(f"{name}(epochs=...): got {epochs!r}; expected a positive int")
        if not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"{name}(top_k=...): got {top_k!r}; expected a positive int")
        if not isinstance(chunk_steps, int) or chunk_steps < 1:
            raise ValueError(f"{name}(chunk_steps=...): got {chunk_steps!r}; expected a "
                             "positive int")
        if channels_last not in (None, True, False):
            raise TypeError(f"{name}(channels_last=...): got {channels_last!r}; expected "
                            "None (automatic), True or False")
        if not isinstance(share_layers, bool):
            raise TypeError(f"{name}(share_layers=...): got {share_layers!r}; expected a "
                            "bool")
        self.epochs = epochs
        self.top_k = top_k
        self.seed = seed
        self.chunk_steps = chunk_steps
        self.checkpoint = checkpoint or f"oneshot-{name.lower()}"
        self.channels_last = channels_last
        self.share_layers = share_layers
        self._epoch = 0
        self._phase = "train"
        self._resuming = False
        self.supernet: Supernet | None = None
        """The trained supernet once ``run`` has built it (``supernet.freeze(sample)``
        gives a plain model with inherited weights)."""

    # --- the contract ---------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Progress as JSON: the completed epoch, the phase and the checkpoint name; the
        weights themselves are in the checkpoint (``OneShotContext.save_checkpoint``)."""
        return {"version": STATE_VERSION, "strategy": type(self).__name__,
                "epoch": self._epoch, "phase": self._phase, "checkpoint": self.checkpoint}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state``: ``run`` then loads the checkpoint of the same name from
        the experiment directory and trains on from its last completed epoch."""
        if state.get("version") != STATE_VERSION or state.get("strategy") != type(self).__name__:
            raise ValueError(
                f"{type(self).__name__}.load_state_dict: the state {state!r} was not made "
                f"by {type(self).__name__} (state version {STATE_VERSION})"
            )
        self._epoch = int(state["epoch"])
        self._phase = str(state["phase"])
        self.checkpoint = str(state["checkpoint"])
        self._resuming = True

    async def run(self, ctx: StrategyContext) -> None:
        """Train the supernet (continuing from the checkpoint in the experiment directory
        if there is one), then record the ranked architectures."""
        if self._resuming and self._phase == "done":
            _log.info("%s: the search already finished; nothing to resume", self)
            return
        evaluator = _training_evaluator(ctx, type(self).__name__)
        tools = oneshot_context(ctx)
        rt = await anyio.to_thread.run_sync(self._setup, tools.model_space, evaluator)
        rt.sign = ctx.objective.sign
        self.supernet = rt.supernet
        # the checkpoint is authoritative: an experiment directory is never reused by
        # another experiment, so one found there is this search's own, saved before an
        # interruption (resume takes a strategy snapshot only once trials end, and a
        # one-shot search records its trials at the very end)
        saved = await tools.load_checkpoint(self.checkpoint)
        if saved is not None:
            await anyio.to_thread.run_sync(self._restore, rt, saved)
        elif self._resuming and self._epoch > 0:
            raise NasflowError(
                f"{type(self).__name__}: resuming after epoch {self._epoch}, but the "
                f"checkpoint {self.checkpoint!r} is not in this experiment's directory; "
                "resume the same experiment (same id and NASFLOW_HOME)"
            )
        else:
            self._epoch = 0
        self._phase = "train"
        if evaluator.devices > 1:  # one supernet on N processes
            from nasflow.strategy.oneshot._ranks import train_on_ranks

            await train_on_ranks(self, ctx, rt, saved)
        elif tools.ray is not None:  # training_service="ray": one Ray task
            from nasflow.strategy.oneshot._ray import train_on_ray

            await train_on_ray(self, ctx, rt, saved, *tools.ray)
        else:
            await self._train(ctx, rt)
        self._phase = "export"
        await self._export(ctx, rt)
        self._phase = "done"

    async def _train(self, ctx: StrategyContext, rt: Run) -> None:
        for epoch in range(rt.epoch + 1, rt.epochs + 1):
            started = time.perf_counter()
            rt.epoch = epoch
            rt.restart_val()  # each epoch cycles the validation data from its start
            await anyio.to_thread.run_sync(self._begin_epoch, rt)
            batches = iter(rt.train)
            sums: dict[str, torch.Tensor] = {}
            steps = [0]
            while not await anyio.to_thread.run_sync(self._chunk, rt, batches, sums, steps):
                pass
            train_seconds = time.perf_counter() - started
            stats = {k: float(v) / max(steps[0], 1) for k, v in sums.items()}
            if "train_loss" in stats and not _finite(stats["train_loss"]):
                raise MetricError(
                    f"{type(self).__name__}: the supernet's training loss became "
                    f"{stats['train_loss']} in epoch {epoch}; try a lower lr than "
                    f"{rt.evaluator.lr}"
                )
            stats.update(await anyio.to_thread.run_sync(rt.guarded, self._end_epoch, rt))
            await anyio.to_thread.run_sync(rt.share_buffers)
            stats[f"val_{rt.metric}"] = await anyio.to_thread.run_sync(self._validate, rt)
            probs = await anyio.to_thread.run_sync(self._probs, rt)
            snapshot = await anyio.to_thread.run_sync(self._snapshot, rt)
            await oneshot_context(ctx).save_checkpoint(self.checkpoint, snapshot)
            self._epoch = epoch
            await oneshot_context(ctx).progress(
                step=epoch, strategy=type(self).__name__, phase="train", epoch=epoch,
                epochs=rt.epochs, steps=steps[0], seconds=time.perf_counter() - started,
                train_seconds=train_seconds, **stats, probs=probs,
            )

    # --- in the worker thread -------------------------------------------------------------

    def _setup(self, space: Any, evaluator: Supervised) -> Run:
        device = resolve_device(evaluator.device)
        # a fixed seed for the weights the conversion creates, without touching the
        # caller's global random state
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            supernet = Supernet(space, differentiable=self.differentiable,
                                strategy=type(self).__name__, cell_mixing=self.cell_mixing)
        supernet.model.to(device)
        supernet.arch.share = self.share_layers
        # batch order follows the evaluator's seed (as its own training does); path
        # sampling follows the strategy's
        data_seed = evaluator.seed if evaluator.seed is not None else self.seed
        gens = [torch.Generator().manual_seed(s)
                for s in (data_seed, data_seed + 1, data_seed + 2, self.seed)]
        rt = Run(
            supernet=supernet, evaluator=evaluator, device=device,
            optimizer=evaluator._make_optimizer(supernet.model),
            criterion=evaluator._make_criterion(device),
            train_gen=gens[0], val_gen=gens[1], gen=gens[3], rng=random.Random(self.seed),
            train=Batches(evaluator, evaluator.train_data, device, evaluator.batch_size,
                           gens[0]),
            val_shuffled=Batches(evaluator, evaluator.val_data, device, evaluator.batch_size,
                                  gens[1]),
            val=Batches(evaluator, evaluator.val_data, device, evaluator.val_batch_size, None),
            calibration=Batches(evaluator, evaluator.train_data, device,
                                 evaluator.batch_size, gens[2]),
            metric=_metric_name(evaluator),
            epochs=self.epochs or evaluator.epochs,
            channels_last=False if self.channels_last is False else None,
            memory_format=self.channels_last,
            cal_gen=gens[2],
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + 1)
            self._build(rt)
        return rt

    def _chunk(self, rt: Run, batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
               sums: dict[str, torch.Tensor], steps: list[int]) -> bool:
        """Run up to ``chunk_steps`` steps; True once the epoch's batches are used up."""
        rt.model.train()
        for _ in range(self.chunk_steps):
            try:
                x, y = next(batches)
            except StopIteration:
                return True
            for k, v in rt.guarded(self._step, rt, x, y).items():
                v = v.detach()
                sums[k] = sums[k] + v if k in sums else v
            steps[0] += 1
        return False

    def _validate(self, rt: Run) -> float:
        return rt.guarded(self._validate_once, rt)

    def _validate_once(self, rt: Run) -> float:
        rt.model.eval()
        with torch.no_grad():
            return float(rt.evaluator._score(rt.model, self._eval_batches(rt), rt.device))

    def _eval_batches(self, rt: Run) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for batch in rt.batches(rt.val):
            self._eval_arch(rt)
            yield batch

    def evaluate_sample(self, rt: Run, sample: Sample, *, calibrate: int = 4) -> float:
        """The supernet's validation metric for one architecture, with inherited weights.

        Batch-norm statistics are re-estimated for it first on ``calibrate`` training
        batches (the supernet's own mix the statistics of every path).
        """
        return rt.guarded(self._evaluate_sample, rt, sample, calibrate)

    def _evaluate_sample(self, rt: Run, sample: Sample, calibrate: int) -> float:
        rt.supernet.set_hard(sample)
        if calibrate:
            recalibrate_bn(rt.model, rt.batches(rt.calibration), calibrate)
        rt.model.eval()
        with torch.no_grad():
            return float(rt.evaluator._score(rt.model, _fixed(rt, sample), rt.device))

    def _snapshot(self, rt: Run) -> dict[str, Any]:
        return {
            "epoch": rt.epoch,
            "model": rt.model.state_dict(),
            "optimizer": rt.optimizer.state_dict(),
            "generators": [g.get_state() for g in (rt.train_gen, rt.val_gen, rt.gen)],
            "rng": rt.rng.getstate(),
            "parts": self._parts_state(rt),
            # False once a pass failed channels-last: a resumed run must not try again
            "channels_last": rt.channels_last,
        }

    def _restore(self, rt: Run, saved: dict[str, Any]) -> None:
        rt.model.load_state_dict(saved["model"])
        rt.optimizer.load_state_dict(saved["optimizer"])
        for g, state in zip((rt.train_gen, rt.val_gen, rt.gen), saved["generators"],
                            strict=True):
            g.set_state(state)
        rt.rng.setstate(saved["rng"])
        self._load_parts(rt, saved["parts"])
        if saved.get("channels_last") is False and rt.channels_last is not False:
            rt.use_contiguous()
        rt.epoch = int(saved["epoch"])
        self._epoch = rt.epoch

    # --- what subclasses provide ----------------------------------------------------------

    def _build(self, rt: Run) -> None:
        """Create the strategy's own parts (architecture parameters...) in ``rt.parts``."""

    def _begin_epoch(self, rt: Run) -> None:
        """Called before each epoch's steps (e.g. to anneal a temperature)."""

    def _end_epoch(self, rt: Run) -> dict[str, float]:
        """Called after each epoch's steps; extra values for the progress event."""
        return {}

    def _step(self, rt: Run, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """One training step on a training batch; the losses to average per epoch."""
        raise NotImplementedError

    def _eval_arch(self, rt: Run) -> None:
        """Set the architecture the next validation batch runs."""
        raise NotImplementedError

    def _probs(self, rt: Run) -> dict[str, dict[str, float]]:
        """The current probability of every alternative of every label (JSON-able)."""
        return {}

    def _parts_state(self, rt: Run) -> dict[str, Any]:
        return {k: v.state_dict() for k, v in rt.parts.items()}

    def _load_parts(self, rt: Run, state: dict[str, Any]) -> None:
        for k, v in state.items():
            rt.parts[k].load_state_dict(v)

    async def _export(self, ctx: StrategyContext, rt: Run) -> None:
        """Record the ranked architectures with ``oneshot_context(ctx).record``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(epochs={self.epochs}, top_k={self.top_k}, seed={self.seed})"


# --- helpers ------------------------------------------------------------------------------


def _fixed(rt: Run, sample: Sample) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for batch in rt.batches(rt.val):
        rt.supernet.set_hard(sample)
        yield batch


def recalibrate_bn(model: nn.Module, batches: Any, n: int) -> None:
    """Re-estimate every batch norm's running statistics (cumulative average) on ``n``
    batches of ``batches``, in training mode, without gradients."""
    norms = [m for m in model.modules()
             if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    try:
        with torch.no_grad():
            for i, (x, _) in enumerate(batches):
                if i >= n:
                    break
                model(x)
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum


@contextmanager
def frozen(params: list[nn.Parameter]) -> Iterator[None]:
    """Turn off gradients of ``params`` for a while (an architecture step need not
    compute the weights' gradients)."""
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, flags, strict=True):
            p.requires_grad_(flag)


def _training_evaluator(ctx: StrategyContext, name: str) -> Supervised:
    evaluator = oneshot_context(ctx).evaluator
    if not isinstance(evaluator, Supervised):
        raise TypeError(
            f"{name} trains one supernet on the evaluator's data, so it needs "
            f"nf.evaluator.Classification or nf.evaluator.Regression, got "
            f"{type(evaluator).__name__}"
        )
    if ctx.objective.multi:
        raise NasflowError(
            f"{name} ranks architectures by one metric; this experiment optimises "
            f"{list(ctx.objective.directions)}"
        )
    return evaluator


def _metric_name(evaluator: Supervised) -> str:
    if isinstance(evaluator, Classification):
        return "accuracy"
    if isinstance(evaluator, Regression):
        return "mse"
    return "metric"


def _finite(x: float) -> bool:
    return x == x and abs(x) != float("inf")
