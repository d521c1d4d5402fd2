"""The public namespace of nasflow.nn, and the promise that plain nasflow is torch-free."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import nasflow.nn as snn


def test_all_is_sorted_and_complete() -> None:
    assert snn.__all__ == sorted(snn.__all__)
    for name in snn.__all__:
        assert hasattr(snn, name), name
    for name in ("ModelSpace", "NasModule", "LayerChoice", "InputChoice", "Repeat", "Cell",
                 "ChosenInputs", "searchable", "Conv2d", "Linear", "MultiheadAttention"):
        assert name in snn.__all__


def test_reexports_are_explicit() -> None:
    source = Path(snn.__file__).read_text()
    for node in ast.parse(source).body:
        if isinstance(node, ast.ImportFrom) and node.module != "__future__":
            for alias in node.names:
                assert alias.asname == alias.name, f"{alias.name} is not re-exported explicitly"


def test_import_nasflow_does_not_import_torch() -> None:
    code = (
        "import sys, nasflow, nasflow.space\n"
        "nasflow.Categorical([1, 2], label='x')\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_nasflow_nn_attribute_is_this_package() -> None:
    import nasflow

    assert nasflow.nn is snn
