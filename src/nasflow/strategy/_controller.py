"""The LSTM policy of both REINFORCE searches: ``PolicyBasedRL`` (one trial per sample)
and ``ENAS`` (paths of a supernet). One implementation, one set of constants.

It takes a fixed list of decisions, decision ``i`` having ``sizes[i]`` options. At each
step the LSTM reads the embedding of the previous decision's option (row 0 of the table,
a learned vector starting at zero, before the first) and a per-decision head gives the
logits, squashed as ENAS does to keep the policy from collapsing early:
``TANH_CONSTANT * tanh(logits / TEMPERATURE)``. The caller walks the decisions (skipping
those its partial sample leaves inactive) with ``begin``, ``step`` and ``embed``, or
scores a walk already taken with ``evaluate``.

Imports torch: import it only where torch is needed (``nasflow.strategy`` does not).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["TANH_CONSTANT", "TEMPERATURE", "Policy", "from_legacy"]

TANH_CONSTANT = 2.5
"""The logits' bound (ENAS, Pham et al. 2018: 2.5; nasflow's ENAS used 1.5 before the two
controllers became one, PolicyBasedRL 2.5)."""
TEMPERATURE = 5.0
"""The logits are divided by this before the ``tanh`` (ENAS: 5.0; both used it)."""

State = tuple[torch.Tensor, torch.Tensor] | None


class Policy(nn.Module):
    """An LSTM policy over ``len(sizes)`` decisions (see the module docstring)."""

    def __init__(self, sizes: list[int], hidden: int = 64, *,
                 tanh_constant: float = TANH_CONSTANT, temperature: float = TEMPERATURE
                 ) -> None:
        super().__init__()
        self.sizes = list(sizes)
        """How many options each decision has."""
        self.tanh_constant = tanh_constant
        self.temperature = temperature
        offsets, total = [], 1
        for n in self.sizes:
            offsets.append(total)
            total += n
        self._offsets = offsets
        self.embed = nn.Embedding(total, hidden)
        """Row 0: the first input; then each decision's options, in order."""
        with torch.no_grad():
            self.embed.weight[0].zero_()
        self.lstm = nn.LSTMCell(hidden, hidden)
        self.heads = nn.ModuleList(nn.Linear(hidden, n) for n in self.sizes)

    def begin(self) -> tuple[torch.Tensor, State]:
        """The first input and state of a walk."""
        return self.embed.weight[:1], None

    def step(self, i: int, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """The (squashed) logits of decision ``i`` after reading ``x``, and the new state."""
        h, c = self.lstm(x, state)
        logits = self.heads[i](h)[0]
        return self.tanh_constant * torch.tanh(logits / self.temperature), (h, c)

    def embed_action(self, i: int, action: int) -> torch.Tensor:
        """The input that tells the next step that decision ``i`` took ``action``."""
        return self.embed.weight[self._offsets[i] + action].unsqueeze(0)

    def evaluate(self, actions: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probability and entropy of taking ``actions`` (``(decision, option)``) in
        turn."""
        x, state = self.begin()
        log_prob, entropy = torch.zeros(()), torch.zeros(())
        for i, a in actions:
            logits, state = self.step(i, x, state)
            logp = torch.log_softmax(logits, -1)
            log_prob = log_prob + logp[a]
            entropy = entropy - (logp.exp() * logp).sum()
            x = self.embed_action(i, a)
        return log_prob, entropy


def from_legacy(net: dict[str, Any], m: list[Any], v: list[Any]
                ) -> tuple[dict[str, Any], list[Any], list[Any]]:
    """A ``PolicyBasedRL`` state saved before the two controllers became one (weights
    ``cell.*``, ``start``, ``embeds.<i>.weight``, ``heads.*`` and Adam's moments in that
    parameter order) in ``Policy``'s layout and order; a new state is returned unchanged."""
    if "start" not in net:
        return net, m, v
    n = len([k for k in net if k.startswith("embeds.")])
    lstm = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    new = {"embed.weight": torch.cat([net["start"]] + [net[f"embeds.{i}.weight"]
                                                       for i in range(n)])}
    new.update({f"lstm.{k}": net[f"cell.{k}"] for k in lstm})
    new.update({k: t for k, t in net.items() if k.startswith("heads.")})

    def moments(old: list[Any]) -> list[Any]:
        # old order: cell (4), start, embeds (n), heads; new: embed, lstm (4), heads
        return [torch.cat(old[4:5 + n]), *old[:4], *old[5 + n:]]

    return new, moments(m), moments(v)
