"""The registry: models, builds, deployments, API keys, replica events, jobs and runs.

Metadata only (it never runs processes), kept in the metrics store's database under the same
schema version series, through the store's SQL seam (``modelyard.store.sqlaccess``). See
``docs/registry.md`` for what is stored, key formats and lifetimes, and the lookup caches.
"""

from __future__ import annotations

from modelyard.jobs.schedule import CatchUp, JobSchedule
from modelyard.registry._apikeys import RUN_SCOPE_PREFIX, YEAR_MS
from modelyard.registry._cache import DEFAULT_TTL_S
from modelyard.registry._checks import MODEL_NAME_RULE
from modelyard.registry._jobs import Job, Overlap
from modelyard.registry._keys import ACCESS_KEY_PREFIX, API_KEY_PREFIX
from modelyard.registry._records import (
    ApiKey,
    Build,
    Deployment,
    DeploymentState,
    Model,
    ReplicaEvent,
    Role,
)
from modelyard.registry._registry import Registry
from modelyard.registry._runs import Run, RunMetric, RunState, SlotClaim, Trigger
from modelyard.registry._settings import SETTINGS_BOUNDS, ModelSettings

__all__ = [
    "ACCESS_KEY_PREFIX",
    "API_KEY_PREFIX",
    "DEFAULT_TTL_S",
    "MODEL_NAME_RULE",
    "RUN_SCOPE_PREFIX",
    "SETTINGS_BOUNDS",
    "YEAR_MS",
    "ApiKey",
    "Build",
    "CatchUp",
    "Deployment",
    "DeploymentState",
    "Job",
    "JobSchedule",
    "Model",
    "ModelSettings",
    "Overlap",
    "Registry",
    "ReplicaEvent",
    "Role",
    "Run",
    "RunMetric",
    "RunState",
    "SlotClaim",
    "Trigger",
]
