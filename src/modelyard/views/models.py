"""Models as a key may see them: the list (``GET /api/v1/models``) and one model with its
deployments, builds and replicas (``GET /api/v1/models/{name}`` and the dashboard's model page).

Scope is checked first (``web.auth``) and environment values are masked for keys that may not
administer. Blocking (registry reads): routes call these on a worker thread.
"""

from __future__ import annotations

from typing import Any

from modelyard.registry import ApiKey, DeploymentState
from modelyard.views.insights import model_status
from modelyard.web.auth import scoped_model, shown_env, visible
from modelyard.web.jsonable import jsonable
from modelyard.web.services import Services

__all__ = ["model_list", "model_view"]


def _deployment_for(deployment: Any, key: ApiKey) -> Any:
    """A deployment's JSON with its ``env`` values masked unless ``key`` may administer."""
    if isinstance(deployment, dict) and isinstance(deployment.get("env"), dict):
        return {**deployment, "env": shown_env(deployment["env"], key)}
    return deployment


def model_list(services: Services, key: ApiKey) -> list[dict[str, Any]]:
    """Every model ``key`` may see, each with its active deployment (or None).

    Two queries whatever the number of models (the models, then every active deployment), not
    one more per model."""
    registry = services.registry
    models = [m for m in registry.list_models() if visible(key, m.crn)]
    if not models:
        return []
    found = registry.list_deployments(states=[DeploymentState.ACTIVE.value])  # newest first
    active = {d.model_crn: d for d in reversed(found)}  # one per model; the newest would win
    return [
        {**jsonable(m), "active_deployment": _deployment_for(jsonable(active.get(m.crn)), key)}
        for m in models
    ]


def model_view(services: Services, name: str, key: ApiKey) -> dict[str, Any]:
    """``GET /api/v1/models/{name}`` as ``key`` may see it (the dashboard's model page shows the
    same): scope checked first, environment values masked."""
    scoped_model(services.registry, key, name)
    body = model_status(services, name)
    if "active" in body:
        body["active"] = _deployment_for(body["active"], key)
    if isinstance(body.get("deployments"), list):
        body["deployments"] = [_deployment_for(d, key) for d in body["deployments"]]
    return body
