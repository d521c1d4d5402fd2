"""Taking an experiment from a Python file, for ``nasflow run FILE.py``: the file is the
configuration, written in Python (NNI users asked for a config-file workflow for NAS; a
Python file can hold a model space, which YAML cannot).

The file runs with ``__name__ == "__nasflow_run__"``, not ``"__main__"``, so its own
``if __name__ == "__main__":`` block (e.g. ``nf.run(experiment)``) does not run. The
experiment is, in this order: the module-level ``experiment``, else what a zero-argument
``make_experiment()`` returns, else the only ``nf.Experiment`` among the file's globals.
"""

from __future__ import annotations

import inspect
import runpy
import sys
import traceback
from pathlib import Path
from typing import Any

from nasflow.exceptions import NasflowError
from nasflow.experiment import Experiment

__all__ = ["RUN_NAME", "ExperimentFileError", "load_experiment_file"]

RUN_NAME = "__nasflow_run__"
"""``__name__`` while the file runs."""

_HOW = ("define a module-level `experiment = nf.Experiment(...)`, or a function "
        "`make_experiment()` that returns one")


class ExperimentFileError(NasflowError):
    """A file given to ``nasflow run`` does not yield one experiment."""

    def __init__(self, message: str, details: str = "") -> None:
        self.details = details
        """A traceback of the file's own error, when it raised."""
        super().__init__(message)


def _user_traceback(exc: BaseException, file: Path) -> str:
    """The traceback from the file's first frame on (nasflow's and runpy's are noise)."""
    if isinstance(exc, SyntaxError):
        # raised while compiling: every frame is nasflow's or runpy's; the file's line,
        # with its caret, is all there is to show
        return "".join(traceback.format_exception_only(type(exc), exc))
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != str(file):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb or exc.__traceback__))


def _execute(file: Path) -> dict[str, Any]:
    saved_argv = sys.argv
    # like `python FILE.py`: the file sees itself as argv[0] (not nasflow's options) and
    # can import modules next to it. sys.path keeps the entry: evaluators may import
    # lazily, while trials run.
    sys.argv = [str(file)]
    folder = str(file.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    try:
        return runpy.run_path(str(file), run_name=RUN_NAME)
    except SystemExit as exc:
        raise ExperimentFileError(
            f"{file} called sys.exit({exc.code!r}) while being loaded; move command-line "
            'handling under `if __name__ == "__main__":`') from None
    except Exception as exc:
        raise ExperimentFileError(
            f"{file} raised {type(exc).__name__} while being loaded: {exc}",
            _user_traceback(exc, file)) from exc
    finally:
        sys.argv = saved_argv


def _from_factory(file: Path, name: str, factory: Any) -> Experiment:
    if not callable(factory):
        raise ExperimentFileError(f"{file}: `{name}` is a {type(factory).__name__}, not a "
                                  f"function; {_HOW}")
    if inspect.iscoroutinefunction(factory):
        raise ExperimentFileError(f"{file}: `{name}` is an async function; make it a plain "
                                  "`def` that returns the nf.Experiment")
    try:
        inspect.signature(factory).bind()
    except TypeError:
        raise ExperimentFileError(
            f"{file}: `{name}{inspect.signature(factory)}` needs arguments; it must be "
            "callable with none (give its parameters defaults)") from None
    except ValueError:
        pass  # no signature to inspect (a builtin): just call it
    try:
        exp = factory()
    except Exception as exc:
        raise ExperimentFileError(
            f"{file}: {name}() raised {type(exc).__name__}: {exc}",
            _user_traceback(exc, file)) from exc
    if not isinstance(exp, Experiment):
        raise ExperimentFileError(f"{file}: {name}() returned {type(exp).__name__}, not an "
                                  "nf.Experiment")
    return exp


def _pick(file: Path, ns: dict[str, Any], name: str | None) -> Experiment:
    if name is not None:
        if name not in ns:
            found = [k for k, v in ns.items() if isinstance(v, Experiment) or (
                callable(v) and not k.startswith("_") and not isinstance(v, type))]
            raise ExperimentFileError(
                f"{file} defines no `{name}` (experiments and functions it defines: "
                f"{', '.join(found) or 'none'})")
        value = ns[name]
        if isinstance(value, Experiment):
            return value
        return _from_factory(file, name, value)
    if "experiment" in ns:
        value = ns["experiment"]
        if not isinstance(value, Experiment):
            raise ExperimentFileError(
                f"{file}: `experiment` is a {type(value).__name__}, not an nf.Experiment; "
                f"{_HOW}")
        return value
    if "make_experiment" in ns:
        return _from_factory(file, "make_experiment", ns["make_experiment"])
    found = [k for k, v in ns.items() if isinstance(v, Experiment) and not k.startswith("__")]
    if len(found) == 1:
        exp: Experiment = ns[found[0]]
        return exp
    if found:
        raise ExperimentFileError(
            f"{file} defines {len(found)} experiments ({', '.join(found)}); name the one to "
            "run `experiment`, or choose with --experiment NAME")
    names = [k for k in ns if not k.startswith("_")]
    raise ExperimentFileError(
        f"{file} defines no nf.Experiment (its top-level names: "
        f"{', '.join(names[:15]) or 'none'}{', ...' if len(names) > 15 else ''}); {_HOW}")


def load_experiment_file(path: str, name: str | None = None) -> Experiment:
    """The experiment that the Python file ``path`` defines (see the module docstring);
    ``name`` picks a variable or zero-argument function by name instead.
    ``ExperimentFileError`` says what was wrong and what to define."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise ExperimentFileError(f"no such file: {path}")
    if file.suffix != ".py":
        raise ExperimentFileError(
            f"{path} is not a Python file: nasflow run takes a .py file (the configuration, "
            f"written in Python); in it, {_HOW}")
    exp = _pick(file, _execute(file), name)
    if exp.state.value != "CREATED":
        raise ExperimentFileError(
            f"{file}: experiment {exp.id} already ran while the file was loaded (state "
            f"{exp.state.value}); build the experiment at the top level but do not run it")
    return exp
