"""Builds: a project folder made into something that can run, used by serving (model builds),
jobs (each run's project and environment) and, later, experiments.

- ``snapshot.py``: the project's files, copied once into a content-addressed folder;
- ``environments.py``: a Python environment per requirements text, built once and reused;
- ``smoke.py``: the smoke test, run as a script in the build's environment (and the one way a
  snapshot's function is loaded, replicas included);
- ``builder.py``: the build process: snapshot, environment, smoke test, build log;
- ``_steps.py``: one build step as a child process with a deadline, output to the build log.

A build turns a project folder into something a replica can run::

    from modelyard.builds import build

    result = build("churn-project", "predict.py", "predict", example={"tenure": 3})
    if not result.ok:
        print(result.log_tail)

See ``docs/builds.md``. Builds import nothing from serving, jobs or the server.
"""

from __future__ import annotations

from modelyard.builds.builder import (
    BuildResult,
    build,
    build_log_path,
    read_build_log,
    validate_function,
    validate_project_path,
)
from modelyard.builds.environments import Environment, EnvironmentFailed, ensure_environment
from modelyard.builds.snapshot import Snapshot, snapshot_project

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
