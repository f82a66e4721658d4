"""The cluster view (``GET /api/v1/cluster``, ``modelyard cluster``, the dashboard's Cluster page):
the runtime's nodes with their CPUs, memory and GPUs, what is placed on each, and what waits.

The local runtime has one node (this machine); the Ray runtime lists Ray's nodes. A runtime
without ``nodes()`` (``runtime.base.ClusterAware``) shows none. Resources are shown to every
caller with a role; what runs is named only when the caller may read it (its model, or its
job's project; server administrators see all), else it reads ``(another project)``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from modelyard.errors import ModelyardError
from modelyard.runtime.base import NodeInfo, Placement
from modelyard.web.caller import Caller, Right
from modelyard.web.services import Services

__all__ = ["HIDDEN", "cluster_view"]

HIDDEN = "(another project)"


class _Names:
    """What the caller may see of each placement: model names by deployment id, run visibility."""

    def __init__(self, services: Services, caller: Caller) -> None:
        self._services = services
        self._caller = caller
        self._models: dict[str, str | None] | None = None

    def _deployment_models(self) -> dict[str, str | None]:
        if self._models is None:
            registry = self._services.registry
            found: dict[str, str | None] = {}
            for deployment in registry.list_deployments():
                try:
                    model = registry.get_model(deployment.model_crn)
                except ModelyardError:
                    continue
                key = deployment.crn.rsplit("/", 1)[-1]
                found[key] = model.name if self._caller.sees_model(model) else None
            self._models = found
        return self._models

    def of(self, placement: Placement) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": placement.kind,
            "name": placement.name,
            "node": placement.node_id,
            "cpus": placement.cpus,
            "memory_bytes": placement.memory_bytes,
            "gpus": placement.gpus,
            "gpu_ids": list(placement.gpu_ids),
            "accelerator": placement.accelerator,
            "model": None,
            "waiting_for": placement.reason,
        }
        if placement.kind == "replica":
            model = self._deployment_models().get(placement.deployment_id or "")
            body["model"] = model
            if model is None and not self._caller.server_admin:
                body["name"], body["waiting_for"] = HIDDEN, None
        elif not self._sees_run(placement.name):
            body["name"], body["waiting_for"] = HIDDEN, None
        return body

    def _sees_run(self, run_uuid: str) -> bool:
        if self._caller.server_admin:
            return True
        registry = self._services.registry
        try:
            run = registry.get_run(registry.resolve_run(run_uuid))
            job = registry.get_job(run.job_id)
        except ModelyardError:
            return False
        return self._caller.may(Right.READ, job.project_crn)


def _used(placed: Iterable[Placement]) -> dict[str, Any]:
    placed = list(placed)
    return {
        "cpus": sum(p.cpus or 0 for p in placed),
        "memory_bytes": sum(p.memory_bytes or 0 for p in placed),
        "gpus": sum(len(p.gpu_ids) or p.gpus for p in placed),
    }


def _node(node: NodeInfo, names: _Names) -> dict[str, Any]:
    return {
        "id": node.node_id,
        "address": node.address,
        "alive": node.alive,
        "cpus": node.cpus,
        "memory_bytes": node.memory_bytes,
        "cpu_limit": node.cpu_limit,
        "labels": dict(node.labels),
        "gpus": [
            {
                "id": gpu.id,
                "name": gpu.name,
                "memory_bytes": gpu.memory_bytes,
                "held_by": None if gpu.held_by is None else _holder(gpu.held_by, node, names),
            }
            for gpu in node.gpus
        ],
        "requested": _used(node.placed),
        "placed": [names.of(p) for p in node.placed],
    }


def _holder(holder: str, node: NodeInfo, names: _Names) -> str:
    """A GPU's holder (``replica DEPLOYMENT/REPLICA`` or ``run RUN``) as the caller may see it."""
    for placement in node.placed:
        if holder.endswith(placement.name):
            shown = names.of(placement)
            return holder if shown["name"] != HIDDEN else f"{placement.kind} {HIDDEN}"
    return holder


def cluster_view(services: Services, caller: Caller) -> dict[str, Any]:
    """The runtime's nodes, what is placed on each, and what waits for resources."""
    runtime = services.runtime
    names = _Names(services, caller)
    nodes_of = getattr(runtime, "nodes", None)
    waiting_of = getattr(runtime, "waiting", None)
    nodes: list[NodeInfo] = list(nodes_of()) if callable(nodes_of) else []
    waiting: list[Placement] = list(waiting_of()) if callable(waiting_of) else []
    return {
        "runtime": getattr(services.config, "runtime", "local"),
        "nodes": [_node(node, names) for node in nodes],
        "waiting": [names.of(p) for p in waiting],
    }
