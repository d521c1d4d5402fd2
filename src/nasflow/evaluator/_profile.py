"""Hardware profilers: FLOPs, parameter count and measured latency of a model, usable as
constraints checked before a trial starts and as objectives.

* ``count_flops``, ``count_params``, ``measure_latency``: plain functions on a module.
* ``flops_constraint(space, max_flops, inputs)`` / ``params_constraint(space,
  max_params)``: predicates for ``space.add_constraint(label, ...)``. The space checks
  constraints whenever it draws, enumerates or validates a sample, so an architecture over
  the limit never becomes a trial. Each check freezes the candidate (new layers built on
  the meta device: no memory, no initialisation) and counts; the value is cached per
  sample hash, so a strategy that meets an architecture again pays nothing.
* ``Profiled(evaluator, inputs)``: adds ``"flops"``, ``"params"`` and ``"latency_ms"``
  to every metric the wrapped evaluator reports, for experiments such as
  ``objective={"accuracy": "maximize", "latency_ms": "minimize"}``.

torch is imported when these are used, never when ``nasflow.evaluator`` is.
"""

from __future__ import annotations

import copy
import functools
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from nasflow.evaluator._base import Evaluator, FunctionalEvaluator
from nasflow.evaluator._trial import Trial, _current
from nasflow.exceptions import NasflowError
from nasflow.space import sample_hash

if TYPE_CHECKING:
    import torch

__all__ = [
    "ModelConstraint",
    "Profiled",
    "count_flops",
    "count_params",
    "flops_constraint",
    "measure_latency",
    "params_constraint",
]

Inputs = Any
"""An input shape (``(1, 3, 32, 32)``), an example tensor, or a tuple of example tensors
(the model's positional arguments)."""

_METRICS = ("flops", "params", "latency_ms")


def _example(inputs: Inputs, device: Any = None) -> tuple[Any, ...]:
    """The model's positional arguments for ``inputs``, on ``device`` if given."""
    import torch

    if isinstance(inputs, (tuple, list, torch.Size)) and inputs and all(
            isinstance(d, int) and not isinstance(d, bool) for d in inputs):
        return (torch.zeros(tuple(inputs), device=device),)
    args = inputs if isinstance(inputs, (tuple, list)) else (inputs,)
    if not args or not all(isinstance(a, torch.Tensor) for a in args):
        raise TypeError(
            f"inputs must be an input shape such as (1, 3, 32, 32), an example tensor or a "
            f"tuple of tensors, got {inputs!r}"
        )
    return tuple(a.to(device) if device is not None else a for a in args)


def _device_of(model: torch.nn.Module) -> Any:
    for param in model.parameters():
        return param.device
    for buffer in model.buffers():
        return buffer.device
    return None


# --- counting ---------------------------------------------------------------------------------

def count_params(model: torch.nn.Module, *, trainable_only: bool = False) -> int:
    """How many numbers the model's parameters hold (shared parameters counted once)."""
    seen = {id(p): p for p in model.parameters() if p.requires_grad or not trainable_only}
    return sum(p.numel() for p in seen.values())


def count_flops(model: torch.nn.Module, inputs: Inputs, *, meta: bool = True) -> int:
    """The floating-point operations of one forward pass, as ``torch.utils.flop_counter``
    counts them.

    A multiply-add is 2 FLOPs, and only the ops the counter knows are counted: matrix
    products, convolutions, attention (so a ``Linear(8, 4)`` on one row is 64; biases,
    activations and normalisations add nothing). With ``meta=True`` the pass runs on meta
    tensors -- shapes only, no arithmetic, no memory, the model untouched -- and falls back
    to a real pass (without gradients) if the model needs real values (data-dependent
    control flow, ``.item()``).
    """
    return module_flops(model, inputs, meta=meta)[""]


def module_flops(model: torch.nn.Module, inputs: Inputs, *, meta: bool = True
                 ) -> dict[str, int]:
    """``count_flops`` per module: ``{qualified name: FLOPs of its forward, children
    included}``, ``""`` for the whole model; modules that count nothing are left out."""
    counts = _flop_counts(model, inputs, meta)
    root = type(model).__name__
    out = {"": counts.pop("Global", 0)}
    counts.pop(root, None)
    for key, flops in counts.items():
        if key.startswith(root + "."):
            out[key[len(root) + 1:]] = flops
    return out


def _flop_counts(model: torch.nn.Module, inputs: Inputs, meta: bool) -> dict[str, int]:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    if meta:
        try:
            return _count_on_meta(model, inputs)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # the model needs real numbers: count on a real pass below
    args = _example(inputs, _device_of(model))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(*args)
    return _totals(counter)


def _totals(counter: Any) -> dict[str, int]:
    return {name: int(sum(ops.values())) for name, ops in counter.get_flop_counts().items()}


def _count_on_meta(model: torch.nn.Module, inputs: Inputs) -> dict[str, int]:
    import torch
    from torch.func import functional_call
    from torch.utils.flop_counter import FlopCounterMode

    # the model's own tensors stay where they are: meta stand-ins replace them for the call
    state = {name: torch.empty_like(t, device="meta") for name, t in
             [*model.named_parameters(), *model.named_buffers()]}
    args = _example(inputs, "meta")
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        functional_call(model, state, args, tie_weights=True, strict=False)
    return _totals(counter)


def measure_latency(model: torch.nn.Module, inputs: Inputs, *, device: str = "cpu",
                    warmup: int = 3, repeats: int = 10) -> float:
    """The median wall-clock time of one forward pass, in milliseconds.

    Runs in inference mode with the model in ``eval()`` (its mode is restored), ``warmup``
    passes first. If the model lives elsewhere, a copy is moved to ``device``; CUDA work is
    synchronised around each pass. CPU figures depend on the threads torch may use and on
    what else the machine is running: compare architectures measured the same way.
    """
    import torch

    if not (isinstance(warmup, int) and warmup >= 0 and isinstance(repeats, int)
            and repeats >= 1):
        raise ValueError(f"warmup must be >= 0 and repeats >= 1, got {warmup!r}, {repeats!r}")
    target = torch.device(device)
    here = _device_of(model)
    if here is not None and here != target:
        model = copy.deepcopy(model).to(target)
    args = _example(inputs, target)
    sync: Callable[[], None] = (
        functools.partial(torch.cuda.synchronize, target) if target.type == "cuda"
        else lambda: None)
    training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for _ in range(warmup):
                model(*args)
            times = []
            for _ in range(repeats):
                sync()
                t0 = time.perf_counter()
                model(*args)
                sync()
                times.append(time.perf_counter() - t0)
    finally:
        model.train(training)
    return statistics.median(times) * 1000.0


# --- constraints checked before a trial starts ------------------------------------------------

class ModelConstraint:
    """``sample -> bool``: whether a quantity of the sample's frozen model is within a limit.

    Give it to ``space.add_constraint(label, ...)``. ``value(sample)`` is the quantity,
    computed once per sample hash (``cache_size`` kept, the oldest forgotten first). It
    runs where the space is sampled -- in the strategy, on the event loop -- so keep the
    measure cheap: a FLOPs or parameter count is milliseconds for small models.
    """

    def __init__(self, space: Any, measure: Callable[[Any], float], limit: float, *,
                 name: str, cache_size: int = 65536) -> None:
        if not getattr(space, "is_model_space", False):
            raise TypeError(
                f"{name} constraints need a nasflow.nn.ModelSpace (they measure its frozen "
                f"models), got {type(space).__name__}"
            )
        self.space = space
        """The model space whose samples are measured."""
        self.measure = measure
        """``model -> number``."""
        self.limit = limit
        """The largest value allowed."""
        self.name = name
        """What is measured (used in messages)."""
        self.cache_size = cache_size
        """How many sample values are kept."""
        self._cache: dict[str, float] = {}

    def __call__(self, sample: Mapping[str, Any]) -> bool:
        return self.value(sample) <= self.limit

    def value(self, sample: Mapping[str, Any]) -> float:
        """The measured quantity for ``sample`` (a canonical sample of the space)."""
        key = sample_hash(sample)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        try:
            value = float(self.measure(self._freeze(dict(sample), meta=True)))
        except (NotImplementedError, RuntimeError):
            # built on meta, the model cannot run even where measures fall back to a real
            # pass (an __init__ or forward that needs real values): build it for real
            value = self._measure_for_real(dict(sample))
        except Exception as exc:
            raise self._error(sample, exc) from exc
        if len(self._cache) >= self.cache_size:
            del self._cache[next(iter(self._cache))]
        self._cache[key] = value
        return value

    def _measure_for_real(self, sample: dict[str, Any]) -> float:
        try:
            return float(self.measure(self._freeze(sample, meta=False)))
        except Exception as exc:
            raise self._error(sample, exc) from exc

    def _error(self, sample: Mapping[str, Any], exc: Exception) -> NasflowError:
        return NasflowError(
            f"could not measure the {self.name} of sample {dict(sample)!r}: "
            f"{type(exc).__name__}: {exc}; check the input shape given to the constraint"
        )

    def _freeze(self, sample: dict[str, Any], *, meta: bool) -> Any:
        import torch

        from nasflow.nn import Freezer

        # not space.freeze(): it validates the sample, which checks this very constraint
        space = self.space.search_space_object()
        if not meta:
            return Freezer(space, sample).module(self.space)
        with torch.device("meta"):  # new layers: no memory, no initialisation
            return Freezer(space, sample).module(self.space)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_cache"] = {}  # pickled with its space: no need to carry the values along
        return state

    def __repr__(self) -> str:
        return f"ModelConstraint({self.name} <= {self.limit:g})"


def flops_constraint(space: Any, max_flops: float, inputs: Inputs, *,
                     cache_size: int = 65536) -> ModelConstraint:
    """A constraint keeping architectures with at most ``max_flops`` FLOPs per forward
    pass on ``inputs`` (a shape such as ``(1, 3, 32, 32)``; see ``count_flops``)::

        space.add_constraint("flops", nf.evaluator.flops_constraint(space, 2e6, (1, 1, 8, 8)))
    """
    _example(inputs)  # a bad input spec fails here, not in the first sample
    return ModelConstraint(space, functools.partial(count_flops, inputs=inputs), max_flops,
                           name="FLOPs", cache_size=cache_size)


def params_constraint(space: Any, max_params: float, *, cache_size: int = 65536,
                      ) -> ModelConstraint:
    """A constraint keeping architectures with at most ``max_params`` parameters."""
    return ModelConstraint(space, count_params, max_params, name="parameters",
                           cache_size=cache_size)


# --- profiles as objectives -------------------------------------------------------------------

class Profiled(Evaluator):
    """Wraps an evaluator: every metric it reports also holds the model's profile.

    Before the wrapped evaluator runs, the trial's model is profiled on ``inputs``:
    ``"flops"`` (``count_flops``), ``"params"`` (``count_params``) and ``"latency_ms"``
    (``measure_latency`` on ``device``), or those named in ``metrics``. Each intermediate
    report and the final result then become a dict holding the profile and the metric:
    a bare number is stored under ``name`` (default: the experiment's primary objective),
    a dict keeps its own keys (they win over the profile's)::

        nf.Experiment(space, nf.evaluator.Profiled(classification, (1, 1, 8, 8)), strategy,
                      nf.ExperimentConfig(objective={"accuracy": "maximize",
                                                     "latency_ms": "minimize"}))

    Evaluators that report through ``nf.current_trial()`` get the profile added too.
    """

    requires_model = True

    def __init__(self, evaluator: Evaluator | Callable[..., Any], inputs: Inputs, *,
                 metrics: Sequence[str] = _METRICS, device: str = "cpu", warmup: int = 3,
                 repeats: int = 10, name: str | None = None) -> None:
        if not isinstance(evaluator, Evaluator):
            evaluator = FunctionalEvaluator(evaluator)
        unknown = [m for m in metrics if m not in _METRICS]
        if unknown or not metrics:
            raise ValueError(f"metrics must be some of {_METRICS}, got {list(metrics)!r}")
        self.evaluator = evaluator
        """The wrapped evaluator."""
        self.inputs = inputs
        """What the model is profiled on: a shape or example tensor(s)."""
        self.metrics = tuple(metrics)
        """The profile's metric names."""
        self.device = device
        """Where latency is measured."""
        self.warmup = warmup
        """Untimed passes before latency is measured."""
        self.repeats = repeats
        """Timed passes; latency is their median."""
        self.name = name
        """The key of a bare-number metric (``None``: the primary objective)."""
        self.default_objective = evaluator.default_objective

    @property
    def is_async(self) -> bool:
        return self.evaluator.is_async

    def profile(self, model: Any) -> dict[str, float]:
        """The profile of ``model``: ``{metric: value}`` for ``self.metrics``."""
        if model is None:
            raise TypeError(
                "Profiled needs a model to profile, but the space is torch-free; use a "
                "nasflow.nn.ModelSpace"
            )
        out: dict[str, float] = {}
        if "flops" in self.metrics:
            out["flops"] = float(count_flops(model, self.inputs))
        if "params" in self.metrics:
            out["params"] = float(count_params(model))
        if "latency_ms" in self.metrics:
            out["latency_ms"] = measure_latency(model, self.inputs, device=self.device,
                                                warmup=self.warmup, repeats=self.repeats)
        return out

    def evaluate(self, model: Any, trial: Trial) -> Any:
        if self.evaluator.is_async:
            return self._evaluate_async(model, trial)
        view = _ProfiledTrial(trial, self.profile(model), self._key(trial))
        token = _current.set(view)  # type: ignore[arg-type]
        try:
            return view.merge(self.evaluator.evaluate(model, view))  # type: ignore[arg-type]
        finally:
            _current.reset(token)

    async def _evaluate_async(self, model: Any, trial: Trial) -> Any:
        import anyio

        profile = await anyio.to_thread.run_sync(self.profile, model)  # keep the loop free
        view = _ProfiledTrial(trial, profile, self._key(trial))
        token = _current.set(view)  # type: ignore[arg-type]
        try:
            return view.merge(await self.evaluator.evaluate(model, view))  # type: ignore[arg-type]
        finally:
            _current.reset(token)

    def _key(self, trial: Trial) -> str:
        if self.name is not None:
            return self.name
        objective = getattr(trial, "_objective", None)
        return objective.primary if objective is not None else "default"

    def __repr__(self) -> str:
        return f"Profiled({self.evaluator!r}, metrics={list(self.metrics)})"


class _ProfiledTrial:
    """The trial as the wrapped evaluator sees it: reports gain the profile."""

    def __init__(self, trial: Trial, profile: dict[str, float], key: str) -> None:
        self._trial = trial
        self._profile = profile
        self._key = key

    def merge(self, value: Any) -> Any:
        """``value`` as a dict that also holds the profile (``None`` stays ``None``)."""
        if value is None:
            return None
        if isinstance(value, Mapping):
            return {**self._profile, **value}
        return {self._key: value, **self._profile}

    def report(self, value: Any, step: int | None = None) -> None:
        """``trial.report`` with the profile added."""
        self._trial.report(self.merge(value), step=step)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._trial, name)

    def __repr__(self) -> str:
        return f"Profiled({self._trial!r})"
