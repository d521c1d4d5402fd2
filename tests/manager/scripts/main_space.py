"""A user's search script: the model space and the evaluator live in ``__main__``, and the
evaluator imports a module that sits next to this file (not on the workers' path unless
nasflow carries it there). Run by tests/manager/test_scripts.py from another directory."""

import anyio
import torch
import torch.nn as nn
from nearby_helpers import score  # a module next to this script

import nasflow as nf
from nasflow import nn as snn


class TinyNet(snn.ModelSpace):
    def __init__(self):
        super().__init__()
        width = nf.Categorical([4, 8], label="width")
        self.body = snn.Linear(3, width)
        self.act = snn.LayerChoice({"relu": nn.ReLU(), "tanh": nn.Tanh()}, label="act")
        self.head = snn.Linear(width, 1)

    def forward(self, x):
        return self.head(self.act(self.body(x)))


def evaluate(model, trial):
    out = model(torch.ones(2, 3))
    assert type(model).__name__ == "TinyNet" and out.shape == (2, 1)
    return score(trial.sample)


async def main():
    exp = nf.Experiment(
        TinyNet(), evaluate, nf.strategy.GridSearch(),
        nf.ExperimentConfig(concurrency=2, training_service="local", store=False),
    )
    await exp.run()
    print("RESULT", sorted((t.state.value, t.metric) for t in exp.trials()), flush=True)


if __name__ == "__main__":
    anyio.run(main)
