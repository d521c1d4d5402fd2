"""Framework-free search spaces: choices, expressions, constraints and samples.

Nothing here imports torch, anyio or websockets.
"""

from __future__ import annotations

from typing import Any

from nasflow.space._choice import Categorical as Categorical
from nasflow.space._choice import CategoricalMultiple as CategoricalMultiple
from nasflow.space._choice import Choice as Choice
from nasflow.space._choice import Numerical as Numerical
from nasflow.space._expr import Expr as Expr
from nasflow.space._expr import Operation as Operation

# internal: for the other nasflow packages, not for users (see __internal__)
from nasflow.space._expr import Resolver as Resolver
from nasflow.space._expr import resolve_value as resolve_value
from nasflow.space._space import Condition as Condition
from nasflow.space._space import Constraint as Constraint
from nasflow.space._space import Sample as Sample
from nasflow.space._space import SearchSpace as SearchSpace
from nasflow.space._space import SpaceBuilder as SpaceBuilder
from nasflow.space._space import canonical_json as canonical_json
from nasflow.space._space import sample_hash as sample_hash

__all__ = [
    "Categorical",
    "CategoricalMultiple",
    "Choice",
    "Condition",
    "Constraint",
    "Expr",
    "Numerical",
    "Operation",
    "Sample",
    "SearchSpace",
    "SpaceBuilder",
    "as_search_space",
    "canonical_json",
    "sample_hash",
]

# what the other nasflow packages may import from here besides __all__ (not for users;
# docs/architecture.md, "Internal APIs")
__internal__ = ["Resolver", "resolve_value"]


def as_search_space(space: Any) -> SearchSpace:
    """The ``SearchSpace`` behind a dict of choices, a ``SearchSpace`` or a model space."""
    if isinstance(space, SearchSpace):
        return space
    inner = getattr(space, "search_space_object", None)
    if callable(inner):
        result = inner()
        if isinstance(result, SearchSpace):
            return result
    if isinstance(space, dict):
        return SearchSpace(space)
    from nasflow.exceptions import SpaceError

    raise SpaceError(
        f"expected a search space (a dict of choices, a nasflow SearchSpace or a "
        f"nasflow.nn.ModelSpace), got {type(space).__name__}"
    )
