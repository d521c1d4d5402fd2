"""A model space drives an experiment: every trial gets a frozen, plain model."""

from __future__ import annotations

import torch
import torch.nn as nn

import nasflow as nf
from nasflow import nn as snn


class Net(snn.ModelSpace):
    def __init__(self) -> None:
        super().__init__()
        width = nf.Categorical([2, 4], label="width")
        self.fc = snn.Linear(3, width)
        self.op = snn.LayerChoice([nn.ReLU(), nn.Tanh()], label="op")
        self.lr = self.add_choice(nf.Categorical([0.1, 0.5]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(self.fc(x))


def evaluate(model: nn.Module, trial: nf.Trial) -> float:
    if any(isinstance(m, snn.NasModule) for m in model.modules()):
        raise AssertionError("the model still holds searchable modules")
    out = model(torch.zeros(1, 3))
    return float(out.shape[1]) + trial.sample["lr"]


def test_grid_search_over_a_model_space() -> None:
    exp = nf.Experiment(Net(), evaluate, nf.strategy.GridSearch(),
                        nf.ExperimentConfig(store=False))
    nf.run(exp)
    trials = exp.trials()
    assert len(trials) == 8
    assert all(t.state is nf.TrialState.SUCCEEDED for t in trials)
    assert {t.metric for t in trials} == {2.1, 2.5, 4.1, 4.5}
