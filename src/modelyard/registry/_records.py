"""What the registry hands out: plain frozen dataclasses, never rows or hashes."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from modelyard.registry._settings import ModelSettings

__all__ = [
    "ApiKey",
    "AuditEntry",
    "Build",
    "Collaborator",
    "Deployment",
    "DeploymentState",
    "Model",
    "Project",
    "ProjectRole",
    "ReplicaEvent",
    "Role",
    "Team",
    "User",
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
    """What kind of key: ``admin`` (the key acts with all its user's rights, a server
    administrator's included), ``user`` (the key acts with its user's project roles only, never
    as a server administrator, even for an administrator's key), ``run`` (a deployment's or a job
    run's own key, minted by the server: tracking and reading its own model's metrics only)."""

    ADMIN = "admin"
    USER = "user"
    RUN = "run"


class ProjectRole(StrEnum):
    """A collaborator's role in a project, each granting what the one before does and more:
    ``viewer`` reads everything in the project and calls nothing; ``operator`` also calls models,
    runs and cancels jobs, acknowledges alerts and writes metrics; ``contributor`` also deploys,
    rolls back, scales, and creates jobs, monitors and secrets; ``admin`` also manages
    collaborators and deletes the project."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    CONTRIBUTOR = "contributor"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        """0 for viewer up to 3 for admin: ``a.rank >= b.rank`` when ``a`` grants all ``b`` does.

        >>> ProjectRole.OPERATOR.rank > ProjectRole.VIEWER.rank
        True
        """
        return _RANKS[self]


_RANKS = {role: rank for rank, role in enumerate(ProjectRole)}


@dataclass(frozen=True, slots=True)
class User:
    """A person. ``is_admin``: a server administrator (everything, everywhere); ``disabled_ms``
    set: signed out everywhere and every key refused. The password hash never leaves the
    registry; ``has_password`` says whether dashboard sign-in with a password is possible."""

    id: str
    name: str
    email: str | None
    is_admin: bool
    disabled_ms: int | None
    has_password: bool
    created_ms: int
    updated_ms: int


@dataclass(frozen=True, slots=True)
class Team:
    """A named group of users (``members``: user names, sorted)."""

    id: str
    name: str
    members: tuple[str, ...]
    created_ms: int


@dataclass(frozen=True, slots=True)
class Project:
    """Owns models, jobs, monitors, alerts and secrets. ``owner`` is the owning user's name
    (unique together with ``name``); ``crn`` is ``crn:modelyard:project/<uuid>``."""

    crn: str
    name: str
    owner: str
    description: str
    created_ms: int

    @property
    def full_name(self) -> str:
        """``owner/name``, unique on the server."""
        return f"{self.owner}/{self.name}"


@dataclass(frozen=True, slots=True)
class Collaborator:
    """A user or a team (``kind``) with a role in a project."""

    project_crn: str
    kind: str  # "user" or "team"
    name: str
    role: ProjectRole
    added_ms: int


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One recorded state change or sign-in: who (``actor``, a user name or ``key:<id>``), what
    (``action``), which ``object``, in which project, from which ``address``, the ``outcome``
    (``ok``, ``denied``, ``failed``) and the HTTP ``status``. Never a secret or a key."""

    seq: int
    at_ms: int
    actor: str
    key_id: str | None
    action: str
    object: str | None
    project_crn: str | None
    address: str | None
    outcome: str
    status: int | None
    details: dict[str, Any] = field(hash=False)


@dataclass(frozen=True, slots=True)
class Model:
    """A named endpoint. ``access_key_prefix`` is the start of its access key, for display."""

    name: str
    crn: str
    settings: ModelSettings
    access_key_prefix: str
    created_ms: int
    updated_ms: int
    project_crn: str | None = None  # None only before the server's first start on version 9


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
    # Where an imported build came from (an experiment run, an MLflow/ONNX/scikit-learn file);
    # None for a build of a project's own predict function. See docs/importing.md.
    source: dict[str, Any] | None = field(default=None, hash=False)


@dataclass(frozen=True, slots=True)
class Deployment:
    """A build running with ``replicas`` replicas, each limited to ``memory_bytes`` and ``cpus``
    (None: no limit), with ``env`` and the project ``secrets`` it names added to each replica's
    environment."""

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
    # Names of project secrets its replicas get as environment variables (values never here).
    secrets: tuple[str, ...] = ()


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
    user_id: str | None = None  # whose rights the key carries (None: a run key)
    project_crn: str | None = None  # narrowed to this project (None: every project of the user)
    project_role: ProjectRole | None = None  # narrowed to at most this role in its projects

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
