"""Ranking and exporting trials, live (``Experiment``) or from disk (``load_experiment``)."""

from __future__ import annotations

import copy
import os
from abc import ABC, abstractmethod
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from nasflow._kernel import (
    ExperimentState,
    Objective,
    TrialRecord,
    TrialState,
    first_front,
    pareto_front,
)
from nasflow._persist import load_object, owner_alive
from nasflow.exceptions import StoreError
from nasflow.space import as_search_space
from nasflow.store import DB_NAME, StoreReader

__all__ = ["ExperimentResults", "Results", "first_front", "load_experiment", "pareto_front"]


_FORMATTERS = (None, "dict", "instance", "code")


class Results(ABC):
    """Querying and exporting trials; shared by live and loaded experiments."""

    objective: Objective

    @abstractmethod
    def trials(self, states: Iterable[TrialState | str] | None = None) -> list[TrialRecord]:
        """Every trial (or those in ``states``), by id, as copies."""

    @abstractmethod
    def _space_for_instances(self) -> Any:
        """The space that ``formatter="instance"`` freezes samples with."""

    def ranked(self) -> list[TrialRecord]:
        """Succeeded trials, best first (the Pareto front for several objectives)."""
        done = [r for r in self.trials([TrialState.SUCCEEDED]) if r.metric is not None]
        if self.objective.multi:
            done = pareto_front(done, self.objective)
        score = self.objective.score
        return sorted(done, key=lambda r: (-score(r.metric), r.id))  # type: ignore[arg-type]

    def best(self) -> TrialRecord | None:
        """The best succeeded trial, or ``None``."""
        ranked = self.ranked()
        return ranked[0] if ranked else None

    def export_top_models(self, top_k: int = 1, *, formatter: str | None = None) -> list[Any]:
        """The ``top_k`` best trials, best first.

        ``formatter=None``: trial records (id, sample, metrics, state, ...);
        ``"dict"``: the bare samples, ready for ``space.freeze``;
        ``"instance"``: frozen models (plain ``torch.nn.Module`` for a model space);
        ``"code"``: Python source, one string per model, of a standalone ``nn.Module``
        class that rebuilds it with torch alone (``nasflow.nn.to_code``; its
        ``state_dict`` loads the frozen model's). For several objectives the Pareto
        front is returned, ordered by the primary one.
        """
        if formatter not in _FORMATTERS:
            raise ValueError(f"formatter must be one of {_FORMATTERS}, got {formatter!r}")
        if not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be a positive int, got {top_k!r}")
        top = self.ranked()[:top_k]
        if formatter is None:
            return top
        if formatter == "dict":
            return [copy.deepcopy(r.sample) for r in top]
        space = _freezer(self._space_for_instances())
        models = [space.freeze(r.sample) for r in top]
        if formatter == "instance":
            return models
        return [_code(model, r.id) for model, r in zip(models, top, strict=True)]

    def to_dataframe(self) -> Any:
        """A pandas ``DataFrame``, one row per trial (index ``id``): ``state``, ``metric``,
        ``metric:<objective>`` and ``label:<label>`` columns, times, ``duration``,
        ``attempt`` and ``error``. Needs pandas (``pip install 'nasflow[plot]'``)."""
        from nasflow._plots import to_dataframe

        return to_dataframe(self.trials(), self.objective)


class ExperimentResults(Results):
    """A finished or running experiment read from its directory (``load_experiment``)."""

    def __init__(self, directory: Path, *, space: Any = None) -> None:
        self.directory = directory
        """The experiment directory."""
        self._reader = StoreReader(directory / DB_NAME)
        meta = self._reader.meta()
        self._meta = meta
        self.id: str = meta.get("id", directory.name)
        """The experiment id."""
        self.name: str = meta.get("name", self.id)
        """The experiment name."""
        self.config: dict[str, Any] = meta.get("config", {})
        """The stored configuration (as a dict)."""
        self.objective = Objective(meta.get("objective") or {"default": "maximize"})
        self._space = space

    @property
    def state(self) -> ExperimentState:
        """The stored state; CRASHED when it says RUNNING but its process is gone."""
        meta = self._reader.meta()
        state = ExperimentState(meta.get("state", "CREATED"))
        if state is ExperimentState.RUNNING and owner_alive(
            meta.get("pid"), meta.get("pid_start"), meta.get("host")
        ) is False:
            return ExperimentState.CRASHED
        return state

    def trials(self, states: Iterable[TrialState | str] | None = None) -> list[TrialRecord]:
        wanted = None if states is None else [TrialState(s) for s in states]
        records = self._reader.trials(wanted)
        for r in records:
            r.directory = str(self.directory / "trials" / str(r.id))
        return records

    def intermediates(self, trial_id: int, attempt: int | None = None) -> list[tuple[int, Any]]:
        """``[(step, value), ...]`` that trial ``trial_id`` reported (its latest attempt
        unless ``attempt`` is given)."""
        return self._reader.intermediates(trial_id, attempt)

    def progress(self) -> list[tuple[float, int | None, dict[str, Any]]]:
        """``[(time, step, values), ...]`` the strategy reported (one-shot epochs, ...)."""
        return self._reader.progress()

    def plot(self, kind: str = "history") -> Any:
        """A matplotlib ``Figure``: ``"history"`` (metric and best so far per trial),
        ``"curves"`` (intermediate metrics), ``"parallel"`` (coordinates over the labels),
        ``"pareto"`` (two objectives) or ``"importance"`` (variance explained per label).
        Needs matplotlib (``pip install 'nasflow[plot]'``)."""
        from nasflow._plots import plot

        return plot(kind, self.trials(), self.objective, self.intermediates, title=self.name)

    def _repr_html_(self) -> str:
        from nasflow._html import results_html

        return results_html(self)

    def _space_for_instances(self) -> Any:
        if self._space is None:
            self._space = load_object(self.directory, "space")
        return self._space

    def close(self) -> None:
        """Release the database connection."""
        self._reader.close()

    def __enter__(self) -> ExperimentResults:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ExperimentResults(id={self.id!r}, directory={str(self.directory)!r})"


def _code(model: Any, trial_id: int) -> str:
    """The source of ``model`` as a standalone class (needs a model space's models)."""
    import torch.nn as nn

    from nasflow.nn import to_code

    if not isinstance(model, nn.Module):
        raise ValueError(
            f"formatter='code' needs a model space (freeze gives torch modules); trial "
            f"{trial_id}'s space freezes to a {type(model).__name__}: use formatter='dict'"
        )
    return to_code(model)


def _freezer(space: Any) -> Any:
    """What ``freeze`` is called on: a model space itself, else its ``SearchSpace``."""
    return space if getattr(space, "is_model_space", False) else as_search_space(space)


def load_experiment(
    id_or_path: str | os.PathLike[str], *, home: str | os.PathLike[str] | None = None,
    space: Any = None,
) -> ExperimentResults:
    """Open an experiment's results with nothing running: by id (under ``NASFLOW_HOME``)
    or by the path of its directory or database. ``space`` overrides the saved space for
    ``formatter="instance"`` exports."""
    from nasflow.store import find_experiment

    directory = find_experiment(id_or_path, home)
    try:
        return ExperimentResults(directory, space=space)
    except orjson.JSONDecodeError as exc:
        raise StoreError(f"the metadata in {directory / DB_NAME} is corrupt: {exc}") from exc
