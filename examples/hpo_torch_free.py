"""Hyper-parameter search on a torch-free space: the evaluator builds its own model.

A dict of choices is a search space; the evaluator gets ``model=None`` and reads
``trial.sample``. Here: a scikit-learn MLP on the bundled digits, learning rate on a log
scale, a constraint, and minimisation of the validation error.

    python examples/hpo_torch_free.py
"""

from __future__ import annotations

import os

from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

import nasflow as nf

QUICK = os.environ.get("NASFLOW_EXAMPLE_QUICK") == "1"
X, y = load_digits(return_X_y=True)
X_train, X_val, y_train, y_val = train_test_split(X / 16.0, y, test_size=0.25, random_state=0)

space = {
    "lr": nf.Numerical(1e-4, 1e-1, log=True),
    "hidden": nf.Categorical([16, 32, 64, 128]),
    "layers": nf.Categorical([1, 2]),
    "alpha": nf.Numerical(1e-6, 1e-2, log=True),
    # two wide layers train too slowly for this budget: never try them
    "budget": nf.Constraint(lambda s: s["hidden"] * s["layers"] <= 128, label="budget"),
}


def evaluate(model: None, trial: nf.Trial) -> float:
    s = trial.sample
    clf = MLPClassifier(hidden_layer_sizes=(s["hidden"],) * s["layers"], alpha=s["alpha"],
                        learning_rate_init=s["lr"], max_iter=30 if QUICK else 80, random_state=0)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X_train, y_train)
    return 1.0 - clf.score(X_val, y_val)  # validation error: lower is better


if __name__ == "__main__":
    exp = nf.run(nf.Experiment(space, evaluate, nf.strategy.Random(seed=0),
                               nf.ExperimentConfig(max_trials=4 if QUICK else 24,
                                                   concurrency=2, objective="minimize")))
    for record in exp.export_top_models(3):
        print(f"trial {record.id}: error {record.metric:.4f}  {record.sample}")
