"""What the routes of a project's named things (``/api/v1/projects/{project}/secrets``,
``.../connections``) share: the project ``requires(..., On.PROJECT)`` resolved, and the answer
of their list route (``{"project", "project_crn", <items>}``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from modelyard.web.access import Caller, project_name
from modelyard.web.services import Services

__all__ = ["project_listing", "project_of"]

T = TypeVar("T")


def project_of(caller: Caller) -> str:
    """The CRN of the project the route is on."""
    assert caller.project_crn is not None, "requires(..., On.PROJECT) resolved the project"
    return caller.project_crn


def project_listing(
    services: Services,
    caller: Caller,
    key: str,
    items: Callable[[str], Iterable[T]],
    shown: Callable[[Services, T, str], dict[str, Any]],
) -> dict[str, Any]:
    """``{"project": owner/name, "project_crn": ..., key: [shown(item) ...]}`` of ``items(crn)``."""
    project_crn = project_of(caller)
    name = project_name(services.registry, project_crn)
    found = items(project_crn)
    return {
        "project": name,
        "project_crn": project_crn,
        key: [shown(services, item, name) for item in found],
    }
