"""``python -m nasflow.worker``: see ``nasflow.worker._main``."""

from __future__ import annotations

from nasflow.worker._main import main

raise SystemExit(main())
