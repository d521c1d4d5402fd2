"""Published search spaces built on ``nasflow.nn`` (NNI's ``nni.nas.hub.pytorch``).

Each is a ``ModelSpace``: ``search_space()``, ``random()``, ``grid()``, ``default()``,
``validate()`` and ``freeze(sample)`` work as on any space, and every multi-trial
strategy runs on it. See ``docs/hub.md`` for labels, papers, parameter counts and which
one-shot strategies fit. No pretrained weights are downloaded. This package imports torch.
"""

from __future__ import annotations

from nasflow.hub._nasbench101 import NasBench101 as NasBench101
from nasflow.hub._nasbench201 import NasBench201 as NasBench201
from nasflow.hub._nds import DARTS as DARTS
from nasflow.hub._nds import ENAS as ENAS
from nasflow.hub._nds import NDS as NDS
from nasflow.hub._nds import PNAS as PNAS
from nasflow.hub._nds import AmoebaNet as AmoebaNet
from nasflow.hub._nds import NASNet as NASNet

__all__ = [
    "AmoebaNet",
    "DARTS",
    "ENAS",
    "NASNet",
    "NDS",
    "NasBench101",
    "NasBench201",
    "PNAS",
]
