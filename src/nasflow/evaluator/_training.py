"""``Classification`` and ``Regression``: ready-made supervised training evaluators.

Each trial's frozen model is trained for ``epochs`` on the training data; after every
epoch the validation metric is computed and reported with ``trial.report(value,
step=epoch - 1)`` (``step`` counts from 0 as every report does: step ``s`` ends epoch
``s + 1``), and the last one is returned.
``evaluate`` is a plain ``def``: engines run it in a worker thread, off the event loop.

The evaluators hold tensors (or the user's dataset / loader, without worker processes),
so they pickle with cloudpickle and travel to worker processes as they are.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from abc import abstractmethod
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import torch
from torch import nn

from nasflow._kernel import nni_arguments
from nasflow.evaluator._args import (
    CriterionSpec,
    DeviceSpec,
    OptimizerSpec,
    ScheduleSpec,
    _check_bool,
    _check_device,
    _check_fraction,
    _check_optimizer,
    _check_optional_positive,
    _check_precision,
    _check_schedule,
    _non_negative,
    _positive_int,
    resolve_device,
)
from nasflow.evaluator._base import Evaluator
from nasflow.evaluator._data import Batches, Source, Task, TensorPair, prepare
from nasflow.evaluator._optim import Precision, make_optimizer, make_schedule
from nasflow.evaluator._seeding import TrialRng
from nasflow.evaluator._trial import Trial
from nasflow.exceptions import MetricError, TrialStopped

__all__ = ["Classification", "Regression", "Supervised"]

_log = logging.getLogger("nasflow.evaluator")

_DEFAULT_VAL_BATCH = 512


class Supervised(Evaluator):
    """The training loop shared by ``Classification`` and ``Regression``."""

    _task: ClassVar[Task]
    requires_model: ClassVar[bool] = True
    """These evaluators train the model they are given: the space must be a model space."""

    @nni_arguments({
        "train_dataloaders": "pass the training data as the first argument, train_data "
                             "(a DataLoader, a Dataset or a pair (X, y))",
        "val_dataloaders": "pass the validation data as the second argument, val_data "
                           "(a DataLoader, a Dataset or a pair (X, y))",
        "max_epochs": "use epochs=",
        "learning_rate": "use lr=",
        "trainer_kwargs": "there is no Lightning trainer: use epochs=, device=, optimizer=",
        "export_onnx": "export a result with exp.export_top_models(formatter='instance') "
                       "and torch.onnx.export",
    })
    def __init__(
        self,
        train_data: Any,
        val_data: Any,
        *,
        epochs: int = 10,
        batch_size: int = 64,
        lr: float = 1e-3,
        optimizer: OptimizerSpec = "adam",
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        lr_schedule: ScheduleSpec = "none",
        grad_clip: float | None = None,
        label_smoothing: float = 0.0,
        precision: str = "fp32",
        criterion: CriterionSpec | None = None,
        device: DeviceSpec = "auto",
        seed: int | None = 0,
        compile: bool = False,
        devices: int = 1,
        val_batch_size: int | None = None,
        num_workers: int = 0,
    ) -> None:
        owner = type(self).__name__
        self.train_data: Source = prepare(train_data, arg="train_data", owner=owner,
                                          task=self._task)
        """The training data, checked and converted."""
        self.val_data: Source = prepare(val_data, arg="val_data", owner=owner, task=self._task)
        """The validation data, checked and converted."""
        self.epochs = _positive_int(epochs, "epochs", owner)
        """Training epochs per trial."""
        self.batch_size = _positive_int(batch_size, "batch_size", owner)
        """Training batch size (a given ``DataLoader`` keeps its own)."""
        self.val_batch_size = (
            max(self.batch_size, _DEFAULT_VAL_BATCH) if val_batch_size is None
            else _positive_int(val_batch_size, "val_batch_size", owner)
        )
        """Validation batch size (larger is faster; it does not change the metric)."""
        self.lr = _non_negative(lr, "lr", owner, positive=True)
        """Learning rate for an optimizer given by name or class."""
        self.weight_decay = _non_negative(weight_decay, "weight_decay", owner)
        """Weight decay for an optimizer given by name or class."""
        self.optimizer = _check_optimizer(optimizer, owner)
        """The optimizer as given (a lower-cased name, a class or a factory)."""
        self.momentum = _check_fraction(momentum, "momentum", owner)
        """SGD momentum (0: none); an optimizer class given by the user gets it when > 0."""
        if self.momentum and self.optimizer in ("adam", "adamw"):
            raise ValueError(
                f"{owner}(momentum={momentum!r}): {self.optimizer} has no momentum argument "
                "(its betas play that part); use optimizer='sgd', or a function params -> "
                "optimizer that sets betas"
            )
        self.lr_schedule = _check_schedule(lr_schedule, owner)
        """The learning-rate schedule, stepped after every batch (see ``make_schedule``)."""
        self.grad_clip = _check_optional_positive(grad_clip, "grad_clip", owner)
        """Clip the gradients' global L2 norm to this before each step (``None``: no clip)."""
        self.label_smoothing = _check_fraction(label_smoothing, "label_smoothing", owner)
        """Cross-entropy label smoothing (``Classification`` only)."""
        if self.label_smoothing and self._task != "classification":
            raise ValueError(
                f"{owner}(label_smoothing={label_smoothing!r}): label smoothing applies to "
                "classification targets; leave it at 0 for regression"
            )
        if self.label_smoothing and criterion is not None:
            raise ValueError(
                f"{owner}(label_smoothing=..., criterion=...): label_smoothing configures "
                "the default cross-entropy loss; with your own criterion, smooth inside it "
                "(e.g. torch.nn.CrossEntropyLoss(label_smoothing=0.1))"
            )
        if criterion is not None and not callable(criterion):
            raise TypeError(
                f"{owner}(criterion=...): got {criterion!r}; expected a loss module class "
                "(e.g. torch.nn.SmoothL1Loss), a loss module, or a function "
                "(prediction, target) -> loss"
            )
        self.criterion = criterion
        """The loss as given; ``None`` uses the task's default."""
        self.device = _check_device(device, owner)
        """``"auto"`` (CUDA when available, else CPU) or a torch device."""
        self.precision = _check_precision(precision, self.device, owner)
        """``"fp32"``, ``"bf16"`` (autocast to bfloat16) or ``"fp16"`` (autocast to float16
        with a GradScaler; CUDA only)."""
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"{owner}(seed=...): got {seed!r}; expected an int or None")
        self.seed = seed
        """Seeds the initial weights, the order of training batches and dropout (and numpy's
        and Python's generators); ``None`` draws fresh randomness per trial."""
        self.compile = _check_bool(compile, "compile", owner)
        """Train ``torch.compile(model)`` instead of the model (the first batches are slow)."""
        self.devices = _positive_int(devices, "devices", owner)
        """Processes per trial: more than 1 trains each trial with DistributedDataParallel
        on that many processes (gloo on CPU, nccl on GPUs; see ``evaluator/_ddp.py``)."""
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(
                f"{owner}(num_workers=...): got {num_workers!r}; expected an int >= 0"
            )
        self.num_workers = num_workers
        """Loader processes for a ``Dataset`` (tensors and given loaders ignore it)."""

    # --- the task (overridden by Classification / Regression) ----------------------------

    @abstractmethod
    def _default_criterion(self) -> nn.Module:
        """The training loss when ``criterion`` is ``None``."""

    @abstractmethod
    def _target(self, y: torch.Tensor) -> torch.Tensor:
        """A target batch from a dataset / loader, converted to the task's dtype."""

    @abstractmethod
    def _check_output(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``y`` shaped to go with ``out`` (the model's output); a clear error otherwise."""

    def _check_first(self, out: torch.Tensor) -> None:
        """Checks that need data-wide facts, run on the first training batch's output."""

    @abstractmethod
    def _score(self, model: Callable[[torch.Tensor], torch.Tensor],
               batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
               device: torch.device) -> float:
        """The validation metric over ``batches`` (the model is in eval mode)."""

    # --- the loop ----------------------------------------------------------------------------

    @property
    def model_seed(self) -> int | None:
        """The seed the engine freezes each trial's model under (its initial weights)."""
        return self.seed

    @model_seed.setter
    def model_seed(self, value: int | None) -> None:
        # one seed: the base class's attribute is the training evaluators' ``seed``
        self.seed = value

    def evaluate(self, model: Any, trial: Trial) -> float:
        """Train ``model`` and return its final validation metric (reported every epoch).

        Raises ``TrialStopped`` as soon as the trial is asked to stop (checked every
        batch) and ``MetricError`` when the training loss stops being a finite number.
        """
        module = self._check_model(model)
        if trial.should_stop():  # stopped while waiting: do not even touch the device
            raise TrialStopped(f"trial {trial.id} was asked to stop before training")
        if self.devices > 1:
            from nasflow.evaluator._ddp import run_ranks

            return run_ranks(self, module, trial)
        return self._fit(module, trial)

    def _fit(self, module: nn.Module, trial: Any, rank: int = 0, world: int = 1,
             data_seed: int | None = None) -> float:
        """The training loop; with ``world > 1``, rank ``rank``'s part of a DDP trial
        (``torch.distributed`` is initialised; ``trial`` is a ``RankTrial``)."""
        owner = type(self).__name__
        device = resolve_device(self.device)
        if world > 1 and device.type == "cuda":
            device = torch.device("cuda", rank % torch.cuda.device_count())
        precision = Precision(self.precision, device, owner)
        # on a rank: the same data order everywhere, its own dropout stream
        rng = TrialRng(self.seed if world == 1 else data_seed + rank)  # type: ignore[operator]
        if world > 1:
            rng.data.manual_seed(data_seed)  # type: ignore[arg-type]
        module.to(device)
        params = self._trainable(module)
        optimizer = make_optimizer(self.optimizer, params, lr=self.lr, momentum=self.momentum,
                                   weight_decay=self.weight_decay, owner=owner)
        criterion = self._make_criterion(device)
        train: Iterable[tuple[torch.Tensor, torch.Tensor]]
        train = whole = Batches(self, self.train_data, device, self.batch_size, rng.data)
        val = Batches(self, self.val_data, device, self.val_batch_size, None)
        per_epoch = whole.count(self.lr_schedule)
        net: Callable[[torch.Tensor], torch.Tensor] = module
        if world > 1:
            from torch.nn.parallel import DistributedDataParallel

            from nasflow.evaluator._ddp import Shard

            train = Shard(whole, rank, world)
            per_epoch = -(-per_epoch // world)
            net = DistributedDataParallel(
                module, device_ids=[device.index] if device.type == "cuda" else None)
        schedule = make_schedule(self.lr_schedule, optimizer,
                                 total_steps=self.epochs * per_epoch, lr=self.lr, owner=owner)
        if self.compile:
            net = torch.compile(net)

        metric = math.nan
        checked = False
        for epoch in range(1, self.epochs + 1):
            started = time.perf_counter()
            module.train()
            loss_sum = torch.zeros((), device=device)
            steps = 0
            for x, y in train:
                if trial.should_stop():
                    raise TrialStopped(f"trial {trial.id} was asked to stop in epoch {epoch}")
                optimizer.zero_grad(set_to_none=True)
                with rng.forward(), precision.autocast():
                    out = net(x)
                    y = self._check_output(out, y)
                    if not checked:
                        self._check_first(out)
                        checked = True
                    loss = criterion(out.float(), y)
                precision.step(loss, optimizer, params, self.grad_clip)
                if schedule is not None:
                    schedule.step()
                loss_sum += loss.detach()
                steps += 1
            train_loss = float(loss_sum) / max(steps, 1)
            if not math.isfinite(train_loss):
                raise MetricError(
                    f"the training loss became {train_loss} in epoch {epoch} (the model "
                    f"diverged); try a lower lr than {self.lr}"
                )
            module.eval()
            if rank == 0:  # every rank holds the same weights: rank 0 scores them
                with torch.inference_mode(), precision.autocast():
                    metric = self._score(module if world > 1 else net, val, device)
            _log.debug("trial %s epoch %d: train loss %.4g, val %.4g (%.3fs)", trial.id,
                       epoch, train_loss, metric, time.perf_counter() - started)
            trial.report(metric, step=epoch - 1)  # steps count from 0, as trial.report's do
        return metric

    def _check_model(self, model: Any) -> nn.Module:
        name = type(self).__name__
        if model is None:
            raise TypeError(
                f"{name} trains a model, but this trial has none: the experiment's space "
                "is a torch-free dict / SearchSpace. Use a model space (a "
                "nasflow.nn.ModelSpace, whose freeze(sample) builds the model), or build "
                "the model yourself from trial.sample in a FunctionalEvaluator"
            )
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"{name} needs a torch.nn.Module to train, got {type(model).__name__}"
            )
        return model

    def _make_optimizer(self, module: nn.Module) -> torch.optim.Optimizer:
        """This evaluator's optimizer for ``module`` (one-shot strategies train with it)."""
        return make_optimizer(self.optimizer, self._trainable(module), lr=self.lr,
                              momentum=self.momentum, weight_decay=self.weight_decay,
                              owner=type(self).__name__)

    def _trainable(self, module: nn.Module) -> list[nn.Parameter]:
        params = [p for p in module.parameters() if p.requires_grad]
        if not params:
            raise ValueError(
                f"{type(self).__name__}: the model {type(module).__name__} has no trainable "
                "parameters"
            )
        return params

    def _make_criterion(
        self, device: torch.device
    ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        spec = self.criterion
        if spec is None:
            return self._default_criterion().to(device)
        loss: Any = spec
        if isinstance(spec, type) and issubclass(spec, nn.Module):
            loss = spec().to(device)
        elif isinstance(spec, nn.Module):
            # a copy per trial: its tensors (e.g. class weights) move to this trial's device
            loss = copy.deepcopy(spec).to(device)
        result: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = loss
        return result

    def __repr__(self) -> str:
        opt = self.optimizer if isinstance(self.optimizer, str) else getattr(
            self.optimizer, "__qualname__", repr(self.optimizer))
        return (
            f"{type(self).__name__}(train={self.train_data.describe()}, "
            f"val={self.val_data.describe()}, epochs={self.epochs}, "
            f"batch_size={self.batch_size}, lr={self.lr}, optimizer={opt!r}, "
            f"device={str(self.device)!r})"
        )


class Classification(Supervised):
    """Trains a classifier with cross-entropy; reports validation accuracy (maximize).

    The model maps a batch of inputs to logits of shape ``(batch, classes)``; targets are
    class indices ``0 .. classes - 1``.

    Data (``train_data``, ``val_data``): a pair ``(X, y)`` of tensors or numpy arrays
    (``X`` becomes float32, a 1-D ``X`` one feature per row; ``y`` becomes int64 and may be
    shaped ``(n,)`` or ``(n, 1)``), a torch ``Dataset`` yielding ``(x, y)`` (batched with
    ``batch_size``, shuffled by ``seed``, loaded by ``num_workers`` processes), or a
    ``DataLoader`` used as given. Everything is checked here, not in the first trial.

    Arguments: ``epochs`` per trial; ``batch_size``; ``lr`` and ``weight_decay`` for an
    ``optimizer`` given as ``"adam"``, ``"adamw"``, ``"sgd"`` or a ``torch.optim`` class
    (a function ``params -> optimizer`` sets its own); ``criterion`` replaces
    ``torch.nn.CrossEntropyLoss`` (a loss class, a loss module or a function); ``device``
    is ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or a
    ``torch.device``; ``seed`` fixes the order of training batches (``None``: a new order
    each trial); ``val_batch_size`` (default ``max(batch_size, 512)``).

    >>> import torch
    >>> import nasflow as nf
    >>> X, y = torch.randn(100, 8), torch.randint(0, 3, (100,))
    >>> evaluator = nf.evaluator.Classification((X[:80], y[:80]), (X[80:], y[80:]), epochs=3)
    >>> evaluator
    Classification(train=80 samples, val=20 samples, epochs=3, batch_size=64, lr=0.001, \
optimizer='adam', device='auto')
    >>> evaluator.default_objective
    'maximize'
    """

    _task: ClassVar[Task] = "classification"
    default_objective = "maximize"

    def _default_criterion(self) -> nn.Module:
        return nn.CrossEntropyLoss(label_smoothing=self.label_smoothing)

    def _target(self, y: torch.Tensor) -> torch.Tensor:
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        return y if y.dtype == torch.long else y.long()

    def _check_output(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if out.ndim != 2 or out.shape[0] != y.shape[0]:
            raise ValueError(
                f"Classification expects the model to return logits of shape (batch, "
                f"classes), here ({y.shape[0]}, classes); it returned shape "
                f"{tuple(out.shape)}"
            )
        return y

    def _check_first(self, out: torch.Tensor) -> None:
        classes = out.shape[1]
        known = [int(d.y.max()) for d in (self.train_data, self.val_data)
                 if isinstance(d, TensorPair)]
        if known and max(known) >= classes:
            top = max(known)
            raise ValueError(
                f"Classification: the targets go up to class {top} but the model returns "
                f"{classes} logits; make its last layer output at least {top + 1}"
            )

    def _score(self, model: Callable[[torch.Tensor], torch.Tensor],
               batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
               device: torch.device) -> float:
        correct = torch.zeros((), dtype=torch.long, device=device)
        total = 0
        for x, y in batches:
            out = model(x)
            self._check_output(out, y)
            correct += (out.argmax(1) == y).sum()
            total += y.shape[0]
        return int(correct) / total if total else math.nan


class Regression(Supervised):
    """Trains a regressor with mean squared error; reports validation MSE (minimize).

    Unlike NNI's ``Regression``, whose experiments maximised the MSE unless told
    otherwise, the objective defaults to ``"minimize"`` (and asking an experiment to
    maximise it is an error).

    Targets become float32 and are matched to the model's output: ``y`` of shape ``(n,)``
    goes with an output of shape ``(batch, 1)``. Data and arguments are as for
    ``Classification``; ``criterion`` replaces ``torch.nn.MSELoss`` for training only (the
    reported metric stays the MSE).

    >>> import torch
    >>> import nasflow as nf
    >>> X = torch.randn(100, 3)
    >>> y = X @ torch.tensor([1.0, -2.0, 0.5])
    >>> evaluator = nf.evaluator.Regression((X[:80], y[:80]), (X[80:], y[80:]), lr=1e-2)
    >>> evaluator.default_objective
    'minimize'
    """

    _task: ClassVar[Task] = "regression"
    default_objective = "minimize"

    def _default_criterion(self) -> nn.Module:
        return nn.MSELoss()

    def _target(self, y: torch.Tensor) -> torch.Tensor:
        return y if y.dtype == torch.float32 else y.float()

    def _check_output(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if out.shape == y.shape:
            return y
        if out.ndim >= 1 and out.shape[0] == y.shape[0] and out.numel() == y.numel():
            return y.view(out.shape)  # (n,) targets for a (n, 1) output, and the like
        raise ValueError(
            f"Regression: the model returned shape {tuple(out.shape)} for a batch whose "
            f"targets have shape {tuple(y.shape)}; make the model output one value per "
            "target"
        )

    def _score(self, model: Callable[[torch.Tensor], torch.Tensor],
               batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
               device: torch.device) -> float:
        sse = torch.zeros((), dtype=torch.float64, device=device)
        count = 0
        for x, y in batches:
            out = model(x)
            y = self._check_output(out, y)
            diff = out.double() - y.double()
            sse += (diff * diff).sum()
            count += diff.numel()
        return float(sse) / count if count else math.nan
