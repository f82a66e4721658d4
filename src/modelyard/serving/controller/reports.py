"""What the controller reports: a deploy's outcome, a model's status and its replicas' logs.

``DeployOutcome`` is what ``deploy``, ``rollback`` and ``start`` return; ``model_status`` and
``replica_logs`` are the controller's two reads (``Controller.status`` and ``Controller.logs``),
which put together what the registry, the runtime and the gateway each know about a model.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from modelyard.errors import InvalidInput, NotFound
from modelyard.registry import Build, Deployment, DeploymentState, Model, Registry
from modelyard.runtime import ReplicaState, Runtime
from modelyard.serving.controller.fleet import Fleet
from modelyard.serving.controller.replica_specs import deployment_id
from modelyard.serving.gateway import Gateway

__all__ = ["DeployOutcome", "ModelStatus", "ReplicaView", "model_status", "replica_logs"]


@dataclass(frozen=True, slots=True)
class DeployOutcome:
    """What a deploy or rollback did. ``deployment`` is None when the build failed (nothing was
    deployed); ``access_key`` is the new model's key, given only when the deploy created the
    model. ``ok`` False: ``error`` says why and ``log_tail`` holds the build's or the failing
    replica's log; whatever served the model before still serves it."""

    model: Model
    build: Build
    deployment: Deployment | None
    access_key: str | None
    ok: bool
    log_tail: str
    error: str | None = None
    # Deploys only: the batch function the replicas serve (``batch_choice.py``), whether it
    # was auto-detected by name, and what the user should know (such as a bypassed predict).
    batch_function: str | None = None
    batch_function_auto: bool = False
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ReplicaView:
    """One running replica as the runtime and the gateway see it."""

    deployment_crn: str
    state: ReplicaState
    in_pool: bool
    in_flight: int
    served: int


@dataclass(frozen=True, slots=True)
class ModelStatus:
    """A model, what serves it, its builds (newest first) and its replicas."""

    model: Model
    active: Deployment | None
    deployments: list[Deployment]
    builds: list[Build]
    replicas: list[ReplicaView]
    in_flight: int
    queue_depth: int
    # What this server is doing before it can start the model's replicas (fetching the build's
    # snapshot, preparing its environment: ``prepare.py``), or None.
    preparing: str | None = None


def model_status(
    name: str, registry: Registry, runtime: Runtime, gateway: Gateway, fleet: Fleet
) -> ModelStatus:
    """The model, its active deployment, deployments and builds, and its running replicas
    with the runtime's view (status, restarts, RSS...) and the gateway's (in flight)."""
    model = registry.get_model(name)
    deployments = registry.list_deployments(model.crn)
    active = next((d for d in deployments if d.state is DeploymentState.ACTIVE), None)
    pool = gateway.pool(model.name)
    endpoints = {ep.replica_id: ep for ep in (pool.endpoints() if pool else [])}
    states = {s.replica_id: s for s in runtime.replicas()}
    views = []
    for replica in fleet.of_model(model.name):
        state = states.get(replica.replica_id)
        if state is None:
            continue
        ep = endpoints.get(replica.replica_id)
        views.append(
            ReplicaView(
                replica.deployment_crn,
                state,
                ep is not None,
                ep.in_flight if ep else 0,
                ep.served if ep else 0,
            )
        )
    return ModelStatus(
        model,
        active,
        deployments,
        registry.list_builds(model.crn),
        views,
        pool.in_flight if pool else 0,
        pool.queue_depth if pool else 0,
    )


def replica_logs(
    name: str,
    replica: str | None,
    tail: int,
    registry: Registry,
    runtime: Runtime,
    fleet: Fleet,
) -> dict[str, list[str]]:
    """The last ``tail`` lines of the logs of the model's running replicas, or of one replica
    (running or not) of any of its deployments; replica id -> lines."""
    if isinstance(tail, bool) or not isinstance(tail, int) or not 0 <= tail <= 100_000:
        raise InvalidInput(f"tail={tail!r} is not accepted; expected lines from 0 to 100000")
    model = registry.get_model(name)
    if replica is None:
        return {
            r.replica_id: list(runtime.read_replica_log(r.runtime_deployment, r.replica_id, tail))
            for r in fleet.of_model(model.name)
        }
    for deployment in registry.list_deployments(model.crn):
        with contextlib.suppress(NotFound):
            lines = runtime.read_replica_log(deployment_id(deployment.crn), replica, tail)
            return {replica: list(lines)}
    raise NotFound(
        f"replica {replica!r} has no log under model {name!r}; status({name!r}) lists its replicas",
        model=name,
        replica=replica,
    )
