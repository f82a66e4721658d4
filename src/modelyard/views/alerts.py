"""Monitors' alerts and reference samples as a caller may see them (``GET /api/v1/alerts``,
``GET /api/v1/references`` and the dashboard's alerts page): those of the models in the projects
the caller has a role in (a key limited to one model: that model's only). An alert belongs to
its deployment's model, and so to the model's project. Blocking (store reads): routes call these
on a worker thread.
"""

from __future__ import annotations

from typing import Any

from modelyard.views.owners import Owners
from modelyard.web.access import Caller
from modelyard.web.services import Services

__all__ = ["visible_alerts", "visible_references"]


def visible_alerts(
    services: Services,
    caller: Caller,
    all_states: bool = False,
    monitor: str | None = None,
    deployment: str | None = None,
    project_crn: str | None = None,
) -> list[dict[str, Any]]:
    """The alerts ``caller`` may see (of ``project_crn`` only, when given), newest first."""
    from modelyard.monitors import list_alerts

    found = list_alerts(
        store=services.store, all_states=all_states, monitor=monitor, deployment_crn=deployment
    )
    owners = Owners(services)
    return [
        a
        for a in found
        if owners.sees_deployment(caller, a["deployment_crn"])
        and (project_crn is None or owners.deployment_project(a["deployment_crn"]) == project_crn)
    ]


def visible_references(
    services: Services, caller: Caller, deployment: str | None = None
) -> list[dict[str, Any]]:
    """The reference samples ``caller`` may see (without their data)."""
    from modelyard.monitors import list_references

    found = list_references(deployment, store=services.store)
    owners = Owners(services)
    return [r for r in found if owners.sees_deployment(caller, r["deployment_crn"])]
