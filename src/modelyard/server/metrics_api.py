"""The SDK's remote backend, server side: ``/api/v1/metrics*`` and ``/api/v1/runs/{id}/metrics``.

The paths and shapes are the ones ``modelyard.tracking.remote`` documents; records go out in the
reference shape (``Record.to_reference()``) plus ``kind`` and, for rollups, ``tierMs``. Writes
return 204 once their transaction has committed. Store calls block, so they run on a worker
thread and never stall the event loop (the gateway shares it).

A key with a ``scope`` (a model CRN) may write and read only that model's records.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from modelyard.errors import Forbidden, InvalidInput, NotFound
from modelyard.ids import is_uuid
from modelyard.registry import ApiKey
from modelyard.server.auth import RUN_SCOPE_PREFIX, Capability, check_scope, model_scope, requires
from modelyard.server.services import Services
from modelyard.store.base import Identity, Prediction, RecordKind
from modelyard.store.base import Query as StoreQuery
from modelyard.tracking.distribution import (
    DEFAULT_QUANTILES,
    MAX_BINS,
    check_arguments,
    to_dict,
)

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["metrics"])
Tracker = Annotated[ApiKey, Depends(requires(Capability.METRICS))]
_MAX_PREDICTIONS = 10_000


class PredictionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    predictionUuid: str = Field(min_length=1, max_length=200)  # reference (camelCase) names
    modelCrn: str
    modelBuildCrn: str
    modelDeploymentCrn: str
    startTimeStampMs: int
    endTimeStampMs: int
    metrics: dict[str, Any] = Field(default_factory=dict)


class PredictionsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    predictions: list[PredictionIn] = Field(max_length=_MAX_PREDICTIONS)


class DelayedIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    predictionUuid: str = Field(min_length=1, max_length=200)  # reference (camelCase) names
    metrics: dict[str, Any]
    source: str = "api"


class AggregateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    modelDeploymentCrn: str
    startTimeStampMs: int
    endTimeStampMs: int
    metrics: dict[str, Any]


class RunMetricsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    metrics: dict[str, Any]


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def _check_deployment_scope(services: Services, key: ApiKey, deployment_crn: str) -> None:
    if model_scope(key) is not None:
        try:
            identity = await asyncio.to_thread(services.store.resolve, deployment_crn)
        except NotFound as exc:  # an unknown identifier is bad input, whatever the key's scope
            raise InvalidInput(exc.message, deployment_crn=deployment_crn) from None
        check_scope(key, identity.model_crn)


@router.post("/metrics/predictions", status_code=204, summary="Write prediction records")
async def write_predictions(body: PredictionsIn, request: Request, key: Tracker) -> Response:
    services = _services(request)
    batch = [
        Prediction(
            p.predictionUuid,
            Identity(p.modelCrn, p.modelBuildCrn, p.modelDeploymentCrn),
            p.startTimeStampMs,
            p.endTimeStampMs,
            p.metrics,
        )
        for p in body.predictions
    ]
    for p in batch:
        check_scope(key, p.identity.model_crn)
    await asyncio.to_thread(services.store.write_predictions, batch)
    return Response(status_code=204)


@router.post("/metrics/delayed", status_code=204, summary="Attach delayed metrics (ground truth)")
async def add_delayed(body: DelayedIn, request: Request, key: Tracker) -> Response:
    """A uuid the gateway answered a moment ago may still sit in the server's buffered writer
    (flushed every ``MODELYARD_FLUSH_INTERVAL``); on NotFound the writer is flushed (on a worker
    thread, so the event loop never waits) and the store asked once more before answering 404."""
    services = _services(request)
    args = (body.predictionUuid, body.metrics, body.source)
    try:
        await asyncio.to_thread(services.store.add_delayed, *args)
    except NotFound:
        await asyncio.to_thread(services.writer.flush)
        await asyncio.to_thread(services.store.add_delayed, *args)
    return Response(status_code=204)


@router.post("/metrics/aggregate", status_code=204, summary="Write an aggregate record")
async def add_aggregate(body: AggregateIn, request: Request, key: Tracker) -> Response:
    services = _services(request)
    await _check_deployment_scope(services, key, body.modelDeploymentCrn)
    await asyncio.to_thread(
        services.store.add_aggregate,
        body.modelDeploymentCrn,
        body.startTimeStampMs,
        body.endTimeStampMs,
        body.metrics,
    )
    return Response(status_code=204)


@router.get("/metrics", summary="Read records of a model, build or deployment")
async def read_metrics(
    request: Request,
    key: Tracker,
    modelCrn: str | None = None,
    modelBuildCrn: str | None = None,
    modelDeploymentCrn: str | None = None,
    startTimeStampMs: int = 0,
    endTimeStampMs: int | None = None,
    kind: Annotated[list[str] | None, Query()] = None,
    limit: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
    pageToken: str | None = None,
) -> Response:
    services = _services(request)
    if not (modelCrn or modelBuildCrn or modelDeploymentCrn):
        raise InvalidInput(
            "reading metrics needs one of modelCrn, modelBuildCrn or modelDeploymentCrn"
        )
    try:
        kinds = frozenset(RecordKind(k) for k in kind) if kind else frozenset(RecordKind)
    except ValueError as exc:
        accepted = ", ".join(k.value for k in RecordKind)
        raise InvalidInput(f"kind={kind!r} is not accepted; accepted: {accepted}") from exc
    if model_scope(key) is not None:
        if modelCrn is not None:
            check_scope(key, modelCrn)
        elif modelDeploymentCrn is not None:
            await _check_deployment_scope(services, key, modelDeploymentCrn)
        else:
            raise InvalidInput(
                f"API key {key.id!r} is limited to {key.scope!r}: read by modelCrn or "
                "modelDeploymentCrn"
            )
    query = StoreQuery(
        model_crn=modelCrn,
        build_crn=modelBuildCrn,
        deployment_crn=modelDeploymentCrn,
        start_ms=startTimeStampMs,
        end_ms=endTimeStampMs,
        kinds=kinds,
        limit=limit,
        after=pageToken,
    )
    records, token = await asyncio.to_thread(services.store.read, query)
    items = []
    for record in records:
        item = record.to_reference()  # rollups already carry "kind" and "tierMs"
        item["kind"] = record.kind.value
        items.append(item)
    # orjson straight to bytes: a page can hold 100,000 records.
    return Response(
        orjson.dumps({"metrics": items, "nextPageToken": token}), media_type="application/json"
    )


@router.get("/metrics/distribution", summary="Quantiles and histogram of one metric")
async def read_distribution(
    request: Request,
    key: Tracker,
    metric: Annotated[str, Query(alias="key", min_length=1, description="The metric's name")],
    modelCrn: str | None = None,
    modelBuildCrn: str | None = None,
    modelDeploymentCrn: str | None = None,
    startTimeStampMs: int = 0,
    endTimeStampMs: int | None = None,
    quantile: Annotated[list[float] | None, Query()] = None,
    bins: Annotated[int, Query(ge=1, le=MAX_BINS)] = 20,
) -> Response:
    """Exact from raw records; where the window reaches rolled-up time, from merged sketches with
    ``rank_error`` stating the bound. ``quantiles`` maps each rank (as a string) to its value."""
    services = _services(request)
    query = await _read_query(
        services, key, modelCrn, modelBuildCrn, modelDeploymentCrn, startTimeStampMs, endTimeStampMs
    )
    name, ranks = check_arguments(metric, quantile or list(DEFAULT_QUANTILES), bins)
    found = await asyncio.to_thread(services.store.distribution, query, name, ranks, bins)
    body = to_dict(found)
    body["quantiles"] = {repr(q): v for q, v in body["quantiles"].items()}
    return Response(orjson.dumps(body), media_type="application/json")


async def _read_query(
    services: Services,
    key: ApiKey,
    model_crn: str | None,
    build_crn: str | None,
    deployment_crn: str | None,
    start_ms: int,
    end_ms: int | None,
) -> StoreQuery:
    """The store query of a read route, after the identifier and scope checks."""
    if not (model_crn or build_crn or deployment_crn):
        raise InvalidInput(
            "reading metrics needs one of modelCrn, modelBuildCrn or modelDeploymentCrn"
        )
    if model_scope(key) is not None:
        if model_crn is not None:
            check_scope(key, model_crn)
        elif deployment_crn is not None:
            await _check_deployment_scope(services, key, deployment_crn)
        else:
            raise InvalidInput(
                f"API key {key.id!r} is limited to {key.scope!r}: read by modelCrn or "
                "modelDeploymentCrn"
            )
    return StoreQuery(
        model_crn=model_crn,
        build_crn=build_crn,
        deployment_crn=deployment_crn,
        start_ms=start_ms,
        end_ms=end_ms,
    )


@router.post("/runs/{run_id}/metrics", status_code=204, summary="Track metrics of a job run")
async def track_run_metrics(
    run_id: str, body: RunMetricsIn, request: Request, key: Tracker
) -> Response:
    """Recorded in the registry's run metrics at once, so they show with the run while it goes
    (``GET /api/v1/runs/{run_id}``). ``run_id`` is the run's uuid (``MODELYARD_RUN_ID``); a run's
    own key may write to its own run only."""
    if not is_uuid(run_id):
        raise InvalidInput(
            f"run {run_id!r} is not accepted; expected the run's uuid (MODELYARD_RUN_ID, the last "
            "part of 'crn:modelyard:run/<uuid>')",
            run=run_id,
        )
    full = RUN_SCOPE_PREFIX + run_id
    if key.scope is not None and key.scope.startswith(RUN_SCOPE_PREFIX) and key.scope != full:
        raise Forbidden(
            f"API key {key.id!r} belongs to run {key.scope!r} and may not track metrics of "
            f"{full!r}; a run tracks its own metrics",
            key_id=key.id,
        )
    registry = _services(request).registry
    await asyncio.to_thread(registry.add_run_metrics, full, body.metrics)
    return Response(status_code=204)
