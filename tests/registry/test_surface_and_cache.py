"""The registry's public names and its key tokens (the cache: tests/test_ttlcache.py)."""

from __future__ import annotations

import hashlib

import modelyard.registry
from modelyard.registry._keys import display_prefix, hash_token, new_token, same_hash

EXPECTED = [
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


def test_all_is_the_public_surface() -> None:
    assert modelyard.registry.__all__ == EXPECTED
    for name in EXPECTED:
        assert getattr(modelyard.registry, name) is not None
    assert modelyard.registry.DEFAULT_TTL_S == 2.0
    assert modelyard.registry.YEAR_MS == 365 * 86_400_000


def test_tokens_are_random_prefixed_and_hashed_with_sha256() -> None:
    tokens = {new_token("mya_") for _ in range(100)}
    assert len(tokens) == 100
    token = next(iter(tokens))
    assert token.startswith("mya_") and len(token) == 47
    assert hash_token(token) == hashlib.sha256(token.encode()).hexdigest()
    assert display_prefix(token) == token[:12]
    assert same_hash(hash_token(token), hash_token(token))
    assert not same_hash(hash_token(token), hash_token(token + "x"))
