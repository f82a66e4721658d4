"""The registry: models, builds, deployments, API keys, replica events, jobs and runs, and the
state monitors keep (window results, label marks, alerts, reference samples).

Metadata only (it never runs processes), kept in the metrics store's database under the same
schema version series, through the store's SQL seam (``modelyard.store.sqlaccess``). See
``docs/registry.md`` for what is stored, key formats and lifetimes, and the lookup caches.
"""

from __future__ import annotations

from modelyard.registry._apikeys import RUN_SCOPE_PREFIX, YEAR_MS
from modelyard.registry._audit import AuditLog
from modelyard.registry._connections import Connections
from modelyard.registry._experiments import (
    MAX_EXPERIMENT_METRIC_KEYS,
    MAX_EXPERIMENT_METRIC_VALUES,
    MAX_RUN_FILE_BYTES,
    MAX_RUN_FILES,
    MAX_RUN_FILES_TOTAL_BYTES,
    Experiment,
    Experiments,
    RunFile,
    check_run_file_path,
)
from modelyard.registry._jobs import Job
from modelyard.registry._keys import ACCESS_KEY_PREFIX, API_KEY_PREFIX
from modelyard.registry._labels import KEEP_WATERMARK, ImportRecord, LabelImports
from modelyard.registry._monitors import MonitorRecords, StoredResult
from modelyard.registry._people import People
from modelyard.registry._projects import PROJECT_CRN_PREFIX
from modelyard.registry._records import (
    ApiKey,
    AuditEntry,
    Build,
    Collaborator,
    Deployment,
    DeploymentState,
    Model,
    Project,
    ProjectRole,
    ReplicaEvent,
    Role,
    Team,
    User,
)
from modelyard.registry._registry import Registry
from modelyard.registry._run_metrics import RunMetric
from modelyard.registry._runs import Run, RunState, SlotClaim, Trigger
from modelyard.registry._secretbox import SecretBox, SecretKeyError
from modelyard.registry._secrets import SecretInfo, Secrets, read_secrets
from modelyard.registry._settings import SETTINGS_BOUNDS, ModelSettings
from modelyard.registry._snapshots import SnapshotArchive, SnapshotArchives
from modelyard.registry._uploads import Upload, Uploads
from modelyard.registry._users import PERSON_NAME_RULE
from modelyard.specs.checks import MODEL_NAME_RULE
from modelyard.specs.job import Overlap
from modelyard.specs.schedule import CatchUp, JobSchedule
from modelyard.ttlcache import DEFAULT_TTL_S

__all__ = [
    "ACCESS_KEY_PREFIX",
    "API_KEY_PREFIX",
    "DEFAULT_TTL_S",
    "KEEP_WATERMARK",
    "MAX_EXPERIMENT_METRIC_KEYS",
    "MAX_EXPERIMENT_METRIC_VALUES",
    "MAX_RUN_FILES",
    "MAX_RUN_FILES_TOTAL_BYTES",
    "MAX_RUN_FILE_BYTES",
    "MODEL_NAME_RULE",
    "PERSON_NAME_RULE",
    "PROJECT_CRN_PREFIX",
    "RUN_SCOPE_PREFIX",
    "SETTINGS_BOUNDS",
    "YEAR_MS",
    "ApiKey",
    "AuditEntry",
    "AuditLog",
    "Build",
    "CatchUp",
    "Collaborator",
    "Connections",
    "Deployment",
    "DeploymentState",
    "Experiment",
    "Experiments",
    "ImportRecord",
    "Job",
    "JobSchedule",
    "LabelImports",
    "Model",
    "ModelSettings",
    "MonitorRecords",
    "Overlap",
    "People",
    "Project",
    "ProjectRole",
    "Registry",
    "ReplicaEvent",
    "Role",
    "Run",
    "RunFile",
    "RunMetric",
    "RunState",
    "SecretBox",
    "SecretInfo",
    "SecretKeyError",
    "Secrets",
    "SlotClaim",
    "SnapshotArchive",
    "SnapshotArchives",
    "StoredResult",
    "Team",
    "Trigger",
    "Upload",
    "Uploads",
    "User",
    "check_run_file_path",
    "read_secrets",
]
