"""``nasflow.hub``'s public names: NNI's, sorted, importable; ``import nasflow`` alone
still does not import torch (the hub does)."""

from __future__ import annotations

import subprocess
import sys


def test_all_is_sorted_and_has_nnis_names() -> None:
    from nasflow import hub

    assert list(hub.__all__) == sorted(hub.__all__)
    for name in ["NasBench101", "NasBench201", "NASNet", "ENAS", "AmoebaNet", "PNAS", "DARTS",
                 "NDS", "ProxylessNAS", "MobileNetV3Space", "ShuffleNetSpace", "AutoFormer",
                 "AutoformerSpace"]:
        assert name in hub.__all__ and getattr(hub, name) is not None


def test_from_nasflow_import_hub_works_and_nasflow_alone_stays_torch_free() -> None:
    code = (
        "import sys, nasflow; assert 'torch' not in sys.modules;"
        "from nasflow import hub; assert 'torch' in sys.modules; print(hub.NasBench201)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
