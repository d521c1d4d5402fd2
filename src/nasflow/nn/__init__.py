"""PyTorch model spaces: ``ModelSpace``, ``LayerChoice``, ``InputChoice``, ``Repeat``,
``Cell`` and layers whose arguments are choices; ``space.freeze(sample)`` returns a plain
``torch.nn.Module``. This is the only nasflow package that imports torch.

See ``docs/model-spaces.md`` for the guide, the label rules and the NNI name mapping.
"""

from __future__ import annotations

# internal: for the other nasflow packages, not for users (see __internal__)
from nasflow.nn._base import STATE_ATTR as STATE_ATTR
from nasflow.nn._base import Freezer as Freezer
from nasflow.nn._base import FrozenState as FrozenState
from nasflow.nn._base import NasModule as NasModule
from nasflow.nn._base import attribute_choices as attribute_choices
from nasflow.nn._base import choices_in as choices_in
from nasflow.nn._base import describe as describe
from nasflow.nn._base import held_choices as held_choices
from nasflow.nn._base import join as join
from nasflow.nn._base import modules_in as modules_in
from nasflow.nn._cell import Cell as Cell
from nasflow.nn._cell import FrozenCell as FrozenCell
from nasflow.nn._choices import ChosenInputs as ChosenInputs
from nasflow.nn._choices import InputChoice as InputChoice
from nasflow.nn._choices import LayerChoice as LayerChoice
from nasflow.nn._choices import Repeat as Repeat
from nasflow.nn._codegen import to_code as to_code
from nasflow.nn._layers import AdaptiveAvgPool1d as AdaptiveAvgPool1d
from nasflow.nn._layers import AdaptiveAvgPool2d as AdaptiveAvgPool2d
from nasflow.nn._layers import AvgPool1d as AvgPool1d
from nasflow.nn._layers import AvgPool2d as AvgPool2d
from nasflow.nn._layers import BatchNorm1d as BatchNorm1d
from nasflow.nn._layers import BatchNorm2d as BatchNorm2d
from nasflow.nn._layers import Conv1d as Conv1d
from nasflow.nn._layers import Conv2d as Conv2d
from nasflow.nn._layers import Dropout as Dropout
from nasflow.nn._layers import LayerNorm as LayerNorm
from nasflow.nn._layers import Linear as Linear
from nasflow.nn._layers import MaxPool1d as MaxPool1d
from nasflow.nn._layers import MaxPool2d as MaxPool2d
from nasflow.nn._layers import MultiheadAttention as MultiheadAttention
from nasflow.nn._layers import SearchableModule as SearchableModule
from nasflow.nn._layers import searchable as searchable
from nasflow.nn._space import ModelSpace as ModelSpace

__all__ = [
    "AdaptiveAvgPool1d",
    "AdaptiveAvgPool2d",
    "AvgPool1d",
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "Cell",
    "ChosenInputs",
    "Conv1d",
    "Conv2d",
    "Dropout",
    "FrozenCell",
    "InputChoice",
    "LayerChoice",
    "LayerNorm",
    "Linear",
    "MaxPool1d",
    "MaxPool2d",
    "ModelSpace",
    "MultiheadAttention",
    "NasModule",
    "Repeat",
    "SearchableModule",
    "searchable",
    "to_code",
]

# what the other nasflow packages may import from here besides __all__ (not for users;
# docs/architecture.md, "Internal APIs")
__internal__ = [
    "Freezer", "FrozenState", "STATE_ATTR", "attribute_choices", "choices_in", "describe",
    "held_choices", "join", "modules_in",
]
