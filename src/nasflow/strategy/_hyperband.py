"""``Hyperband``: ASHA brackets of every aggressiveness, filled as Hyperband fills them."""

from __future__ import annotations

import math

from nasflow.strategy._asha import ASHA

__all__ = ["Hyperband"]


class Hyperband(ASHA):
    """Asynchronous Hyperband: ``s_max + 1`` ASHA brackets, ``s_max = floor(log_η(max_t /
    grace_period))``.

    Bracket ``b`` (0 ... ``s_max``) places its rungs at ``grace_period * η**(b + k) <
    max_t``: bracket 0 is ASHA itself, the last bracket has no rung (or one) and runs
    nearly every trial to ``max_t``, which hedges against a ``grace_period`` too short to
    tell architectures apart. Trials are dealt to brackets in the proportions of
    Hyperband's schedule (Li et al., 2018): bracket ``b`` gets a share proportional to
    ``η**s / (s + 1)`` with ``s = s_max - b`` (27 : 12 : 6 : 4 for η=3 and four brackets).
    With ``seed=None`` each starting trial goes to the bracket furthest behind its share
    (the first on ties), so the deal is deterministic; with a ``seed`` each trial's bracket
    is drawn with those weights from its id. Within a bracket the ASHA rule applies (see
    ``ASHA``); ``multi_objective=True`` ranks rungs by non-dominated sorting.
    """

    def __init__(
        self,
        max_t: float,
        grace_period: float = 1,
        reduction_factor: float = 3,
        *,
        time_attr: str = "step",
        multi_objective: bool = False,
        seed: int | None = None,
    ) -> None:
        if (isinstance(reduction_factor, (int, float)) and not isinstance(reduction_factor, bool)
                and reduction_factor > 1 and isinstance(max_t, (int, float))
                and isinstance(grace_period, (int, float)) and 0 < grace_period < max_t):
            # the small epsilon: log(27) / log(3) is 3.0000000000000004 or 2.9999999999999996
            s_max = math.floor(math.log(max_t / grace_period) / math.log(reduction_factor)
                               + 1e-9)
        else:
            s_max = 0  # ASHA.__init__ says what is wrong with the arguments
        super().__init__(max_t, grace_period, reduction_factor, time_attr=time_attr,
                         brackets=s_max + 1, multi_objective=multi_objective, seed=seed)

    def _weights(self) -> list[float]:
        s_max, eta = self.brackets - 1, self.reduction_factor
        return [eta ** (s_max - b) / (s_max - b + 1) for b in range(self.brackets)]

    def __repr__(self) -> str:
        extra = ", multi_objective=True" if self.multi_objective else ""
        return (f"Hyperband(max_t={self.max_t!r}, grace_period={self.grace_period!r}, "
                f"reduction_factor={self.reduction_factor!r}, time_attr="
                f"{self.time_attr!r}{extra})")
