"""``RayRuntime``: the ``runtime.base.Runtime`` interface on a Ray cluster.

It composes two halves over one ``RayConnection`` (this process as a Ray driver): replicas as Ray
Serve applications (``serve.RayReplicas``) and runs as Ray Jobs (``jobs.RayRuns``). Logs of runs
land in ``<home>/logs/runs`` as on the local runtime, so the server reads them the same way.
"""

from __future__ import annotations

import hashlib
import logging
import socket
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from modelyard.runtime.base import (
    EventSink,
    NodeInfo,
    Placement,
    ReplicaSpec,
    ReplicaState,
    RunSpec,
)
from modelyard.runtime.ray._cluster import RayConnection
from modelyard.runtime.ray._head import HeadWatch
from modelyard.runtime.ray._nodes import ray_nodes, ray_placements
from modelyard.runtime.ray.jobs import RayRun, RayRuns
from modelyard.runtime.ray.serve import RayReplicas, replica_url

__all__ = ["RayRuntime"]

log = logging.getLogger(__name__)


class RayRuntime:
    """Replicas and runs on the Ray cluster ``connection`` reaches (opened here if it is not)."""

    name = "ray"

    def __init__(
        self,
        home: str | Path,
        connection: RayConnection,
        on_event: EventSink | None = None,
        deploy_timeout_s: float = 120.0,
    ) -> None:
        self.home = Path(home)
        self.connection = connection.open()
        self._on_event = on_event
        self.runs_half = RayRuns(self.home, connection, on_event)
        # This server's applications carry a short hash of its host and home (``owner``).
        where = f"{socket.gethostname()}:{self.home.resolve()}"
        owner = hashlib.sha256(where.encode()).hexdigest()[:8]
        self.replicas_half = RayReplicas(on_event, deploy_timeout_s=deploy_timeout_s, owner=owner)
        self.replicas_half.state_address = connection.dashboard_url  # logs via the state API
        self.replicas_half.state_headers = connection.headers
        # Whether the head answers (``_head.py``): predictions and calls to the cluster fail
        # fast with 503 while it does not, and go through again when it does.
        self.head = HeadWatch(connection).start()
        self.replicas_half.head_check = self.head.check
        self._closed = False

    def __repr__(self) -> str:
        return f"RayRuntime({str(self.home)!r}, {self.connection!r})"

    def __enter__(self) -> RayRuntime:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()

    def check_reachable(self) -> None:
        """Raise ``RayUnavailable`` (503, naming the runtime and address) if the head is away."""
        self.head.check()
        self.connection.check_reachable()

    # -- replicas (Ray Serve) ------------------------------------------------------------------

    def start_replicas(self, specs: Sequence[ReplicaSpec]) -> list[ReplicaState]:
        return self.replicas_half.start_replicas(specs)

    def scale(self, deployment_id: str, specs: Sequence[ReplicaSpec]) -> list[ReplicaState]:
        return self.replicas_half.scale(deployment_id, specs)

    def stop_replica(self, replica_id: str, grace_s: float | None = None) -> ReplicaState:
        return self.replicas_half.stop_replica(replica_id, grace_s)

    def recycle(self, replica_id: str, reason: str) -> None:
        self.replicas_half.recycle(replica_id, reason)

    def replica_url(self, replica_id: str) -> str:
        """Where the gateway reaches a replica: ``ray://<app>/<deployment>`` (``Fleet.start``)."""
        return replica_url(replica_id, self.replicas_half.owner)

    def replicas(self, deployment_id: str | None = None) -> list[ReplicaState]:
        return self.replicas_half.replicas(deployment_id)

    def read_replica_log(
        self,
        deployment_id: str,
        replica_id: str,
        tail_lines: int | None = None,
        follow: bool = False,
        stop: Callable[[], bool] | None = None,
    ) -> Iterator[str]:
        return self.replicas_half.read_replica_log(
            deployment_id, replica_id, tail_lines, follow, stop
        )

    # -- the cluster view (runtime.base.ClusterAware) ----------------------------------------------

    def nodes(self) -> list[NodeInfo]:
        """Ray's nodes with their CPUs, memory and GPUs and the replicas and runs on each."""
        self.head.check()
        return ray_nodes(self._placements())

    def waiting(self) -> list[Placement]:
        """Replicas and runs not placed yet, each with what it waits for."""
        self.head.check()
        return [p for p in self._placements() if p.node_id is None]

    def _placements(self) -> list[Placement]:
        runs = [(run.spec, run.status.finished) for run in self.runs_half.runs()]
        return ray_placements(self.replicas_half, self.connection, runs)

    # -- runs (Ray Jobs) -----------------------------------------------------------------------

    def launch_run(self, spec: RunSpec) -> RayRun:
        return self.runs_half.launch_run(spec)

    def get_run(self, run_id: str) -> RayRun:
        return self.runs_half.get_run(run_id)

    def runs(self) -> list[RayRun]:
        return self.runs_half.runs()

    def read_run_log(
        self, run_id: str, tail_lines: int | None = None, follow: bool = False
    ) -> Iterator[str]:
        return self.runs_half.read_run_log(run_id, tail_lines, follow)

    # -- shutdown ------------------------------------------------------------------------------

    def stop_all(self, grace_s: float | None = None) -> None:
        """Cancel every run, stop every replica, and disconnect from the cluster."""
        if self._closed:
            return
        self._closed = True
        errors: list[Any] = []
        for step in (self.runs_half.stop_all, self.replicas_half.stop_all):
            try:
                step()
            except Exception as exc:  # the head may be away: disconnect anyway
                errors.append(exc)
                log.warning("stopping the Ray runtime: %s", exc)
        self.head.stop()
        self.connection.close()
