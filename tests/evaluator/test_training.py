"""``nf.evaluator.Classification`` / ``Regression``: data forms, the training loop,
reporting, stopping, errors, pickling, and a whole experiment through the engine."""

from __future__ import annotations

import copy
import doctest
import threading
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

import nasflow as nf
from nasflow._kernel import Objective
from nasflow.evaluator import Classification, Regression, Trial, _training
from nasflow.events import IntermediateMetric

# --- helpers ---------------------------------------------------------------------------------


class RecordingTrial(Trial):
    """A trial that keeps what was reported and can stop itself after ``stop_after``
    reports (as an early-stopping scheduler would)."""

    def __init__(self, tmp_path: Path, direction: str = "maximize",
                 stop_after: int | None = None) -> None:
        super().__init__(0, {}, objective=Objective({"default": direction}), pipe=None,
                         directory=lambda: tmp_path)
        self.reports: list[tuple[int | None, Any]] = []
        self.stop_after = stop_after

    def report(self, value: Any, step: int | None = None) -> None:
        super().report(value, step)
        self.reports.append((step, value))
        if self.stop_after is not None and len(self.reports) >= self.stop_after:
            self._stop(nf.TrialState.EARLY_STOPPED, "the test stopped it")


def mlp(inputs: int = 64, hidden: int = 32, outputs: int = 10, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, outputs))


@pytest.fixture(scope="module")
def digits() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    data = load_digits()
    x, y = data.data / 16.0, data.target
    return (x[:1400], y[:1400]), (x[1400:], y[1400:])


def linear_data(n: int = 256, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = x @ torch.tensor([1.5, -2.0, 0.5, 3.0]) + 0.1 * torch.randn(n, generator=g)
    return x, y


class PairDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """A map-style dataset that is not a TensorDataset (goes through a DataLoader)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]


# --- training ----------------------------------------------------------------------------------


def test_classification_learns_digits_and_reports_every_epoch(digits: Any,
                                                              tmp_path: Path) -> None:
    train, val = digits
    evaluator = Classification(train, val, epochs=4, lr=3e-3, device="cpu")
    trial = RecordingTrial(tmp_path)
    result = evaluator.evaluate(mlp(), trial)
    assert [step for step, _ in trial.reports] == [0, 1, 2, 3]
    assert result == trial.reports[-1][1]
    assert result > 0.7  # chance is 0.1
    assert evaluator.default_objective == "maximize"
    assert not evaluator.is_async  # runs in a worker thread, off the event loop


def test_regression_decreases_mse_and_minimizes(tmp_path: Path) -> None:
    x, y = linear_data()
    evaluator = Regression((x[:200], y[:200]), (x[200:], y[200:]), epochs=6, lr=3e-2,
                           batch_size=32, device="cpu")
    trial = RecordingTrial(tmp_path, "minimize")
    result = evaluator.evaluate(mlp(4, 16, 1), trial)  # (n,) targets, (batch, 1) outputs
    values = [v for _, v in trial.reports]
    assert len(values) == 6
    assert values[-1] < values[0] / 2
    assert result == values[-1]
    assert evaluator.default_objective == "minimize"


def test_regression_metric_is_the_exact_validation_mse(tmp_path: Path) -> None:
    x, y = linear_data(100)
    model = mlp(4, 8, 1)
    # uneven validation batches (37 = 7 * 5 + 2): the mean must be over all rows
    evaluator = Regression((x, y), (x[:37], y[:37]), epochs=1, lr=1e-9, optimizer="sgd",
                           val_batch_size=5, device="cpu")
    trained = copy.deepcopy(model)
    result = evaluator.evaluate(trained, RecordingTrial(tmp_path, "minimize"))
    with torch.no_grad():
        expected = float(((trained(x[:37])[:, 0] - y[:37]) ** 2).mean())
    assert result == pytest.approx(expected, rel=1e-5)


def to_tensors(pair: tuple[np.ndarray, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(pair[0]), torch.tensor(pair[1])


DATA_FORMS = {
    "numpy pair": lambda p: p,
    "tensor pair": to_tensors,
    "list pair": lambda p: list(to_tensors(p)),
    "TensorDataset": lambda p: TensorDataset(*to_tensors(p)),
    "Dataset": lambda p: PairDataset(*to_tensors(p)),
    "DataLoader": lambda p: DataLoader(PairDataset(*to_tensors(p)), batch_size=64,
                                       shuffle=True),
}


@pytest.mark.parametrize("form", sorted(DATA_FORMS))
def test_every_data_form_trains(form: str, digits: Any, tmp_path: Path) -> None:
    train, val = (DATA_FORMS[form](p) for p in digits)
    evaluator = Classification(train, val, epochs=2, lr=3e-3, device="cpu")
    result = evaluator.evaluate(mlp(), RecordingTrial(tmp_path))
    assert result > 0.5


def test_regression_accepts_a_dataset_with_float64_data(tmp_path: Path) -> None:
    x, y = linear_data()
    data = PairDataset(x.double(), y.double())  # float64 batches are cast for the model
    evaluator = Regression(data, data, epochs=2, lr=1e-2)
    assert evaluator.evaluate(mlp(4, 8, 1), RecordingTrial(tmp_path, "minimize")) > 0


def test_same_seed_same_result(digits: Any, tmp_path: Path) -> None:
    train, val = digits
    evaluator = Classification(train, val, epochs=2, seed=7)
    model = mlp()
    first = evaluator.evaluate(copy.deepcopy(model), RecordingTrial(tmp_path))
    again = evaluator.evaluate(copy.deepcopy(model), RecordingTrial(tmp_path))
    assert first == again


def test_optimizer_by_name_class_and_factory(tmp_path: Path) -> None:
    x, y = linear_data()
    seen: list[torch.optim.Optimizer] = []

    def factory(params: list[nn.Parameter]) -> torch.optim.Optimizer:
        seen.append(torch.optim.SGD(params, lr=0.05, momentum=0.9))
        return seen[-1]

    for optimizer in ("SGD", "adamw", torch.optim.RMSprop, factory):
        evaluator = Regression((x, y), (x, y), epochs=2, lr=1e-2, optimizer=optimizer)
        assert evaluator.evaluate(mlp(4, 8, 1), RecordingTrial(tmp_path, "minimize")) > 0
    assert len(seen) == 1


def test_criterion_replaces_the_training_loss_only(tmp_path: Path) -> None:
    x, y = linear_data()
    calls: list[int] = []

    def l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return (pred - target).abs().mean()

    for criterion in (nn.L1Loss, nn.SmoothL1Loss(), l1):
        evaluator = Regression((x, y), (x, y), epochs=1, lr=1e-2, criterion=criterion)
        assert evaluator.evaluate(mlp(4, 8, 1), RecordingTrial(tmp_path, "minimize")) > 0
    assert calls


# --- stopping and failing -------------------------------------------------------------------------


def test_a_stopped_trial_ends_training_at_once(digits: Any, tmp_path: Path) -> None:
    train, val = digits
    evaluator = Classification(train, val, epochs=10)
    trial = RecordingTrial(tmp_path, stop_after=2)  # a scheduler stops it after epoch 2
    with pytest.raises(nf.TrialStopped, match="epoch 3"):
        evaluator.evaluate(mlp(), trial)
    assert [step for step, _ in trial.reports] == [0, 1]


def test_a_trial_stopped_before_it_starts_trains_nothing(digits: Any, tmp_path: Path) -> None:
    train, val = digits
    trial = RecordingTrial(tmp_path)
    trial._stop(nf.TrialState.CANCELED, "cancelled")
    model = mlp()
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(nf.TrialStopped):
        Classification(train, val, device="cpu").evaluate(model, trial)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert trial.reports == []


def test_a_diverging_model_fails_with_a_metric_error(tmp_path: Path) -> None:
    x, y = linear_data()
    evaluator = Regression((x * 1e3, y * 1e3), (x, y), epochs=3, lr=1e3, optimizer="sgd")
    with pytest.raises(nf.MetricError, match="diverged"):
        evaluator.evaluate(mlp(4, 8, 1), RecordingTrial(tmp_path, "minimize"))


def test_no_model_says_a_model_space_is_needed(digits: Any, tmp_path: Path) -> None:
    evaluator = Classification(*digits)
    with pytest.raises(TypeError, match="model space"):
        evaluator.evaluate(None, RecordingTrial(tmp_path))
    with pytest.raises(TypeError, match=r"torch\.nn\.Module"):
        evaluator.evaluate(lambda x: x, RecordingTrial(tmp_path))


def test_too_few_logits_is_a_clear_error(digits: Any, tmp_path: Path) -> None:
    evaluator = Classification(*digits)
    with pytest.raises(ValueError, match="up to class 9 but the model returns 5 logits"):
        evaluator.evaluate(mlp(outputs=5), RecordingTrial(tmp_path))
    with pytest.raises(ValueError, match=r"logits of shape \(batch, classes\)"):
        evaluator.evaluate(nn.Sequential(mlp(), nn.Flatten(0)), RecordingTrial(tmp_path))


def test_regression_output_of_the_wrong_shape_is_a_clear_error(tmp_path: Path) -> None:
    x, y = linear_data()
    evaluator = Regression((x, y), (x, y))
    with pytest.raises(ValueError, match="one value per target"):
        evaluator.evaluate(mlp(4, 8, 3), RecordingTrial(tmp_path, "minimize"))


# --- checking the data up front -------------------------------------------------------------------

X4, Y4 = np.zeros((4, 3)), np.array([0, 1, 0, 1])

BAD_DATA = [
    ("a string", "nope", TypeError, "expected a pair"),
    ("a dict", {"x": X4, "y": Y4}, TypeError, "expected a pair"),
    ("three items", (X4, Y4, Y4), TypeError, "3 items"),
    ("a list of lists", ([[0.0]] * 4, Y4), TypeError, "torch tensor or a numpy array"),
    ("mismatched lengths", (X4, Y4[:3]), ValueError, "X has 4 samples but y has 3"),
    ("empty", (X4[:0], Y4[:0]), ValueError, "empty"),
    ("scalar y", (X4, np.array(1)), ValueError, "one row per sample"),
    ("fractional classes", (X4, np.array([0.0, 0.5, 1.0, 1.0])), ValueError, "0.5"),
    ("negative classes", (X4, np.array([0, -1, 0, 1])), ValueError, "-1"),
    ("one-hot targets", (X4, np.eye(4)), ValueError, "argmax"),
    ("NaN inputs", (np.full((4, 3), np.nan), Y4), ValueError, "NaN"),
    ("text inputs", (np.array([["a"]] * 4), Y4), TypeError, "numeric"),
    ("an empty dataset", PairDataset(torch.zeros(0, 3), torch.zeros(0)), ValueError, "empty"),
    ("a dataset of singles", TensorDataset(torch.zeros(4, 3)), TypeError, "(input, target)"),
    ("an empty loader", DataLoader(PairDataset(torch.zeros(0, 3), torch.zeros(0))),
     ValueError, "empty"),
]


@pytest.mark.parametrize(("data", "error", "message"),
                         [case[1:] for case in BAD_DATA], ids=[case[0] for case in BAD_DATA])
def test_bad_data_is_rejected_naming_the_argument(data: Any, error: type[Exception],
                                                  message: str) -> None:
    with pytest.raises(error, match=r"Classification\(train_data=\.\.\.\)") as info:
        Classification(data, (X4, Y4))
    assert message in str(info.value)
    with pytest.raises(error, match=r"Classification\(val_data=\.\.\.\)"):
        Classification((X4, Y4), data)


def test_regression_rejects_nan_targets() -> None:
    with pytest.raises(ValueError, match=r"Regression\(val_data=\.\.\.\): y holds NaN"):
        Regression((X4, Y4), (X4, np.array([0.0, np.nan, 1.0, 2.0])))


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"epochs": 0}, ValueError, "epochs"),
    ({"batch_size": 2.5}, TypeError, "batch_size"),
    ({"val_batch_size": 0}, ValueError, "val_batch_size"),
    ({"lr": 0}, ValueError, "lr"),
    ({"lr": "fast"}, TypeError, "lr"),
    ({"weight_decay": -1}, ValueError, "weight_decay"),
    ({"optimizer": "rmsprop"}, ValueError, "unknown optimizer 'rmsprop'"),
    ({"optimizer": nn.Linear}, TypeError, "not a torch.optim.Optimizer"),
    ({"optimizer": 3}, TypeError, "optimizer"),
    ({"criterion": "mse"}, TypeError, "criterion"),
    ({"device": "gpu please"}, ValueError, "not a device"),
    ({"device": 0}, TypeError, "device"),
    ({"seed": "x"}, TypeError, "seed"),
    ({"num_workers": -1}, ValueError, "num_workers"),
])
def test_bad_arguments_are_rejected(kwargs: dict[str, Any], error: type[Exception],
                                    message: str) -> None:
    with pytest.raises(error, match=message):
        Regression((X4, Y4), (X4, Y4), **kwargs)


def test_an_optimizer_factory_must_return_an_optimizer(tmp_path: Path) -> None:
    evaluator = Regression((X4, Y4), (X4, Y4), optimizer=lambda params: "adam")
    with pytest.raises(TypeError, match="returned str"):
        evaluator.evaluate(mlp(3, 4, 1), RecordingTrial(tmp_path, "minimize"))


# --- pickling ---------------------------------------------------------------------------------


def test_the_evaluator_pickles_with_its_data(digits: Any, tmp_path: Path) -> None:
    evaluator = Classification(*digits, epochs=1, seed=3)
    clone = cloudpickle.loads(cloudpickle.dumps(evaluator))
    model = mlp()
    assert clone.evaluate(copy.deepcopy(model), RecordingTrial(tmp_path)) == (
        evaluator.evaluate(copy.deepcopy(model), RecordingTrial(tmp_path)))


def test_a_loader_pickles_without_its_live_workers(digits: Any, tmp_path: Path) -> None:
    train, val = digits
    loader = DataLoader(TensorDataset(*to_tensors(train)), batch_size=64)
    evaluator = Classification(loader, val, epochs=2, lr=1e-2)
    loader._iterator = threading.Lock()  # stands for a persistent-worker iterator
    clone = cloudpickle.loads(cloudpickle.dumps(evaluator))
    assert clone.evaluate(mlp(), RecordingTrial(tmp_path)) > 0.5


# --- through an experiment ----------------------------------------------------------------------


class TinyMLPSpace:
    """The least a model space must be for the engine: a flag, its ``SearchSpace``, and
    ``freeze(sample) -> nn.Module``."""

    is_model_space = True

    def __init__(self) -> None:
        self._space = nf.SearchSpace({"width": nf.Categorical([8, 16, 32])})

    def search_space_object(self) -> nf.SearchSpace:
        return self._space

    def freeze(self, sample: dict[str, Any]) -> nn.Module:
        return mlp(hidden=sample["width"])


async def test_an_experiment_trains_each_architecture(digits: Any, tmp_path: Path) -> None:
    evaluator = Classification(*digits, epochs=3, lr=1e-2)
    exp = nf.Experiment(TinyMLPSpace(), evaluator, nf.strategy.Random(seed=0),
                        nf.ExperimentConfig(max_trials=3, concurrency=2, home=str(tmp_path)))
    events = exp.events(IntermediateMetric)
    await exp.run()
    seen = [ev async for ev in events]

    trials = exp.trials()
    assert len(trials) == 3
    assert {t.state for t in trials} == {nf.TrialState.SUCCEEDED}
    assert all(t.metric is not None and t.metric > 0.5 for t in trials)
    assert sorted((ev.trial_id, ev.step) for ev in seen) == [
        (trial, step) for trial in range(3) for step in (0, 1, 2)
    ]
    with nf.load_experiment(exp.id, home=tmp_path) as stored:
        for t in trials:
            steps = stored.intermediates(t.id)
            assert [s for s, _ in steps] == [0, 1, 2]
            assert steps[-1][1] == t.metric


async def test_regression_experiments_minimize_the_mse(tmp_path: Path) -> None:
    x, y = linear_data()
    evaluator = Regression((x, y), (x, y), epochs=1)
    space = TinyMLPSpace()
    exp = nf.Experiment(space, evaluator, nf.strategy.Random(),
                        nf.ExperimentConfig(home=str(tmp_path)))
    assert exp.objective.direction == "minimize"
    with pytest.raises(nf.ConfigError, match="minimize"):  # NNI maximised MSE silently
        nf.Experiment(space, evaluator, nf.strategy.Random(),
                      nf.ExperimentConfig(objective="maximize", home=str(tmp_path)))


def test_a_torch_free_space_is_refused_before_any_trial(digits: Any, tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="torch-free"):
        nf.Experiment({"width": nf.Categorical([8, 16])}, Classification(*digits),
                      nf.strategy.Random(seed=0),
                      nf.ExperimentConfig(max_trials=1, home=str(tmp_path)))


# --- docs -------------------------------------------------------------------------------------


def test_docstring_examples_run() -> None:
    result = doctest.testmod(_training, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 4
    assert result.failed == 0
