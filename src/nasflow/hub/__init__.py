"""Published NAS search spaces (names as NNI's ``nni.nas.hub.pytorch``), each a
``nasflow.nn.ModelSpace``: ``space.freeze(sample)`` gives a plain ``torch.nn.Module``.

See ``docs/hub.md`` for each space's labels, paper and parameter counts. No pretrained
weights are downloaded; ``load_checkpoint`` loads weights you have into a frozen sample.
"""

from __future__ import annotations

from nasflow.hub._autoformer import AutoFormer as AutoFormer
from nasflow.hub._autoformer import AutoformerSpace as AutoformerSpace
from nasflow.hub._checkpoint import CheckpointMismatchError as CheckpointMismatchError
from nasflow.hub._checkpoint import load_checkpoint as load_checkpoint
from nasflow.hub._mobilenetv3 import MobileNetV3Space as MobileNetV3Space
from nasflow.hub._proxyless import ProxylessNAS as ProxylessNAS
from nasflow.hub._shufflenet import ShuffleNetSpace as ShuffleNetSpace

__all__ = [
    "AutoFormer",
    "AutoformerSpace",
    "CheckpointMismatchError",
    "MobileNetV3Space",
    "ProxylessNAS",
    "ShuffleNetSpace",
    "load_checkpoint",
]
