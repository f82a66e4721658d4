"""The Ray runtime's cluster view (``runtime.base.ClusterAware``): Ray's nodes, what is placed on
each, and what waits for resources.

Nodes and their resources come from Ray's GCS (``ray.nodes()``: logical CPUs, memory, GPUs and
the ``accelerator_type:*`` label). A replica is placed where Serve's controller runs its actor
(``RayReplicas`` follows it); one that is not running yet waits, with the resource the cluster
lacks as its reason. A run is placed on its job driver's node (the Jobs API); a ``PENDING`` job
waits for its entrypoint's resources.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from modelyard.runtime.base import GpuInfo, NodeInfo, Placement, ReplicaStatus, RunSpec
from modelyard.runtime.ray._cluster import RayConnection
from modelyard.runtime.ray.serve import RayReplicas, missing_resources

__all__ = ["ray_nodes", "ray_placements"]

_ACCELERATOR = "accelerator_type:"


def _replica_placements(replicas: RayReplicas) -> list[Placement]:
    if any(r.node_id is None for r in replicas.tracked()):
        with contextlib.suppress(Exception):  # a replica that just started: where is its actor
            replicas.poll()
    placed = []
    for replica in replicas.tracked():
        spec = replica.spec
        running = replica.node_id is not None and replica.status is not ReplicaStatus.STARTING
        reason = None
        if not running:
            reason = "starting"
            with contextlib.suppress(Exception):
                reason = missing_resources(spec)
        placed.append(
            Placement(
                kind="replica",
                name=spec.replica_id,
                deployment_id=spec.deployment_id,
                node_id=replica.node_id if running else None,
                cpus=spec.cpus if spec.cpus is not None else 1.0,
                memory_bytes=spec.memory_limit_bytes,
                gpus=spec.gpus,
                accelerator=spec.accelerator,
                reason=reason,
            )
        )
    return placed


def _run_placements(
    connection: RayConnection, runs: Sequence[tuple[RunSpec, bool]]
) -> list[Placement]:
    placed = []
    for spec, finished in runs:
        if finished:
            continue
        node_id: str | None = None
        reason: str | None = None
        with contextlib.suppress(Exception):
            info = connection.jobs().get_job_info(spec.run_id)
            if str(info.status.value) == "PENDING":
                reason = "its job waits for the cluster to start it (resources or runtime env)"
            else:
                node_id = info.driver_node_id or None
        placed.append(
            Placement(
                kind="run",
                name=spec.run_id,
                node_id=node_id,
                cpus=spec.cpus,
                memory_bytes=spec.memory_bytes,
                gpus=spec.gpus,
                accelerator=spec.accelerator,
                reason=reason if node_id is None else None,
            )
        )
    return placed


def ray_placements(
    replicas: RayReplicas, connection: RayConnection, runs: Sequence[tuple[RunSpec, bool]]
) -> list[Placement]:
    """Every replica and unfinished run (``runs``: each spec and whether it finished)."""
    return _replica_placements(replicas) + _run_placements(connection, runs)


def _node(row: dict[str, Any], placed: list[Placement]) -> NodeInfo:
    resources: dict[str, float] = row.get("Resources") or {}
    node_id = str(row["NodeID"])
    accelerators = [
        name[len(_ACCELERATOR) :] for name in resources if name.startswith(_ACCELERATOR)
    ]
    gpu_name = accelerators[0] if accelerators else "GPU"
    gpus = tuple(GpuInfo(str(index), gpu_name) for index in range(int(resources.get("GPU", 0))))
    labels = {"ray_node_name": str(row.get("NodeName", ""))}
    if row.get("Labels", {}).get("ray.io/node-id") is None and row.get("IsHead") is not None:
        labels["head"] = str(bool(row.get("IsHead"))).lower()
    memory = resources.get("memory")
    return NodeInfo(
        node_id=node_id,
        address=str(row.get("NodeManagerAddress", "")),
        alive=bool(row.get("Alive")),
        cpus=float(resources.get("CPU", 0.0)),
        memory_bytes=int(memory) if memory is not None else None,
        gpus=gpus,
        cpu_limit="ray",
        placed=tuple(p for p in placed if p.node_id == node_id),
        labels=labels,
    )


def ray_nodes(placed: list[Placement]) -> list[NodeInfo]:
    """Ray's alive nodes, and dead ones something is still placed on (alive ones first), with
    what of ``placed`` runs on each."""
    import ray

    every: list[dict[str, Any]] = ray.nodes()  # type: ignore[no-untyped-call]
    # Ray keeps dead nodes in its list for good; a dead one is shown while something is still
    # placed on it (a replica of a lost node, until Serve has placed its new actor).
    where = {p.node_id for p in placed}
    rows = [row for row in every if row.get("Alive") or str(row.get("NodeID")) in where]
    rows.sort(key=lambda row: (not row.get("Alive"), str(row.get("NodeID"))))
    return [_node(row, placed) for row in rows]
