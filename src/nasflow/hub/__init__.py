"""Published search spaces built on ``nasflow.nn`` (NNI's ``nni.nas.hub.pytorch``).

Each is a ``ModelSpace``: ``search_space()``, ``random()``, ``grid()``, ``default()``,
``validate()`` and ``freeze(sample)`` (a plain ``torch.nn.Module``) work as on any space,
and every multi-trial strategy runs on it. See ``docs/hub.md`` for labels, papers,
parameter counts and which one-shot strategies fit. No pretrained weights are downloaded;
``load_checkpoint`` loads weights you have into a frozen sample. This package imports torch.
"""

from __future__ import annotations

from nasflow.hub._autoformer import AutoFormer as AutoFormer
from nasflow.hub._autoformer import AutoformerSpace as AutoformerSpace
from nasflow.hub._checkpoint import CheckpointMismatchError as CheckpointMismatchError
from nasflow.hub._checkpoint import load_checkpoint as load_checkpoint
from nasflow.hub._mobilenetv3 import MobileNetV3Space as MobileNetV3Space
from nasflow.hub._nasbench101 import NasBench101 as NasBench101
from nasflow.hub._nasbench201 import NasBench201 as NasBench201
from nasflow.hub._nds import DARTS as DARTS
from nasflow.hub._nds import ENAS as ENAS
from nasflow.hub._nds import NDS as NDS
from nasflow.hub._nds import PNAS as PNAS
from nasflow.hub._nds import AmoebaNet as AmoebaNet
from nasflow.hub._nds import NASNet as NASNet
from nasflow.hub._proxyless import ProxylessNAS as ProxylessNAS
from nasflow.hub._shufflenet import ShuffleNetSpace as ShuffleNetSpace

__all__ = [
    "AmoebaNet",
    "AutoFormer",
    "AutoformerSpace",
    "CheckpointMismatchError",
    "DARTS",
    "ENAS",
    "MobileNetV3Space",
    "NASNet",
    "NDS",
    "NasBench101",
    "NasBench201",
    "PNAS",
    "ProxylessNAS",
    "ShuffleNetSpace",
    "load_checkpoint",
]
