"""``/api/v1`` read routes the dashboard draws from: overview, tech and metric time series,
recent predictions, one prediction by uuid, a build's log. Each route is a thin wrapper around
``modelyard.server.insights`` (the dashboard calls the same functions), run on a worker thread
because store reads block. Times are epoch milliseconds; ``start``/``end`` default to the last
hour."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from modelyard.registry import ApiKey
from modelyard.server import drift, insights
from modelyard.server.auth import (
    Capability,
    check_deployment_scope,
    check_prediction_scope,
    model_scope,
    requires,
    scoped_model,
)
from modelyard.server.limits import ReadMs
from modelyard.server.services import Services

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["insights"])
Reader = Annotated[ApiKey, Depends(requires(Capability.READ_MODELS))]
Start = Annotated[
    ReadMs | None, Query(description="epoch ms (0 to 2200-01-01); default: an hour before end")
]
End = Annotated[ReadMs | None, Query(description="epoch ms (0 to 2200-01-01); default: now")]


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def _scope_model(services: Services, key: ApiKey, name: str) -> None:
    """The rule of ``auth.scoped_model``: a scoped key names its own model or gets 403."""
    await asyncio.to_thread(scoped_model, services.registry, key, name)


async def _scope_deployment(services: Services, key: ApiKey, deployment_crn: str) -> None:
    await asyncio.to_thread(check_deployment_scope, services.store, key, deployment_crn)


@router.get("/overview", summary="Every model: state, replicas, traffic, latest monitor results")
async def overview(request: Request, key: Reader) -> dict[str, Any]:
    return await asyncio.to_thread(insights.overview, _services(request), None, model_scope(key))


@router.get("/models/{name}/tech", summary="Requests/s, latency percentiles and failures")
async def tech(
    name: str,
    request: Request,
    key: Reader,
    start: Start = None,
    end: End = None,
    points: Annotated[int, Query(ge=10, le=2_000)] = insights.TECH_POINTS,
) -> dict[str, Any]:
    services = _services(request)
    await _scope_model(services, key, name)
    lo, hi = insights.check_range(start, end)
    return await asyncio.to_thread(insights.tech_series, services, name, lo, hi, points)


@router.get("/models/{name}/builds/{build_id}/log", summary="The last lines of a build's log")
async def build_log(
    name: str,
    build_id: str,
    request: Request,
    key: Reader,
    tail: Annotated[int, Query(ge=0, le=100_000)] = 400,
) -> dict[str, Any]:
    services = _services(request)
    await _scope_model(services, key, name)
    lines = await asyncio.to_thread(insights.build_log, services, name, build_id, tail)
    return {"model": name, "build": build_id, "lines": lines}


@router.get("/models/{name}/predictions", summary="The latest prediction records, newest first")
async def recent_predictions(
    name: str,
    request: Request,
    key: Reader,
    limit: Annotated[int, Query(ge=1, le=500)] = 20,
) -> dict[str, Any]:
    services = _services(request)
    await _scope_model(services, key, name)
    return await asyncio.to_thread(insights.recent_predictions, services, name, limit)


@router.get("/predictions/{uuid}", summary="One prediction and when each delayed value arrived")
async def prediction(uuid: str, request: Request, key: Reader) -> dict[str, Any]:
    services = _services(request)
    # First, so a scoped key gets one answer for an unknown uuid and another model's.
    await asyncio.to_thread(check_prediction_scope, services.store, key, uuid)
    return await asyncio.to_thread(insights.find_prediction, services, uuid)


@router.get("/series", summary="One metric of a deployment: raw, rollups and aggregates")
async def series(
    request: Request,
    key: Reader,
    deployment: Annotated[str, Query(description="deployment CRN")],
    metric: Annotated[str, Query(description="metric key, e.g. score or roc_auc")],
    start: Start = None,
    end: End = None,
) -> dict[str, Any]:
    services = _services(request)
    await _scope_deployment(services, key, deployment)
    lo, hi = insights.check_range(start, end)
    return await asyncio.to_thread(insights.metric_series, services, deployment, metric, lo, hi)


@router.get("/series/keys", summary="Numeric metric keys seen in a sample of a range")
async def series_keys(
    request: Request,
    key: Reader,
    deployment: Annotated[str, Query(description="deployment CRN")],
    start: Start = None,
    end: End = None,
) -> dict[str, Any]:
    services = _services(request)
    await _scope_deployment(services, key, deployment)
    lo, hi = insights.check_range(start, end)
    return await asyncio.to_thread(insights.metric_keys, services, deployment, lo, hi)


@router.get("/drift", summary="Drift effects of a deployment's monitor windows, by feature")
async def drift_matrix(
    request: Request,
    key: Reader,
    deployment: Annotated[str, Query(description="deployment CRN")],
    method: Annotated[str, Query(description=", ".join(drift.METHODS))] = "psi",
    start: Start = None,
    end: End = None,
) -> dict[str, Any]:
    services = _services(request)
    await _scope_deployment(services, key, deployment)
    lo, hi = insights.check_range(start, end, default_ms=7 * insights.DAY_MS)
    return await asyncio.to_thread(drift.drift_matrix, services, deployment, lo, hi, method)


@router.get("/drift/groups", summary="Multivariate drift and segment gaps per monitor window")
async def drift_groups(
    request: Request,
    key: Reader,
    deployment: Annotated[str, Query(description="deployment CRN")],
    start: Start = None,
    end: End = None,
) -> dict[str, Any]:
    services = _services(request)
    await _scope_deployment(services, key, deployment)
    lo, hi = insights.check_range(start, end, default_ms=7 * insights.DAY_MS)
    return await asyncio.to_thread(drift.drift_groups, services, deployment, lo, hi)


@router.get("/drift/distributions", summary="Reference and window histograms of one feature")
async def drift_distributions(
    request: Request,
    key: Reader,
    deployment: Annotated[str, Query(description="deployment CRN")],
    feature: str,
    start: Start = None,
    end: End = None,
    reference: str = "training",
) -> dict[str, Any]:
    """``start``/``end`` default to the last hour, as on every dashboard route."""
    services = _services(request)
    await _scope_deployment(services, key, deployment)
    lo, hi = insights.check_range(start, end)
    return await asyncio.to_thread(
        drift.drift_distributions, services, deployment, feature, lo, hi, reference
    )
