"""Models as a caller may see them: the list (``GET /api/v1/models``) and one model with its
deployments, builds and replicas (``GET /api/v1/models/{name}`` and the dashboard's model page).

Who may see what is decided in ``web.access`` (the route's rule checks the model's project
first); lists keep the models of the projects the caller has a role in, and environment values
are masked unless the caller may change things in the model's project.
Blocking (registry reads): routes call these on a worker thread.
"""

from __future__ import annotations

from typing import Any

from modelyard.registry import DeploymentState
from modelyard.views.insights import model_status
from modelyard.web.access import Caller, Right
from modelyard.web.auth import shown_env
from modelyard.web.jsonable import jsonable
from modelyard.web.services import Services

__all__ = ["model_list", "model_view"]


def _deployment_for(deployment: Any, caller: Caller, project_crn: str | None) -> Any:
    """A deployment's JSON with its ``env`` values masked unless ``caller`` may change things in
    ``project_crn``."""
    if isinstance(deployment, dict) and isinstance(deployment.get("env"), dict):
        return {**deployment, "env": shown_env(deployment["env"], caller, project_crn)}
    return deployment


def model_list(
    services: Services, caller: Caller, project_crn: str | None = None
) -> list[dict[str, Any]]:
    """Every model ``caller`` may see (of ``project_crn`` only, when given), each with its
    active deployment (or None).

    Two queries whatever the number of models (the models, then every active deployment), not
    one more per model."""
    registry = services.registry
    models = [m for m in registry.list_models(project_crn) if caller.sees_model(m)]
    if not models:
        return []
    found = registry.list_deployments(states=[DeploymentState.ACTIVE.value])  # newest first
    active = {d.model_crn: d for d in reversed(found)}  # one per model; the newest would win
    return [
        {
            **jsonable(m),
            "active_deployment": _deployment_for(
                jsonable(active.get(m.crn)), caller, m.project_crn
            ),
        }
        for m in models
    ]


def model_view(services: Services, name: str, caller: Caller) -> dict[str, Any]:
    """``GET /api/v1/models/{name}`` as ``caller`` may see it (the dashboard's model page shows
    the same). The caller's right to READ the model is checked before (the route's rule, or
    ``caller.check``); environment values are masked here."""
    model = services.models.get(name)
    caller.check(Right.READ, model.project_crn, f"model {name!r}", model.crn)
    body = model_status(services, name)
    if "active" in body:
        body["active"] = _deployment_for(body["active"], caller, model.project_crn)
    if isinstance(body.get("deployments"), list):
        body["deployments"] = [
            _deployment_for(d, caller, model.project_crn) for d in body["deployments"]
        ]
    return body
