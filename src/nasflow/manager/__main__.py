"""``python -m nasflow.manager``: the same as ``nasflow manager``."""

from __future__ import annotations

import sys

from nasflow.manager._cli import manager_command

raise SystemExit(manager_command(sys.argv[1:]))
