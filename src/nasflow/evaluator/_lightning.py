"""``Lightning``: train each trial's model with a PyTorch Lightning ``Trainer``
(``pip install 'nasflow[lightning]'``).

The user wraps the frozen model in their own ``LightningModule``; a callback reports the
logged validation metric after every validation epoch (``step`` = the trainer's
``current_epoch``, from 0, as ``Classification`` does) and turns the experiment's stop
request (an early-stopping scheduler such as ASHA, a timeout, a cancel) into
``trainer.should_stop``, checked after every training batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from nasflow.evaluator._base import Evaluator
from nasflow.evaluator._trial import Trial
from nasflow.exceptions import MetricError, TrialStopped

__all__ = ["Lightning"]

_HINT = "nf.evaluator.Lightning needs Lightning; install it with pip install 'nasflow[lightning]'"
_DIRECTIONS = ("maximize", "minimize")


def _lightning() -> Any:
    try:
        import lightning.pytorch as pl
    except ImportError as exc:
        raise ImportError(_HINT) from exc
    return pl


class Lightning(Evaluator):
    """Fits ``module_factory(model)`` (a ``LightningModule``) with a ``Trainer``.

    ``metric`` is the name the module logs in its validation step
    (``self.log("val_acc", acc)``); its value after each validation epoch is reported, and
    the last one returned. ``direction`` (``"maximize"`` / ``"minimize"``) is the
    evaluator's ``default_objective``. Data: a ``datamodule``, or ``train_dataloaders`` and
    ``val_dataloaders``. ``trainer_kwargs`` go to ``Trainer`` (``max_epochs=``,
    ``accelerator=``, ...); nasflow's defaults are no progress bar, no model summary, no
    logger, no checkpoints and the trial's folder as ``default_root_dir``; your callbacks
    are kept.

    >>> import nasflow as nf
    >>> ev = nf.evaluator.Lightning(lambda model: model, metric="val_acc")  # doctest: +SKIP
    """

    requires_model = True
    """It trains the model it is given: the space must be a model space."""

    def __init__(self, module_factory: Callable[[Any], Any], *,
                 trainer_kwargs: Mapping[str, Any] | None = None, datamodule: Any = None,
                 train_dataloaders: Any = None, val_dataloaders: Any = None,
                 metric: str = "val_loss", direction: str = "minimize") -> None:
        _lightning()  # a missing package is an error here, not in every trial
        if not callable(module_factory):
            raise TypeError(
                f"Lightning(module_factory=...): got {module_factory!r}; expected a function "
                "model -> LightningModule, e.g. lambda model: MyLitModule(model)")
        if datamodule is not None and train_dataloaders is not None:
            raise ValueError("Lightning: give either datamodule= or train_dataloaders=, "
                             "not both")
        if datamodule is None and train_dataloaders is None:
            raise ValueError("Lightning: no data; give datamodule= (a LightningDataModule) "
                             "or train_dataloaders= (and val_dataloaders=)")
        if not isinstance(metric, str) or not metric:
            raise TypeError(f"Lightning(metric=...): got {metric!r}; expected the name the "
                            "module logs with self.log(name, value) in validation_step")
        if direction not in _DIRECTIONS:
            raise ValueError(f"Lightning(direction=...): got {direction!r}; expected one of "
                             f"{list(_DIRECTIONS)}")
        kwargs = dict(trainer_kwargs or {})
        if "callbacks" in kwargs and not isinstance(kwargs["callbacks"], (list, tuple)):
            kwargs["callbacks"] = [kwargs["callbacks"]]
        self.module_factory = module_factory
        """``model -> LightningModule``."""
        self.trainer_kwargs = kwargs
        """Arguments of each trial's ``Trainer``."""
        self.datamodule = datamodule
        self.train_dataloaders = train_dataloaders
        self.val_dataloaders = val_dataloaders
        self.metric = metric
        """The logged validation metric that is reported."""
        self.default_objective = direction

    def evaluate(self, model: Any, trial: Trial) -> float:
        """Fit the module; return the last reported value of ``metric``."""
        pl = _lightning()
        if model is None:
            raise TypeError("Lightning trains a model, but this trial has none: use a model "
                            "space (a nasflow.nn.ModelSpace)")
        if trial.should_stop():
            raise TrialStopped(f"trial {trial.id} was asked to stop before training")
        module = self.module_factory(model)
        if not isinstance(module, pl.LightningModule):
            raise TypeError(
                f"Lightning(module_factory=...) returned {type(module).__name__}, not a "
                "lightning.pytorch.LightningModule")
        reporter = _reporter(pl, trial, self.metric)
        kwargs: dict[str, Any] = {
            "enable_progress_bar": False, "enable_model_summary": False, "logger": False,
            "enable_checkpointing": False, "default_root_dir": str(trial.directory),
            **self.trainer_kwargs,
        }
        kwargs["callbacks"] = [*kwargs.get("callbacks", []), reporter]
        trainer = pl.Trainer(**kwargs)
        if self.datamodule is not None:
            trainer.fit(module, datamodule=self.datamodule)
        else:
            trainer.fit(module, train_dataloaders=self.train_dataloaders,
                        val_dataloaders=self.val_dataloaders)
        if trial.should_stop():
            raise TrialStopped(f"trial {trial.id} was stopped in epoch "
                               f"{trainer.current_epoch}")
        if reporter.last is None:
            raise MetricError(
                f"Lightning: the trainer ran no validation epoch, so {self.metric!r} was "
                "never reported; give validation data and check limit_val_batches / "
                "check_val_every_n_epoch")
        return reporter.last

    def __repr__(self) -> str:
        name = getattr(self.module_factory, "__qualname__", repr(self.module_factory))
        return f"Lightning({name}, metric={self.metric!r}, trainer_kwargs={self.trainer_kwargs!r})"


def _reporter(pl: Any, trial: Trial, metric: str) -> Any:
    """The callback (its class built here: lightning is imported only when used)."""

    class Report(pl.Callback):  # type: ignore[misc]
        last: float | None = None

        def on_validation_epoch_end(self, trainer: Any, module: Any) -> None:
            if trainer.sanity_checking:
                return
            value = trainer.callback_metrics.get(metric)
            if value is None:
                logged = sorted(trainer.callback_metrics)
                raise MetricError(
                    f"Lightning(metric={metric!r}): the module did not log {metric!r} in its "
                    f"validation step (it logged {logged}); call self.log({metric!r}, value) "
                    "in validation_step, or pass the logged name as metric=")
            number = float(value)
            if not math.isfinite(number):
                raise MetricError(f"Lightning: {metric} became {number} in epoch "
                                  f"{trainer.current_epoch}")
            try:
                trial.report(number, step=trainer.current_epoch)
            except TrialStopped:
                trainer.should_stop = True
                return
            self.last = number

        def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
            if trial.should_stop():
                trainer.should_stop = True

    return Report()
