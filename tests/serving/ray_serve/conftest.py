"""Ray Serve replicas, the gateway's handle client and the ``server`` fixture's ``modelyard
server --runtime ray`` share the session's two-node cluster."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from _ray import RayTestCluster, ray_cluster
from _server import ServerProcess
from modelyard.runtime import Event
from modelyard.runtime.ray import RayConnection, RayRuntime

__all__ = ["ray_cluster", "serve_events", "serve_runtime", "server"]


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


@pytest.fixture(scope="module")
def server(
    ray_cluster: RayTestCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A real ``modelyard server --runtime ray`` process on the session's cluster, one a test
    module (started on first use, stopped after the module's last test)."""
    home = tmp_path_factory.mktemp("ray-server") / "home"
    process = ServerProcess(
        home,
        settings={
            "MODELYARD_RUNTIME": "ray",
            "MODELYARD_RAY_ADDRESS": ray_cluster.address,
            "MODELYARD_RAY_DASHBOARD_URL": ray_cluster.dashboard_url,
            "MODELYARD_RAY_AUTH_TOKEN_PATH": str(ray_cluster.token_path),
            "MODELYARD_RAY_DEPLOY_TIMEOUT": "90s",
        },
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()
