"""``python -m nasflow`` is the ``nasflow`` command."""

from __future__ import annotations

import sys

from nasflow.cli import main

sys.exit(main())
