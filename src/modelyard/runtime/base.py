"""The runtime interface: what every backend (local processes now, Ray later) provides.

The interface is deliberately narrow: start, scale and stop replicas; launch, cancel and watch
runs; fetch logs. A runtime carries out orders and reports what happened through events; it
never decides what should run (that is the server's and the scheduler's business).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "ClusterAware",
    "Event",
    "EventSink",
    "GpuInfo",
    "NodeInfo",
    "Placement",
    "ReplicaSpec",
    "ReplicaState",
    "ReplicaStatus",
    "RunHandle",
    "RunRecord",
    "RunSpec",
    "RunStatus",
    "Runtime",
]


class ReplicaStatus(StrEnum):
    """Where a replica is in its life.

    ``crashed`` means the process exited on its own and waits for its (backed-off) restart;
    ``restarting`` means the supervisor killed it (recycle, memory limit) and will start it again.
    """

    STARTING = "starting"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    RESTARTING = "restarting"
    CRASHED = "crashed"
    STOPPED = "stopped"


class RunStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self is not RunStatus.RUNNING


@dataclass(frozen=True, slots=True)
class ReplicaSpec:
    """One replica to run: a command, its environment and its limits.

    ``deployment_id`` and ``replica_id`` name folders and files, so they must match
    ``[A-Za-z0-9][A-Za-z0-9_.-]*`` (pass the uuid part of a deployment CRN, not the CRN).
    ``replica_id`` is unique within a runtime. ``env`` is added on top of the runtime's own
    environment when ``inherit_env`` is true, else it is the whole environment (plus the
    ``MODELYARD_*`` variables the runtime adds). ``socket`` is the Unix socket path the replica
    listens on (health checks go there, else to ``port``). ``health_path`` needs ``port`` or
    ``socket``; without a health
    path a replica counts as healthy as soon as it runs. ``cpus`` is enforced locally (a cgroup v2
    ``cpu.max`` where writable, else CPU affinity, see ``runtime.resources``); on Ray it is the
    actor's request. ``gpus`` is how many whole GPUs the replica gets exclusively (local:
    ``CUDA_VISIBLE_DEVICES``); ``accelerator`` optionally names the GPU type (e.g. ``A100``).
    ``startup_timeout_s`` bounds how long a replica may take to answer its first health
    check before it is recycled.
    """

    deployment_id: str
    replica_id: str
    argv: Sequence[str]
    cwd: str | Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    port: int | None = None
    health_path: str | None = None
    memory_limit_bytes: int | None = None
    cpus: float | None = None
    inherit_env: bool = True
    startup_timeout_s: float = 120.0
    socket: str | None = None
    gpus: int = 0
    accelerator: str | None = None


@dataclass(frozen=True, slots=True)
class ReplicaState:
    """A snapshot of one replica as the supervisor last saw it. Times are epoch milliseconds."""

    deployment_id: str
    replica_id: str
    status: ReplicaStatus
    pid: int | None
    restarts: int
    last_exit_code: int | None
    started_at_ms: int | None
    rss_bytes: int | None
    cpu_percent: float | None
    port: int | None
    memory_limit_bytes: int | None
    cpus: float | None
    log_path: Path
    gpu_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RunSpec:
    """One job run: a command, its environment, a timeout (None: no timeout) and its resources.

    ``run_id`` names the log file, so it must match ``[A-Za-z0-9][A-Za-z0-9_.-]*``.
    ``cpus``, ``memory_bytes``, ``gpus`` and ``accelerator`` mean what they mean on
    ``ReplicaSpec`` (None / 0: no limit, no GPU).
    """

    run_id: str
    argv: Sequence[str]
    cwd: str | Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    timeout_s: float | None = None
    inherit_env: bool = True
    cpus: float | None = None
    memory_bytes: int | None = None
    gpus: int = 0
    accelerator: str | None = None


@dataclass(frozen=True, slots=True)
class GpuInfo:
    """One GPU of a node. ``id`` is what ``CUDA_VISIBLE_DEVICES`` takes (the index as text, or
    the device's UUID); ``held_by`` names the replica or run that holds it (None: free)."""

    id: str
    name: str
    memory_bytes: int | None = None
    held_by: str | None = None


@dataclass(frozen=True, slots=True)
class Placement:
    """One replica or run and the resources it asked for, placed on a node or waiting.

    ``kind`` is ``replica`` or ``run``; ``name`` is the replica id or run id; ``node_id`` is None
    while it waits for resources, and ``reason`` then says what it waits for.
    """

    kind: str
    name: str
    deployment_id: str | None = None
    node_id: str | None = None
    cpus: float | None = None
    memory_bytes: int | None = None
    gpus: int = 0
    gpu_ids: tuple[str, ...] = ()
    accelerator: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """One machine of the runtime (the local runtime has exactly one).

    ``cpu_limit`` says how CPU limits are enforced there: ``cgroup`` (cgroup v2 ``cpu.max``),
    ``affinity`` (pinned to whole CPUs), ``ray`` (Ray's scheduler) or ``none``.
    ``placed`` lists what runs on it.
    """

    node_id: str
    address: str
    alive: bool
    cpus: float
    memory_bytes: int | None
    gpus: tuple[GpuInfo, ...] = ()
    cpu_limit: str = "none"
    placed: tuple[Placement, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened to a replica or a run, for the server to record.

    Kinds: ``started``, ``restarted``, ``healthy``, ``unhealthy``, ``exited``, ``recycled``,
    ``memory_limit_exceeded``, ``spawn_failed``, ``stopped`` (replicas); ``run_started``,
    ``run_finished`` (runs). ``details`` holds the figures (exit code, rss and limit, reason).
    """

    kind: str
    at_ms: int
    deployment_id: str | None = None
    replica_id: str | None = None
    run_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


EventSink = Callable[[Event], None]


@runtime_checkable
class RunHandle(Protocol):
    """A launched run. Times are epoch milliseconds; ``ended_ms`` is None while it runs."""

    @property
    def run_id(self) -> str: ...

    @property
    def status(self) -> RunStatus: ...

    @property
    def exit_code(self) -> int | None: ...

    @property
    def started_ms(self) -> int: ...

    @property
    def ended_ms(self) -> int | None: ...

    @property
    def duration_ms(self) -> int | None: ...

    @property
    def log_path(self) -> Path: ...

    def wait(self, timeout_s: float | None = None) -> RunStatus:
        """Block until the run finishes (or ``timeout_s`` passes); return its status."""
        ...

    def cancel(self, grace_s: float | None = None) -> RunStatus:
        """Stop the run's whole process group (SIGTERM, SIGKILL after ``grace_s``); return its
        final status."""
        ...


class Runtime(Protocol):
    """What the server, gateway and scheduler call. A Ray backend implements the same."""

    def start_replicas(self, specs: Sequence[ReplicaSpec]) -> list[ReplicaState]: ...

    def scale(self, deployment_id: str, specs: Sequence[ReplicaSpec]) -> list[ReplicaState]: ...

    def stop_replica(self, replica_id: str, grace_s: float | None = None) -> ReplicaState: ...

    def recycle(self, replica_id: str, reason: str) -> None: ...

    def replicas(self, deployment_id: str | None = None) -> list[ReplicaState]: ...

    def launch_run(self, spec: RunSpec) -> RunHandle: ...

    def get_run(self, run_id: str) -> RunHandle: ...

    def read_replica_log(
        self,
        deployment_id: str,
        replica_id: str,
        tail_lines: int | None = None,
        follow: bool = False,
        stop: Callable[[], bool] | None = None,
    ) -> Iterator[str]: ...

    def read_run_log(
        self, run_id: str, tail_lines: int | None = None, follow: bool = False
    ) -> Iterator[str]: ...

    def stop_all(self) -> None: ...


class ClusterAware(Protocol):
    """Optional on a runtime: what ``modelyard cluster`` and ``GET /api/v1/cluster`` show.

    ``nodes()`` lists the nodes with what is placed on each; ``waiting()`` lists what waits for
    resources (``Placement.node_id`` None). A runtime without these shows no nodes.
    """

    def nodes(self) -> list[NodeInfo]: ...

    def waiting(self) -> list[Placement]: ...


class RunRecord:
    """The read half of ``RunHandle`` that every runtime's handle shares: what its watching
    thread records (status, exit code, times, log) and ``wait`` on it. A subclass sets the
    attributes below in its constructor and sets ``_done`` once the run has ended."""

    _spec: RunSpec
    _status: RunStatus
    _exit_code: int | None
    _started_ms: int
    _ended_ms: int | None
    _log_path: Path
    _done: threading.Event

    @property
    def run_id(self) -> str:
        return self._spec.run_id

    @property
    def spec(self) -> RunSpec:
        return self._spec

    @property
    def status(self) -> RunStatus:
        return self._status

    @property
    def exit_code(self) -> int | None:
        return self._exit_code

    @property
    def started_ms(self) -> int:
        return self._started_ms

    @property
    def ended_ms(self) -> int | None:
        return self._ended_ms

    @property
    def duration_ms(self) -> int | None:
        return None if self._ended_ms is None else self._ended_ms - self._started_ms

    @property
    def log_path(self) -> Path:
        return self._log_path

    def wait(self, timeout_s: float | None = None) -> RunStatus:
        """Block until the run finishes (or ``timeout_s`` passes); return its status."""
        self._done.wait(timeout_s)
        return self._status
