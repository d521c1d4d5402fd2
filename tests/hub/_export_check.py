"""``assert_exports(model, x)``: the check every hub space's code export must pass.

The generated source is written to a file and imported in a fresh Python process in
which importing nasflow fails; that process loads the frozen model's state dict, runs
the input in eval mode and sends back its parameter shapes and output. The test process
compares them with the frozen model's own: same names and shapes, bit-identical output.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import torch
import torch.nn as nn

from nasflow.nn import to_code

_CHILD = textwrap.dedent("""
    import importlib.abc, importlib.util, json, sys

    class _NoNasflow(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "nasflow" or name.startswith("nasflow."):
                raise ImportError("nasflow is not allowed in exported code")
            return None

    sys.meta_path.insert(0, _NoNasflow())
    import torch
    source, state, inp, out, name, threads = sys.argv[1:7]
    torch.set_num_threads(int(threads))  # the same reduction order as the test process
    spec = importlib.util.spec_from_file_location("exported_model", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = getattr(module, name)()
    model.load_state_dict(torch.load(state), strict=True)
    model.eval()
    with torch.no_grad():
        y = model(torch.load(inp))
    torch.save(y, out)
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    params = [k for k, _ in model.named_parameters()]
    leaked = sorted(m for m in sys.modules if m == "nasflow" or m.startswith("nasflow."))
    print(json.dumps({"shapes": shapes, "params": params, "leaked": leaked}))
""")


def assert_exports(model: nn.Module, x: torch.Tensor, tmp_path: Path,
                   name: str | None = None) -> str:
    """Check ``to_code(model)`` in a nasflow-free process; returns the source."""
    name = name or type(model).__name__
    source = to_code(model, class_name=name)
    tmp_path.mkdir(parents=True, exist_ok=True)
    paths = {k: tmp_path / f"{name}_{k}" for k in ("src.py", "state.pt", "in.pt", "out.pt")}
    paths["src.py"].write_text(source)
    torch.save(model.state_dict(), paths["state.pt"])
    torch.save(x, paths["in.pt"])
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, *(str(paths[k]) for k in paths), name,
         str(torch.get_num_threads())],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["leaked"] == []
    assert report["params"] == [k for k, _ in model.named_parameters()]
    assert report["shapes"] == {k: list(v.shape) for k, v in model.state_dict().items()}
    was_training = model.training
    model.eval()
    with torch.no_grad():
        want = model(x)
    model.train(was_training)
    got = torch.load(paths["out.pt"])
    assert torch.equal(got, want), (got - want).abs().max()
    return source
