"""Which memory format a supernet runs in: channels-last on the CPU, where it can.

At the sizes one-shot searches run (tens of channels, 4x4 to 32x32 maps, one thread),
torch's CPU pooling, batch-norm, depthwise and pointwise kernels are several times
faster on channels-last (NHWC) tensors than on contiguous (NCHW) ones: 3x3 max pooling
of 64x16x8x8 was measured 8x faster, average pooling 5x, batch norm 2x, depthwise 1.6x;
plain convolutions cost the same. A supernet runs every candidate, so that is most of a
DARTS step. The values are the same up to float rounding (the same operators, another
layout).

Channels-last only applies to 4-D inputs, and some models cannot take it (a ``.view``
flattening a 4-D activation fails on a channels-last tensor). So the format is decided
once, on the first 4-D batch: the supernet's 4-D weights are made channels-last and one
forward pass runs in SOFT mode with uniform weights (every candidate of every choice),
in eval mode without gradients (no statistics, no random numbers change). If it raises,
the weights go back to contiguous and the search runs as before. A model may still fail
later, in a pass the probe did not make (training mode, one path in HARD mode): the
training loop then goes back to contiguous for good and runs that step again
(``Run.guarded`` in ``_run``). GPUs keep the contiguous format (not measured there)
unless the strategy's ``channels_last=True`` asks for it.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from nasflow.strategy.oneshot._arch import ArchState

__all__ = [
    "choose_channels_last",
    "optimizer_memory_format",
    "set_memory_format",
    "to_channels_last",
]


def to_channels_last(t: torch.Tensor) -> torch.Tensor:
    """``t`` (4-D) with channels-last strides, ``t`` itself if it has them already.

    Unlike ``t.contiguous(memory_format=torch.channels_last)``, this also restrides a
    one-channel tensor (e.g. a grey image batch, or the weight of a convolution of one),
    which counts as contiguous in both formats and would stay NCHW-strided: operators
    pick their output's format from their inputs' strides, so such a tensor at the
    start of the network would keep every later one contiguous.
    """
    if t.stride(1) == 1 and t.is_contiguous(memory_format=torch.channels_last):
        return t
    return torch.empty_like(t, memory_format=torch.channels_last).copy_(t)


def _convert(t: torch.Tensor, fmt: torch.memory_format) -> torch.Tensor:
    if fmt == torch.channels_last:
        return to_channels_last(t)
    if t.stride() == torch.empty(t.shape, device="meta").stride():
        return t
    return torch.empty_like(t, memory_format=torch.contiguous_format).copy_(t)


def set_memory_format(model: nn.Module, fmt: torch.memory_format) -> None:
    """Store every 4-D parameter (and its gradient) and buffer of ``model`` in ``fmt``
    (channels-last or contiguous), in place: the parameter objects stay the same, so
    optimizers keep working."""
    for p in model.parameters():
        if p.ndim == 4:
            p.data = _convert(p.data, fmt)
            if p.grad is not None:
                p.grad = _convert(p.grad, fmt)
    for module in model.modules():
        for name, b in module._buffers.items():
            if b is not None and b.ndim == 4:
                module._buffers[name] = _convert(b, fmt)


def optimizer_memory_format(optimizer: torch.optim.Optimizer, fmt: torch.memory_format
                            ) -> None:
    """Store the 4-D tensors of ``optimizer``'s state (momenta, running averages) in
    ``fmt``, to match parameters ``set_memory_format`` moved."""
    for state in optimizer.state.values():
        for k, v in state.items():
            if isinstance(v, torch.Tensor) and v.ndim == 4:
                state[k] = _convert(v, fmt)


def _wants(model: nn.Module, x: Any, any_device: bool = False) -> bool:
    return (isinstance(x, torch.Tensor) and x.ndim == 4 and x.is_floating_point()
            and (any_device or x.device.type == "cpu")
            and any(p.ndim == 4 for p in model.parameters()))


def choose_channels_last(model: nn.Module, arch: ArchState, x: torch.Tensor, *,
                         force: bool = False) -> bool:
    """Whether the supernet ``model`` runs in channels-last for inputs like ``x``; if so,
    its weights are channels-last on return (see the module docstring). ``force``: on
    any device, without the probe (the strategy's ``channels_last=True``)."""
    if not _wants(model, x, any_device=force):
        return False
    set_memory_format(model, torch.channels_last)
    if force:
        return True
    saved = (arch.mode, arch.weights, arch.sample, arch.picked)
    modes = [m.training for m in model.modules()]
    try:
        arch.set_soft({label: torch.full((spec.n,), 1.0 / spec.n, device=x.device)
                       for label, spec in arch.specs.items()})
        model.eval()
        with torch.no_grad():
            model(to_channels_last(x[:2]))
    except Exception:  # a view on an NHWC tensor, or a space that cannot run SOFT
        set_memory_format(model, torch.contiguous_format)
        return False
    finally:
        arch.mode, arch.weights, arch.sample, arch.picked = saved
        for m, training in zip(model.modules(), modes, strict=True):
            m.training = training
    return True
