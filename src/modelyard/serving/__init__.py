"""Serving: builds (snapshot + environment + smoke test), the gateway in front of replica
processes, and the controller that deploys, rolls out, scales and restores models.

A build turns a project folder into something a replica can run::

    from modelyard.serving import build

    result = build("churn-project", "predict.py", "predict", example={"tenure": 3})
    if not result.ok:
        print(result.log_tail)

See ``docs/builds.md`` (builds), ``docs/gateway.md`` (routing, records, metrics) and
``docs/deployments.md`` (the controller: deploy, rollback, scale, stop/start, restore).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from modelyard.serving.builder import (
    BuildResult,
    build,
    build_log_path,
    read_build_log,
    validate_function,
    validate_project_path,
)
from modelyard.serving.environments import Environment, EnvironmentFailed, ensure_environment
from modelyard.serving.snapshot import Snapshot, snapshot_project

__all__ = [
    "BuildResult",
    "Controller",
    "DeployOutcome",
    "DeploymentPool",
    "Environment",
    "EnvironmentFailed",
    "EventRelay",
    "Gateway",
    "GatewayResult",
    "ModelStatus",
    "PoolSettings",
    "ReplicaEndpoint",
    "ReplicaStartFailed",
    "ReplicaView",
    "Snapshot",
    "build",
    "build_log_path",
    "ensure_environment",
    "read_build_log",
    "snapshot_project",
    "validate_function",
    "validate_project_path",
]

# The gateway and the controller load on first use: every replica process imports this package
# (``-m modelyard.serving.replica``), and importing them eagerly (registry, runtime, Prometheus)
# would add about a quarter of a second to each replica start.
_LAZY = {
    "Controller": "controller",
    "DeployOutcome": "controller",
    "EventRelay": "controller",
    "ModelStatus": "controller",
    "ReplicaStartFailed": "controller",
    "ReplicaView": "controller",
    "DeploymentPool": "gateway",
    "Gateway": "gateway",
    "GatewayResult": "gateway",
    "PoolSettings": "gateway",
    "ReplicaEndpoint": "gateway",
}

if TYPE_CHECKING:
    from modelyard.serving.controller import (
        Controller,
        DeployOutcome,
        EventRelay,
        ModelStatus,
        ReplicaStartFailed,
        ReplicaView,
    )
    from modelyard.serving.gateway import (
        DeploymentPool,
        Gateway,
        GatewayResult,
        PoolSettings,
        ReplicaEndpoint,
    )


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'modelyard.serving' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"modelyard.serving.{module}"), name)
    globals()[name] = value
    return value
