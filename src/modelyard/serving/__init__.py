"""Serving: the predict path and the deployments behind it, in three parts.

- ``gateway/``: model name -> deployment pool -> replica, the records written, Prometheus and
  per-interval technical metrics (runs in the server's process, on its event loop);
- ``replica/``: the process that serves one build (``python -m modelyard.serving.replica``);
- ``controller/``: deploy, roll out, roll back, scale, stop/start and restore: it starts the
  replicas (through the runtime) and hands them to the gateway.

Builds (snapshot, environment, smoke test) are their own part, ``modelyard.builds``. See
``docs/gateway.md`` (routing, records, metrics), ``docs/replica.md`` (the replica process) and
``docs/deployments.md`` (the controller).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "Controller",
    "DeployOutcome",
    "DeploymentPool",
    "EventRelay",
    "Gateway",
    "GatewayResult",
    "ModelStatus",
    "PoolSettings",
    "ReplicaEndpoint",
    "ReplicaStartFailed",
    "ReplicaView",
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
