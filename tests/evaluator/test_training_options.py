"""The training options of ``Classification`` / ``Regression`` (issue 16): seeding, the
learning-rate schedules, gradient clipping, label smoothing, momentum, mixed precision,
and the errors for values that cannot work."""

from __future__ import annotations

import itertools
import math
import threading
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, IterableDataset

import nasflow as nf
from nasflow._kernel import Objective
from nasflow.engine import build_model
from nasflow.evaluator import Classification, Regression, Trial

# --- helpers ---------------------------------------------------------------------------------


class RecordingTrial(Trial):
    """A trial that keeps what was reported."""

    def __init__(self, tmp_path: Path, direction: str = "maximize") -> None:
        super().__init__(0, {}, objective=Objective({"default": direction}), pipe=None,
                         directory=lambda: tmp_path)
        self.reports: list[Any] = []

    def report(self, value: Any, step: int | None = None) -> None:
        super().report(value, step)
        self.reports.append(value)


class RecordingSGD(torch.optim.SGD):
    """SGD that records the learning rate and the gradients' norm of every step."""

    def __init__(self, params: Any, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self.lrs: list[float] = []
        self.norms: list[float] = []

    def step(self, closure: Any = None) -> Any:
        self.lrs.append(self.param_groups[0]["lr"])
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        self.norms.append(float(torch.linalg.vector_norm(
            torch.stack([torch.linalg.vector_norm(g) for g in grads]))))
        return super().step(closure)


class Recorder:
    """An optimizer factory that keeps the optimizer it made."""

    def __init__(self, lr: float = 0.1) -> None:
        self.lr = lr
        self.made: RecordingSGD | None = None

    def __call__(self, params: list[nn.Parameter]) -> RecordingSGD:
        self.made = RecordingSGD(params, lr=self.lr)
        return self.made


def linear_data(n: int = 256, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    return x, x @ torch.tensor([1.5, -2.0, 0.5, 3.0]) + 0.1 * torch.randn(n, generator=g)


@pytest.fixture(scope="module")
def digits() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    data = load_digits()
    x, y = data.data / 16.0, data.target
    return (x[:1400], y[:1400]), (x[1400:], y[1400:])


class DropoutNet(nf.nn.ModelSpace):
    """A model space whose trials use dropout (drawn from torch's global generator). The
    head has a searchable width, so ``freeze`` builds it fresh (drawing its weights); the
    ``LayerChoice`` candidates are copied from the space with the weights they have."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nf.nn.LayerChoice({
            "wide": nn.Sequential(nn.Linear(64, 48), nn.ReLU()),
            "narrow": nn.Sequential(nn.Linear(64, 24), nn.ReLU(), nn.Linear(24, 48)),
        }, label="body")
        self.drop = nn.Dropout(0.5)
        self.head = nf.nn.Linear(48, nf.Categorical([10, 12], label="classes"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.body(x)))


SPACE = DropoutNet()


def run_seeded(evaluator: Classification, tmp_path: Path, sample: dict[str, Any]) -> list[Any]:
    """One trial as an engine runs it: the model frozen under the evaluator's seed."""
    model = build_model(SPACE, {"classes": 10, **sample}, evaluator.model_seed)
    trial = RecordingTrial(tmp_path)
    evaluator.evaluate(model, trial)
    return trial.reports


# --- seeding ---------------------------------------------------------------------------------


def test_a_seed_repeats_weights_data_order_and_dropout(digits: Any, tmp_path: Path) -> None:
    train, val = digits
    sample = {"body": "wide"}
    torch.manual_seed(123)  # whatever the global generator holds, the seed decides
    first = run_seeded(Classification(train, val, epochs=2, seed=5), tmp_path, sample)
    torch.manual_seed(456)
    again = run_seeded(Classification(train, val, epochs=2, seed=5), tmp_path, sample)
    other = run_seeded(Classification(train, val, epochs=2, seed=6), tmp_path, sample)
    assert first == again  # bit for bit: every epoch's accuracy
    assert first != other


def test_the_seed_fixes_the_weights_freeze_draws() -> None:
    sample = {"body": "narrow", "classes": 12}
    a = build_model(SPACE, sample, 3)
    torch.manual_seed(99)
    b = build_model(SPACE, sample, 3)
    c = build_model(SPACE, sample, 4)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert not torch.equal(a.head.weight, c.head.weight)
    unseeded = [build_model(SPACE, sample).head.weight for _ in range(2)]
    assert not torch.equal(*unseeded)


def test_seeded_trials_in_threads_repeat_what_they_do_alone(digits: Any,
                                                           tmp_path: Path) -> None:
    # the in-process engine runs concurrent trials as threads sharing torch's generator
    train, val = digits
    evaluator = Classification(train, val, epochs=2, seed=1)
    alone = {s: run_seeded(evaluator, tmp_path, {"body": s}) for s in ("wide", "narrow")}
    together: dict[str, list[Any]] = {}
    barrier = threading.Barrier(2)

    def one(body: str) -> None:
        barrier.wait()
        together[body] = run_seeded(evaluator, tmp_path / body, {"body": body})

    threads = [threading.Thread(target=one, args=(s,)) for s in ("wide", "narrow")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert together == alone


def test_seed_none_draws_fresh_randomness(digits: Any, tmp_path: Path) -> None:
    train, val = digits
    evaluator = Classification(train, val, epochs=1, seed=None)
    runs = [run_seeded(evaluator, tmp_path, {"body": "wide"}) for _ in range(3)]
    assert len({tuple(r) for r in runs}) > 1


@pytest.mark.slow
def test_the_demo_with_a_seed_repeats_its_metrics(tmp_path: Path) -> None:
    from nasflow.demo import make_experiment

    def once(home: Path) -> list[tuple[int, Any, float | None]]:
        exp = make_experiment(trials=3, concurrency=2, epochs=1, seed=0, home=str(home))
        anyio.run(exp.run)
        return sorted((t.id, t.sample, t.metric) for t in exp.trials())

    first, again = once(tmp_path / "a"), once(tmp_path / "b")
    assert first == again
    assert all(metric is not None for _, _, metric in first)


@pytest.mark.slow
def test_a_seeded_search_on_local_workers_repeats_bit_for_bit(digits: Any, tmp_path: Path
                                                              ) -> None:
    """Worker processes build each trial's model under the seed and keep their own
    generators, so a search on local workers repeats its curves exactly, and they are
    the curves of the same trials run in this process."""
    train, val = digits

    def curves(home: Path) -> dict[str, list[float]]:
        exp = nf.Experiment(SPACE, Classification(train, val, epochs=2, seed=3),
                            nf.strategy.GridSearch(),
                            nf.ExperimentConfig(concurrency=2, training_service="local",
                                                home=str(home)))
        anyio.run(exp.run)
        with nf.load_experiment(exp.id, home=home) as stored:
            return {f"{t.sample['body']}-{t.sample['classes']}":
                    [v for _, v in stored.intermediates(t.id)] for t in exp.trials()}

    first, again = curves(tmp_path / "a"), curves(tmp_path / "b")
    assert len(first) == 4 and first == again
    alone = run_seeded(Classification(train, val, epochs=2, seed=3), tmp_path,
                       {"body": "narrow", "classes": 12})
    assert first["narrow-12"] == alone


# --- learning-rate schedules -------------------------------------------------------------------


def lrs_of(schedule: Any, tmp_path: Path, epochs: int = 4) -> list[float]:
    x, y = linear_data()  # 256 samples, batches of 32: 8 steps per epoch
    recorder = Recorder(lr=0.1)
    evaluator = Regression((x, y), (x, y), epochs=epochs, batch_size=32, optimizer=recorder,
                           lr_schedule=schedule)
    evaluator.evaluate(nn.Linear(4, 1), RecordingTrial(tmp_path, "minimize"))
    assert recorder.made is not None
    return recorder.made.lrs


def test_no_schedule_keeps_the_learning_rate(tmp_path: Path) -> None:
    assert lrs_of("none", tmp_path) == [0.1] * 32


def test_cosine_decays_from_lr_towards_zero(tmp_path: Path) -> None:
    lrs = lrs_of("cosine", tmp_path)
    assert len(lrs) == 32 and lrs[0] == pytest.approx(0.1)
    assert all(a > b for a, b in itertools.pairwise(lrs))
    assert lrs[16] == pytest.approx(0.05)  # half way: half the rate
    assert lrs[-1] < 0.001


def test_step_divides_by_ten_at_half_and_three_quarters(tmp_path: Path) -> None:
    lrs = lrs_of("step", tmp_path)
    assert lrs == pytest.approx([0.1] * 16 + [0.01] * 8 + [0.001] * 8)


def test_onecycle_warms_up_then_anneals(tmp_path: Path) -> None:
    lrs = lrs_of("onecycle", tmp_path)
    peak = lrs.index(max(lrs))
    assert lrs[0] < 0.01 and max(lrs) == pytest.approx(0.1, rel=0.02)
    assert 6 <= peak <= 12  # about 30% of the 32 steps
    assert all(a <= b for a, b in itertools.pairwise(lrs[:peak + 1]))
    assert all(a >= b for a, b in itertools.pairwise(lrs[peak:]))
    assert lrs[-1] < 0.001


def test_a_schedule_function_gets_the_optimizer_and_the_step_count(tmp_path: Path) -> None:
    seen: list[int] = []

    def halve_each_epoch(optimizer: torch.optim.Optimizer,
                         total: int) -> torch.optim.lr_scheduler.LRScheduler:
        seen.append(total)
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=total // 2, gamma=0.5)

    lrs = lrs_of(halve_each_epoch, tmp_path, epochs=2)
    assert seen == [16]
    assert lrs == pytest.approx([0.1] * 8 + [0.05] * 8)


def test_a_schedule_function_must_return_a_scheduler(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="not a torch.optim.lr_scheduler.LRScheduler"):
        lrs_of(lambda optimizer, total: 0.5, tmp_path)


class Stream(IterableDataset[tuple[torch.Tensor, torch.Tensor]]):
    def __iter__(self) -> Any:
        x, y = linear_data(64)
        return iter(zip(x, y, strict=True))


def test_a_schedule_over_a_loader_without_len_is_a_clear_error(tmp_path: Path) -> None:
    loader = DataLoader(Stream(), batch_size=16)
    evaluator = Regression(loader, loader, epochs=1, lr_schedule="cosine")
    with pytest.raises(ValueError, match="has no len"):
        evaluator.evaluate(nn.Linear(4, 1), RecordingTrial(tmp_path, "minimize"))
    # without a schedule the same loader trains
    plain = Regression(loader, loader, epochs=1)
    assert math.isfinite(plain.evaluate(nn.Linear(4, 1), RecordingTrial(tmp_path, "minimize")))


# --- clipping, smoothing, momentum --------------------------------------------------------------


def test_grad_clip_bounds_the_gradient_norm(tmp_path: Path) -> None:
    x, y = linear_data()

    def norms(clip: float | None) -> list[float]:
        recorder = Recorder(lr=0.01)
        Regression((x, y), (x, y), epochs=1, batch_size=32, optimizer=recorder,
                   grad_clip=clip).evaluate(nn.Linear(4, 1), RecordingTrial(tmp_path, "minimize"))
        assert recorder.made is not None
        return recorder.made.norms

    assert max(norms(None)) > 1.0  # the targets are large: so are the gradients
    assert max(norms(0.5)) <= 0.5 + 1e-5


def test_label_smoothing_is_the_cross_entropy_s(digits: Any) -> None:
    train, val = digits
    logits, target = torch.randn(8, 10), torch.randint(0, 10, (8,))
    smooth = Classification(train, val, label_smoothing=0.1)._make_criterion(torch.device("cpu"))
    plain = Classification(train, val)._make_criterion(torch.device("cpu"))
    expected = nn.functional.cross_entropy(logits, target, label_smoothing=0.1)
    assert torch.equal(smooth(logits, target), expected)
    assert not torch.equal(plain(logits, target), expected)


def test_momentum_reaches_sgd(digits: Any) -> None:
    train, val = digits
    evaluator = Classification(train, val, optimizer="sgd", lr=0.05, momentum=0.9,
                               weight_decay=3e-4)
    group = evaluator._make_optimizer(nn.Linear(64, 10)).param_groups[0]
    assert (group["momentum"], group["lr"], group["weight_decay"]) == (0.9, 0.05, 3e-4)


def test_the_issue_s_example_trains(digits: Any, tmp_path: Path) -> None:
    train, val = digits
    evaluator = Classification(train, val, epochs=6, batch_size=128, optimizer="sgd", lr=0.05,
                               momentum=0.9, weight_decay=3e-4, lr_schedule="cosine",
                               grad_clip=5.0, label_smoothing=0.1, precision="bf16", seed=0,
                               compile=False, devices=1)
    result = run_seeded(evaluator, tmp_path, {"body": "wide"})
    assert len(result) == 6 and result[-1] > 0.6  # chance is 0.1


# --- precision ---------------------------------------------------------------------------------


def test_bf16_autocasts_the_forward_pass_on_cpu(digits: Any, tmp_path: Path) -> None:
    train, val = digits
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    dtypes: set[torch.dtype] = set()
    model[0].register_forward_hook(lambda mod, args, out: dtypes.add(out.dtype))
    result = Classification(train, val, epochs=2, precision="bf16", device="cpu").evaluate(
        model, RecordingTrial(tmp_path))
    assert dtypes == {torch.bfloat16}
    assert result > 0.5
    assert model[0].weight.dtype == torch.float32  # the weights stay float32


def test_fp16_on_the_cpu_is_refused_with_what_to_use(digits: Any, tmp_path: Path) -> None:
    train, val = digits
    with pytest.raises(ValueError, match="precision='bf16'"):
        Classification(train, val, precision="fp16", device="cpu")
    if not torch.cuda.is_available():  # "auto" decides where the trial runs
        evaluator = Classification(train, val, precision="fp16")
        with pytest.raises(ValueError, match="needs a CUDA device"):
            evaluator.evaluate(nn.Linear(64, 10), RecordingTrial(tmp_path))


# --- errors ------------------------------------------------------------------------------------

X4, Y4 = np.zeros((4, 3), dtype=np.float32), np.arange(4)


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"lr_schedule": "linear"}, ValueError, "unknown schedule 'linear'"),
    ({"lr_schedule": 3}, TypeError, "lr_schedule"),
    ({"grad_clip": 0}, ValueError, "grad_clip"),
    ({"grad_clip": "big"}, TypeError, "grad_clip"),
    ({"label_smoothing": 1.0}, ValueError, r"\[0, 1\)"),
    ({"label_smoothing": 0.1, "criterion": nn.NLLLoss}, ValueError, "your own criterion"),
    ({"precision": "fp8"}, ValueError, "precision"),
    ({"precision": 16}, ValueError, "precision"),
    ({"momentum": 0.9}, ValueError, "adam has no momentum"),
    ({"momentum": -0.1}, ValueError, "momentum"),
    ({"compile": "yes"}, TypeError, "compile"),
    ({"devices": 0}, ValueError, "devices"),
    ({"devices": True}, TypeError, "devices"),
])
def test_bad_training_options_are_rejected(kwargs: dict[str, Any], error: type[Exception],
                                           message: str) -> None:
    with pytest.raises(error, match=message):
        Classification((X4, Y4), (X4, Y4), **kwargs)


def test_label_smoothing_is_for_classification() -> None:
    with pytest.raises(ValueError, match="leave it at 0 for regression"):
        Regression((X4, Y4.astype(np.float32)), (X4, Y4.astype(np.float32)),
                   label_smoothing=0.1)
