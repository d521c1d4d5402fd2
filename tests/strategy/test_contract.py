"""Every strategy passes the strategy contract on the simulated engine."""

from __future__ import annotations

import nasflow as nf
from nasflow.strategy import Strategy
from nasflow.testing import StrategyContract


class TestRandom(StrategyContract):
    learns = False

    def make_strategy(self, seed: int) -> Strategy:
        return nf.strategy.Random(seed=seed)


class TestGridSearch(StrategyContract):
    learns = False

    def make_strategy(self, seed: int) -> Strategy:
        return nf.strategy.GridSearch(shuffle=True, seed=seed)


class TestRegularizedEvolution(StrategyContract):
    def make_strategy(self, seed: int) -> Strategy:
        return nf.strategy.RegularizedEvolution(population_size=20, sample_size=5, seed=seed)


class TestRegularizedEvolutionCrossover(StrategyContract):
    def make_strategy(self, seed: int) -> Strategy:
        return nf.strategy.RegularizedEvolution(population_size=20, sample_size=5,
                                                crossover=True, seed=seed)


class TestTPE(StrategyContract):
    def make_strategy(self, seed: int) -> Strategy:
        return nf.strategy.TPE(seed=seed)


class TestOptunaNSGAII(StrategyContract):
    learns_from_given = False  # its parents come from its own generations only

    def make_strategy(self, seed: int) -> Strategy:
        import optuna

        return nf.strategy.OptunaSampler(
            optuna.samplers.NSGAIISampler(population_size=10, seed=seed), seed=seed)


class TestOptunaNSGAIIFactory(StrategyContract):
    """The sampler built by a factory: the strategy pickles (NSGA-II holds a lock)."""

    learns_from_given = False

    def make_strategy(self, seed: int) -> Strategy:
        import optuna

        return nf.strategy.OptunaSampler(
            factory=lambda: optuna.samplers.NSGAIISampler(population_size=10, seed=seed),
            seed=seed)


class TestPolicyBasedRL(StrategyContract):
    def make_strategy(self, seed: int) -> Strategy:
        return nf.strategy.PolicyBasedRL(seed=seed)


class TestLocalSearch(StrategyContract):
    def make_strategy(self, seed: int) -> Strategy:
        return nf.strategy.LocalSearch(seed=seed)
