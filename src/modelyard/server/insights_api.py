"""``/api/v1`` read routes the dashboard draws from: overview, tech and metric time series, recent
predictions, one prediction by uuid, a build's log. Each route is a thin wrapper around
``modelyard.views.insights`` (the dashboard calls the same functions); plain ``def`` routes, run on
FastAPI's worker threads because store reads block. Times are epoch milliseconds; ``start``/``end``
default to the last hour.

Who may read: viewers and above of the model's project. Routes with ``{name}`` are checked on the
model by their rule (``On.MODEL``); those naming a deployment or a prediction in the query check
it in the handler (``views.owners``), with one 404 for an unknown object and for one in a project
the caller has no role in; the overview lists only the models the caller sees."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from modelyard import clock
from modelyard.server.limits import ReadMs
from modelyard.views import compare as compare_view
from modelyard.views import drift, insights
from modelyard.views import timeline as timeline_view
from modelyard.views.owners import Owners
from modelyard.web.access import Caller, On, Right, requires
from modelyard.web.services import Services, ServicesDep

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["insights"])
Reader = Annotated[Caller, Depends(requires(Right.READ))]  # lists: filtered to what it sees
ModelReader = Annotated[Caller, Depends(requires(Right.READ, On.MODEL))]
BodyReader = Annotated[Caller, Depends(requires(Right.READ, On.BODY))]
Start = Annotated[
    ReadMs | None, Query(description="epoch ms (0 to 2200-01-01); default: an hour before end")
]
End = Annotated[ReadMs | None, Query(description="epoch ms (0 to 2200-01-01); default: now")]


def _read_deployment(services: Services, caller: Caller, deployment_crn: str) -> None:
    Owners(services).check_deployment(caller, Right.READ, deployment_crn)


@router.get("/overview", summary="Every model: state, replicas, traffic, latest monitor results")
def overview(
    services: ServicesDep,
    caller: Reader,
    project: Annotated[str | None, Query(description="only this project's models")] = None,
) -> dict[str, Any]:
    project_crn = Owners(services).project_filter(caller, project)
    return insights.overview(services, caller, None, project_crn)


@router.get("/models/{name}/tech", summary="Requests/s, latency percentiles and failures")
def tech(
    name: str,
    services: ServicesDep,
    caller: ModelReader,
    start: Start = None,
    end: End = None,
    points: Annotated[int, Query(ge=10, le=2_000)] = insights.TECH_POINTS,
) -> dict[str, Any]:
    lo, hi = insights.check_range(start, end)
    return insights.tech_series(services, name, lo, hi, points)


@router.get("/models/{name}/builds/{build_id}/log", summary="The last lines of a build's log")
def build_log(
    name: str,
    build_id: str,
    services: ServicesDep,
    caller: ModelReader,
    tail: Annotated[int, Query(ge=0, le=100_000)] = 400,
) -> dict[str, Any]:
    lines = insights.build_log(services, name, build_id, tail)
    return {"model": name, "build": build_id, "lines": lines}


@router.get("/models/{name}/predictions", summary="The latest prediction records, newest first")
def recent_predictions(
    name: str,
    services: ServicesDep,
    caller: ModelReader,
    limit: Annotated[int, Query(ge=1, le=500)] = 20,
) -> dict[str, Any]:
    return insights.recent_predictions(services, name, limit)


@router.get("/predictions/{uuid}", summary="One prediction and when each delayed value arrived")
def prediction(uuid: str, services: ServicesDep, caller: BodyReader) -> dict[str, Any]:
    # First, so one answer goes to an unknown uuid and to another project's.
    Owners(services).check_prediction(caller, Right.READ, uuid)
    return insights.find_prediction(services, uuid)


@router.get("/series", summary="One metric of a deployment: raw, rollups and aggregates")
def series(
    services: ServicesDep,
    caller: BodyReader,
    deployment: Annotated[str, Query(description="deployment CRN")],
    metric: Annotated[str, Query(description="metric key, e.g. score or roc_auc")],
    start: Start = None,
    end: End = None,
) -> dict[str, Any]:
    _read_deployment(services, caller, deployment)
    lo, hi = insights.check_range(start, end)
    return insights.metric_series(services, deployment, metric, lo, hi)


@router.get("/series/keys", summary="Numeric metric keys seen in a sample of a range")
def series_keys(
    services: ServicesDep,
    caller: BodyReader,
    deployment: Annotated[str, Query(description="deployment CRN")],
    start: Start = None,
    end: End = None,
) -> dict[str, Any]:
    _read_deployment(services, caller, deployment)
    lo, hi = insights.check_range(start, end)
    return insights.metric_keys(services, deployment, lo, hi)


@router.get("/drift", summary="Drift effects of a deployment's monitor windows, by feature")
def drift_matrix(
    services: ServicesDep,
    caller: BodyReader,
    deployment: Annotated[str, Query(description="deployment CRN")],
    method: Annotated[str, Query(description=", ".join(drift.METHODS))] = "psi",
    start: Start = None,
    end: End = None,
) -> dict[str, Any]:
    _read_deployment(services, caller, deployment)
    lo, hi = insights.check_range(start, end, default_ms=7 * insights.DAY_MS)
    return drift.drift_matrix(services, deployment, lo, hi, method)


@router.get("/drift/groups", summary="Multivariate drift and segment gaps per monitor window")
def drift_groups(
    services: ServicesDep,
    caller: BodyReader,
    deployment: Annotated[str, Query(description="deployment CRN")],
    start: Start = None,
    end: End = None,
) -> dict[str, Any]:
    _read_deployment(services, caller, deployment)
    lo, hi = insights.check_range(start, end, default_ms=7 * insights.DAY_MS)
    return drift.drift_groups(services, deployment, lo, hi)


@router.get("/drift/distributions", summary="Reference and window histograms of one feature")
def drift_distributions(
    services: ServicesDep,
    caller: BodyReader,
    deployment: Annotated[str, Query(description="deployment CRN")],
    feature: str,
    start: Start = None,
    end: End = None,
    reference: str = "training",
) -> dict[str, Any]:
    """``start``/``end`` default to the last hour, as on every dashboard route."""
    _read_deployment(services, caller, deployment)
    lo, hi = insights.check_range(start, end)
    return drift.drift_distributions(services, deployment, feature, lo, hi, reference)


@router.get("/models/{name}/timeline", summary="Deploys, restarts, drift, alerts and the metric")
def timeline(
    name: str,
    services: ServicesDep,
    caller: ModelReader,
    range: Annotated[str, Query(description="24h, 7d, 30d or all")] = "7d",
) -> dict[str, Any]:
    model = services.registry.get_model(name)
    lo, hi = timeline_view.range_bounds(range, clock.now_ms(), model.created_ms)
    return timeline_view.timeline(services, name, lo, hi)


@router.get("/models/{name}/compare", summary="Two builds or two periods side by side")
def compare(
    name: str,
    services: ServicesDep,
    caller: ModelReader,
    a: Annotated[str | None, Query(description="build:<id or number> or period:<ms>-<ms>")] = None,
    b: Annotated[str | None, Query(description="build:<id or number> or period:<ms>-<ms>")] = None,
) -> dict[str, Any]:
    return compare_view.compare(services, name, a, b)
