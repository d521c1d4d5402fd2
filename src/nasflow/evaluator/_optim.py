"""What one training step of the supervised evaluators is made of, beyond the model:
the optimizer, the learning-rate schedule, mixed precision and gradient clipping."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from nasflow.evaluator._args import _FP16_ON_CPU, _OPTIMIZERS, OptimizerSpec, ScheduleSpec

__all__ = ["Precision", "make_optimizer", "make_schedule"]


def make_optimizer(spec: OptimizerSpec, params: list[nn.Parameter], *, lr: float,
                   momentum: float, weight_decay: float, owner: str) -> torch.optim.Optimizer:
    """The optimizer for ``params``: a name or class gets ``lr``, ``weight_decay`` (and
    ``momentum`` where one was asked for); a factory sets its own."""
    kwargs: dict[str, Any] = {"lr": lr, "weight_decay": weight_decay}
    if momentum:
        kwargs["momentum"] = momentum  # checked at construction: sgd, or a class taking it
    if isinstance(spec, str):
        return _OPTIMIZERS[spec](params, **kwargs)
    if isinstance(spec, type):
        cls: Callable[..., torch.optim.Optimizer] = spec  # subclasses take lr, weight_decay
        return cls(params, **kwargs)
    result = spec(params)
    if not isinstance(result, torch.optim.Optimizer):
        raise TypeError(
            f"{owner}(optimizer=...): the factory {spec!r} returned "
            f"{type(result).__name__}, not a torch.optim.Optimizer"
        )
    return result


def make_schedule(spec: ScheduleSpec, optimizer: torch.optim.Optimizer, *, total_steps: int,
                  lr: float, owner: str) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The learning-rate schedule over ``total_steps`` optimizer steps (``None``: a constant
    learning rate). It is stepped after every batch.

    ``"cosine"`` decays from ``lr`` to 0 along half a cosine; ``"step"`` multiplies the
    rate by 0.1 at half and again at three quarters of training; ``"onecycle"`` warms up
    to ``lr`` over the first 30% and anneals to ``lr / 1e4`` (torch's ``OneCycleLR``, with
    the momentum left as set).
    """
    if spec == "none":
        return None
    total = max(total_steps, 1)
    if spec == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))
        )
    if spec == "step":
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: 0.1 ** ((step >= total // 2) + (step >= (3 * total) // 4))
        )
    if spec == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=[g["lr"] for g in optimizer.param_groups],
            total_steps=total + 1,  # the last step() after the last batch stays in range
            cycle_momentum=False,
        )
    if isinstance(spec, str):  # pragma: no cover - checked at construction
        raise ValueError(f"unknown schedule {spec!r}")
    result = spec(optimizer, total)
    if not isinstance(result, torch.optim.lr_scheduler.LRScheduler):
        raise TypeError(
            f"{owner}(lr_schedule=...): the function {spec!r} returned "
            f"{type(result).__name__}, not a torch.optim.lr_scheduler.LRScheduler"
        )
    return result


class Precision:
    """Autocast for one trial's forward passes, and the GradScaler that float16 needs."""

    def __init__(self, name: str, device: torch.device, owner: str) -> None:
        self.name = name
        """``"fp32"``, ``"fp16"`` or ``"bf16"``."""
        self.device = device
        if name == "fp16" and device.type != "cuda":
            raise ValueError(_FP16_ON_CPU.format(owner=owner))
        self.dtype: torch.dtype | None = {
            "fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[name]
        """The autocast dtype (``None``: plain float32)."""
        self.scaler = torch.amp.GradScaler("cuda") if name == "fp16" else None
        """Scales the float16 loss so small gradients do not underflow."""

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """The context the forward pass and the loss run in."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer,
             params: list[nn.Parameter], grad_clip: float | None) -> None:
        """Backward, clip (on the unscaled gradients), and step."""
        scaler = self.scaler
        if scaler is None:
            torch.autograd.backward(loss)
            if grad_clip is not None:
                nn.utils.clip_grad_norm_(params, grad_clip)
            optimizer.step()
            return
        torch.autograd.backward(scaler.scale(loss))
        if grad_clip is not None:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(params, grad_clip)
        scaler.step(optimizer)  # skips the step when the gradients overflowed
        scaler.update()
