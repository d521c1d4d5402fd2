"""``Run``: what one one-shot search holds while it trains (model, data, device, format),
and the guard that moves a supernet back to the contiguous format when a pass fails in
channels-last."""

from __future__ import annotations

import logging
import random
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
import torch.nn as nn

from nasflow.evaluator import Batches, Supervised
from nasflow.exceptions import NasflowError
from nasflow.strategy.oneshot._format import (
    choose_channels_last,
    optimizer_memory_format,
    set_memory_format,
    to_channels_last,
)
from nasflow.strategy.oneshot._share import SharedOutputModifiedError
from nasflow.strategy.oneshot._supernet import Supernet

__all__ = ["Run"]

T = TypeVar("T")

_log = logging.getLogger("nasflow.strategy.oneshot")


@dataclass
class Run:
    """Everything one search holds while it runs (torch objects; never on the loop)."""

    supernet: Supernet
    evaluator: Supervised
    device: torch.device
    optimizer: torch.optim.Optimizer
    criterion: Any
    train_gen: torch.Generator
    val_gen: torch.Generator
    gen: torch.Generator
    """Path sampling, Gumbel noise and the like."""
    rng: random.Random
    """Samples drawn through the torch-free space (``space.random``)."""
    train: Iterable[tuple[Any, Any]]
    """The training batches (on a rank: its share, ``Shard``)."""
    val_shuffled: Iterable[tuple[Any, Any]]
    """The validation batches of architecture steps (on a rank: its share)."""
    val: Batches
    calibration: Batches
    metric: str
    """The validation metric's name (``accuracy``, ``mse``)."""
    sign: float = 1.0
    """``+1`` when a larger metric is better, else ``-1``."""
    epoch: int = 0
    epochs: int = 0
    parts: dict[str, Any] = field(default_factory=dict)
    """Strategy-specific objects (architecture parameters, controllers, their optimizers)."""
    channels_last: bool | None = None
    """Whether 4-D inputs run channels-last (decided on the first batch; see ``_format``)."""
    memory_format: bool | None = None
    """The strategy's ``channels_last`` setting: ``None`` decides on the first batch and
    goes back to contiguous if a pass fails (``guarded``); ``True`` / ``False`` force it."""
    cal_gen: torch.Generator | None = None
    """The generator that shuffles ``calibration``."""
    world: int = 1
    """How many ranks train this supernet together (``devices=N``; see ``_ranks``)."""
    _val_iter: Iterator[tuple[torch.Tensor, torch.Tensor]] | None = None
    _drawn: list[tuple[Any, Any]] | None = None  # validation batches drawn while guarded
    _replay: deque[tuple[Any, Any]] = field(default_factory=deque)  # ...to draw again

    def mean(self, value: float) -> float:
        """``value`` averaged over the ranks (itself in one process): for state a step
        keeps besides gradients (ENAS's reward baseline), so that every rank keeps the
        same."""
        if self.world == 1:
            return value
        import torch.distributed as dist

        t = torch.tensor([float(value)], dtype=torch.float64)
        dist.all_reduce(t)
        return float(t.item()) / self.world

    def share_buffers(self) -> None:
        """Every rank takes rank 0's buffers (batch-norm statistics), as DDP does; nothing
        in one process."""
        if self.world == 1:
            return
        import torch.distributed as dist

        for b in self.model.buffers():
            dist.broadcast(b, 0)

    @property
    def model(self) -> nn.Module:
        """The supernet's module."""
        return self.supernet.model

    def prepare(self, x: Any) -> Any:
        """An input batch in the supernet's memory format."""
        if self.channels_last is None:
            self.channels_last = choose_channels_last(self.model, self.supernet.arch, x,
                                                      force=self.memory_format is True)
            if self.channels_last:  # state restored from a checkpoint follows the weights
                for opt in self._optimizers():
                    optimizer_memory_format(opt, torch.channels_last)
        if self.channels_last and isinstance(x, torch.Tensor) and x.ndim == 4:
            return to_channels_last(x)
        return x

    def batches(self, source: Iterable[tuple[Any, Any]]) -> Iterator[tuple[Any, Any]]:
        """``source``'s batches, inputs in the supernet's memory format."""
        for x, y in source:
            yield self.prepare(x), y

    def next_val(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next validation batch, cycling (for architecture steps)."""
        if self._replay:  # drawn by a pass that failed in channels-last, run again
            x, y = self._replay.popleft()
            return self.prepare(x), y
        for _ in range(2):
            if self._val_iter is None:
                self._val_iter = iter(self.val_shuffled)
            try:
                x, y = next(self._val_iter)
            except StopIteration:
                self._val_iter = None
                continue
            if self._drawn is not None:
                self._drawn.append((x, y))
            return self.prepare(x), y
        raise NasflowError("the validation data yields no batch")

    def restart_val(self) -> None:
        """Let ``next_val`` cycle the validation data from its start (each epoch)."""
        self._val_iter = None
        self._replay.clear()

    def guarded(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` (a training step, a validation, an evaluation), safe from a
        channels-last supernet failing where the probe passed (e.g. a ``.view`` run in
        training mode only).

        While the format is automatic (``memory_format is None``) and may be
        channels-last, what such a pass changes besides the weights is saved first: the
        random streams (``gen``, ``rng``, ``cal_gen``, torch's global one), the model's
        buffers (batch-norm statistics), the strategy's ``parts`` (architecture
        parameters, controllers and their optimizers) and the validation batches it
        draws. If ``fn`` raises while the supernet is channels-last, all of that is put
        back, the supernet (weights, gradients, optimizer state) goes back to contiguous
        for good, and ``fn`` runs again: as it would have run contiguous from the start.
        A second failure propagates. (The weights and their optimizer are not saved: a
        step updates them last, once nothing is left to fail.)
        """
        if self.memory_format is not None or self.channels_last is False \
                or self._drawn is not None:
            return fn(*args)
        saved = self._save()
        self._drawn = []
        try:
            return fn(*args)
        except (NasflowError, SharedOutputModifiedError):
            raise  # nasflow's own errors say what is wrong; the format is not it
        except Exception as exc:
            if not self.channels_last:
                raise
            first = exc
            _log.warning("the supernet failed in channels-last (%s: %s); it runs "
                         "contiguous from now on", type(exc).__name__, exc)
        finally:
            drawn, self._drawn = self._drawn, None
        self._load(saved)
        self._replay.extendleft(reversed(drawn))
        self.use_contiguous()
        try:
            return fn(*args)
        except Exception as exc:
            raise exc from first  # both formats fail: show what channels-last said too

    def use_contiguous(self) -> None:
        """Run the supernet in the contiguous format from now on."""
        set_memory_format(self.model, torch.contiguous_format)
        for opt in self._optimizers():
            optimizer_memory_format(opt, torch.contiguous_format)
        self.channels_last = False

    def _optimizers(self) -> list[torch.optim.Optimizer]:
        return [self.optimizer, *(p for p in self.parts.values()
                                  if isinstance(p, torch.optim.Optimizer))]

    def _save(self) -> tuple[Any, ...]:
        gens = [g for g in (self.gen, self.cal_gen) if g is not None]
        return (torch.random.get_rng_state(), [g.get_state() for g in gens],
                self.rng.getstate(), [b.clone() for b in self.model.buffers()],
                {k: _cloned(v.state_dict()) for k, v in self.parts.items()})

    def _load(self, saved: tuple[Any, ...]) -> None:
        rng_state, gen_states, rng, buffers, parts = saved
        torch.random.set_rng_state(rng_state)
        gens = [g for g in (self.gen, self.cal_gen) if g is not None]
        for g, state in zip(gens, gen_states, strict=True):
            g.set_state(state)
        self.rng.setstate(rng)
        with torch.no_grad():
            for b, value in zip(self.model.buffers(), buffers, strict=True):
                b.copy_(value)
        for k, state in parts.items():
            self.parts[k].load_state_dict(state)

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The training loss of the supernet (in its current mode) on one batch."""
        out = self.model(self.prepare(x))
        y = self.evaluator._check_output(out, y)
        loss: torch.Tensor = self.criterion(out, y)
        return loss


def _cloned(state: Any) -> Any:
    """``state`` (a ``state_dict``) with its tensors copied."""
    if isinstance(state, torch.Tensor):
        return state.clone()
    if isinstance(state, dict):
        out = type(state)((k, _cloned(v)) for k, v in state.items())
        if hasattr(state, "_metadata"):  # a module's: versions its load_state_dict reads
            out._metadata = state._metadata  # type: ignore[attr-defined]
        return out
    if isinstance(state, (list, tuple)):
        return type(state)(_cloned(v) for v in state)
    return state
