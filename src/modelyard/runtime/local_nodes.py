"""The local runtime's cluster view: this machine as one node, and what waits for resources."""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING

import psutil

from modelyard.runtime.base import GpuInfo, NodeInfo, Placement
from modelyard.runtime.resources import LocalResources

if TYPE_CHECKING:
    from modelyard.runtime.runs import LocalRun
    from modelyard.runtime.supervised import SupervisedReplica

__all__ = ["LOCAL_NODE_ID", "local_node", "local_waiting"]

LOCAL_NODE_ID = "local"


def _replica_placement(replica: SupervisedReplica, node_id: str | None) -> Placement:
    spec = replica.spec
    return Placement(
        kind="replica",
        name=spec.replica_id,
        deployment_id=spec.deployment_id,
        node_id=node_id,
        cpus=spec.cpus,
        memory_bytes=spec.memory_limit_bytes,
        gpus=spec.gpus,
        gpu_ids=replica.gpu_ids,
        accelerator=spec.accelerator,
        reason=replica.waiting_for if node_id is None else None,
    )


def _run_placement(run: LocalRun, node_id: str | None) -> Placement:
    spec = run.spec
    return Placement(
        kind="run",
        name=spec.run_id,
        node_id=node_id,
        cpus=spec.cpus,
        memory_bytes=spec.memory_bytes,
        gpus=spec.gpus,
        gpu_ids=run.gpu_ids,
        accelerator=spec.accelerator,
        reason=run.waiting_for if node_id is None else None,
    )


def local_node(
    resources: LocalResources,
    replicas: Sequence[SupervisedReplica],
    runs: Sequence[LocalRun],
) -> NodeInfo:
    """This machine: its CPUs (those this process may use), memory, GPUs with their holders,
    how CPU limits are enforced, and the replicas and runs placed here (not waiting)."""
    holders = resources.gpus.holders()
    gpus = tuple(
        GpuInfo(d.id, d.name, d.memory_bytes, holders.get(d.id)) for d in resources.gpus.devices()
    )
    placed = [_replica_placement(r, LOCAL_NODE_ID) for r in replicas if r.waiting_for is None]
    placed += [_run_placement(r, LOCAL_NODE_ID) for r in runs if r.waiting_for is None]
    return NodeInfo(
        node_id=LOCAL_NODE_ID,
        address=socket.gethostname(),
        alive=True,
        cpus=float(len(os.sched_getaffinity(0))),
        memory_bytes=int(psutil.virtual_memory().total),
        gpus=gpus,
        cpu_limit=resources.cpu.method,
        placed=tuple(placed),
        labels={"cpu_limit_detail": resources.cpu.describe()},
    )


def local_waiting(
    replicas: Sequence[SupervisedReplica], runs: Sequence[LocalRun]
) -> list[Placement]:
    """Replicas and runs waiting for GPUs, each with what it waits for."""
    waiting = [_replica_placement(r, None) for r in replicas if r.waiting_for is not None]
    waiting += [_run_placement(r, None) for r in runs if r.waiting_for is not None]
    return waiting
