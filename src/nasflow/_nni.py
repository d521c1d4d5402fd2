"""Hints for NNI habits: keyword arguments that NNI's classes take and nasflow's do not.

``@nni_arguments({...})`` on an ``__init__`` turns an unknown keyword into a ``TypeError``
that names the class the user wrote (not a private base class), nasflow's equivalent of
an NNI argument, or the closest known argument. Pure: no torch, no anyio.
"""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

__all__ = ["nni_arguments"]

F = TypeVar("F", bound=Callable[..., Any])


def nni_arguments(equivalents: Mapping[str, str]) -> Callable[[F], F]:
    """Wrap an ``__init__``: a keyword it does not take raises a ``TypeError`` saying what
    to write instead (``equivalents``: NNI's argument name -> nasflow's way)."""

    def wrap(init: F) -> F:
        accepted = _keywords(init)

        @functools.wraps(init)
        def checked(self: Any, *args: Any, **kwargs: Any) -> Any:
            unknown = [k for k in kwargs if k not in accepted]
            if unknown:
                raise TypeError(_message(type(self).__name__, unknown[0], kwargs[unknown[0]],
                                         equivalents, accepted))
            return init(self, *args, **kwargs)

        return checked  # type: ignore[return-value]

    return wrap


def _keywords(init: Callable[..., Any]) -> set[str]:
    params = inspect.signature(init).parameters.values()
    return {p.name for p in params if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                                  inspect.Parameter.KEYWORD_ONLY)} - {"self"}


def _message(owner: str, name: str, value: Any, equivalents: Mapping[str, str],
             accepted: set[str]) -> str:
    if name in equivalents:
        return (f"{owner}({name}=...) is NNI's argument; nasflow's {owner} does not take "
                f"it: {equivalents[name]}")
    close = difflib.get_close_matches(name, sorted(accepted), n=1)
    hint = f"did you mean {close[0]}=?" if close else (
        f"it takes {', '.join(sorted(accepted))}")
    return f"{owner}() got an unexpected keyword argument {name}={value!r}; {hint}"
