"""Hosted experiments: a ``nasflow manager`` daemon runs the whole experiment (strategy,
store, events) while clients come and go. ``nf.submit`` / ``nf.attach`` on the client,
``Host`` in the daemon; see docs/hosted.md."""

from __future__ import annotations

from nasflow.hosted._client import HostedExperiment as HostedExperiment
from nasflow.hosted._client import attach as attach
from nasflow.hosted._client import submit as submit
from nasflow.hosted._client import submit_file as submit_file
from nasflow.hosted._host import Host as Host
from nasflow.hosted._host import hosting as hosting

__all__ = ["Host", "HostedExperiment", "attach", "hosting", "submit", "submit_file"]
