"""Monitors' alerts and reference samples as a key may see them (``GET /api/v1/alerts``,
``GET /api/v1/references`` and the dashboard's alerts page): a key scoped to one model sees
that model's only. Blocking (store reads): routes call these on a worker thread.
"""

from __future__ import annotations

from typing import Any

from modelyard.errors import NotFound
from modelyard.registry import ApiKey
from modelyard.web.auth import visible
from modelyard.web.services import Services

__all__ = ["visible_alerts", "visible_references"]


def _model_of(services: Services, deployment_crn: str) -> str | None:
    try:
        return services.store.resolve(deployment_crn).model_crn
    except NotFound:
        return None


def visible_alerts(
    services: Services,
    key: ApiKey,
    all_states: bool = False,
    monitor: str | None = None,
    deployment: str | None = None,
) -> list[dict[str, Any]]:
    """The alerts ``key`` may see (a scoped key: its model's only), newest first."""
    from modelyard.monitors import list_alerts

    found = list_alerts(
        store=services.store, all_states=all_states, monitor=monitor, deployment_crn=deployment
    )
    return [a for a in found if visible(key, _model_of(services, a["deployment_crn"]) or "")]


def visible_references(
    services: Services, key: ApiKey, deployment: str | None = None
) -> list[dict[str, Any]]:
    """The reference samples ``key`` may see (without their data)."""
    from modelyard.monitors import list_references

    found = list_references(deployment, store=services.store)
    return [r for r in found if visible(key, _model_of(services, r["deployment_crn"]) or "")]
