"""The web dashboard: ``nasflow dashboard`` or ``async with Dashboard(exp) as board``.

Needs the ``dashboard`` extra (``pip install 'nasflow[dashboard]'``: starlette, uvicorn).
Running experiments push their events to the page over a WebSocket (from their event hub
in this process, or from their control endpoint in another); finished ones are read from
their store. See docs/dashboard.md.
"""

from __future__ import annotations

from nasflow.dashboard._server import Dashboard as Dashboard

__all__ = ["Dashboard"]
