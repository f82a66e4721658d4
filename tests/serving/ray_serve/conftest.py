"""Ray Serve replicas and the gateway's handle client share the session's two-node cluster."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from _ray import RayTestCluster, ray_cluster
from modelyard.runtime import Event
from modelyard.runtime.ray import RayConnection, RayRuntime

__all__ = ["ray_cluster", "serve_events", "serve_runtime"]


@pytest.fixture(scope="module")
def serve_events() -> list[Event]:
    return []


@pytest.fixture(scope="module")
def serve_runtime(
    ray_cluster: RayTestCluster, tmp_path_factory: pytest.TempPathFactory, serve_events: list[Event]
) -> Iterator[RayRuntime]:
    home = Path(tmp_path_factory.mktemp("ray-serve-home"))
    connection = RayConnection(
        ray_cluster.address,
        dashboard_url=ray_cluster.dashboard_url,
        token_path=ray_cluster.token_path,
    )
    runtime = RayRuntime(home, connection, on_event=serve_events.append, deploy_timeout_s=60)
    yield runtime
    runtime.stop_all()
