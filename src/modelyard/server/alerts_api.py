"""``/api/v1`` routes of monitors: alerts and reference samples.

Thin wrappers around ``modelyard.monitors`` (the CLI calls the same functions), run on a worker
thread because store reads and writes block. Deployments are named by CRN in the query or body,
not in the path, since a CRN holds ``/``.

- ``GET /api/v1/alerts?all=false&monitor=&deployment=``: ``{"alerts": [...]}``, newest first,
  firing only unless ``all``; a key scoped to one model sees that model's alerts only.
- ``GET /api/v1/references?deployment=CRN``: ``{"references": [...]}`` without their data.
- ``POST /api/v1/references`` with ``{"deployment": CRN, "name": "training",
  "columns": {"tenure": [...], "plan": [...]}}``: stores the sample (at most 100,000 rows kept).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from modelyard.errors import InvalidInput, NotFound
from modelyard.registry import ApiKey
from modelyard.server.auth import Capability, check_scope, requires
from modelyard.server.services import Services

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["monitors"])
# Admin and user keys, as for reading models; run keys (jobs) only track metrics under
# /api/v1/metrics and /api/v1/runs, so an upload by a run key is refused too.
Reader = Annotated[ApiKey, Depends(requires(Capability.READ_MODELS))]


class ReferenceUpload(BaseModel):
    deployment: str = Field(description="deployment CRN the sample belongs to")
    name: str = Field(default="training", description="name of the sample")
    columns: dict[str, list[Any]] = Field(description="column name -> values, equal lengths")


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _model_of(services: Services, deployment_crn: str) -> str | None:
    try:
        return services.store.resolve(deployment_crn).model_crn
    except NotFound:
        return None


@router.get("/alerts", summary="Alerts raised by monitors, newest first")
async def alerts(
    request: Request,
    key: Reader,
    all: Annotated[bool, Query(description="resolved alerts too")] = False,
    monitor: Annotated[str | None, Query()] = None,
    deployment: Annotated[str | None, Query(description="deployment CRN")] = None,
) -> dict[str, Any]:
    from modelyard.monitors import list_alerts

    services = _services(request)

    def work() -> list[dict[str, Any]]:
        found = list_alerts(
            store=services.store, all_states=all, monitor=monitor, deployment_crn=deployment
        )
        if key.scope is None:
            return found
        return [a for a in found if _model_of(services, a["deployment_crn"]) == key.scope]

    return {"alerts": await asyncio.to_thread(work)}


@router.get("/references", summary="Reference samples stored for deployments (no data)")
async def references(
    request: Request,
    key: Reader,
    deployment: Annotated[str | None, Query(description="deployment CRN")] = None,
) -> dict[str, Any]:
    from modelyard.monitors import list_references

    services = _services(request)

    def work() -> list[dict[str, Any]]:
        found = list_references(deployment, store=services.store)
        if key.scope is None:
            return found
        return [r for r in found if _model_of(services, r["deployment_crn"]) == key.scope]

    return {"references": await asyncio.to_thread(work)}


@router.post("/references", status_code=201, summary="Store a reference sample (columnar JSON)")
async def upload(request: Request, key: Reader, body: ReferenceUpload) -> dict[str, Any]:
    import pandas as pd

    from modelyard.monitors import upload_reference

    services = _services(request)
    lengths = {name: len(values) for name, values in body.columns.items()}
    if len(set(lengths.values())) > 1:
        raise InvalidInput(
            f"reference columns have different lengths {lengths!r}; every column needs one "
            "value per row"
        )

    def work() -> dict[str, Any]:
        identity = services.store.resolve(body.deployment)
        check_scope(key, identity.model_crn)
        frame = pd.DataFrame(body.columns)
        return upload_reference(frame, body.deployment, body.name, store=services.store)

    return await asyncio.to_thread(work)
