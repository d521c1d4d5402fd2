"""Data for the training evaluators: checked once, then batched fast.

A user passes ``(X, y)`` (tensors or numpy arrays), a torch ``Dataset`` or a
``DataLoader``. Pairs (and a ``TensorDataset`` of two tensors) become a ``TensorPair``:
plain tensors, shuffled with one gather per epoch and cut into views, so an epoch costs
no per-sample Python. Datasets are batched by a ``DataLoader`` built per evaluation;
loaders are used as given. Everything here pickles: a loader is stored without its
worker processes.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sized
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

__all__ = ["Batches", "DatasetSource", "LoaderSource", "Source", "Task", "TensorPair", "prepare"]

Task = Literal["classification", "regression"]

_ACCEPTED = (
    "a pair (X, y) of torch tensors or numpy arrays, a torch.utils.data.Dataset "
    "yielding (x, y), or a torch.utils.data.DataLoader yielding (x, y) batches"
)


# --- sources ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TensorPair:
    """Inputs ``x`` (float32, at least 2-D) and targets ``y``, on the CPU, same length."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return self.x.shape[0]

    def describe(self) -> str:
        return f"{len(self)} samples"

    def to(self, device: torch.device) -> TensorPair:
        """This pair on ``device`` (itself when already there)."""
        if self.x.device == device:
            return self
        return TensorPair(self.x.to(device), self.y.to(device))

    def batches(
        self, batch_size: int, generator: torch.Generator | None, *, drop_singleton: bool
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(x, y)`` batches; shuffled when ``generator`` is given.

        ``drop_singleton`` skips a last batch of one sample (it would break BatchNorm in
        training mode) when there is more than one batch.
        """
        x, y = self.x, self.y
        n = x.shape[0]
        if generator is not None:
            perm = torch.randperm(n, generator=generator).to(x.device)
            x, y = x.index_select(0, perm), y.index_select(0, perm)  # one gather per epoch
        stop = n - 1 if drop_singleton and n > batch_size and n % batch_size == 1 else n
        for start in range(0, stop, batch_size):
            yield x[start:start + batch_size], y[start:start + batch_size]


@dataclass(frozen=True, slots=True)
class DatasetSource:
    """A torch ``Dataset``, batched by a fresh ``DataLoader`` in each evaluation."""

    dataset: Dataset[Any]

    def describe(self) -> str:
        size = len(self.dataset) if isinstance(self.dataset, Sized) else None
        kind = type(self.dataset).__name__
        return f"{kind} of {size} samples" if size is not None else kind

    def loader(
        self, batch_size: int, generator: torch.Generator | None, *, num_workers: int,
        pin_memory: bool,
    ) -> DataLoader[Any]:
        shuffle = generator is not None and not isinstance(self.dataset, IterableDataset)
        return DataLoader(
            self.dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            generator=generator if shuffle else None,
            num_workers=num_workers,
            pin_memory=pin_memory,
        )


@dataclass(frozen=True, slots=True)
class LoaderSource:
    """A user's ``DataLoader``, used as given (its batch size, sampler and workers)."""

    loader: DataLoader[Any]

    def describe(self) -> str:
        return f"DataLoader(batch_size={self.loader.batch_size})"

    def fresh(self) -> DataLoader[Any]:
        """A shallow copy without live workers: each evaluation (and thread) iterates its
        own, so concurrent trials never share a persistent-worker iterator."""
        return _without_iterator(self.loader)

    def __getstate__(self) -> dict[str, Any]:
        # a loader with persistent workers holds processes, which cannot be pickled
        return {"loader": _without_iterator(self.loader)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        object.__setattr__(self, "loader", state["loader"])


Source = TensorPair | DatasetSource | LoaderSource


def _without_iterator(loader: DataLoader[Any]) -> DataLoader[Any]:
    clone = copy.copy(loader)
    clone._iterator = None
    return clone


# --- checking and converting ---------------------------------------------------------------


def prepare(data: Any, *, arg: str, owner: str, task: Task) -> Source:
    """``data`` checked and converted for ``task``; ``TypeError``/``ValueError`` naming
    ``owner(arg=...)`` and what is accepted otherwise."""
    where = f"{owner}({arg}=...)"
    if isinstance(data, DataLoader):
        _check_dataset(data.dataset, where)
        return LoaderSource(data)
    if isinstance(data, TensorDataset) and len(data.tensors) == 2:
        return _pair(data.tensors[0], data.tensors[1], where=where, task=task)
    if isinstance(data, Dataset):
        _check_dataset(data, where)
        return DatasetSource(data)
    if isinstance(data, (tuple, list)):
        if len(data) != 2:
            raise TypeError(
                f"{where}: got a {type(data).__name__} of {len(data)} items; expected "
                f"{_ACCEPTED}"
            )
        return _pair(data[0], data[1], where=where, task=task)
    raise TypeError(f"{where}: got {_kind(data)}; expected {_ACCEPTED}")


def _check_dataset(dataset: Any, where: str) -> None:
    if isinstance(dataset, IterableDataset) or not isinstance(dataset, Sized):
        return  # nothing to look at without iterating it
    try:
        size = len(dataset)
    except TypeError:
        return
    if size == 0:
        raise ValueError(f"{where}: the dataset is empty; give it at least one sample")
    indexable: Any = dataset
    try:
        item = indexable[0]
    except Exception:
        return  # not indexable by position (a custom sampler will know); checked when used
    if not (isinstance(item, (tuple, list)) and len(item) == 2):
        raise TypeError(
            f"{where}: dataset[0] is {_kind(item)}; a dataset must yield (input, target) "
            "pairs"
        )


def _pair(x: Any, y: Any, *, where: str, task: Task) -> TensorPair:
    xt = _tensor(x, f"{where}: X")
    yt = _tensor(y, f"{where}: y")
    if xt.ndim == 0 or yt.ndim == 0:
        raise ValueError(
            f"{where}: X and y need one row per sample; got shapes {tuple(xt.shape)} and "
            f"{tuple(yt.shape)}"
        )
    if xt.shape[0] != yt.shape[0]:
        raise ValueError(
            f"{where}: X has {xt.shape[0]} samples but y has {yt.shape[0]}; give one "
            "target per input row"
        )
    if xt.shape[0] == 0:
        raise ValueError(f"{where}: X and y are empty; give at least one sample")
    if xt.is_complex() or not (xt.is_floating_point() or _is_integral(xt)):
        raise TypeError(f"{where}: X must be numeric, got dtype {xt.dtype}")
    xt = xt.to(torch.float32)
    if not torch.isfinite(xt).all():
        raise ValueError(f"{where}: X holds NaN or infinite values; clean or impute them")
    if xt.ndim == 1:
        xt = xt.unsqueeze(1)  # one feature per sample
    yt = _classes(yt, where) if task == "classification" else _targets(yt, where)
    return TensorPair(xt.contiguous(), yt.contiguous())


def _classes(y: torch.Tensor, where: str) -> torch.Tensor:
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(
            f"{where}: classification targets must be class indices of shape (n,), got "
            f"shape {tuple(y.shape)} (for one-hot targets pass y.argmax(1))"
        )
    if y.is_floating_point():
        if not (torch.isfinite(y).all() and (y == y.round()).all()):
            raise ValueError(
                f"{where}: classification targets must be whole class indices 0, 1, ...; "
                f"got non-integer values such as {_first_bad(y)}"
            )
    elif not _is_integral(y):
        raise TypeError(
            f"{where}: classification targets must be integer class indices, got dtype "
            f"{y.dtype}"
        )
    y = y.to(torch.long)
    if int(y.min()) < 0:
        raise ValueError(
            f"{where}: classification targets must be class indices 0, 1, ...; got "
            f"{int(y.min())}"
        )
    return y


def _targets(y: torch.Tensor, where: str) -> torch.Tensor:
    if y.is_complex() or not (y.is_floating_point() or _is_integral(y)):
        raise TypeError(f"{where}: regression targets must be numeric, got dtype {y.dtype}")
    y = y.to(torch.float32)
    if not torch.isfinite(y).all():
        raise ValueError(f"{where}: y holds NaN or infinite values; clean or drop them")
    return y


def _tensor(value: Any, what: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, np.ndarray):
        if value.dtype == object or value.dtype.kind in "USV":
            raise TypeError(f"{what} must be numeric, got a numpy array of dtype {value.dtype}")
        return torch.from_numpy(value if value.flags.c_contiguous else value.copy())
    raise TypeError(f"{what} must be a torch tensor or a numpy array, got {_kind(value)}")


def _is_integral(t: torch.Tensor) -> bool:
    return not t.is_floating_point() and not t.is_complex()


def _first_bad(y: torch.Tensor) -> float:
    bad = y[~(torch.isfinite(y) & (y == y.round()))]
    return float(bad[0])


def _kind(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"[:120]


# --- batching ------------------------------------------------------------------------------


class Batches:
    """Re-iterable ``(x, y)`` batches on ``device`` from any source, one epoch per iter."""

    def __init__(self, owner: Any, source: Source, device: torch.device,
                 batch_size: int, generator: torch.Generator | None) -> None:
        self._owner = owner
        self._device = device
        self._batch_size = batch_size
        self._generator = generator
        self._pair: TensorPair | None = None
        self._loader: Any = None
        if isinstance(source, TensorPair):
            self._pair = source.to(device)  # small tabular data: on the device once
        elif isinstance(source, DatasetSource):
            self._loader = source.loader(batch_size, generator, num_workers=owner.num_workers,
                                         pin_memory=device.type == "cuda")
        elif isinstance(source, LoaderSource):
            self._loader = source.fresh()
        else:  # pragma: no cover - prepare() returns one of the above
            raise TypeError(f"unknown data source {source!r}")

    def count(self, schedule: Any) -> int:
        """Batches per epoch (what a learning-rate schedule needs to know in advance)."""
        if self._pair is not None:  # as batches(drop_singleton=True) makes them
            n, size = len(self._pair), self._batch_size
            return -(-(n - 1 if n > size and n % size == 1 else n) // size)
        try:
            return len(self._loader)
        except TypeError:
            if schedule == "none":
                return 1  # no schedule: the count is not used
            raise ValueError(
                f"{type(self._owner).__name__}(lr_schedule={schedule!r}) needs the number of "
                "batches per epoch, and this DataLoader has no len() (an IterableDataset); "
                "give a map-style Dataset, or lr_schedule='none'"
            ) from None

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self._pair is not None:
            return self._pair.batches(self._batch_size, self._generator,
                                      drop_singleton=self._generator is not None)
        return self._from_loader()

    def _from_loader(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        device, owner = self._device, self._owner
        blocking = device.type != "cuda"
        for batch in self._loader:
            if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
                raise TypeError(
                    f"{type(owner).__name__}: a data batch is {type(batch).__name__}"
                    f"{'' if not isinstance(batch, (tuple, list)) else f' of {len(batch)}'}; "
                    "the data must yield (input, target) pairs"
                )
            x, y = batch
            if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
                raise TypeError(
                    f"{type(owner).__name__}: a data batch holds {type(x).__name__} and "
                    f"{type(y).__name__}; inputs and targets must collate to tensors"
                )
            if x.is_floating_point() and x.dtype != torch.float32:
                x = x.float()
            yield (x.to(device, non_blocking=not blocking),
                   owner._target(y).to(device, non_blocking=not blocking))
