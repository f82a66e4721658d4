"""The project secrets a monitor job's run gets for the connections its spec reads through.

A monitor spec names connections (``labels.connection``, ``reference.connection``); the run reads
through them with ``Credentials.from_env``, so it needs, as environment variables, the project
secrets that hold their credentials. The runner adds these names to the job's own ``secrets``
and reads them all at once (``read_secrets``: decrypted for this run, recorded in the audit log
by name). A spec that does not load, or a connection that does not exist, adds nothing here: the
run itself fails on it, with the message that names what is wrong.
"""

from __future__ import annotations

from pathlib import Path

from modelyard.errors import InvalidInput, NotFound
from modelyard.registry import Job, Registry
from modelyard.specs.monitor import MonitorSpec, connection_names

__all__ = ["connection_secrets"]


def connection_secrets(registry: Registry, job: Job) -> tuple[str, ...]:
    """Names of the secrets of every connection ``job``'s monitor spec names (none for a
    script job, one without a project, or a spec that does not load)."""
    if job.monitor is None or job.project_crn is None:
        return ()
    try:
        spec = MonitorSpec.from_yaml(Path(job.project) / job.monitor)
    except InvalidInput:
        return ()
    names: list[str] = []
    for name in connection_names(spec):
        try:
            found = registry.connections.get(job.project_crn, name)
        except (NotFound, InvalidInput):
            continue
        names.extend(found.secrets.values())
    return tuple(dict.fromkeys(names))
