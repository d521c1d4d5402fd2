"""``nf.evaluator.Lightning`` (issue 16): a LightningModule per trial, a report after
every validation epoch, ASHA's stop respected, and local worker processes."""

from __future__ import annotations

from typing import Any

import anyio
import lightning.pytorch as pl
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import nasflow as nf
from nasflow import nn as snn
from nasflow.events import IntermediateMetric

pytestmark = pytest.mark.filterwarnings(
    "ignore::UserWarning",  # Lightning's advice (few loader workers, tiny logs) on CPU
    "ignore::DeprecationWarning",
    "ignore::FutureWarning",  # lightning 2.6 uses torch 2.13's deprecated pytree.LeafSpec
)

EPOCHS = 4


class Destroy(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


class KeepOrDestroy(snn.ModelSpace):
    """``keep`` lets a linear head fit the target; ``destroy`` leaves nothing to fit."""

    def __init__(self) -> None:
        super().__init__()
        self.op = snn.LayerChoice({"keep": nn.Identity(), "destroy": Destroy(),
                                   "destroy2": Destroy()}, label="op")
        self.head = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.op(x)).squeeze(-1)


class LitRegressor(pl.LightningModule):
    def __init__(self, model: nn.Module, lr: float = 0.05) -> None:
        super().__init__()
        self.model = model
        self.lr = lr

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.mse_loss(self.model(x), y)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_mse", nn.functional.mse_loss(self.model(x), y))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.lr)


def loaders() -> tuple[DataLoader[Any], DataLoader[Any]]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 4, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 3.0, 0.5])
    return (DataLoader(TensorDataset(x[:192], y[:192]), batch_size=32),
            DataLoader(TensorDataset(x[192:], y[192:]), batch_size=64))


def lightning(**kwargs: Any) -> nf.evaluator.Lightning:
    train, val = loaders()
    return nf.evaluator.Lightning(
        lambda model: LitRegressor(model), train_dataloaders=train, val_dataloaders=val,
        metric="val_mse", direction="minimize",
        trainer_kwargs={"max_epochs": EPOCHS, "accelerator": "cpu", **kwargs})


class Recording(nf.Trial):
    def __init__(self, tmp_path: Any) -> None:
        from nasflow._kernel import Objective

        super().__init__(0, {}, objective=Objective({"default": "minimize"}), pipe=None,
                         directory=lambda: tmp_path)
        self.reports: list[tuple[int | None, float]] = []

    def report(self, value: Any, step: int | None = None) -> None:
        super().report(value, step)
        self.reports.append((step, value))


def test_every_validation_epoch_is_reported(tmp_path: Any) -> None:
    trial = Recording(tmp_path)
    result = lightning().evaluate(KeepOrDestroy().freeze({"op": "keep"}), trial)
    assert [step for step, _ in trial.reports] == list(range(EPOCHS))  # from 0, as built-ins
    assert result == trial.reports[-1][1]
    assert trial.reports[-1][1] < trial.reports[0][1]  # it trained


async def _asha_stops_a_lightning_trial(**config: Any) -> None:
    exp = nf.Experiment(KeepOrDestroy(), lightning(), nf.strategy.GridSearch(),
                        nf.ExperimentConfig(max_trials=3, concurrency=1, **config),
                        scheduler=nf.strategy.ASHA(max_t=EPOCHS, reduction_factor=2))
    steps: dict[int, list[int]] = {}
    stream = exp.events(IntermediateMetric)
    with anyio.fail_after(300):  # a guard against hanging, not a timed assertion
        async with anyio.create_task_group() as tg:
            tg.start_soon(exp.run)
            async for ev in stream:
                assert isinstance(ev, IntermediateMetric)
                steps.setdefault(ev.trial_id, []).append(ev.step)
    by_op = {t.sample["op"]: t for t in exp.trials()}
    assert by_op["keep"].state is nf.TrialState.SUCCEEDED
    assert steps[by_op["keep"].id] == list(range(EPOCHS))
    stopped = [t for t in exp.trials() if t.state is nf.TrialState.EARLY_STOPPED]
    assert stopped, [t.state for t in exp.trials()]
    for t in stopped:  # the trainer ended before its last epoch
        assert len(steps[t.id]) < EPOCHS


async def test_asha_stops_a_lightning_trial() -> None:
    await _asha_stops_a_lightning_trial()


@pytest.mark.slow
async def test_asha_stops_a_lightning_trial_on_local_workers() -> None:
    """The stop crosses the manager to the worker, whose callback ends the Trainer."""
    await _asha_stops_a_lightning_trial(training_service="local")


def test_a_metric_the_module_does_not_log_is_a_clear_error(tmp_path: Any) -> None:
    train, val = loaders()
    ev = nf.evaluator.Lightning(lambda model: LitRegressor(model), train_dataloaders=train,
                                val_dataloaders=val, metric="val_acc",
                                trainer_kwargs={"max_epochs": 1, "accelerator": "cpu"})
    with pytest.raises(nf.MetricError, match=r"did not log 'val_acc'.*\['val_mse'\]"):
        ev.evaluate(KeepOrDestroy().freeze({"op": "keep"}), Recording(tmp_path))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"module_factory": 3}, "module_factory"),
    ({"train_dataloaders": None}, "no data"),
    ({"direction": "up"}, "direction"),
])
def test_bad_arguments_are_rejected(kwargs: dict[str, Any], message: str) -> None:
    train, val = loaders()
    args: dict[str, Any] = {"module_factory": lambda m: LitRegressor(m),
                            "train_dataloaders": train, "val_dataloaders": val, **kwargs}
    with pytest.raises((TypeError, ValueError), match=message):
        nf.evaluator.Lightning(**args)


def test_a_factory_must_return_a_lightning_module(tmp_path: Any) -> None:
    train, val = loaders()
    ev = nf.evaluator.Lightning(lambda model: model, train_dataloaders=train,
                                val_dataloaders=val)
    with pytest.raises(TypeError, match="not a lightning.pytorch.LightningModule"):
        ev.evaluate(KeepOrDestroy().freeze({"op": "keep"}), Recording(tmp_path))


@pytest.mark.slow
async def test_lightning_trials_run_on_local_workers() -> None:
    exp = nf.Experiment(KeepOrDestroy(), lightning(), nf.strategy.GridSearch(),
                        nf.ExperimentConfig(max_trials=2, concurrency=2,
                                            training_service="local"))
    with anyio.fail_after(300):
        await exp.run()
    trials = exp.trials()
    assert [t.state for t in trials] == [nf.TrialState.SUCCEEDED] * 2
    assert {t.sample["op"] for t in trials} == {"keep", "destroy"}
    keep = next(t for t in trials if t.sample["op"] == "keep")
    other = next(t for t in trials if t.sample["op"] != "keep")
    assert keep.metric is not None and other.metric is not None and keep.metric < other.metric
