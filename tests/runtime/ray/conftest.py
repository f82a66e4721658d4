"""The Ray runtime's tests share the session's two-node cluster (``tests/_ray.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from _ray import RayTestCluster, ray_cluster
from modelyard.runtime import Event
from modelyard.runtime.ray import RayConnection, RayRuntime

__all__ = ["ray_cluster", "ray_events", "ray_runtime"]


@pytest.fixture(scope="module")
def ray_events() -> list[Event]:
    return []


@pytest.fixture(scope="module")
def ray_runtime(
    ray_cluster: RayTestCluster, tmp_path_factory: pytest.TempPathFactory, ray_events: list[Event]
) -> Iterator[RayRuntime]:
    """A Ray runtime connected (as a driver, with the token) to the test cluster."""
    home = Path(tmp_path_factory.mktemp("ray-home"))
    connection = RayConnection(
        ray_cluster.address,
        dashboard_url=ray_cluster.dashboard_url,
        token_path=ray_cluster.token_path,
    )
    runtime = RayRuntime(home, connection, on_event=ray_events.append)
    yield runtime
    runtime.stop_all()
