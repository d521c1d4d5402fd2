"""Expressions on choices: ``width * 2`` is resolved when the space is frozen.

``Expr`` is anything symbolic (a choice, or arithmetic on choices). Expressions hash by
identity and never overload ``==``; using one as a number, a truth value or a size while
the space is being defined raises ``SpaceBuildError`` saying what to do instead.
"""

from __future__ import annotations

import builtins
import operator
from abc import ABCMeta, abstractmethod
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from nasflow.exceptions import SpaceBuildError

if TYPE_CHECKING:
    from nasflow.space._choice import Choice

__all__ = ["Expr", "Operation", "Resolver", "resolve_value"]

# operator name -> (function, symbol used in repr); names rather than functions keep
# expressions picklable and readable.
_BINARY: dict[str, tuple[Callable[[Any, Any], Any], str]] = {
    "add": (operator.add, "+"),
    "sub": (operator.sub, "-"),
    "mul": (operator.mul, "*"),
    "truediv": (operator.truediv, "/"),
    "floordiv": (operator.floordiv, "//"),
    "mod": (operator.mod, "%"),
    "pow": (operator.pow, "**"),
    "lt": (operator.lt, "<"),
    "le": (operator.le, "<="),
    "gt": (operator.gt, ">"),
    "ge": (operator.ge, ">="),
}
_UNARY: dict[str, Callable[[Any], Any]] = {
    "neg": operator.neg,
    "pos": operator.pos,
    "abs": abs,
    "int": int,
    "float": float,
    "round": round,
}

Resolver = Callable[["Choice"], Any]


def resolve_value(value: Any, resolve: Resolver) -> Any:
    return value.evaluate(resolve) if isinstance(value, Expr) else value


class Expr(metaclass=ABCMeta):
    """A symbolic value: a choice, or arithmetic on choices; resolved when frozen."""

    __slots__ = ()

    # --- evaluation -------------------------------------------------------------------

    @abstractmethod
    def evaluate(self, resolve: Resolver) -> Any:
        """The value, given a function that resolves each leaf choice."""

    @abstractmethod
    def leaves(self) -> Iterator[Choice]:
        """Every choice this value depends on (with repeats)."""

    # --- building -----------------------------------------------------------------------

    def __add__(self, other: Any) -> Expr:
        return Operation("add", self, other)

    def __radd__(self, other: Any) -> Expr:
        return Operation("add", other, self)

    def __sub__(self, other: Any) -> Expr:
        return Operation("sub", self, other)

    def __rsub__(self, other: Any) -> Expr:
        return Operation("sub", other, self)

    def __mul__(self, other: Any) -> Expr:
        return Operation("mul", self, other)

    def __rmul__(self, other: Any) -> Expr:
        return Operation("mul", other, self)

    def __truediv__(self, other: Any) -> Expr:
        return Operation("truediv", self, other)

    def __rtruediv__(self, other: Any) -> Expr:
        return Operation("truediv", other, self)

    def __floordiv__(self, other: Any) -> Expr:
        return Operation("floordiv", self, other)

    def __rfloordiv__(self, other: Any) -> Expr:
        return Operation("floordiv", other, self)

    def __mod__(self, other: Any) -> Expr:
        return Operation("mod", self, other)

    def __rmod__(self, other: Any) -> Expr:
        return Operation("mod", other, self)

    def __pow__(self, other: Any) -> Expr:
        return Operation("pow", self, other)

    def __rpow__(self, other: Any) -> Expr:
        return Operation("pow", other, self)

    def __neg__(self) -> Expr:
        return Operation("neg", self)

    def __pos__(self) -> Expr:
        return Operation("pos", self)

    def __abs__(self) -> Expr:
        return Operation("abs", self)

    def __round__(self, ndigits: int | None = None) -> Expr:
        if ndigits is not None:
            raise TypeError("round() of a nasflow expression takes no ndigits")
        return Operation("round", self)

    def __lt__(self, other: Any) -> Expr:
        return Operation("lt", self, other)

    def __le__(self, other: Any) -> Expr:
        return Operation("le", self, other)

    def __gt__(self, other: Any) -> Expr:
        return Operation("gt", self, other)

    def __ge__(self, other: Any) -> Expr:
        return Operation("ge", self, other)

    def int(self) -> Expr:
        """``int(value)`` once resolved."""
        return Operation("int", self)

    def float(self) -> Expr:
        """``float(value)`` once resolved."""
        return Operation("float", self)

    # --- guards: a choice is not a number until the space is frozen --------------------

    def _not_a_value(self, what: str) -> SpaceBuildError:
        return SpaceBuildError(
            f"{self!r} is a search-space decision, not a value, so it cannot be used as "
            f"{what} while the space is being defined. Pass it to a nasflow.nn layer "
            "(e.g. nasflow.nn.Conv2d) or wrap your module class with nasflow.nn.searchable(); "
            "its value is known only in the frozen model."
        )

    def __bool__(self) -> bool:
        raise self._not_a_value("a truth value (if/while/and/or)")

    def __int__(self) -> builtins.int:  # `int` is a method of this class
        raise self._not_a_value("an int")

    def __index__(self) -> builtins.int:
        raise self._not_a_value("an index or size")

    def __float__(self) -> builtins.float:
        raise self._not_a_value("a float")

    def __iter__(self) -> Iterator[Any]:
        raise self._not_a_value("an iterable")


class Operation(Expr):
    """Arithmetic on choices, e.g. ``width * 2``."""

    __slots__ = ("op", "operands")

    def __init__(self, op: str, *operands: Any) -> None:
        if op not in _BINARY and op not in _UNARY:
            raise ValueError(f"unknown expression operator {op!r}")
        self.op = op
        self.operands = operands

    def evaluate(self, resolve: Resolver) -> Any:
        args = [resolve_value(a, resolve) for a in self.operands]
        if self.op in _UNARY:
            return _UNARY[self.op](args[0])
        return _BINARY[self.op][0](args[0], args[1])

    def leaves(self) -> Iterator[Choice]:
        for a in self.operands:
            if isinstance(a, Expr):
                yield from a.leaves()

    def __repr__(self) -> str:
        if self.op in _UNARY:
            return f"{self.op}({self.operands[0]!r})"
        return f"({self.operands[0]!r} {_BINARY[self.op][1]} {self.operands[1]!r})"
