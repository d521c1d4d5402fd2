"""The package's shape: a pure module with one explicit public namespace."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nasflow.protocol as protocol

SRC = Path(protocol.__file__).resolve().parents[2]

# nasflow/__init__.py imports the engine (and so anyio); load nasflow.protocol below a bare
# stand-in package so that only what the protocol itself imports gets imported
_PROBE = f"""
import sys, types
package = types.ModuleType("nasflow")
package.__path__ = [{str(SRC / "nasflow")!r}]
sys.modules["nasflow"] = package
import nasflow.protocol
banned = ("anyio", "asyncio", "websockets", "torch", "trio", "sniffio", "cloudpickle",
          "pydantic", "numpy")
loaded = sorted(m for m in sys.modules if m.split(".")[0] in banned)
nasflow_modules = sorted(m for m in sys.modules if m.startswith("nasflow."))
print(loaded)
print(nasflow_modules)
"""


def test_the_protocol_imports_no_io_framework_and_no_torch() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, timeout=60
    )
    loaded, nasflow_modules = result.stdout.splitlines()
    assert loaded == "[]", f"nasflow.protocol imported {loaded}"
    outside = [m for m in eval(nasflow_modules) if not m.startswith("nasflow.protocol")]
    # the kernel (states, records: nasflow._kernel) and the errors, nothing else
    assert "nasflow._kernel" in outside and "nasflow.exceptions" in outside
    assert [m for m in outside
            if m != "nasflow.exceptions" and not m.startswith("nasflow._kernel")] == []


def test_all_is_sorted_and_names_exactly_the_public_names() -> None:
    assert protocol.__all__ == sorted(protocol.__all__)
    public = {name for name in vars(protocol) if not name.startswith("_")}
    public -= {"annotations"}
    assert set(protocol.__all__) == public
    for name in protocol.__all__:
        assert getattr(protocol, name) is not None


def test_protocol_errors_are_nasflow_errors() -> None:
    from nasflow.exceptions import NasflowError

    errors = [getattr(protocol, n) for n in protocol.__all__ if n.endswith("Error")]
    assert len(errors) == 11
    assert all(issubclass(e, protocol.ProtocolError) for e in errors)
    assert issubclass(protocol.ProtocolError, NasflowError)
    assert len({e.code for e in errors}) == len(errors)
