"""The registry: models, builds, deployments, API keys, replica events, jobs and runs, and the
state monitors keep (window results, label marks, alerts, reference samples).

Metadata only (it never runs processes), kept in the metrics store's database under the same
schema version series, through the store's SQL seam (``modelyard.store.sqlaccess``). See
``docs/registry.md`` for what is stored, key formats and lifetimes, and the lookup caches.
"""

from __future__ import annotations

from modelyard.registry._apikeys import RUN_SCOPE_PREFIX, YEAR_MS
from modelyard.registry._jobs import Job
from modelyard.registry._keys import ACCESS_KEY_PREFIX, API_KEY_PREFIX
from modelyard.registry._monitors import MonitorRecords, StoredResult
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
from modelyard.registry._run_metrics import RunMetric
from modelyard.registry._runs import Run, RunState, SlotClaim, Trigger
from modelyard.registry._settings import SETTINGS_BOUNDS, ModelSettings
from modelyard.registry._snapshots import SnapshotArchive, SnapshotArchives
from modelyard.specs.checks import MODEL_NAME_RULE
from modelyard.specs.job import Overlap
from modelyard.specs.schedule import CatchUp, JobSchedule
from modelyard.ttlcache import DEFAULT_TTL_S

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
    "MonitorRecords",
    "Overlap",
    "Registry",
    "ReplicaEvent",
    "Role",
    "Run",
    "RunMetric",
    "RunState",
    "SlotClaim",
    "SnapshotArchive",
    "SnapshotArchives",
    "StoredResult",
    "Trigger",
]
