"""``TPE``: the Tree-structured Parzen Estimator, as maintained by Optuna."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nasflow.strategy._base import StrategyContext
from nasflow.strategy._optuna import OptunaSampler, _quiet, import_optuna

if TYPE_CHECKING:
    import optuna

__all__ = ["TPE"]


class TPE(OptunaSampler):
    """TPE search (Bergstra et al., 2011) through Optuna's ``TPESampler``.

    It optimises in the experiment's direction(s) -- NNI's ``TPE`` minimised by default,
    so it sought the *worst* accuracy unless told otherwise; this one cannot. The first
    ``n_startup_trials`` are random. ``multivariate`` models the labels jointly;
    ``group`` (default: when the space has conditional labels) models each set of labels
    that appear together separately, which suits conditional spaces. ``constant_liar``
    keeps concurrent workers from proposing the same thing. Further keyword arguments go
    to ``optuna.samplers.TPESampler``. De-duplication, constraints, the Optuna mapping
    and resume are those of ``OptunaSampler``.
    """

    def __init__(
        self,
        seed: int | None = None,
        *,
        n_startup_trials: int = 10,
        n_ei_candidates: int = 24,
        multivariate: bool = True,
        group: bool | None = None,
        constant_liar: bool = True,
        dedup: bool = True,
        patience: int = 20,
        **tpe_kwargs: Any,
    ) -> None:
        import_optuna()  # fail now, with how to install it, not mid-search
        super().__init__(None, dedup=dedup, patience=patience, seed=seed)
        self.tpe_options: dict[str, Any] = dict(
            seed=seed, n_startup_trials=n_startup_trials, n_ei_candidates=n_ei_candidates,
            multivariate=multivariate, constant_liar=constant_liar, **tpe_kwargs,
        )
        """What ``TPESampler`` is built with (``group`` is settled once the space is known)."""
        self.group = group

    def _build_sampler(self, ctx: StrategyContext) -> optuna.samplers.BaseSampler:
        lib = import_optuna()
        space = ctx.space
        group = self.group
        if group is None:
            group = self.tpe_options["multivariate"] and any(
                space.conditions(label) is not None for label in space.labels
            )
        with _quiet():  # group=True is "experimental" in Optuna
            sampler: optuna.samplers.BaseSampler = lib.samplers.TPESampler(
                group=group, **self.tpe_options)
        return sampler

    def __repr__(self) -> str:
        return f"TPE(seed={self.seed}, n_startup_trials={self.tpe_options['n_startup_trials']})"
