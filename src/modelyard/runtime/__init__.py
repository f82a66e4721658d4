"""Where code runs: supervised replica processes and job-run processes.

The interface (``Runtime``, ``RunHandle`` and the dataclasses in ``base``) is what the server,
gateway and scheduler program against; ``LocalRuntime`` implements it with process groups on this
machine, and a Ray backend can implement the same later. See ``docs/runtime.md``.
"""

from modelyard.runtime.base import (
    ClusterAware,
    Event,
    EventSink,
    GpuInfo,
    NodeInfo,
    Placement,
    ReplicaSpec,
    ReplicaState,
    ReplicaStatus,
    RunHandle,
    RunSpec,
    RunStatus,
    Runtime,
)
from modelyard.runtime.health import check_health
from modelyard.runtime.local import LocalRuntime
from modelyard.runtime.logs import check_name, replica_log_path, run_log_path
from modelyard.runtime.ports import free_port
from modelyard.runtime.runs import LocalRun
from modelyard.runtime.supervised import SupervisorConfig

__all__ = [
    "ClusterAware",
    "Event",
    "EventSink",
    "GpuInfo",
    "LocalRun",
    "LocalRuntime",
    "NodeInfo",
    "Placement",
    "ReplicaSpec",
    "ReplicaState",
    "ReplicaStatus",
    "RunHandle",
    "RunSpec",
    "RunStatus",
    "Runtime",
    "SupervisorConfig",
    "check_health",
    "check_name",
    "free_port",
    "replica_log_path",
    "run_log_path",
]
