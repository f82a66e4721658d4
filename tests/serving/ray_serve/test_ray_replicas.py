"""Replicas on Ray Serve (``runtime/ray/serve.py``) called through deployment handles
(``serving/gateway/ray_client.py``) by the gateway's own pool, on a real two-node cluster."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time
from pathlib import Path

import orjson
import pytest

from _async import run
from modelyard.errors import Unavailable
from modelyard.runtime import Event, ReplicaSpec, ReplicaStatus
from modelyard.runtime.ray import RayRuntime
from modelyard.runtime.ray.serve import RayReplicas
from modelyard.serving.gateway.pool import DeploymentPool, PoolSettings, ReplicaEndpoint
from modelyard.store.base import Identity

pytestmark = [
    pytest.mark.ray,
    pytest.mark.slow,
    # Ray Serve's own models use Pydantic features deprecated in Pydantic 2 (not ours to fix).
    pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:pydantic.*"),
]

SOURCE = """
import os, time

def predict(x):
    if isinstance(x, dict) and x.get("sleep"):
        time.sleep(x["sleep"])
    return {"echo": x, "pid": os.getpid(), "secret": os.environ.get("MY_SECRET")}
"""
IDENTITY = Identity("crn:model/m", "crn:build/b", "crn:deployment/d")


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("snap")
    (folder / "predict.py").write_text(SOURCE)
    return folder


def spec(
    snapshot: Path, replica_id: str, function: str = "predict", **extra: object
) -> ReplicaSpec:
    argv = [sys.executable, "-m", "modelyard.serving.replica", "--snapshot", str(snapshot)]
    argv += ["--file", "predict.py", "--function", function, "--socket", "/unused/s.sock"]
    argv += ["--replica-id", replica_id]
    made = ReplicaSpec("dep1", replica_id, argv, cwd=snapshot, env={"MY_SECRET": "s3"}, cpus=0.5)
    return dataclasses.replace(made, **extra)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def two(serve_runtime: RayRuntime, snapshot: Path) -> list[str]:
    ids = ["ra", "rb"]
    states = serve_runtime.start_replicas([spec(snapshot, rid) for rid in ids])
    assert [s.status for s in states] == [ReplicaStatus.HEALTHY] * 2
    return ids


def pool_of(runtime: RayRuntime, ids: list[str]) -> DeploymentPool:
    pool = DeploymentPool(IDENTITY, PoolSettings(request_timeout_s=30))
    for rid in ids:
        pool.add_endpoint(ReplicaEndpoint(rid, runtime.replica_url(rid), capacity=8))
    return pool


def test_a_replica_answers_through_its_handle_with_env_and_uuid(
    serve_runtime: RayRuntime, two: list[str]
) -> None:
    async def go() -> None:
        pool = pool_of(serve_runtime, two)
        uid = "0190f0b2-6a2b-7c3d-8e4f-1a2b3c4d5e6f"
        exchange = await pool.call("/invoke", b'{"a": 1}', uid)
        body = orjson.loads(exchange.payload)
        assert exchange.status == 200, body
        assert body["output"]["echo"] == {"a": 1}
        assert body["output"]["secret"] == "s3"
        assert body["record"]["predictionUuid"] == uid
        bad = await pool.call("/invoke", b"not json")
        assert bad.status == 400 and b"not JSON" in bad.payload
        await pool.close()

    run(go())
    states = serve_runtime.replicas("dep1")
    assert {s.replica_id for s in states} >= set(two)


def test_a_replica_log_is_read_through_the_state_api(
    serve_runtime: RayRuntime, two: list[str]
) -> None:
    logs = list(serve_runtime.read_replica_log("dep1", "ra", tail_lines=200))
    assert any("serving in Ray actor" in line for line in logs), logs[-20:]


def test_nodes_show_the_cluster_and_where_replicas_run(
    serve_runtime: RayRuntime, two: list[str]
) -> None:
    nodes = serve_runtime.nodes()
    assert len(nodes) == 2 and all(n.alive and n.cpus == 2 and n.cpu_limit == "ray" for n in nodes)
    assert all(n.memory_bytes for n in nodes)
    placed = {p.name: p for n in nodes for p in n.placed}
    assert set(two) <= set(placed) and placed["ra"].cpus == 0.5, placed
    assert serve_runtime.waiting() == []


def test_a_killed_replica_fails_no_request_under_load(
    serve_runtime: RayRuntime, two: list[str], serve_events: list[Event]
) -> None:
    """SIGKILL-like: the replica actor is killed with requests in flight; Ray Serve does not
    resend them, the pool does (rule 5), so every request is answered."""

    async def go() -> list[int]:
        pool = pool_of(serve_runtime, two)
        statuses: list[int] = []
        stop = time.monotonic() + 6

        async def client() -> None:
            while time.monotonic() < stop:
                exchange = await pool.call("/invoke", b'{"sleep": 0.05}')
                statuses.append(exchange.status)

        async def kill() -> None:
            await asyncio.sleep(1.5)
            await asyncio.to_thread(serve_runtime.recycle, "ra", "test kill")

        await asyncio.gather(*(client() for _ in range(8)), kill())
        await pool.close()
        return statuses

    statuses = run(go())
    assert statuses and set(statuses) == {200}, statuses
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = {s.replica_id: s for s in serve_runtime.replicas("dep1")}["ra"]
        if state.restarts >= 1 and state.status is ReplicaStatus.HEALTHY:
            break
        time.sleep(0.5)
    assert state.restarts >= 1 and state.status is ReplicaStatus.HEALTHY, state
    kinds = [e.kind for e in serve_events if e.replica_id == "ra"]
    assert "recycled" in kinds and "restarted" in kinds, kinds


def test_a_deploy_the_cluster_cannot_place_fails_naming_the_resource(
    serve_runtime: RayRuntime, snapshot: Path
) -> None:
    half = serve_runtime.replicas_half
    before, half.deploy_timeout_s = half.deploy_timeout_s, 4.0
    try:
        with pytest.raises(Unavailable) as caught:
            serve_runtime.start_replicas([spec(snapshot, "huge", cpus=3)])  # type: ignore[arg-type]
    finally:
        half.deploy_timeout_s = before
    message = caught.value.message
    assert "3 CPU" in message and "no node" in message and "largest has 2 CPU" in message
    assert "huge" not in {s.replica_id for s in serve_runtime.replicas()}


def test_a_replica_whose_function_is_missing_fails_its_start(
    serve_runtime: RayRuntime, snapshot: Path
) -> None:
    with pytest.raises(Unavailable) as caught:
        serve_runtime.start_replicas([spec(snapshot, "nofn", function="nope")])
    assert "nope" in caught.value.message
    assert "nofn" not in {s.replica_id for s in serve_runtime.replicas()}


def test_applications_left_by_an_earlier_life_are_deleted_at_start(
    serve_runtime: RayRuntime, snapshot: Path, two: list[str]
) -> None:
    from ray import serve

    crashed = RayReplicas(deploy_timeout_s=60, owner="deadbeef")
    crashed.start_replicas([spec(snapshot, "left")])
    crashed._stop.set()  # its server "crashes": nothing stops the application
    assert "my-deadbeef-left" in serve.status().applications
    RayReplicas(owner="deadbeef")._start_serve()  # the next life of that server
    deadline = time.monotonic() + 30
    while "my-deadbeef-left" in serve.status().applications and time.monotonic() < deadline:
        time.sleep(0.3)
    assert "my-deadbeef-left" not in serve.status().applications
    assert {s.replica_id for s in serve_runtime.replicas()} >= set(two)  # others kept
