"""Specs: what a user asks for, checked once (pydantic models), accepted alike by the CLI, the
REST API and the registry, with one set of error messages that name the field.

- ``JobSpec`` (``specs.job``): a job's script or monitor spec, schedule, bounds, notifications;
- ``JobSchedule`` and schedule arithmetic (``specs.schedule``): cron, intervals, catch-up, cycles;
- ``MonitorSpec`` (``specs.monitor``): what a monitor watches, against what, how often;
- ``DeploySpec`` (``specs.deploy``): what ``modelyard models deploy`` asks the server to build,
  and ``BuildSpec``, what a finished build is recorded as;
- ``check_target`` (``specs.notify``): which notification targets are accepted.

A spec's problems come back as ``modelyard.errors.InvalidInput`` (never pydantic's
``ValidationError``): ``specs._base`` converts, in one place. This part imports only the
foundation modules and ``analysis``.
"""

from __future__ import annotations

from modelyard.specs.deploy import BuildSpec, DeploySpec
from modelyard.specs.job import JobSpec, Overlap
from modelyard.specs.monitor import MonitorSpec, ReferenceWindow
from modelyard.specs.notify import check_target
from modelyard.specs.schedule import CatchUp, JobSchedule

__all__ = [
    "BuildSpec",
    "CatchUp",
    "DeploySpec",
    "JobSchedule",
    "JobSpec",
    "MonitorSpec",
    "Overlap",
    "ReferenceWindow",
    "check_target",
]
