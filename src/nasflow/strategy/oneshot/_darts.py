"""``DARTS`` and ``GumbelDARTS``: architecture parameters learned by gradient descent.

One parameter vector ``alpha`` per label (one entry per alternative, initialised to
``randn * 1e-3``); with ``cell_mixing="edge"`` (the default) a cell whose ops depend on
their input has one per edge instead of one per op slot and input (``Supernet``).
Each training step first takes an architecture step on a validation batch (Adam on
``alpha``, the weights frozen), then a weight step on a training batch with the
architecture fixed: first-order DARTS. Candidates are mixed with ``softmax(alpha)``
(DARTS) or a Gumbel-softmax sample at an annealed temperature (GumbelDARTS).

At the end the ``top_k`` most probable architectures under ``softmax(alpha)`` are
recorded, most probable first (see ``_ranking``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn

from nasflow._kernel import nni_arguments
from nasflow.strategy._base import StrategyContext, oneshot_context
from nasflow.strategy.oneshot._arch import LabelSpec
from nasflow.strategy.oneshot._penalty import CostPenalty
from nasflow.strategy.oneshot._ranking import top_by_probability
from nasflow.strategy.oneshot._supernet import CELL_MIXINGS
from nasflow.strategy.oneshot._train import OneShotStrategy, Run, frozen

__all__ = ["DARTS", "ArchParameters", "GumbelDARTS", "record_ranked"]


class ArchParameters(nn.Module):
    """One ``alpha`` vector per label."""

    def __init__(self, specs: dict[str, LabelSpec], labels: list[str]) -> None:
        super().__init__()
        self.labels = list(labels)
        """The labels, in the space's sampling order."""
        self.alpha = nn.ParameterList(
            [nn.Parameter(torch.randn(specs[label].n) * 1e-3) for label in self.labels]
        )
        self._index = {label: i for i, label in enumerate(self.labels)}

    def __getitem__(self, label: str) -> nn.Parameter:
        return self.alpha[self._index[label]]  # type: ignore[no-any-return]

    def probs(self) -> dict[str, torch.Tensor]:
        """``softmax(alpha)`` per label."""
        return {label: torch.softmax(a, -1) for label, a in zip(self.labels, self.alpha,
                                                               strict=True)}


def probs_json(rt: Run, probs: dict[str, torch.Tensor]) -> dict[str, dict[str, float]]:
    """``{label: {alternative: probability}}`` for a progress event."""
    specs = rt.supernet.specs
    return {
        label: {specs[label].key(i): round(float(p), 5) for i, p in enumerate(v.tolist())}
        for label, v in probs.items()
    }


async def record_ranked(strategy: OneShotStrategy, ctx: StrategyContext, rt: Run,
                        probs: dict[str, torch.Tensor], *, evaluate: bool) -> None:
    """Record the ``top_k`` most probable architectures; the primary metric is the
    architecture's probability (``1 - p`` for a minimised objective), so that
    ``export_top_models`` ranks exactly as the strategy does."""
    import anyio

    supernet = rt.supernet
    probs = supernet.space_probs(probs)
    plain = {k: v.tolist() for k, v in probs.items()}
    ranked = top_by_probability(supernet.space, supernet.specs, plain, strategy.top_k)
    objective = ctx.objective
    for rank, (sample, logp) in enumerate(ranked, 1):
        if ctx.seen(sample):
            continue  # recorded before a resume
        p = math.exp(logp)
        active = max(len(sample), 1)
        value: dict[str, Any] = {
            objective.primary: p if objective.direction == "maximize" else 1.0 - p,
            "arch_prob": p,
            "arch_mean_prob": math.exp(logp / active),
            "arch_rank": float(rank),
        }
        penalty: CostPenalty | None = getattr(strategy, "penalty", None)
        if penalty is not None:  # the additive estimate the search traded against
            value[penalty.name] = penalty.estimate(sample, rt)
        if evaluate:
            value[f"supernet_{rt.metric}"] = await anyio.to_thread.run_sync(
                strategy.evaluate_sample, rt, sample)
        await oneshot_context(ctx).record(sample, value)


class DARTS(OneShotStrategy):
    """Differentiable architecture search (first order), as NNI's ``DARTS``.

    ``arc_learning_rate`` / ``arc_weight_decay``: Adam (betas 0.5, 0.999) on the
    architecture parameters; ``warmup_epochs``: epochs that train the weights only;
    ``gradient_clip_val``: clip the weights' gradient norm; ``evaluate_top``: also
    measure each recorded architecture on the validation data with inherited weights
    (``supernet_<metric>`` in its metrics); ``penalty``: a ``LatencyPenalty``,
    ``FLOPsPenalty`` or ``ParamsPenalty`` whose expected cost under ``softmax(alpha)`` is
    added to every architecture step's loss (hardware-aware search; each recorded
    architecture then carries its estimated cost). Weights are trained with the
    evaluator's optimizer, learning rate, batch size, epochs and device.
    """

    differentiable = True

    @nni_arguments({
        "log_prob_every_n_step": "the architecture probabilities are recorded once per "
                                 "epoch as progress (res.progress(), exp.events())",
        "unrolled": "it is first order only",
    })
    def __init__(self, *, arc_learning_rate: float = 3e-4, arc_weight_decay: float = 1e-3,
                 warmup_epochs: int = 0, gradient_clip_val: float | None = None,
                 evaluate_top: bool = True, epochs: int | None = None, top_k: int = 5,
                 seed: int = 0, chunk_steps: int = 20, checkpoint: str | None = None,
                 channels_last: bool | None = None, share_layers: bool = True,
                 penalty: CostPenalty | None = None, cell_mixing: str = "edge") -> None:
        super().__init__(epochs=epochs, top_k=top_k, seed=seed, chunk_steps=chunk_steps,
                         checkpoint=checkpoint, channels_last=channels_last,
                         share_layers=share_layers)
        if arc_learning_rate <= 0:
            raise ValueError(f"{type(self).__name__}(arc_learning_rate=...): got "
                             f"{arc_learning_rate!r}; expected a positive number")
        self.arc_learning_rate = arc_learning_rate
        self.arc_weight_decay = arc_weight_decay
        self.warmup_epochs = warmup_epochs
        self.gradient_clip_val = gradient_clip_val
        self.evaluate_top = evaluate_top
        if penalty is not None and not isinstance(penalty, CostPenalty):
            raise TypeError(
                f"{type(self).__name__}(penalty=...): got {penalty!r}; expected "
                "nf.strategy.LatencyPenalty(...), FLOPsPenalty(...) or ParamsPenalty(...)"
            )
        self.penalty = penalty
        """The expected-cost term of the architecture loss (``None``: accuracy only)."""
        if cell_mixing not in CELL_MIXINGS:
            raise ValueError(f"{type(self).__name__}(cell_mixing=...): got {cell_mixing!r}; "
                             f"expected one of {', '.join(map(repr, CELL_MIXINGS))}")
        self.cell_mixing = cell_mixing
        """``"edge"`` or ``"slot"``: how cells with per-input ops are mixed."""

    # --- parts ----------------------------------------------------------------------------

    def _build(self, rt: Run) -> None:
        alpha = ArchParameters(rt.supernet.specs, rt.supernet.arch_labels).to(rt.device)
        with torch.no_grad():  # initial values from the strategy's seed
            for a in alpha.alpha:
                a.copy_(torch.randn(a.shape, generator=rt.gen).to(rt.device) * 1e-3)
        rt.parts["alpha"] = alpha
        rt.parts["arc_optimizer"] = torch.optim.Adam(
            alpha.parameters(), lr=self.arc_learning_rate, betas=(0.5, 0.999),
            weight_decay=self.arc_weight_decay,
        )
        if self.penalty is not None:
            self.penalty.build(rt)

    def _penalised(self, rt: Run, loss: torch.Tensor) -> torch.Tensor:
        """``loss`` plus the penalty on the expected cost under ``softmax(alpha)``."""
        if self.penalty is None:
            return loss
        alpha: ArchParameters = rt.parts["alpha"]
        return loss + self.penalty.loss(rt.supernet.space_probs(alpha.probs()))

    def _mix(self, rt: Run) -> dict[str, torch.Tensor]:
        """The mixing weights of a training step (with gradients to alpha)."""
        alpha: ArchParameters = rt.parts["alpha"]
        return alpha.probs()

    # --- steps ----------------------------------------------------------------------------

    def _arch_step(self, rt: Run) -> torch.Tensor:
        xv, yv = rt.next_val()
        opt: torch.optim.Optimizer = rt.parts["arc_optimizer"]
        opt.zero_grad(set_to_none=True)
        weights = list(rt.model.parameters())
        with frozen(weights):
            rt.supernet.set_soft(self._mix(rt))
            loss = self._penalised(rt, rt.loss(xv, yv))
            torch.autograd.backward(loss)
        opt.step()
        return loss

    def _step(self, rt: Run, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        if rt.epoch > self.warmup_epochs:
            out["arch_loss"] = self._arch_step(rt)
        rt.optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            mix = self._mix(rt)
        rt.supernet.set_soft(mix)
        loss = rt.loss(x, y)
        torch.autograd.backward(loss)
        if self.gradient_clip_val is not None:
            nn.utils.clip_grad_norm_(rt.model.parameters(), self.gradient_clip_val)
        rt.optimizer.step()
        out["train_loss"] = loss
        return out

    def _eval_arch(self, rt: Run) -> None:
        alpha: ArchParameters = rt.parts["alpha"]
        rt.supernet.set_soft({k: v.detach() for k, v in alpha.probs().items()})

    def _probs(self, rt: Run) -> dict[str, dict[str, float]]:
        alpha: ArchParameters = rt.parts["alpha"]
        with torch.no_grad():
            return probs_json(rt, rt.supernet.space_probs(alpha.probs()))

    async def _export(self, ctx: StrategyContext, rt: Run) -> None:
        alpha: ArchParameters = rt.parts["alpha"]
        with torch.no_grad():
            probs = {k: v.cpu() for k, v in alpha.probs().items()}
        await record_ranked(self, ctx, rt, probs, evaluate=self.evaluate_top)

    def __repr__(self) -> str:
        penalty = "" if self.penalty is None else f", penalty={self.penalty!r}"
        return (f"{type(self).__name__}(epochs={self.epochs}, "
                f"arc_learning_rate={self.arc_learning_rate}, top_k={self.top_k}, "
                f"seed={self.seed}{penalty})")


class GumbelDARTS(DARTS):
    """DARTS with Gumbel-softmax mixing (as NNI's ``GumbelDARTS``).

    ``temperature``: a float (constant) or ``(initial, final)``, annealed linearly over
    the epochs (default ``(1.0, 0.33)``). The architecture and weight steps both mix
    candidates with a fresh Gumbel-softmax sample of ``alpha``; ranking and validation
    use ``softmax(alpha)``.
    """

    def __init__(self, *, temperature: float | tuple[float, float] = (1.0, 0.33),
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        start, end = (temperature, temperature) if isinstance(temperature, (int, float)) \
            else temperature
        if not (start > 0 and end > 0):
            raise ValueError(f"GumbelDARTS(temperature=...): got {temperature!r}; "
                             "expected positive numbers")
        self.temperature = (float(start), float(end))
        self._tau = float(start)

    def _begin_epoch(self, rt: Run) -> None:
        start, end = self.temperature
        span = max(rt.epochs - 1, 1)
        self._tau = start + (end - start) * (rt.epoch - 1) / span

    def _mix(self, rt: Run) -> dict[str, torch.Tensor]:
        alpha: ArchParameters = rt.parts["alpha"]
        out = {}
        for label in alpha.labels:
            a = alpha[label]
            u = torch.rand(a.shape, generator=rt.gen).to(a.device).clamp_(1e-10, 1 - 1e-10)
            gumbel = -torch.log(-torch.log(u))
            out[label] = torch.softmax((a + gumbel) / self._tau, -1)
        return out

    def _end_epoch(self, rt: Run) -> dict[str, float]:
        return {"temperature": self._tau}
