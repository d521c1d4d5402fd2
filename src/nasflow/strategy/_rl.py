"""``PolicyBasedRL``: an LSTM controller trained with REINFORCE (Zoph & Le, 2017; ENAS).

torch is imported when the search starts, not with ``nasflow.strategy``.
"""

from __future__ import annotations

import base64
import contextlib
import io
import logging
import math
import random
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from nasflow._nni import nni_arguments
from nasflow._types import TrialRecord, TrialState
from nasflow.space import Categorical, CategoricalMultiple, Numerical, Sample, SearchSpace
from nasflow.strategy._base import Strategy, StrategyContext, rng_from_state, rng_state
from nasflow.strategy._sampling import SpaceTracker, complete, draw_unseen

if TYPE_CHECKING:
    import torch

__all__ = ["PolicyBasedRL"]

_log = logging.getLogger("nasflow.strategy")

_AS_ONE = 64
"""A ``CategoricalMultiple`` with at most this many subsets is one decision."""


_BINS = 8
"""A continuous ``Numerical`` is decided as one of this many equal (log-)intervals."""


class _Step:
    """One decision of the controller: which option for a label, which interval of a
    continuous label, or whether one candidate of a large subset choice is in."""

    def __init__(self, label: str, options: list[Any], *, member: int | None = None,
                 bins: Numerical | None = None) -> None:
        self.label = label
        self.options = options
        self.member = member  # a large CategoricalMultiple: which candidate is in or out
        self.bins = bins  # a continuous Numerical, decided by interval

    def value(self, action: int, rng: random.Random) -> Any:
        """The label's value for ``action`` (uniform inside an interval)."""
        c = self.bins
        if c is None:
            return self.options[action]
        lo, hi = (math.log(c.low), math.log(c.high)) if c.log else (c.low, c.high)
        x = lo + (hi - lo) * (action + rng.random()) / _BINS
        return c.canonical(min(max(math.exp(x) if c.log else x, c.low), c.high))

    def action(self, value: Any) -> int:
        """The action that gives ``value``."""
        c = self.bins
        if c is None:
            return _index(self.options, value)
        lo, hi = (math.log(c.low), math.log(c.high)) if c.log else (c.low, c.high)
        x = math.log(value) if c.log else value
        return min(max(int((x - lo) / (hi - lo) * _BINS), 0), _BINS - 1)


def _steps(space: SearchSpace) -> list[_Step]:
    steps: list[_Step] = []
    for label, choice in space.search_space().items():
        if isinstance(choice, CategoricalMultiple) and choice.size() > _AS_ONE:
            steps += [_Step(label, [False, True], member=i) for i in range(len(choice.values))]
        elif isinstance(choice, Numerical) and not (choice.size() or 10**9) <= 64:
            steps.append(_Step(label, list(range(_BINS)), bins=choice))
        elif isinstance(choice, Numerical):  # every quantum
            steps.append(_Step(label, choice.grid(6)))
        elif isinstance(choice, Categorical):
            steps.append(_Step(label, list(choice.values)))
        else:
            steps.append(_Step(label, choice.grid()))
    return steps


class PolicyBasedRL(Strategy):
    """Reinforcement learning over architectures, without an RL framework.

    An LSTM controller takes one decision per active label, in space order (a label that
    earlier decisions leave inactive is skipped, so conditional spaces are sampled
    correctly); its own previous decision is its next input, as in NAS-RL and ENAS.
    A continuous ``Numerical`` label is decided as one of 8 equal (log-)intervals, the
    value drawn uniformly inside it. The reward of a trial
    is its primary objective in the experiment's direction, normalised by a moving
    baseline and spread (``baseline_decay``); the controller takes a REINFORCE step with
    Adam (``lr``) and an entropy bonus (``entropy_weight``) after every
    ``samples_per_update`` results. Failed, early-stopped and cancelled trials teach it
    nothing.

    With ``dedup`` a sample equal to a submitted one is drawn again (never a wasted
    trial); after ``patience`` repeats in a row a random unseen sample is taken, and the
    search ends once none is left. ``state_dict`` holds the controller's weights, Adam's
    state and the sampling generator (torch-saved, base64) and the baseline.
    """

    @nni_arguments({
        "replay_buffer_size": "it is REINFORCE with an LSTM controller, no tianshou and no "
                              "replay buffer: samples_per_update= sets how many results "
                              "make one update",
        "trial_per_collect": "use samples_per_update=",
        "max_collect": "the budget is ExperimentConfig(max_trials=...)",
        "policy_fn": "the controller is built in (hidden_size=, lr=)",
        "reward_for_invalid": "set ExperimentConfig(penalty=...) for failed trials",
    })
    def __init__(
        self,
        seed: int | None = None,
        *,
        hidden_size: int = 64,
        lr: float = 0.035,
        entropy_weight: float = 1e-3,
        baseline_decay: float = 0.9,
        samples_per_update: int = 1,
        dedup: bool = True,
        patience: int = 50,
    ) -> None:
        if samples_per_update < 1:
            raise ValueError(f"samples_per_update must be >= 1, got {samples_per_update!r}")
        if not 0.0 <= baseline_decay < 1.0:
            raise ValueError(f"baseline_decay must be in [0, 1), got {baseline_decay!r}")
        self.seed = seed
        self.hidden_size = hidden_size
        self.lr = lr
        self.entropy_weight = entropy_weight
        self.baseline_decay = baseline_decay
        self.samples_per_update = samples_per_update
        self.dedup = dedup
        self.patience = patience
        self._rng = random.Random(seed)  # the random unseen fallback and completions
        self._baseline: float | None = None
        self._spread = 1.0
        self._batch: list[tuple[Sample, float]] = []
        self._loaded: str | None = None
        self._net: Any = None
        self._optim: Any = None
        self._gen: Any = None
        self._steps: list[_Step] = []
        self._candidates: dict[str, list[Any]] = {}

    # --- the loop -----------------------------------------------------------------------

    async def run(self, ctx: StrategyContext) -> None:
        self._build(ctx.space)
        tracker = SpaceTracker(ctx.space)
        while True:
            if ctx.budget.exhausted:
                return
            await ctx.wait_capacity()
            self._learn(ctx, ctx.take_results())
            if ctx.budget.exhausted:
                return
            if self.dedup and tracker.exhausted(ctx.distinct_submitted):
                _log.info("policy-based RL: every sample of the space was tried")
                return
            sample = self._propose(ctx)
            if sample is None:
                _log.info("policy-based RL: no unseen sample is left")
                return
            await ctx.submit(sample)

    def _propose(self, ctx: StrategyContext) -> Sample | None:
        seen = ctx.seen if self.dedup else (lambda s: False)
        for _ in range(self.patience):
            sample = self._sample(ctx.space)
            if sample is not None and not seen(sample):
                return sample
        return draw_unseen(ctx.space, self._rng, seen)

    # --- the controller -----------------------------------------------------------------

    def _build(self, space: SearchSpace) -> None:
        import torch

        self._steps = _steps(space)
        self._candidates = {
            label: list(c.values) for label, c in space.search_space().items()
            if isinstance(c, CategoricalMultiple)
        }
        seed = self.seed if self.seed is not None else random.randrange(2**31)
        with torch.random.fork_rng(devices=[]):  # a seeded init, the global generator untouched
            torch.manual_seed(seed)
            self._net = _controller([len(s.options) for s in self._steps], self.hidden_size)
        self._optim = _Adam(list(self._net.parameters()), lr=self.lr)
        self._gen = torch.Generator().manual_seed(seed)
        if self._loaded is not None:
            blob = torch.load(io.BytesIO(base64.b64decode(self._loaded)), weights_only=True)
            self._net.load_state_dict(blob["net"])
            self._optim.load_state_dict(blob["optim"])
            self._gen.set_state(blob["gen"])
            self._loaded = None

    def _sample(self, space: SearchSpace) -> Sample | None:
        """One sample drawn from the controller (completed if a constraint needs it)."""
        import torch

        net, steps = self._net, self._steps
        sample: Sample = {}
        members: list[int] = []
        with torch.no_grad(), _one_thread():
            state, x = None, net.start
            for i, step in enumerate(steps):
                if not space.is_active(step.label, sample):
                    continue
                logits, state = net.step(i, x, state)
                action = int(torch.multinomial(torch.softmax(logits, -1), 1,
                                               generator=self._gen))
                x = net.embed(i, action)
                if step.member is None:
                    sample[step.label] = step.value(action, self._rng)
                    continue
                if action:
                    members.append(step.member)
                if i + 1 == len(steps) or steps[i + 1].label != step.label:
                    sample[step.label] = self._subset(space, step.label, members)
                    members = []
        return complete(space, self._rng, sample, tries=3)

    def _subset(self, space: SearchSpace, label: str, picked: list[int]) -> list[Any]:
        """The candidates decided in, repaired to ``n_chosen`` (the update then follows
        what was actually run)."""
        choice = space.search_space()[label]
        assert isinstance(choice, CategoricalMultiple)
        n = choice.n_chosen
        if n is not None and len(picked) != n:
            rest = [i for i in range(len(choice.values)) if i not in picked]
            picked = (picked + self._rng.sample(rest, max(0, n - len(picked))))[:n]
        if not picked:
            picked = [self._rng.randrange(len(choice.values))]
        return [choice.values[i] for i in sorted(picked)]

    def _actions(self, sample: Sample) -> list[tuple[int, int]]:
        """``(step, option)`` of every decision that produces ``sample``."""
        out = []
        for i, step in enumerate(self._steps):
            if step.label not in sample:
                continue
            value = sample[step.label]
            if step.member is not None:
                out.append((i, int(self._candidates[step.label][step.member] in value)))
            else:
                out.append((i, step.action(value)))
        return out

    # --- learning -----------------------------------------------------------------------

    def _learn(self, ctx: StrategyContext, records: list[TrialRecord]) -> None:
        for r in records:
            if r.state is TrialState.SUCCEEDED and r.metric is not None:
                self._batch.append((r.sample, ctx.objective.score(r.metric)))
        while len(self._batch) >= self.samples_per_update:
            batch = self._batch[: self.samples_per_update]
            del self._batch[: self.samples_per_update]
            self._update(batch)

    def _update(self, batch: list[tuple[Sample, float]]) -> None:
        import torch

        advantages = []
        for _, reward in batch:
            if self._baseline is None:
                self._baseline = reward
            d = self.baseline_decay
            advantages.append((reward - self._baseline) / max(self._spread, 1e-8))
            self._spread = d * self._spread + (1 - d) * abs(reward - self._baseline)
            self._baseline = d * self._baseline + (1 - d) * reward
        with _one_thread():
            loss = torch.zeros(())
            for (sample, _), adv in zip(batch, advantages, strict=True):
                log_prob, entropy = self._net.evaluate(self._actions(sample))
                loss = loss - adv * log_prob - self.entropy_weight * entropy
            self._optim.zero_grad()
            (loss / len(batch)).backward()  # type: ignore[no-untyped-call]
            self._optim.step()

    # --- state --------------------------------------------------------------------------

    def _blob(self) -> str | None:
        if self._net is None:
            return self._loaded
        import torch

        buf = io.BytesIO()
        torch.save({"net": self._net.state_dict(), "optim": self._optim.state_dict(),
                    "gen": self._gen.get_state()}, buf)
        return base64.b64encode(buf.getvalue()).decode("ascii")

    def state_dict(self) -> dict[str, Any]:
        return {
            "torch": self._blob(),
            "baseline": self._baseline,
            "spread": self._spread,
            "batch": [[s, r] for s, r in self._batch],
            "rng": rng_state(self._rng),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._loaded = state["torch"]
        self._net = self._optim = self._gen = None
        self._baseline = state["baseline"]
        self._spread = float(state["spread"])
        self._batch = [(dict(s), float(r)) for s, r in state["batch"]]
        self._rng = rng_from_state(state["rng"])

    def __getstate__(self) -> dict[str, Any]:
        # pickled (e.g. with the experiment) as plain data: the torch objects as their blob
        state = self.__dict__.copy()
        state["_loaded"] = self._blob()
        state["_net"] = state["_optim"] = state["_gen"] = None
        return state

    def __repr__(self) -> str:
        return (f"PolicyBasedRL(seed={self.seed}, hidden_size={self.hidden_size}, "
                f"lr={self.lr}, samples_per_update={self.samples_per_update})")


def _index(options: list[Any], value: Any) -> int:
    """The option equal to ``value`` (same type first: 1 and True differ), else the
    nearest number."""
    for i, option in enumerate(options):
        if option == value and type(option) is type(value):
            return i
    for i, option in enumerate(options):
        if option == value:
            return i
    if isinstance(value, (int, float)) and all(isinstance(o, (int, float)) for o in options):
        return min(range(len(options)), key=lambda i: abs(options[i] - value))
    raise ValueError(f"{value!r} is not one of the controller's options {options!r}")


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run the controller's tiny ops on this thread alone. Multi-threaded kernels only
    add synchronisation to 64-wide matrices (10 ms instead of 0.1 ms per LSTM step on a
    busy machine); the setting is per thread, and restored."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class _Adam:
    """Adam (Kingma & Ba, 2015), written out: ``torch.optim`` pulls in torch._dynamo on
    first use, seconds of import for a handful of tiny updates."""

    def __init__(self, params: list[Any], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        import torch

        self.params, self.lr, self.betas, self.eps = params, lr, betas, eps
        self.t = 0
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        import torch

        self.t += 1
        b1, b2 = self.betas
        with torch.no_grad():
            for p, m, v in zip(self.params, self.m, self.v, strict=True):
                if p.grad is None:
                    continue
                m.mul_(b1).add_(p.grad, alpha=1 - b1)
                v.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                denom = (v / (1 - b2**self.t)).sqrt_().add_(self.eps)
                p.addcdiv_(m, denom, value=-self.lr / (1 - b1**self.t))

    def state_dict(self) -> dict[str, Any]:
        return {"t": self.t, "m": self.m, "v": self.v}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.t = int(state["t"])
        for mine, saved in zip(self.m + self.v, list(state["m"]) + list(state["v"]),
                               strict=True):
            mine.copy_(saved)


def _controller(sizes: list[int], hidden: int) -> Any:
    """The LSTM policy: one softmax head and one embedding per decision."""
    import torch
    from torch import nn

    class Controller(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.cell = nn.LSTMCell(hidden, hidden)
            self.start = nn.Parameter(torch.zeros(1, hidden))
            self.embeds = nn.ModuleList(nn.Embedding(n, hidden) for n in sizes)
            self.heads = nn.ModuleList(nn.Linear(hidden, n) for n in sizes)

        def step(self, i: int, x: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
            h, c = self.cell(x, state)
            # ENAS' tanh squashing keeps the policy from collapsing too early
            return 2.5 * torch.tanh(self.heads[i](h)[0] / 5.0), (h, c)

        def embed(self, i: int, action: int) -> torch.Tensor:
            out: torch.Tensor = self.embeds[i](torch.tensor([action]))
            return out

        def evaluate(self, actions: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
            """Log-probability and entropy of taking ``actions`` in turn."""
            state, x = None, self.start.view(1, -1)
            log_prob, entropy = torch.zeros(()), torch.zeros(())
            for i, a in actions:
                logits, state = self.step(i, x, state)
                logp = torch.log_softmax(logits, -1)
                log_prob = log_prob + logp[a]
                entropy = entropy - (logp.exp() * logp).sum()
                x = self.embed(i, a)
            return log_prob, entropy

    return Controller()
