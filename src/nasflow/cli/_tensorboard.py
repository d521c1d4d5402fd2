"""``nasflow tensorboard ID``: TensorBoard on an experiment's trials (one run per trial)."""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys

from nasflow.cli._output import Formatter, add_home, command, find
from nasflow.exceptions import NasflowError

__all__ = ["add_parser"]

EXAMPLES = """examples:
  nasflow tensorboard 3f2a            # http://127.0.0.1:6006, one run per trial
  nasflow tensorboard 3f2a --port 0   # any free port (TensorBoard prints it)
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "tensorboard", help="open TensorBoard on an experiment's trials",
        description="Launch TensorBoard on the experiment's trials folder: each trial is a "
        "run, with the scalars of ExperimentConfig(tensorboard=True) and whatever the trial "
        "wrote with trial.tensorboard(). Needs pip install 'nasflow[tensorboard]'.",
        epilog=EXAMPLES, formatter_class=Formatter,
    )
    p.add_argument("id", help="experiment id (or a unique prefix, or its directory)")
    p.add_argument("--port", default="6006",
                   help="port to serve on (default 6006; 0 picks a free one)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only)")
    add_home(p)
    p.set_defaults(func=main)


@command
def main(args: argparse.Namespace) -> int:
    directory = find(args.id, args.home)
    if importlib.util.find_spec("tensorboard") is None:
        raise NasflowError(
            "TensorBoard is not installed; install it with pip install "
            "'nasflow[tensorboard]' (or pip install tensorboard)"
        )
    logdir = directory / "trials"
    logdir.mkdir(parents=True, exist_ok=True)  # an experiment with no trial yet
    argv = [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir),
            "--host", args.host, "--port", str(args.port)]
    print(f"TensorBoard on experiment {directory.name} ({logdir})", flush=True)
    if os.name == "posix":
        os.execv(sys.executable, argv)  # TensorBoard takes this process: Ctrl-C ends it
    return subprocess.call(argv)
