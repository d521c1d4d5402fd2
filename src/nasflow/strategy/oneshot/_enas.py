"""``ENAS``: a recurrent controller, trained with REINFORCE, samples the supernet's paths.

The controller is ``PolicyBasedRL``'s small LSTM (``nasflow.strategy._controller``, no RL
framework; the logits squashed as ``2.5 * tanh(logits / 5)``). It walks the
labels in the space's sampling order, skipping those the partial sample leaves
inactive; for each it emits logits over the label's alternatives (an
``InputChoice``'s alternatives are its allowed subsets), samples one, and feeds its
embedding to the next step.

Each epoch first trains the supernet's weights, one controller-sampled path per
training batch, then trains the controller for ``ctrl_steps`` steps: it samples
``ctrl_samples`` architectures, rewards each with the supernet's validation metric on
one validation batch (negated for a minimised objective), and follows the policy
gradient ``-(reward - baseline) * log p - entropy_weight * entropy`` with an
exponential-moving-average baseline. At the end, ``num_candidates`` distinct
architectures sampled from the controller (its most likely one first) are evaluated on
the whole validation data with inherited weights and recorded; ``export_top_models``
ranks them by that metric.
"""

from __future__ import annotations

from typing import Any

import anyio
import torch
import torch.nn as nn

from nasflow._kernel import nni_arguments
from nasflow.exceptions import SampleValidationError
from nasflow.space import Sample, SearchSpace, sample_hash
from nasflow.strategy._base import StrategyContext, oneshot_context
from nasflow.strategy._controller import TANH_CONSTANT, TEMPERATURE, Policy
from nasflow.strategy.oneshot._arch import MAX_COMBOS, UnsupportedSpaceError
from nasflow.strategy.oneshot._supernet import Supernet
from nasflow.strategy.oneshot._train import OneShotStrategy, Run

__all__ = ["ENAS", "Controller"]


class Controller(Policy):
    """``PolicyBasedRL``'s LSTM policy over a supernet's labels (see the module docstring):
    one decision per label, its options the label's values (an ``InputChoice``'s: its
    allowed subsets)."""

    def __init__(self, supernet: Supernet, hidden: int = 64,
                 tanh_constant: float = TANH_CONSTANT, temperature: float = TEMPERATURE
                 ) -> None:
        space: SearchSpace = supernet.space
        labels = list(space.labels)
        specs = supernet.specs
        alternatives: list[list[Any]] = []
        for label in labels:
            spec = specs[label]
            values = spec.choice.grid() if spec.multiple else list(spec.values)
            if len(values) > MAX_COMBOS:
                raise UnsupportedSpaceError(
                    supernet.consumers(label)[0], label,
                    f"ENAS's controller lists every allowed subset of an input choice; this "
                    f"one has {len(values)} (at most {MAX_COMBOS}); use n_chosen=1 or "
                    "fewer candidates",
                )
            alternatives.append(values)
        super().__init__([len(v) for v in alternatives], hidden,
                         tanh_constant=tanh_constant, temperature=temperature)
        self.space = space
        self.labels = labels
        self.alternatives = alternatives
        """Per label, the sample values the controller chooses between."""

    def sample(self, generator: torch.Generator | None, *, greedy: bool = False
               ) -> tuple[Sample, torch.Tensor, torch.Tensor]:
        """``(sample, log-probability, entropy)`` of one architecture (unconstrained)."""
        x, state = self.begin()
        sample: Sample = {}
        logp = torch.zeros(())
        entropy = torch.zeros(())
        for i, label in enumerate(self.labels):
            if not self.space.is_active(label, sample):
                continue
            logits, state = self.step(i, x, state)
            log_probs = torch.log_softmax(logits, -1)
            if greedy:
                j = int(log_probs.argmax())
            else:
                j = int(torch.multinomial(log_probs.exp().detach(), 1, generator=generator))
            logp = logp + log_probs[j]
            entropy = entropy - (log_probs.exp() * log_probs).sum()
            sample[label] = self.alternatives[i][j]
            x = self.embed_action(i, j)
        return sample, logp, entropy


class ENAS(OneShotStrategy):
    """Efficient NAS by parameter sharing (as NNI's ``ENAS``, without tianshou).

    ``ctrl_lr``: Adam learning rate of the controller; ``ctrl_steps``: controller updates
    per epoch; ``ctrl_samples``: architectures per update; ``entropy_weight``;
    ``baseline_decay``: of the reward baseline; ``warmup_epochs``: epochs that train
    the weights (with uniformly sampled paths) before the controller learns;
    ``num_candidates``: architectures evaluated and recorded at the end (at least
    ``top_k``); ``bn_calibration_batches``: as for ``RandomOneShot``.
    """

    @nni_arguments({
        "reward_metric_name": "the reward is the evaluator's validation metric, the "
                              "experiment's primary objective (ExperimentConfig(objective="
                              "{name: direction}) names it)",
        "ctrl_kwargs": "use hidden=, ctrl_lr=, entropy_weight=, baseline_decay=",
        "grad_clip": "there is no controller gradient clipping option",
    })
    def __init__(self, *, ctrl_lr: float = 1e-3, ctrl_steps: int = 20, ctrl_samples: int = 4,
                 entropy_weight: float = 1e-4, baseline_decay: float = 0.95,
                 warmup_epochs: int = 0, num_candidates: int = 20,
                 bn_calibration_batches: int = 4, hidden: int = 64, epochs: int | None = None,
                 top_k: int = 5, seed: int = 0, chunk_steps: int = 20,
                 checkpoint: str | None = None,
                 channels_last: bool | None = None, share_layers: bool = True) -> None:
        super().__init__(epochs=epochs, top_k=top_k, seed=seed, chunk_steps=chunk_steps,
                         checkpoint=checkpoint, channels_last=channels_last,
                         share_layers=share_layers)
        self.ctrl_lr = ctrl_lr
        self.ctrl_steps = ctrl_steps
        self.ctrl_samples = ctrl_samples
        self.entropy_weight = entropy_weight
        self.baseline_decay = baseline_decay
        self.warmup_epochs = warmup_epochs
        self.num_candidates = max(num_candidates, top_k)
        self.bn_calibration_batches = bn_calibration_batches
        self.hidden = hidden

    # --- parts ----------------------------------------------------------------------------

    def _build(self, rt: Run) -> None:
        ctrl = Controller(rt.supernet, hidden=self.hidden)
        rt.parts["controller"] = ctrl  # stays on the CPU: tiny, and sampled step by step
        rt.parts["ctrl_optimizer"] = torch.optim.Adam(ctrl.parameters(), lr=self.ctrl_lr)
        rt.parts["baseline"] = _Scalar()

    def _policy_sample(self, rt: Run) -> Sample:
        if rt.epoch <= self.warmup_epochs:
            return rt.supernet.space.random(rng=rt.rng)
        ctrl: Controller = rt.parts["controller"]
        with torch.no_grad():
            return ctrl.sample(rt.gen)[0]

    # --- steps ----------------------------------------------------------------------------

    def _step(self, rt: Run, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        rt.supernet.set_hard(self._policy_sample(rt))
        rt.optimizer.zero_grad(set_to_none=True)
        loss = rt.loss(x, y)
        torch.autograd.backward(loss)
        rt.optimizer.step()
        return {"train_loss": loss}

    def _end_epoch(self, rt: Run) -> dict[str, float]:
        if rt.epoch <= self.warmup_epochs:
            return {}
        ctrl: Controller = rt.parts["controller"]
        opt: torch.optim.Optimizer = rt.parts["ctrl_optimizer"]
        baseline: _Scalar = rt.parts["baseline"]
        rewards: list[float] = []
        rt.model.eval()
        for _ in range(self.ctrl_steps):
            xv, yv = rt.next_val()
            loss = torch.zeros(())
            for _ in range(self.ctrl_samples):
                sample, logp, entropy = ctrl.sample(rt.gen)
                rt.supernet.set_hard(sample)
                with torch.no_grad():
                    reward = rt.sign * rt.evaluator._score(rt.model, [(xv, yv)], rt.device)
                rewards.append(reward)
                advantage = reward - (baseline.value if baseline.ready else reward)
                loss = loss - advantage * logp - self.entropy_weight * entropy
            opt.zero_grad(set_to_none=True)
            torch.autograd.backward(loss / self.ctrl_samples)
            opt.step()
            mean = sum(rewards[-self.ctrl_samples:]) / self.ctrl_samples
            baseline.update(rt.mean(mean), self.baseline_decay)  # the same on every rank
        return {"reward": sum(rewards) / max(len(rewards), 1), "baseline": baseline.value}

    def _eval_arch(self, rt: Run) -> None:
        rt.supernet.set_hard(self._policy_sample(rt))

    def _probs(self, rt: Run) -> dict[str, dict[str, float]]:
        """Each label's alternatives' frequencies in 200 controller samples (conditional
        on the label being active)."""
        ctrl: Controller = rt.parts["controller"]
        counts: dict[str, dict[str, int]] = {}
        gen = torch.Generator().manual_seed(rt.epoch)  # leaves the training stream alone
        with torch.no_grad():
            for _ in range(200):
                sample = ctrl.sample(gen)[0]
                for label, value in sample.items():
                    key = value if isinstance(value, str) else str(value)
                    counts.setdefault(label, {})[key] = counts.get(label, {}).get(key, 0) + 1
        out: dict[str, dict[str, float]] = {}
        for i, label in enumerate(ctrl.labels):
            seen = counts.get(label, {})
            total = sum(seen.values())
            keys = [v if isinstance(v, str) else str(v) for v in ctrl.alternatives[i]]
            out[label] = {k: round(seen.get(k, 0) / total, 5) if total else 0.0 for k in keys}
        return out

    def _candidates(self, rt: Run) -> list[Sample]:
        ctrl: Controller = rt.parts["controller"]
        space = rt.supernet.space
        found: dict[str, Sample] = {}
        with torch.no_grad():
            for attempt in range(20 * self.num_candidates):
                sample = ctrl.sample(rt.gen, greedy=attempt == 0)[0]
                try:
                    sample = space.canonicalize(sample)
                except SampleValidationError:
                    continue  # violates a constraint
                found.setdefault(sample_hash(sample), sample)
                if len(found) == self.num_candidates:
                    break
        return list(found.values())

    async def _export(self, ctx: StrategyContext, rt: Run) -> None:
        candidates = await anyio.to_thread.run_sync(self._candidates, rt)
        for sample in candidates:
            if ctx.seen(sample):
                continue  # recorded before a resume
            value = await anyio.to_thread.run_sync(self._evaluate, rt, sample)
            await oneshot_context(ctx).record(sample, value)

    def _evaluate(self, rt: Run, sample: Sample) -> float:
        return self.evaluate_sample(rt, sample, calibrate=self.bn_calibration_batches)

    def __repr__(self) -> str:
        return (f"ENAS(epochs={self.epochs}, ctrl_lr={self.ctrl_lr}, "
                f"ctrl_steps={self.ctrl_steps}, top_k={self.top_k}, seed={self.seed})")


class _Scalar(nn.Module):
    """The reward baseline, kept as a buffer so that it is checkpointed with the rest."""

    _value: torch.Tensor
    _ready: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("_value", torch.zeros(()))
        self.register_buffer("_ready", torch.zeros((), dtype=torch.bool))

    @property
    def value(self) -> float:
        return float(self._value)

    @property
    def ready(self) -> bool:
        return bool(self._ready)

    def update(self, x: float, decay: float) -> None:
        if not self.ready:
            self._value.fill_(x)
            self._ready.fill_(True)
        else:
            self._value.mul_(decay).add_((1 - decay) * x)
