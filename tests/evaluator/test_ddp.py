"""``devices=2``: one trial trained by DistributedDataParallel on two CPU processes (gloo);
and ``compile=True``.

Two ranks with batch ``B`` take the same steps as one process with batch ``2B`` (the
gradients of two half-batches, averaged, are the gradient of the whole batch), so the
metrics must agree to float precision: that is how these tests know the ranks really
shared the work and synchronised. They also check that a rank's failure fails the trial
with its cause, that a stop reaches every rank, and that no rank outlives its trial.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest
import torch
from torch import nn

import nasflow as nf
from nasflow import RankError
from nasflow._kernel import Objective
from nasflow.evaluator import Classification, Regression, Trial

pytestmark = pytest.mark.slow


class RecordingTrial(Trial):
    """A trial that keeps what was reported and may ask to stop after some reports."""

    def __init__(self, tmp_path: Path, stop_after: int | None = None) -> None:
        super().__init__(0, {}, objective=Objective({"default": "maximize"}), pipe=None,
                         directory=lambda: tmp_path)
        self.reports: list[tuple[float, int | None]] = []
        self._stop_after = stop_after

    def report(self, value: Any, step: int | None = None) -> None:
        super().report(value, step)
        self.reports.append((value, step))

    def should_stop(self) -> bool:
        if self._stop_after is not None and len(self.reports) >= self._stop_after:
            return True
        return super().should_stop()


def data(n: int = 256, seed: int = 0) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long() + (x[:, 2] > 1).long()
    return (x[: n * 3 // 4], y[: n * 3 // 4]), (x[n * 3 // 4:], y[n * 3 // 4:])


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))


class Crash(nn.Module):
    """Rank 1 dies (``os._exit``) or raises in its first forward pass."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how
        self.body = mlp()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        if dist.is_initialized() and dist.get_rank() == 1:
            if self.how == "exit":
                os._exit(3)
            raise ValueError("rank 1 cannot go on")
        return self.body(x)


def no_ranks_left() -> bool:
    return not [p for p in psutil.Process().children(recursive=True)
                if "nasflow.evaluator._ddp" in " ".join(p.cmdline())]


def regression_data() -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(256, 8, generator=g)
    y = x @ torch.linspace(-1, 1, 8) + 0.1 * torch.randn(256, generator=g)
    return (x[:192], y[:192]), (x[192:], y[192:])


def regressor() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))


def test_two_ranks_take_the_steps_of_one_process_with_twice_the_batch(tmp_path: Path
                                                                     ) -> None:
    train, val = regression_data()  # 192 training rows: 6 batches of 32, 3 of 64
    common = {"epochs": 3, "optimizer": "sgd", "lr": 0.05, "seed": 0}

    def run(batch_size: int, devices: int) -> list[float]:
        trial = RecordingTrial(tmp_path)
        final = Regression(train, val, batch_size=batch_size, devices=devices,
                           **common).evaluate(regressor(), trial)
        assert [s for _, s in trial.reports] == [0, 1, 2]  # every epoch (from rank 0)
        assert final == trial.reports[-1][0]
        return [v for v, _ in trial.reports]

    ddp, alone, small = run(32, 2), run(64, 1), run(32, 1)
    assert ddp == pytest.approx(alone, rel=1e-5)  # the validation MSE, epoch by epoch
    assert ddp != pytest.approx(small, rel=1e-3)  # the ranks shared the batches
    assert no_ranks_left()


def test_an_uneven_count_of_batches_does_not_hang(tmp_path: Path) -> None:
    train, val = data()  # 192 rows in batches of 64: 3 batches, rank 1 takes batch 0 again
    metric = Classification(train, val, epochs=2, batch_size=64, devices=2,
                            seed=1).evaluate(mlp(), RecordingTrial(tmp_path))
    assert 0.0 <= metric <= 1.0
    assert no_ranks_left()


@pytest.mark.parametrize(("how", "error", "message"), [
    ("exit", RankError, "rank 1 exited with code 3"),
    ("raise", ValueError, "rank 1 cannot go on"),
])
def test_a_failing_rank_fails_the_trial_with_its_cause_and_leaves_no_process(
        tmp_path: Path, how: str, error: type[Exception], message: str) -> None:
    train, val = data()
    ev = Classification(train, val, epochs=2, batch_size=32, devices=2)
    with pytest.raises(error, match=message):
        ev.evaluate(Crash(how), RecordingTrial(tmp_path))
    assert no_ranks_left()


def test_a_stop_reaches_every_rank(tmp_path: Path) -> None:
    train, val = data()
    trial = RecordingTrial(tmp_path, stop_after=1)
    with pytest.raises(nf.TrialStopped):
        Classification(train, val, epochs=50, batch_size=8, devices=2).evaluate(mlp(), trial)
    assert 1 <= len(trial.reports) < 50
    assert no_ranks_left()


class Net(nf.nn.ModelSpace):
    def __init__(self) -> None:
        super().__init__()
        width = nf.Categorical([8, 16], label="width")
        self.body = nn.Sequential(nf.nn.Linear(8, width), nn.ReLU(), nf.nn.Linear(width, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def test_a_search_of_ddp_trials_on_local_workers(tmp_path: Path) -> None:
    train, val = data()
    exp = nf.Experiment(Net(), Classification(train, val, epochs=2, batch_size=32, devices=2),
                        nf.strategy.GridSearch(),
                        nf.ExperimentConfig(max_trials=1, home=str(tmp_path),
                                            training_service="local"))
    anyio.run(exp.run)
    (trial,) = exp.trials()
    assert trial.state is nf.TrialState.SUCCEEDED, trial.error
    with nf.load_experiment(exp.id, home=tmp_path) as stored:
        assert len(stored.intermediates(trial.id)) == 2
    assert no_ranks_left()


def test_compile_trains_the_same_model(tmp_path: Path) -> None:
    """``compile=True`` (torch.compile, inductor on the CPU) gives the eager run's metrics."""
    train, val = regression_data()

    def run(compile: bool) -> list[float]:
        trial = RecordingTrial(tmp_path)
        Regression(train, val, batch_size=32, epochs=2, optimizer="sgd", lr=0.05,
                   compile=compile).evaluate(regressor(), trial)
        return [v for v, _ in trial.reports]

    assert run(True) == pytest.approx(run(False), rel=1e-5)


class DiesOnRank1(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        if dist.is_initialized() and dist.get_rank() == 1:
            os._exit(3)
        return x


class CrashNet(nf.nn.ModelSpace):
    """``how="exit"``: rank 1 of a ``devices=2`` trial dies in its first forward pass."""

    def __init__(self) -> None:
        super().__init__()
        self.how = nf.nn.LayerChoice({"exit": DiesOnRank1(), "fine": nn.Identity()},
                                     label="how")
        self.body = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.how(x))


def tagged_ranks(tag: str) -> list[psutil.Process]:
    """Rank processes anywhere on the machine that carry this test's tag in their
    environment (a rank that outlived its worker is no longer a child of this process)."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if ("nasflow.evaluator._ddp" in " ".join(p.info["cmdline"] or ())
                    and p.environ().get("NASFLOW_TEST_TAG") == tag):
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def test_a_dying_rank_on_local_workers_fails_its_trial_and_leaves_no_process(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tag = f"{os.getpid()}-{tmp_path.name}"
    monkeypatch.setenv("NASFLOW_TEST_TAG", tag)  # the workers and their ranks inherit it
    train, val = data()
    exp = nf.Experiment(CrashNet(), Classification(train, val, epochs=2, batch_size=32,
                                                   devices=2),
                        nf.strategy.GridSearch(),
                        nf.ExperimentConfig(max_trials=2, home=str(tmp_path),
                                            training_service="local"))
    anyio.run(exp.run)
    by_how = {t.sample["how"]: t for t in exp.trials()}
    dead = by_how["exit"]
    assert dead.state is nf.TrialState.FAILED
    assert dead.error is not None and dead.error.type == "RankError", dead.error
    assert "rank 1 exited with code 3" in dead.error.message
    assert by_how["fine"].state is nf.TrialState.SUCCEEDED, by_how["fine"].error  # goes on
    assert tagged_ranks(tag) == []
