"""Serving: builds now (snapshot + environment + smoke test); the replica app and gateway later.

A build turns a project folder into something a replica can run::

    from modelyard.serving import build

    result = build("churn-project", "predict.py", "predict", example={"tenure": 3})
    if not result.ok:
        print(result.log_tail)

See ``docs/builds.md`` for the rules a snapshot follows and where builds live on disk.
"""

from __future__ import annotations

from modelyard.serving.builder import (
    BuildResult,
    build,
    build_log_path,
    read_build_log,
    validate_function,
    validate_project_path,
)
from modelyard.serving.environments import Environment, EnvironmentFailed, ensure_environment
from modelyard.serving.snapshot import Snapshot, snapshot_project

__all__ = [
    "BuildResult",
    "Environment",
    "EnvironmentFailed",
    "Snapshot",
    "build",
    "build_log_path",
    "ensure_environment",
    "read_build_log",
    "snapshot_project",
    "validate_function",
    "validate_project_path",
]
