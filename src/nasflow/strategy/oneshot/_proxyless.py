"""``Proxyless``: ProxylessNAS's binary gates, one path per step.

Each step samples one architecture from ``softmax(alpha)`` and runs only it. The weight
step trains that path (HARD mode). The architecture step (on a validation batch) uses
binary gates ``g = onehot(picked)`` whose gradient reaches ``alpha`` through the
softmax (``dL/dalpha_i = sum_j dL/dg_j p_j (delta_ij - p_i)``); ``dL/dg_j`` for the
candidates that did not run is ``<dL/dy, o_j>``, with ``o_j`` recomputed without
autograd in the backward pass (GATE mode), so memory stays that of one path.
"""

from __future__ import annotations

from typing import Any

import torch

from nasflow.strategy.oneshot._darts import DARTS, ArchParameters
from nasflow.strategy.oneshot._train import Run, frozen

__all__ = ["Proxyless"]


class Proxyless(DARTS):
    """ProxylessNAS (as NNI's ``Proxyless``): same arguments as ``DARTS``.

    Validation runs the most probable architecture; ranking is by probability, as for
    DARTS. Its gates pick one op and one input per op slot, so cells are always mixed
    per slot (``cell_mixing="slot"``, the only value it takes).
    """

    def __init__(self, **kwargs: Any) -> None:
        mixing = kwargs.setdefault("cell_mixing", "slot")
        if mixing != "slot":
            raise ValueError(
                f"Proxyless(cell_mixing=...): got {mixing!r}; its binary gates pick one op "
                "and one input per op slot, so only 'slot' fits (DARTS and GumbelDARTS "
                "take 'edge')")
        super().__init__(**kwargs)

    def _pick(self, rt: Run, probs: dict[str, torch.Tensor]) -> dict[str, list[int]]:
        picked = {}
        for label, p in probs.items():
            spec = rt.supernet.specs[label]
            k = spec.n_chosen or 1
            idx = torch.multinomial(p.detach().cpu(), k, replacement=False, generator=rt.gen)
            picked[label] = sorted(int(i) for i in idx)
        return picked

    def _arch_step(self, rt: Run) -> torch.Tensor:
        xv, yv = rt.next_val()
        alpha: ArchParameters = rt.parts["alpha"]
        opt: torch.optim.Optimizer = rt.parts["arc_optimizer"]
        opt.zero_grad(set_to_none=True)
        probs = alpha.probs()
        picked = self._pick(rt, probs)
        gates = {}
        for label, p in probs.items():
            hot = torch.zeros_like(p)
            hot[picked[label]] = 1.0
            gates[label] = hot - p.detach() + p  # one-hot value, softmax gradient
        with frozen(list(rt.model.parameters())):
            rt.supernet.set_gate(picked, gates)
            loss = self._penalised(rt, rt.loss(xv, yv))
            torch.autograd.backward(loss)
        opt.step()
        return loss

    def _step(self, rt: Run, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        if rt.epoch > self.warmup_epochs:
            out["arch_loss"] = self._arch_step(rt)
        alpha: ArchParameters = rt.parts["alpha"]
        with torch.no_grad():
            picked = self._pick(rt, alpha.probs())
        specs = rt.supernet.specs
        rt.supernet.set_hard({k: specs[k].value(v) for k, v in picked.items()})
        rt.optimizer.zero_grad(set_to_none=True)
        loss = rt.loss(x, y)
        torch.autograd.backward(loss)
        if self.gradient_clip_val is not None:
            torch.nn.utils.clip_grad_norm_(rt.model.parameters(), self.gradient_clip_val)
        rt.optimizer.step()
        out["train_loss"] = loss
        return out

    def _eval_arch(self, rt: Run) -> None:
        alpha: ArchParameters = rt.parts["alpha"]
        specs = rt.supernet.specs
        with torch.no_grad():
            sample = {}
            for label, p in alpha.probs().items():
                k = specs[label].n_chosen or 1
                sample[label] = specs[label].value(
                    sorted(int(i) for i in torch.topk(p, k).indices))
        rt.supernet.set_hard(sample)
