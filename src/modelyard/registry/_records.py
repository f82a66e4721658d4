"""What the registry hands out: plain frozen dataclasses, never rows or hashes."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from modelyard.registry._settings import ModelSettings

__all__ = [
    "ApiKey",
    "Build",
    "Deployment",
    "DeploymentState",
    "Model",
    "ReplicaEvent",
    "Role",
]


class DeploymentState(StrEnum):
    """``deploying`` (replicas starting), ``active`` (serves the model: at most one per model),
    ``stopped`` (on purpose), ``replaced`` (a newer deployment became active), ``failed``."""

    DEPLOYING = "deploying"
    ACTIVE = "active"
    STOPPED = "stopped"
    REPLACED = "replaced"
    FAILED = "failed"


class Role(StrEnum):
    """``admin`` (everything), ``user`` (call models, read and track metrics, read model state),
    ``run`` (a job run's key: tracking and reading metrics only)."""

    ADMIN = "admin"
    USER = "user"
    RUN = "run"


@dataclass(frozen=True, slots=True)
class Model:
    """A named endpoint. ``access_key_prefix`` is the start of its access key, for display."""

    name: str
    crn: str
    settings: ModelSettings
    access_key_prefix: str
    created_ms: int
    updated_ms: int


@dataclass(frozen=True, slots=True)
class Build:
    """One build event: a snapshot (``digest``) plus an environment (``env_key``) and a verdict.

    ``requirements`` is the requirements file's path relative to the project (None: none);
    ``example`` the example input the smoke test sent (any JSON value, None if none).
    """

    crn: str
    model_crn: str
    digest: str
    file: str
    function: str
    batch_function: str | None
    python: str
    env_key: str
    ok: bool
    error: str | None
    log_path: str | None
    example: Any
    requirements: str | None
    created_ms: int


@dataclass(frozen=True, slots=True)
class Deployment:
    """A build running with ``replicas`` replicas, each limited to ``memory_bytes`` and ``cpus``
    (None: no limit), with ``env`` added to each replica's environment."""

    crn: str
    model_crn: str
    build_crn: str
    replicas: int
    env: dict[str, str] = field(hash=False)
    memory_bytes: int | None
    cpus: float | None
    state: DeploymentState
    created_ms: int
    updated_ms: int


@dataclass(frozen=True, slots=True)
class ApiKey:
    """Who calls. ``prefix`` is the start of the token, for display; the hash never leaves the
    registry. ``expires_ms`` None means it never expires (admin keys only); ``revoked_ms`` None
    means not revoked. ``scope`` is what the key is limited to (e.g. a model CRN for a job run's
    key), stored here and enforced by the server."""

    id: str
    name: str
    role: Role
    prefix: str
    scope: str | None
    created_ms: int
    expires_ms: int | None
    revoked_ms: int | None

    def active_at(self, now_ms: int) -> bool:
        """True if the key is neither revoked nor expired at ``now_ms``."""
        return self.revoked_ms is None and (self.expires_ms is None or now_ms < self.expires_ms)


@dataclass(frozen=True, slots=True)
class ReplicaEvent:
    """Something that happened to one replica of a deployment (started, restarted, killed...)."""

    id: int
    deployment_crn: str
    replica_id: str
    kind: str
    details: dict[str, Any] = field(hash=False)
    at_ms: int
