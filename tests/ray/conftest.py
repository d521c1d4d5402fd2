"""A real local multi-node Ray cluster for the Ray training service's tests.

Ray gives its nodes the machine's outward address, so these tests run only inside a
network namespace that holds nothing but loopback (everything then binds 127.0.0.1):
``scripts/test.sh`` runs this directory under ``unshare -rn``. Outside one they skip,
saying how to run them -- unless ``NASFLOW_REQUIRE_RAY`` or ``CI`` is set, where they
fail instead: in CI they must run.

One cluster per test module (``cluster``), started with a short health check so that a
removed node is noticed in about a second; its processes are stopped when the module
ends.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def _isolated() -> bool:
    """Whether this process sees only the loopback interface (a fresh network namespace)."""
    # not /sys/class/net: it shows the namespace /sys was mounted in
    try:
        return [name for _, name in socket.if_nameindex()] == ["lo"]
    except OSError:
        return False


_HOW = ("run them in a network namespace holding only loopback: "
        "unshare -rn bash -c 'ip link set lo up && exec python -m pytest tests/ray' "
        "(scripts/test.sh does)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    ours = [i for i in items if here in Path(str(i.fspath)).parents]
    if not ours or _isolated():
        return
    required = os.environ.get("NASFLOW_REQUIRE_RAY") or os.environ.get("CI")
    if required:
        raise pytest.UsageError(f"the Ray tests must run here (CI), but this process sees "
                                f"more than loopback: {_HOW}")
    skip = pytest.mark.skip(reason=f"Ray picks the machine's outward address: {_HOW}")
    for item in ours:
        item.add_marker(skip)


HEAD = {"num_cpus": 0, "_system_config": {
    "health_check_period_ms": 200, "health_check_failure_threshold": 3,
    "health_check_initial_delay_ms": 0}}


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """A head with no CPUs (trials never land next to the driver) and two 2-CPU nodes,
    this process connected as the driver; ``cluster.worker_nodes`` to add or remove."""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args=HEAD)
    try:
        for _ in range(2):
            c.add_node(num_cpus=2, object_store_memory=600 * 2**20)
        c.wait_for_nodes()
        ray.init(address=c.address, logging_level="WARNING", configure_logging=False)
        yield c
    finally:
        ray.shutdown()
        c.shutdown()
