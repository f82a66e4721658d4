"""The SDK's remote backend, server side: ``/api/v1/metrics*`` and ``/api/v1/runs/{id}/metrics``.

The paths and shapes are the ones ``modelyard.tracking.remote`` documents; records go out in the
reference shape (``Record.to_reference()``) plus ``kind`` and, for rollups, ``tierMs``. Writes
return 204 once their transaction has committed. Store calls block, so the routes are plain
``def`` functions on FastAPI's worker threads and never stall the event loop (the gateway
shares it).

Who may: reading needs viewer, writing (predictions, delayed metrics, aggregates) operator in the
project of the model each identifier leads to (a model, build or deployment CRN, a prediction
uuid: ``views.owners``); an unknown identifier and one of a project the caller has no role in get
one answer (404). Run keys may use these routes: a deployment's key its own model only, a job
run's key the models of its job's project. A key limited to one model reaches that model only.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from modelyard.errors import InvalidInput, NotFound
from modelyard.ids import is_uuid
from modelyard.registry import RUN_SCOPE_PREFIX
from modelyard.server.limits import MAX_TEXT, ReadMs, StoredMs, check_record
from modelyard.store.base import Identity, Prediction, RecordKind
from modelyard.store.base import Query as StoreQuery
from modelyard.tracking.distribution import (
    DEFAULT_QUANTILES,
    MAX_BINS,
    check_arguments,
    to_dict,
)
from modelyard.views.owners import Owners
from modelyard.web.access import Caller, On, Right, requires
from modelyard.web.services import Services, ServicesDep

__all__ = ["MAX_DELAYED_BATCH", "router"]

router = APIRouter(prefix="/api/v1", tags=["metrics"])
Reader = Annotated[Caller, Depends(requires(Right.READ, On.BODY, run_keys=True))]
Writer = Annotated[Caller, Depends(requires(Right.OPERATE, On.BODY, run_keys=True))]
RunWriter = Annotated[Caller, Depends(requires(Right.OPERATE, On.RUN, run_keys=True))]
_MAX_PREDICTIONS = 10_000
MAX_DELAYED_BATCH = 100_000  # items per POST /api/v1/metrics/delayed/batch


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


class DelayedItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    predictionUuid: str = Field(min_length=1, max_length=MAX_TEXT)
    metrics: dict[str, Any]


class DelayedBatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[DelayedItemIn] = Field(max_length=MAX_DELAYED_BATCH)
    source: str = Field(default="api", min_length=1, max_length=MAX_TEXT)
    skipUnchanged: bool = Field(
        default=False,
        description="Leave alone a uuid whose values are all already stored (re-read rows); "
        "counted in 'unchanged'",
    )


class AggregateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    modelDeploymentCrn: str = Field(max_length=MAX_TEXT)
    startTimeStampMs: StoredMs
    endTimeStampMs: StoredMs
    metrics: dict[str, Any]


class RunMetricsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    metrics: dict[str, Any]


def _check_read(
    services: Services,
    caller: Caller,
    model_crn: str | None,
    build_crn: str | None,
    deployment_crn: str | None,
) -> None:
    """Every identifier a read names must lead to a model the caller may read: the records of
    a query match all of them, so each one is checked (an unknown one answers as another
    project's, so nothing tells the caller what exists)."""
    owners = Owners(services)
    if model_crn is not None:
        owners.check_model(caller, Right.READ, model_crn)
    if build_crn is not None:
        owners.check_build(caller, Right.READ, build_crn)
    if deployment_crn is not None:
        owners.check_deployment(caller, Right.READ, deployment_crn)


def _check_batch(services: Services, caller: Caller, batch: list[Prediction]) -> None:
    """Each prediction's model must be one the caller may write to, and each deployment the
    store knows must be that caller's too: a write onto another project's deployment would
    otherwise answer with the store's Conflict naming that model. A deployment the store has not
    seen yet is registered by the write. Blocking (one read per model and deployment)."""
    owners = Owners(services)
    for crn in sorted({p.identity.model_crn for p in batch}):
        owners.check_model(caller, Right.OPERATE, crn)
    for crn in sorted({p.identity.deployment_crn for p in batch}):
        owner = owners.deployment_model(crn)
        if owner is not None:
            owners.check_model_crn(caller, Right.OPERATE, owner, f"deployment {crn!r}")


@router.post("/metrics/predictions", status_code=204, summary="Write prediction records")
def write_predictions(body: PredictionsIn, services: ServicesDep, caller: Writer) -> Response:
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
    _check_batch(services, caller, batch)
    services.store.write_predictions(batch)
    return Response(status_code=204)


@router.post("/metrics/delayed", status_code=204, summary="Attach delayed metrics (ground truth)")
def add_delayed(body: DelayedIn, services: ServicesDep, caller: Writer) -> Response:
    """A uuid the gateway answered a moment ago may still sit in the server's buffered writer
    (flushed every ``MODELYARD_FLUSH_INTERVAL``); on NotFound the writer is flushed (this route
    runs on a worker thread, so the event loop never waits) and the store asked once more before
    answering 404."""
    metrics = check_record(body.metrics, f"delayed metrics of {body.predictionUuid!r}")
    args = (body.predictionUuid, metrics, body.source)
    # The prediction's model decides; an unknown uuid gets the same 404 as another project's,
    # so the answer does not tell the caller which uuids exist.
    Owners(services).check_prediction(
        caller, Right.OPERATE, body.predictionUuid, services.writer.flush
    )
    try:
        services.store.add_delayed(*args)
    except NotFound:
        services.writer.flush()
        services.store.add_delayed(*args)
    return Response(status_code=204)


@router.post(
    "/metrics/delayed/batch", summary="Attach delayed metrics (ground truth) to many predictions"
)
def add_delayed_batch(body: DelayedBatchIn, services: ServicesDep, caller: Writer) -> Response:
    """Up to ``MAX_DELAYED_BATCH`` (uuid, metrics) items in one transaction (the store's
    ``add_delayed_many``): answers ``{"stored", "unchanged", "unknown": [uuids]}``. Unknown uuids
    are reported, not refused (the buffered writer is flushed once first, as on the single
    route). Every known uuid's model must be one the caller may operate on: a uuid of a project
    the caller has no role in refuses the whole batch with the 404 of an unknown prediction,
    a role too low with 403; nothing is stored then."""
    items: list[tuple[str, dict[str, Any]]] = [
        (
            item.predictionUuid,
            check_record(item.metrics, f"delayed metrics of {item.predictionUuid!r}"),
        )
        for item in body.items
    ]
    uuids = [uuid for uuid, _ in items]
    where = services.store.prediction_deployments(uuids)
    if len(where) < len(set(uuids)):
        services.writer.flush()
        where.update(services.store.prediction_deployments([u for u in uuids if u not in where]))
    _check_delayed_scope(services, caller, where)
    result = services.store.add_delayed_many(items, body.source, skip_unchanged=body.skipUnchanged)
    answer = {"stored": result.stored, "unchanged": result.unchanged, "unknown": result.unknown}
    return Response(orjson.dumps(answer), media_type="application/json")


def _check_delayed_scope(services: Services, caller: Caller, where: dict[str, str]) -> None:
    """Each deployment the batch's known uuids belong to: the caller may operate on its model
    (the 404 names one uuid of it, as the single route would)."""
    owners = Owners(services)
    first: dict[str, str] = {}
    for uuid, deployment in where.items():
        first.setdefault(deployment, uuid)
    for deployment, uuid in sorted(first.items()):
        model = owners.deployment_model(deployment)
        owners.check_model_crn(caller, Right.OPERATE, model, f"prediction {uuid!r}")


@router.post("/metrics/aggregate", status_code=204, summary="Write an aggregate record")
def add_aggregate(body: AggregateIn, services: ServicesDep, caller: Writer) -> Response:
    metrics = check_record(body.metrics, f"aggregate of {body.modelDeploymentCrn!r}")
    Owners(services).check_deployment(caller, Right.OPERATE, body.modelDeploymentCrn)
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
    caller: Reader,
    modelCrn: str | None = None,
    modelBuildCrn: str | None = None,
    modelDeploymentCrn: str | None = None,
    startTimeStampMs: Annotated[ReadMs, Query()] = 0,
    endTimeStampMs: Annotated[ReadMs | None, Query()] = None,
    kind: Annotated[list[str] | None, Query()] = None,
    limit: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
    pageToken: str | None = None,
) -> Response:
    _check_read(services, caller, modelCrn, modelBuildCrn, modelDeploymentCrn)
    if not (modelCrn or modelBuildCrn or modelDeploymentCrn):
        raise InvalidInput(
            "reading metrics needs one of modelCrn, modelBuildCrn or modelDeploymentCrn"
        )
    try:
        kinds = frozenset(RecordKind(k) for k in kind) if kind else frozenset(RecordKind)
    except ValueError as exc:
        accepted = ", ".join(k.value for k in RecordKind)
        raise InvalidInput(f"kind={kind!r} is not accepted; accepted: {accepted}") from exc
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
    caller: Reader,
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
        services,
        caller,
        modelCrn,
        modelBuildCrn,
        modelDeploymentCrn,
        startTimeStampMs,
        endTimeStampMs,
    )
    name, ranks = check_arguments(metric, quantile or list(DEFAULT_QUANTILES), bins)
    found = services.store.distribution(query, name, ranks, bins)
    body = to_dict(found)
    body["quantiles"] = {repr(q): v for q, v in body["quantiles"].items()}
    return Response(orjson.dumps(body), media_type="application/json")


def _read_query(
    services: Services,
    caller: Caller,
    model_crn: str | None,
    build_crn: str | None,
    deployment_crn: str | None,
    start_ms: int,
    end_ms: int | None,
) -> StoreQuery:
    """The store query of a read route, after the identifier and access checks."""
    _check_read(services, caller, model_crn, build_crn, deployment_crn)
    if not (model_crn or build_crn or deployment_crn):
        raise InvalidInput(
            "reading metrics needs one of modelCrn, modelBuildCrn or modelDeploymentCrn"
        )
    return StoreQuery(
        model_crn=model_crn,
        build_crn=build_crn,
        deployment_crn=deployment_crn,
        start_ms=start_ms,
        end_ms=end_ms,
    )


@router.post("/runs/{run_id}/metrics", status_code=204, summary="Track metrics of a job run")
def track_run_metrics(
    run_id: str, body: RunMetricsIn, services: ServicesDep, caller: RunWriter
) -> Response:
    """Recorded in the registry's run metrics at once, so they show with the run while it goes
    (``GET /api/v1/runs/{run_id}``). ``run_id`` is the run's uuid (``MODELYARD_RUN_ID``); a run's
    own key may write to its own run only (the rule answers any other as unknown), an operator
    of the job's project to any of its runs."""
    if not is_uuid(run_id):
        raise InvalidInput(
            f"run {run_id!r} is not accepted; expected the run's uuid (MODELYARD_RUN_ID, the last "
            "part of 'crn:modelyard:run/<uuid>')",
            run=run_id,
        )
    metrics = check_record(body.metrics, f"metrics of run {run_id!r}")
    services.registry.add_run_metrics(RUN_SCOPE_PREFIX + run_id, metrics)
    return Response(status_code=204)
