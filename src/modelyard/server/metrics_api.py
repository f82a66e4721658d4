"""The SDK's remote backend, server side: ``/api/v1/metrics*`` and ``/api/v1/runs/{id}/metrics``.

The paths and shapes are the ones ``modelyard.tracking.remote`` documents; records go out in the
reference shape (``Record.to_reference()``) plus ``kind`` and, for rollups, ``tierMs``. Writes
return 204 once their transaction has committed. Store calls block, so the routes are plain
``def`` functions on FastAPI's worker threads and never stall the event loop (the gateway
shares it).

A key with a ``scope`` (a model CRN) may write and read only that model's records.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from modelyard.errors import Forbidden, InvalidInput, NotFound
from modelyard.ids import is_uuid
from modelyard.registry import ApiKey
from modelyard.server.limits import MAX_TEXT, ReadMs, StoredMs, check_record
from modelyard.store.base import Identity, Prediction, RecordKind
from modelyard.store.base import Query as StoreQuery
from modelyard.tracking.distribution import (
    DEFAULT_QUANTILES,
    MAX_BINS,
    check_arguments,
    to_dict,
)
from modelyard.web.auth import (
    RUN_SCOPE_PREFIX,
    Capability,
    check_deployment_scope,
    check_prediction_scope,
    check_scope,
    check_unscoped,
    model_scope,
    requires,
)
from modelyard.web.services import Services, ServicesDep

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["metrics"])
Tracker = Annotated[ApiKey, Depends(requires(Capability.METRICS))]
_MAX_PREDICTIONS = 10_000


class PredictionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    predictionUuid: str = Field(min_length=1, max_length=MAX_TEXT)  # reference (camelCase) names
    modelCrn: str = Field(max_length=MAX_TEXT)
    modelBuildCrn: str = Field(max_length=MAX_TEXT)
    modelDeploymentCrn: str = Field(max_length=MAX_TEXT)
    startTimeStampMs: StoredMs
    endTimeStampMs: StoredMs
    metrics: dict[str, Any] = Field(default_factory=dict)


class PredictionsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    predictions: list[PredictionIn] = Field(max_length=_MAX_PREDICTIONS)


class DelayedIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    predictionUuid: str = Field(min_length=1, max_length=MAX_TEXT)  # reference (camelCase) names
    metrics: dict[str, Any]
    source: str = Field(default="api", min_length=1, max_length=MAX_TEXT)


class AggregateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    modelDeploymentCrn: str = Field(max_length=MAX_TEXT)
    startTimeStampMs: StoredMs
    endTimeStampMs: StoredMs
    metrics: dict[str, Any]


class RunMetricsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    metrics: dict[str, Any]


def _check_deployment_scope(services: Services, key: ApiKey, deployment_crn: str) -> None:
    """A key limited to one model: Forbidden for another model's deployment and, alike, for an
    unknown one (an unscoped key gets the store's InvalidInput naming an unknown CRN)."""
    check_deployment_scope(services.store, key, deployment_crn)


def _check_read_scope(
    services: Services,
    key: ApiKey,
    model_crn: str | None,
    build_crn: str | None,
    deployment_crn: str | None,
) -> None:
    """A key limited to one model reads by its model or deployment, and every identifier given
    must be its model's (an unknown one is refused alike, so nothing tells it what exists)."""
    if model_scope(key) is None:
        return
    if model_crn is None and deployment_crn is None:
        raise InvalidInput(
            f"API key {key.id!r} is limited to {key.scope!r}: read by modelCrn or "
            "modelDeploymentCrn",
            argument="modelCrn",
        )
    if model_crn is not None:
        check_scope(key, model_crn, f"modelCrn {model_crn!r}")
    if deployment_crn is not None:
        _check_deployment_scope(services, key, deployment_crn)
    if build_crn is not None:

        def build_model() -> str | None:
            try:
                return services.registry.get_build(build_crn).model_crn
            except (NotFound, InvalidInput):
                return None

        owner = build_model()
        check_scope(key, owner or "", f"modelBuildCrn {build_crn!r}")


def _new_or_own_deployments(services: Services, key: ApiKey, deployment_crns: set[str]) -> None:
    """A scoped key writes to its model's deployments or new ones, never onto another model's
    (whose store Conflict would name that model). Blocking (store reads on a cache miss)."""
    for crn in sorted(deployment_crns):
        try:
            owner = services.store.resolve(crn).model_crn
        except NotFound:
            continue  # a deployment the store has not seen yet: the write registers it
        check_scope(key, owner, f"modelDeploymentCrn {crn!r}")


@router.post("/metrics/predictions", status_code=204, summary="Write prediction records")
def write_predictions(body: PredictionsIn, services: ServicesDep, key: Tracker) -> Response:
    batch = [
        Prediction(
            p.predictionUuid,
            Identity(p.modelCrn, p.modelBuildCrn, p.modelDeploymentCrn),
            p.startTimeStampMs,
            p.endTimeStampMs,
            check_record(p.metrics, f"prediction {p.predictionUuid!r}", size=False),
        )
        for p in body.predictions
    ]
    for p in batch:
        check_scope(key, p.identity.model_crn, f"modelCrn {p.identity.model_crn!r}")
    if model_scope(key) is not None:
        deployments = {p.identity.deployment_crn for p in batch}
        _new_or_own_deployments(services, key, deployments)
    services.store.write_predictions(batch)
    return Response(status_code=204)


@router.post("/metrics/delayed", status_code=204, summary="Attach delayed metrics (ground truth)")
def add_delayed(body: DelayedIn, services: ServicesDep, key: Tracker) -> Response:
    """A uuid the gateway answered a moment ago may still sit in the server's buffered writer
    (flushed every ``MODELYARD_FLUSH_INTERVAL``); on NotFound the writer is flushed (this route
    runs on a worker thread, so the event loop never waits) and the store asked once more before
    answering 404."""
    metrics = check_record(body.metrics, f"delayed metrics of {body.predictionUuid!r}")
    args = (body.predictionUuid, metrics, body.source)
    # A key limited to one model labels its own model's predictions only; an unknown uuid gets
    # the same 403 as another model's, so the answer does not tell it which uuids exist.
    check_prediction_scope(services.store, key, body.predictionUuid, services.writer.flush)
    try:
        services.store.add_delayed(*args)
    except NotFound:
        services.writer.flush()
        services.store.add_delayed(*args)
    return Response(status_code=204)


@router.post("/metrics/aggregate", status_code=204, summary="Write an aggregate record")
def add_aggregate(body: AggregateIn, services: ServicesDep, key: Tracker) -> Response:
    metrics = check_record(body.metrics, f"aggregate of {body.modelDeploymentCrn!r}")
    _check_deployment_scope(services, key, body.modelDeploymentCrn)
    services.store.add_aggregate(
        body.modelDeploymentCrn,
        body.startTimeStampMs,
        body.endTimeStampMs,
        metrics,
    )
    return Response(status_code=204)


@router.get("/metrics", summary="Read records of a model, build or deployment")
def read_metrics(  # noqa: PLR0913 - FastAPI reads the query from the signature, one per name
    services: ServicesDep,
    key: Tracker,
    modelCrn: str | None = None,
    modelBuildCrn: str | None = None,
    modelDeploymentCrn: str | None = None,
    startTimeStampMs: Annotated[ReadMs, Query()] = 0,
    endTimeStampMs: Annotated[ReadMs | None, Query()] = None,
    kind: Annotated[list[str] | None, Query()] = None,
    limit: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
    pageToken: str | None = None,
) -> Response:
    if not (modelCrn or modelBuildCrn or modelDeploymentCrn):
        raise InvalidInput(
            "reading metrics needs one of modelCrn, modelBuildCrn or modelDeploymentCrn"
        )
    try:
        kinds = frozenset(RecordKind(k) for k in kind) if kind else frozenset(RecordKind)
    except ValueError as exc:
        accepted = ", ".join(k.value for k in RecordKind)
        raise InvalidInput(f"kind={kind!r} is not accepted; accepted: {accepted}") from exc
    _check_read_scope(services, key, modelCrn, modelBuildCrn, modelDeploymentCrn)
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
    records, token = services.store.read(query)
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
def read_distribution(  # noqa: PLR0913 - FastAPI reads the query from the signature, one per name
    services: ServicesDep,
    key: Tracker,
    metric: Annotated[str, Query(alias="key", min_length=1, description="The metric's name")],
    modelCrn: str | None = None,
    modelBuildCrn: str | None = None,
    modelDeploymentCrn: str | None = None,
    startTimeStampMs: Annotated[ReadMs, Query()] = 0,
    endTimeStampMs: Annotated[ReadMs | None, Query()] = None,
    quantile: Annotated[list[float] | None, Query()] = None,
    bins: Annotated[int, Query(ge=1, le=MAX_BINS)] = 20,
) -> Response:
    """Exact from raw records; where the window reaches rolled-up time, from merged sketches with
    ``rank_error`` stating the bound. ``quantiles`` maps each rank (as a string) to its value."""
    query = _read_query(
        services, key, modelCrn, modelBuildCrn, modelDeploymentCrn, startTimeStampMs, endTimeStampMs
    )
    name, ranks = check_arguments(metric, quantile or list(DEFAULT_QUANTILES), bins)
    found = services.store.distribution(query, name, ranks, bins)
    body = to_dict(found)
    body["quantiles"] = {repr(q): v for q, v in body["quantiles"].items()}
    return Response(orjson.dumps(body), media_type="application/json")


def _read_query(
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
    _check_read_scope(services, key, model_crn, build_crn, deployment_crn)
    return StoreQuery(
        model_crn=model_crn,
        build_crn=build_crn,
        deployment_crn=deployment_crn,
        start_ms=start_ms,
        end_ms=end_ms,
    )


@router.post("/runs/{run_id}/metrics", status_code=204, summary="Track metrics of a job run")
def track_run_metrics(
    run_id: str, body: RunMetricsIn, services: ServicesDep, key: Tracker
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
    check_unscoped(key, "jobs and runs")
    if key.scope is not None and key.scope.startswith(RUN_SCOPE_PREFIX) and key.scope != full:
        raise Forbidden(
            f"API key {key.id!r} belongs to run {key.scope!r} and may not track metrics of "
            f"{full!r}; a run tracks its own metrics",
            key_id=key.id,
        )
    metrics = check_record(body.metrics, f"metrics of run {run_id!r}")
    services.registry.add_run_metrics(full, metrics)
    return Response(status_code=204)
