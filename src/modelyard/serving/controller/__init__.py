"""The controller: deploy, roll out, roll back, scale, stop/start/delete and restore models.

- ``controller.py``: ``Controller``, the operations, one model at a time (a lock per model);
- ``carried.py``: operations carried through even when their caller goes away;
- ``starter.py``: starting a deployment's replicas, healthy, into a pool;
- ``replica_specs.py``: from registry records to the runtime's ``ReplicaSpec`` (the replica's argv);
- ``batch_choice.py``: which batch function the replicas will serve, told at deploy time;
- ``rollout.py``: pools and the rolling replacement that never fails a request;
- ``fleet.py``: the replicas one controller runs and what the runtime reports about them;
- ``reports.py``: what the controller reports: a deploy's outcome, a model's status, logs.

See ``docs/deployments.md``.
"""

from __future__ import annotations

from modelyard.serving.controller.controller import DEFAULT_HEALTH_TIMEOUT_S, Controller
from modelyard.serving.controller.fleet import EventRelay, ReplicaStartFailed
from modelyard.serving.controller.reports import DeployOutcome, ModelStatus, ReplicaView

__all__ = [
    "DEFAULT_HEALTH_TIMEOUT_S",
    "Controller",
    "DeployOutcome",
    "EventRelay",
    "ModelStatus",
    "ReplicaStartFailed",
    "ReplicaView",
]
