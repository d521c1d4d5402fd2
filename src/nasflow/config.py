"""``ExperimentConfig``: the one place configuration enters, validated eagerly.

Every field has a default that works, so ``ExperimentConfig()`` is a valid config. A bad
value raises ``ConfigError`` naming the field, the value and what is accepted.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

from nasflow.exceptions import ConfigError

__all__ = ["ExperimentConfig", "parse_duration"]

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d)")
_DIRECTIONS = ("maximize", "minimize")
_SERVICES = ("inprocess", "local", "ray")
# what NNI users write on a config (``exp.config.max_trial_number = 20``), and ours
_NNI_FIELDS = {
    "max_trial_number": "max_trials",
    "trial_concurrency": "concurrency",
    "max_experiment_duration": "max_duration",
    "trial_gpu_number": "gpus",
    "experiment_working_directory": "home",
}


def parse_duration(value: float | str, *, field: str = "duration") -> float:
    """Seconds from a number or a string such as ``"90"``, ``"90s"``, ``"1h30m"``, ``"2d"``."""
    if isinstance(value, bool):
        raise ConfigError(field, value, "seconds as a number, or a string like '1h30m'")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        try:
            seconds = float(text)
        except ValueError:
            pos, seconds = 0, 0.0
            for m in _DURATION.finditer(text):
                if m.start() != pos:
                    break
                seconds += float(m.group(1)) * _UNITS[m.group(2)]
                pos = m.end()
            if pos != len(text) or not text:
                raise ConfigError(
                    field, value, "seconds, or a string like '90s', '1h30m', '2d', '500ms'"
                ) from None
    else:
        raise ConfigError(field, value, "seconds as a number, or a string like '1h30m'")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(field, value, "a positive duration")
    return seconds


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """How an experiment runs. Every field is optional.

    Budgets: ``max_trials`` (trials submitted), ``max_duration`` (seconds or ``"1h30m"``;
    running trials are cancelled when it runs out) and ``target_metric`` (stop once a
    trial's primary objective reaches it). ``None`` means unlimited.

    ``objective`` is ``"maximize"`` or ``"minimize"`` for a single metric (a float, or a
    dict holding it under ``"default"``), or ``{"name": "maximize", ...}`` to name the
    metric(s) in a dict; ``None`` takes the evaluator's preference, else ``"maximize"``.
    """

    max_trials: int | None = None
    """Stop submitting after this many trials (failed ones count)."""
    max_duration: float | str | None = None
    """Wall-clock budget of the search, in seconds or as ``"1h30m"``."""
    target_metric: float | None = None
    """Stop once a finished trial's primary objective is at least (maximize) or at most
    (minimize) this value."""
    concurrency: int = 1
    """Trials run at the same time."""
    objective: str | Mapping[str, str] | None = None
    """``"maximize"``, ``"minimize"``, or ``{metric name: direction}``."""
    trial_timeout: float | str | None = None
    """Per-trial wall-clock limit; a trial past it ends TIMEOUT."""
    training_service: str = "inprocess"
    """Where trials run: ``"inprocess"`` (this process), ``"local"`` (warm worker
    processes behind the trial manager), ``"ray"`` (the same workers, as Ray actors on a
    Ray cluster: ``pip install 'nasflow[ray]'``, see docs/ray.md)."""
    ray_address: str | None = None
    """With ``training_service="ray"``: the cluster to use -- ``"auto"`` (the one this
    machine is part of), ``"ray://host:10001"`` (Ray Client), ``"host:6379"``, or ``None``
    (a Ray already initialised in this process, else a local ``ray.init()``)."""
    trial_resources: Mapping[str, float] | None = None
    """With ``training_service="ray"``: what one trial needs, in Ray's resource names
    (``{"CPU": 2, "GPU": 0.5}``; custom resources too); ``None`` is ``{"CPU": 1}``."""
    manager: str | None = None
    """URL of a running ``nasflow manager`` daemon (``ws://host:port``); ``None`` starts one
    embedded when ``training_service`` needs it."""
    token: str | None = None
    """Shared secret for ``manager``."""
    gpus: Sequence[int] | None = None
    """GPU indices trials may use (``None``: no GPU assignment)."""
    trials_per_gpu: int = 1
    """How many trials share one GPU."""
    max_trials_per_worker: int | None = None
    """Recycle a worker process after this many trials (1: a fresh process per trial)."""
    reattach_timeout: float | str = 60.0
    """How long workers wait for a vanished manager to come back."""
    store: bool = True
    """Keep the experiment in SQLite under ``NASFLOW_HOME``; ``False`` keeps it in memory
    only (no ``load_experiment``, no resume)."""
    home: str | Path | None = None
    """Overrides ``NASFLOW_HOME`` (default ``~/.nasflow``) for this experiment."""
    event_buffer: int = 1024
    """Events each ``exp.events()`` subscriber may lag behind before the search waits."""
    retry: int = 0
    """Run a trial that ended in one of ``retry_on`` again (same id, attempt + 1), up to
    this many extra times; the strategy only sees the last attempt."""
    retry_on: Sequence[str] = ("FAILED",)
    """Which final states count as failures worth retrying: ``"FAILED"``, ``"TIMEOUT"``."""
    tensorboard: bool = False
    """Write every trial's reported metrics as TensorBoard scalars under its folder (needs
    ``pip install 'nasflow[tensorboard]'``; view them with ``nasflow tensorboard ID``)."""
    penalty: float | None = None
    """The metric of trials that failed for good (FAILED or TIMEOUT after any retries), so
    that strategies steer away from them; exports still rank succeeded trials only."""
    max_identical_failures: int | None = 3
    """Stop the experiment (state FAILED, ``run()`` raises ``RepeatedFailureError``) when
    its first this-many trials all fail with the same error: the evaluator is broken, and
    running the rest would only repeat it. ``None`` runs on whatever fails."""
    max_payload_size: int = 2 * 1024**3
    """The largest pickled space and evaluator (in bytes) that ``training_service="local"``
    or a ``manager`` daemon accepts; larger ones fail at once with ``PayloadError``. Setups
    too large for a frame travel to the workers as a file (see docs/manager.md)."""

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        for name in ("max_trials", "max_trials_per_worker", "max_identical_failures"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise ConfigError(name, v, "a positive int, or None for no limit")
        for name in ("concurrency", "trials_per_gpu", "event_buffer", "max_payload_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(name, v, "a positive int")
        for name in ("max_duration", "trial_timeout"):
            v = getattr(self, name)
            if v is not None:
                put(name, parse_duration(v, field=name))
        put("reattach_timeout", parse_duration(self.reattach_timeout, field="reattach_timeout"))
        t = self.target_metric
        if t is not None and (
            isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t)
        ):
            raise ConfigError("target_metric", t, "a finite number, or None")
        if t is not None:
            put("target_metric", float(t))
        put("objective", _check_objective(self.objective))
        if self.training_service not in _SERVICES:
            hint = (" (NNI's remote and Kubernetes services are Ray clusters here, with "
                    "KubeRay on Kubernetes: see docs/ray.md)"
                    if self.training_service in ("remote", "kubernetes", "aml", "kubeflow",
                                                 "frameworkcontroller", "openpai") else "")
            raise ConfigError("training_service", self.training_service,
                              " or ".join(repr(s) for s in _SERVICES) + hint)
        self._check_ray(put)
        if self.manager is not None and not _valid_ws_url(self.manager):
            raise ConfigError("manager", self.manager,
                              "a ws://host:port or wss://host[:port] URL, or None")
        if self.token is not None and (not isinstance(self.token, str) or not self.token):
            raise ConfigError("token", "<hidden>", "a non-empty string, or None")
        if self.gpus is not None:
            gpus = self.gpus
            if isinstance(gpus, (str, bytes)) or not isinstance(gpus, Sequence) or not all(
                isinstance(g, int) and not isinstance(g, bool) and g >= 0 for g in gpus
            ) or len(set(gpus)) != len(gpus):
                raise ConfigError("gpus", gpus, "a list of distinct GPU indices, e.g. [0, 1]")
            put("gpus", tuple(gpus))
            slots = len(gpus) * self.trials_per_gpu
            if self.manager is None and self.concurrency > slots:
                raise ConfigError(
                    "concurrency", self.concurrency,
                    f"at most len(gpus) * trials_per_gpu = {len(gpus)} * "
                    f"{self.trials_per_gpu} = {slots}: every trial needs a GPU share "
                    "(raise trials_per_gpu, add GPUs, or lower concurrency)",
                )
        if isinstance(self.retry, bool) or not isinstance(self.retry, int) or self.retry < 0:
            raise ConfigError("retry", self.retry, "an int >= 0 (extra attempts per trial)")
        kinds = ("FAILED", "TIMEOUT")
        retry_on = [self.retry_on] if isinstance(self.retry_on, str) else self.retry_on
        if not isinstance(retry_on, Sequence) or not retry_on or any(
            str(k) not in kinds for k in retry_on
        ):
            raise ConfigError("retry_on", self.retry_on, f"a list of states from {kinds}")
        put("retry_on", tuple(str(k) for k in retry_on))
        p = self.penalty
        if p is not None and (
            isinstance(p, bool) or not isinstance(p, (int, float)) or not math.isfinite(p)
        ):
            raise ConfigError("penalty", p, "a finite number, or None")
        if p is not None:
            put("penalty", float(p))
        if not isinstance(self.store, bool):
            raise ConfigError("store", self.store, "True or False")
        if not isinstance(self.tensorboard, bool):
            raise ConfigError("tensorboard", self.tensorboard, "True or False")
        if self.home is not None:
            if isinstance(self.home, bytes) or not isinstance(self.home, (str, PathLike)):
                raise ConfigError("home", self.home, "a directory path (str or Path), or None")
            put("home", str(Path(self.home).expanduser()))

    def _check_ray(self, put: Any) -> None:
        """``ray_address`` and ``trial_resources``: only with ``training_service="ray"``."""
        ray = self.training_service == "ray"
        for name in ("ray_address", "trial_resources"):
            if getattr(self, name) is not None and not ray:
                raise ConfigError(name, getattr(self, name),
                                  f"None unless training_service='ray' (it is "
                                  f"{self.training_service!r}): only Ray places trials by "
                                  "resources")
        if not ray:
            return
        a = self.ray_address
        if a is not None and (not isinstance(a, str) or not a.strip()
                              or any(c.isspace() for c in a)):
            raise ConfigError("ray_address", a, "'auto', 'ray://host:10001', 'host:6379' or "
                              "None (a local Ray)")
        if self.manager is not None:
            raise ConfigError("manager", self.manager,
                              "None with training_service='ray': a daemon places its own "
                              "workers (start it with `nasflow manager --ray ADDRESS` and use "
                              "training_service='local'), an experiment with 'ray' embeds one")
        if self.gpus is not None:
            raise ConfigError("gpus", list(self.gpus),
                              "None with training_service='ray': ask Ray for GPUs per trial "
                              "with trial_resources={'GPU': 1} (or 0.5 to share one)")
        r = self.trial_resources
        if r is None:
            return
        if not isinstance(r, Mapping) or not r or any(
            not isinstance(k, str) or not k or isinstance(v, bool)
            or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0
            for k, v in r.items()
        ) or all(v == 0 for v in r.values()):
            raise ConfigError("trial_resources", r,
                              "{Ray resource name: amount >= 0}, not all zero, e.g. "
                              "{'CPU': 2, 'GPU': 0.5}")
        put("trial_resources", {k: float(v) for k, v in r.items()})

    # --- derived ------------------------------------------------------------------------

    @property
    def directions(self) -> dict[str, str] | None:
        """``{metric name: direction}`` as configured (``None`` when left to the evaluator)."""
        obj = self.objective
        if obj is None:
            return None
        if isinstance(obj, str):
            return {"default": obj}
        return dict(obj)

    # --- serialisation ------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (the token is left out: it is a secret)."""
        out = dataclasses.asdict(self)
        out["token"] = None
        if out["gpus"] is not None:
            out["gpus"] = list(out["gpus"])
        out["retry_on"] = list(out["retry_on"])
        if out["trial_resources"] is not None:
            out["trial_resources"] = dict(out["trial_resources"])
        if isinstance(out["objective"], Mapping):
            out["objective"] = dict(out["objective"])
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExperimentConfig:
        """Build from a dict, with a clear error (and a suggestion) for unknown fields."""
        names = [f.name for f in dataclasses.fields(cls)]
        for key in data:
            if key in _NNI_FIELDS:
                raise ConfigError(key, data[key], f"nasflow's name for it: "
                                  f"{_NNI_FIELDS[key]!r} (NNI calls it {key!r})")
            if key not in names:
                close = difflib.get_close_matches(key, names, n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"one of {names}"
                raise ConfigError(key, data[key], f"a known field ({hint})")
        return cls(**data)

    def replace(self, **changes: Any) -> ExperimentConfig:
        """A copy with some fields changed (validated again)."""
        return ExperimentConfig.from_dict({**dataclasses.asdict(self), **changes})


def _valid_ws_url(url: Any) -> bool:
    """A ``ws://``/``wss://`` URL with a host, a valid port if any, and nothing else."""
    if not isinstance(url, str) or any(c.isspace() for c in url):
        return False
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port  # ValueError for a bad or out-of-range port
    except ValueError:
        return False
    return (parts.scheme in ("ws", "wss") and bool(parts.hostname)
            and not parts.query and not parts.fragment
            and (port is None or 0 < port < 65536))


def _refuse_assignment(self: ExperimentConfig, name: str, value: Any) -> None:
    """A config is frozen (an experiment's directory records it as it was built): say how
    to get the value in instead of dataclasses' bare ``cannot assign to field``."""
    field = _NNI_FIELDS.get(name, name)
    known = {f.name for f in dataclasses.fields(ExperimentConfig)}
    if field not in known:
        close = difflib.get_close_matches(field, sorted(known), n=1)
        raise ConfigError(name, value, "a known field" + (
            f" (did you mean {close[0]!r}?)" if close else f" (one of {sorted(known)})"))
    nni = f" (NNI's {name!r} is nasflow's {field!r})" if field != name else ""
    how = (f"give it when you build the config, ExperimentConfig({field}={value!r}), or "
           f"build the Experiment with config.replace({field}={value!r})")
    err = ConfigError(field, value, how)
    err.args = (f"cannot set config.{name} = {value!r}: an ExperimentConfig is frozen "
                f"(the experiment's directory records it as built){nni}; {how}",)
    raise err


# set after the class is made: a frozen dataclass may not define its own __setattr__
ExperimentConfig.__setattr__ = _refuse_assignment  # type: ignore[assignment,method-assign]


_generated_init = ExperimentConfig.__init__


@functools.wraps(_generated_init)
def _init_with_hints(self: ExperimentConfig, *args: Any, **kwargs: Any) -> None:
    """The dataclass's ``__init__``, with NNI's field names (and typos) answered by the
    field to use instead of a bare ``unexpected keyword argument``."""
    known = [f.name for f in dataclasses.fields(ExperimentConfig)]
    for key, value in kwargs.items():
        if key in _NNI_FIELDS:
            raise ConfigError(key, value, f"nasflow's name for it: {_NNI_FIELDS[key]!r} "
                                          f"(NNI calls it {key!r})")
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            raise ConfigError(key, value, "a known field" + (
                f" (did you mean {close[0]!r}?)" if close else f" (one of {known})"))
    _generated_init(self, *args, **kwargs)


ExperimentConfig.__init__ = _init_with_hints  # type: ignore[method-assign]


def _check_objective(obj: Any) -> str | dict[str, str] | None:
    if obj is None:
        return None
    if isinstance(obj, str):
        if obj not in _DIRECTIONS:
            raise ConfigError("objective", obj, "'maximize', 'minimize' or {name: direction}")
        return obj
    if isinstance(obj, Mapping) and obj:
        out = {}
        for name, direction in obj.items():
            if not isinstance(name, str) or not name or direction not in _DIRECTIONS:
                raise ConfigError(
                    "objective", dict(obj), "{metric name: 'maximize' | 'minimize'}"
                )
            out[name] = direction
        return out
    raise ConfigError("objective", obj, "'maximize', 'minimize' or {name: direction}")
