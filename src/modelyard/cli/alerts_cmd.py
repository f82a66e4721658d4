"""``modelyard alerts``: alerts raised by monitors.

Alerts are read from the store (``MODELYARD_HOME`` or ``MODELYARD_DATABASE_URL``), as monitors
write them, so ``--project`` is resolved here against the same database's registry: reading it
directly is already every project's access.
"""

from __future__ import annotations

from collections.abc import Callable

import click

from modelyard.cli.config import project_option, project_params
from modelyard.cli.names import resolve
from modelyard.cli.output import json_option, print_json, print_rows

__all__ = ["alerts", "project_deployments"]

_COLUMNS = (
    "id",
    "monitor",
    "rule",
    "state",
    "value",
    "first_window_start_ms",
    "last_window_end_ms",
    "fired_ms",
    "resolved_ms",
)


@click.command()
@click.option("--all", "all_states", is_flag=True, help="Resolved alerts too, not only firing.")
@click.option("--monitor", default=None, help="Only this monitor's alerts.")
@click.option(
    "--deployment",
    default=None,
    help="Only this deployment's alerts: its CRN, or a model name (its active deployment).",
)
@project_option(listing=True)
@json_option()
def alerts(
    all_states: bool,
    monitor: str | None,
    deployment: str | None,
    project: str | None,
    all_projects: bool,
    as_json: bool,
) -> None:
    """Alerts of monitors, newest first (firing only unless --all)."""
    from modelyard.monitors import list_alerts

    if deployment is not None:
        deployment = resolve(deployment, "deployment", "--deployment")
    found = list_alerts(all_states=all_states, monitor=monitor, deployment_crn=deployment)
    keep = project_deployments(project, all_projects)
    if keep is not None:
        found = [a for a in found if keep(a["deployment_crn"])]
    if as_json:
        print_json(found)
        return
    title = "Alerts" if all_states else "Firing alerts"
    print_rows(title, _COLUMNS, [[a[c] for c in _COLUMNS] for a in found])


def project_deployments(
    project: str | None, all_projects: bool = False
) -> Callable[[str], bool] | None:
    """Whether a deployment CRN belongs to a model of the ``--project`` (or default) project,
    looked up in the store's registry; None when no project filters."""
    ref = project_params(project, all_projects).get("project")
    if ref is None:
        return None
    from modelyard.errors import NotFound
    from modelyard.monitors._store import monitor_store
    from modelyard.registry import Registry

    registry = Registry(monitor_store(None))
    crn = registry.people.get_project(ref).crn
    models = {m.crn for m in registry.list_models(crn)}
    owners: dict[str, bool] = {}

    def keep(deployment_crn: str) -> bool:
        if deployment_crn not in owners:
            try:
                owner = registry.get_deployment(deployment_crn).model_crn
            except NotFound:  # its model was deleted: in no project any more
                owner = None
            owners[deployment_crn] = owner in models
        return owners[deployment_crn]

    return keep
