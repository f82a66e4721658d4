"""What only the Ray runtime does: the test cluster itself, work spread over its nodes, resources
as the job's entrypoint requests, and the 503 that names the runtime when the head is away."""

from __future__ import annotations

import json
import sys
import urllib.error
from pathlib import Path

import pytest

from _ray import RayTestCluster
from modelyard.runtime import RunSpec, RunStatus
from modelyard.runtime.ports import free_port
from modelyard.runtime.ray import RayConnection, RayRuntime, RayUnavailable

# The distributed-work example of docs/ray.md: Ray tasks spread over the cluster's nodes.
SPREAD = """
import json, os, time, ray

ray.init()  # the job's cluster: Ray Jobs sets RAY_ADDRESS; MODELYARD_RAY_ADDRESS names it too

@ray.remote(num_cpus=2, scheduling_strategy="SPREAD")  # a whole node of the test cluster
def where(i):
    time.sleep(1)  # a piece of work
    return ray.get_runtime_context().get_node_id()

nodes = sorted(set(ray.get([where.remote(i) for i in range(4)])))
print("nodes:", json.dumps(nodes))
print("address:", os.environ["MODELYARD_RAY_ADDRESS"])
"""


def test_ray_unavailable_names_the_runtime_and_address() -> None:
    port = free_port()
    connection = RayConnection(f"127.0.0.1:{port}")
    with pytest.raises(RayUnavailable, match=f"Ray runtime at 127.0.0.1:{port}") as caught:
        connection.check_reachable(timeout_s=0.5)
    assert caught.value.status == 503
    with pytest.raises(Exception, match="not HOST:PORT"):
        RayConnection("nowhere")


@pytest.mark.ray
@pytest.mark.slow
def test_the_cluster_has_two_nodes_and_wants_its_token(ray_cluster: RayTestCluster) -> None:
    nodes = ray_cluster.alive_nodes()
    assert {n["node_id"] for n in nodes} == {ray_cluster.head_node_id, ray_cluster.worker_node_id}
    with pytest.raises(urllib.error.HTTPError) as refused:
        ray_cluster.get_json("/api/jobs/", token=False)
    refused.value.close()
    assert refused.value.code == 401


@pytest.mark.ray
@pytest.mark.slow
def test_a_job_spreads_its_tasks_over_both_nodes(
    ray_runtime: RayRuntime, ray_cluster: RayTestCluster, tmp_path: Path
) -> None:
    (tmp_path / "spread.py").write_text(SPREAD)
    run = ray_runtime.launch_run(
        RunSpec("spread", [sys.executable, str(tmp_path / "spread.py")], cwd=tmp_path)
    )
    assert run.wait(180) is RunStatus.SUCCEEDED, run.log_path.read_text()
    lines = run.log_path.read_text().splitlines()
    nodes = json.loads(next(line for line in lines if line.startswith("nodes:"))[7:])
    assert set(nodes) == {ray_cluster.head_node_id, ray_cluster.worker_node_id}
    assert f"address: {ray_cluster.address}" in lines


@pytest.mark.ray
@pytest.mark.slow
def test_resources_are_the_jobs_requests(ray_runtime: RayRuntime, tmp_path: Path) -> None:
    """A job asking more CPUs than any node has waits in Ray; our timeout still ends it."""
    (tmp_path / "noop.py").write_text("print('ran')\n")
    run = ray_runtime.launch_run(
        RunSpec(
            "too-big",
            [sys.executable, str(tmp_path / "noop.py")],
            cwd=tmp_path,
            cpus=64,
            timeout_s=3,
        )
    )
    assert run.wait(60) is RunStatus.TIMED_OUT
    assert "ran" not in run.log_path.read_text().splitlines()
    fits = ray_runtime.launch_run(
        RunSpec(
            "fits",
            [sys.executable, str(tmp_path / "noop.py")],
            cwd=tmp_path,
            cpus=1,
            memory_bytes=50 * 2**20,
        )
    )
    assert fits.wait(120) is RunStatus.SUCCEEDED
    assert "ran" in fits.log_path.read_text().splitlines()
