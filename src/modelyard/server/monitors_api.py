"""``/api/v1/monitors/*``: what a monitor running against a server needs besides ``/metrics``.

``modelyard.monitors.remote.RemoteAccess`` calls these when ``MODELYARD_URL`` is set (a job run, a
notebook on another machine); each runs ``modelyard.monitors.access.EmbeddedAccess`` on the
server's store, in a plain ``def`` route (FastAPI's worker threads).

Who may, as for metrics: every route names a deployment (or ``resolve`` a model), and its model's
project decides: viewers read, operators write a monitor's state, results and alerts. Run keys
may use these routes (a job run's key: the models of its job's project; a deployment's key: its
own model). An unknown deployment and one of a project the caller has no role in get one 404.
A monitor's name is not checked against a project: names are chosen by monitor specs, not by
jobs (a notebook runs monitors too), and its state and results are kept per monitor and
deployment. Its alert episodes are kept per monitor name only, so evaluating alerts also needs
the right on every deployment the monitor already has alerts of (``_check_alerts``).

- ``GET  /monitors/resolve?deployment=CRN | model=NAME`` -> ``{"deployment_crn"}``
- ``GET  /monitors/keys?deployment&wanted=K...`` -> ``{"keys", "records"}``: the keys its latest
  records carry (and those of ``wanted`` among its delayed values), to check a spec against
- ``POST /monitors/label-times`` ``{deployment, key, uuids}`` -> ``{"times": {uuid: ms}}``
- ``GET  /monitors/late-labels?deployment&key&after_ms&through_ms&window_ms`` -> ``{"starts"}``
- ``POST /monitors/distribution`` ``{deployment, start_ms, end_ms, key, ranks}`` ->
  ``{count, exact, rank_error, min, max, mean, values}`` (quantiles at ``ranks``)
- ``GET  /monitors/{name}/state?deployment`` -> ``{"starts", "labels_through_ms"}``;
  ``PUT`` with ``{deployment, labels_through_ms}`` sets the mark
- ``GET  /monitors/{name}/results?deployment&start_ms`` -> ``{"results": [...]}``;
  ``PUT`` with ``{deployment, source, start_ms, end_ms, n, metrics}`` replaces one window (one
  that has not ended by the server's clock is stored partial: ``window.partial``)
- ``POST /monitors/{name}/alerts`` ``{deployment, rules}`` -> ``{"alerts": [due notifications]}``
- ``GET  /monitors/connection?deployment&connection`` -> ``{"connection", "project_crn"}``: the
  definition (never a credential) of a connection of the deployment's project, for a ``labels:``
  or ``reference:`` source read by a monitor's run
- ``GET  /monitors/{name}/labels?deployment&limit`` -> ``{"watermark", "imports": [...]}``: its
  label imports, newest first; ``PUT`` with ``{deployment, record, advance, watermark}`` records
  one (and, with ``advance``, moves the watermark), in one transaction
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field

from modelyard.clock import now_ms
from modelyard.errors import InvalidInput
from modelyard.monitors.access import EmbeddedAccess
from modelyard.registry import KEEP_WATERMARK, ImportRecord
from modelyard.server.limits import MAX_TIME_MS, ReadMs
from modelyard.views.owners import Owners
from modelyard.web.access import Caller, On, Right, requires
from modelyard.web.services import Services, ServicesDep

__all__ = ["MAX_LABEL_UUIDS", "MAX_RANKS", "router"]

router = APIRouter(prefix="/api/v1/monitors", tags=["monitors"])
Reader = Annotated[Caller, Depends(requires(Right.READ, On.BODY, run_keys=True))]
Writer = Annotated[Caller, Depends(requires(Right.OPERATE, On.BODY, run_keys=True))]
MAX_LABEL_UUIDS = 10_000
MAX_RANKS = 10_001
_NAME = r"^[a-z0-9][a-z0-9._-]{0,62}$"  # as specs.monitor accepts
Deployment = Annotated[str, Query(min_length=1, max_length=300, description="deployment CRN")]


def _check(services: Services, caller: Caller, deployment: str, right: Right = Right.READ) -> None:
    """404 for an unknown deployment and for one in a project the caller has no role in, 403
    for a role too low; then the store's NotFound for an unknown deployment (what a server
    administrator gets)."""
    Owners(services).check_deployment(caller, right, deployment)
    services.store.resolve(deployment)


def _check_alerts(services: Services, caller: Caller, monitor: str, deployment: str) -> None:
    """Evaluating a monitor's alerts reconciles its episodes of every deployment (they are kept
    per monitor name): the caller needs OPERATE on each deployment it already has alerts of,
    besides the one named, so no project's alerts are resolved from another."""
    _check(services, caller, deployment, Right.OPERATE)
    owners = Owners(services)
    stored = services.registry.monitors.alerts(all_states=True, monitor=monitor)
    for crn in sorted({a["deployment_crn"] for a in stored} - {deployment}):
        owners.check_deployment(caller, Right.OPERATE, crn)


class LabelTimesIn(BaseModel):
    deployment: str = Field(min_length=1, max_length=300)
    key: str = Field(min_length=1, max_length=200)
    uuids: list[str] = Field(description=f"at most {MAX_LABEL_UUIDS} prediction uuids")


class DistributionIn(BaseModel):
    deployment: str = Field(min_length=1, max_length=300)
    start_ms: ReadMs
    end_ms: ReadMs
    key: str = Field(min_length=1, max_length=200)
    ranks: list[float]


class MarkIn(BaseModel):
    deployment: str = Field(min_length=1, max_length=300)
    labels_through_ms: ReadMs


class ResultIn(BaseModel):
    deployment: str = Field(min_length=1, max_length=300)
    source: str = Field(min_length=1, max_length=200)
    start_ms: ReadMs
    end_ms: ReadMs
    n: int = Field(ge=0, le=2**53)  # a count of predictions, stored in a 64-bit column
    metrics: dict[str, Any]


class ImportIn(BaseModel):
    deployment: str = Field(min_length=1, max_length=300)
    record: dict[str, Any]
    advance: bool = False
    watermark: Any = None


class AlertsIn(BaseModel):
    deployment: str = Field(min_length=1, max_length=300)
    rules: list[str]


@router.get("/resolve", summary="The deployment a monitor watches (a model's active one)")
def resolve(
    services: ServicesDep,
    caller: Reader,
    deployment: Annotated[str | None, Query(max_length=300)] = None,
    model: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    # What is named is checked first: 404 before any other answer could tell what exists.
    owners = Owners(services)
    if model is not None:
        owners.check_model(caller, Right.READ, model)
    if deployment is not None:
        owners.check_deployment(caller, Right.READ, deployment)
    if (deployment is None) == (model is None):
        raise InvalidInput(
            f"give exactly one of deployment (a CRN) and model (a name); got "
            f"deployment={deployment!r}, model={model!r}"
        )
    crn = EmbeddedAccess(services.store).resolve(deployment, model)
    _check(services, caller, crn)
    return {"deployment_crn": crn}


@router.get("/keys", summary="The keys a deployment has recorded (to check a monitor spec)")
def recorded_keys(
    services: ServicesDep,
    caller: Reader,
    deployment: Deployment,
    wanted: Annotated[list[str] | None, Query(max_length=1000)] = None,
) -> dict[str, Any]:
    access = EmbeddedAccess(services.store)

    def work() -> dict[str, Any]:
        _check(services, caller, deployment)
        found = access.recorded_keys(deployment, [w[:200] for w in wanted or ()])
        return {"keys": sorted(found.keys), "records": found.records}

    return work()


@router.post("/label-times", summary="When each prediction's first label value arrived")
def label_times(services: ServicesDep, caller: Reader, body: LabelTimesIn) -> dict[str, Any]:
    _check(services, caller, body.deployment)
    if len(body.uuids) > MAX_LABEL_UUIDS:
        raise InvalidInput(
            f"{len(body.uuids)} uuids in one request; send at most {MAX_LABEL_UUIDS} per request"
        )
    access = EmbeddedAccess(services.store)

    def work() -> dict[str, Any]:
        return {"times": access.label_times(body.deployment, body.key, body.uuids)}

    return work()


@router.get("/late-labels", summary="Windows whose predictions got a label in a time range")
def late_labels(
    services: ServicesDep,
    caller: Reader,
    deployment: Deployment,
    label: Annotated[str, Query(alias="key", min_length=1, max_length=200)],
    after_ms: Annotated[ReadMs, Query()],
    through_ms: Annotated[ReadMs, Query()],
    window_ms: Annotated[int, Query(ge=1000, le=MAX_TIME_MS)],
) -> dict[str, Any]:
    access = EmbeddedAccess(services.store)

    def work() -> dict[str, Any]:
        _check(services, caller, deployment)
        starts = access.late_label_windows(deployment, label, after_ms, through_ms, window_ms)
        return {"starts": sorted(starts)}

    return work()


@router.post("/distribution", summary="Quantiles of a key over a window (sketches once rolled up)")
def distribution(services: ServicesDep, caller: Reader, body: DistributionIn) -> dict[str, Any]:
    _check(services, caller, body.deployment)
    if not body.ranks or len(body.ranks) > MAX_RANKS:
        raise InvalidInput(
            f"{len(body.ranks)} ranks requested; give 1 to {MAX_RANKS} ranks in [0, 1]"
        )
    if body.start_ms >= body.end_ms:
        raise InvalidInput(f"window {body.start_ms}..{body.end_ms} is empty; give start < end")
    access = EmbeddedAccess(services.store)

    def work() -> dict[str, Any]:
        dist = access.distribution(
            body.deployment, body.start_ms, body.end_ms, body.key, body.ranks
        )
        values = [dist.quantiles[float(r)] for r in body.ranks]
        return {
            "count": dist.count,
            "exact": dist.exact,
            "rank_error": dist.rank_error,
            "min": dist.min,
            "max": dist.max,
            "mean": dist.mean,
            "values": [v if math.isfinite(v) else None for v in values],
        }

    return work()


@router.get("/{name}/state", summary="Windows a monitor computed and its label mark")
def state(
    services: ServicesDep, caller: Reader, name: str, deployment: Deployment
) -> dict[str, Any]:
    access = EmbeddedAccess(services.store)

    def work() -> dict[str, Any]:
        _check(services, caller, deployment)
        starts, mark = access.state(_name(name), deployment)
        return {"starts": sorted(starts), "labels_through_ms": mark}

    return work()


@router.put("/{name}/state", status_code=204, summary="Set a monitor's label mark")
def save_mark(services: ServicesDep, caller: Writer, name: str, body: MarkIn) -> Response:
    access = EmbeddedAccess(services.store)

    def work() -> None:
        _check(services, caller, body.deployment, Right.OPERATE)
        access.save_mark(_name(name), body.deployment, body.labels_through_ms)

    work()
    return Response(status_code=204)


@router.get("/{name}/results", summary="A monitor's stored result of one window")
def results(
    services: ServicesDep,
    caller: Reader,
    name: str,
    deployment: Deployment,
    start_ms: Annotated[ReadMs, Query()],
) -> dict[str, Any]:
    access = EmbeddedAccess(services.store)

    def work() -> dict[str, Any]:
        _check(services, caller, deployment)
        found = access.result(_name(name), deployment, start_ms)
        if found is None:
            return {"results": []}
        return {
            "results": [
                {
                    "start_ms": found.start_ms,
                    "end_ms": found.end_ms,
                    "n": found.n,
                    "metrics": found.metrics,
                }
            ]
        }

    return work()


@router.put("/{name}/results", status_code=204, summary="Replace a monitor's result of a window")
def save_result(services: ServicesDep, caller: Writer, name: str, body: ResultIn) -> Response:
    _check(services, caller, body.deployment, Right.OPERATE)
    if body.start_ms >= body.end_ms:
        raise InvalidInput(f"window {body.start_ms}..{body.end_ms} is empty; give start < end")
    if body.source != f"monitor:{name}":
        raise InvalidInput(
            f"source {body.source!r} does not belong to monitor {name!r}; expected 'monitor:{name}'"
        )
    access = EmbeddedAccess(services.store)
    metrics = body.metrics
    if body.end_ms > now_ms() and not metrics.get("window.partial"):
        # By this server's clock the window has not ended: whatever the client's clock said, it
        # is stored partial, so the next run after its end computes it again (issue 11).
        metrics = {**metrics, "window.partial": True}

    access.save(
        _name(name), body.source, body.deployment, body.start_ms, body.end_ms, body.n, metrics
    )
    return Response(status_code=204)


@router.post("/{name}/alerts", summary="Evaluate a monitor's alert rules over its results")
def evaluate_alerts(
    services: ServicesDep, caller: Writer, name: str, body: AlertsIn
) -> dict[str, Any]:
    from modelyard.analysis import parse_rule

    monitor = _name(name)
    _check_alerts(services, caller, monitor, body.deployment)
    for rule in body.rules:
        parse_rule(rule)  # InvalidInput naming the rule
    access = EmbeddedAccess(services.store)
    return {"alerts": access.evaluate_alerts(monitor, body.deployment, body.rules)}


def _name(name: str) -> str:
    if not re.match(_NAME, name):
        raise InvalidInput(
            f"monitor name {name!r} is not accepted; use lower-case letters, digits, '.', '_' "
            "or '-' (at most 63, starting with a letter or digit)"
        )
    return name


@router.get("/connection", summary="A connection a monitor's labels or reference read from")
def connection(
    services: ServicesDep,
    caller: Reader,
    deployment: Deployment,
    connection: Annotated[str, Query(min_length=1, max_length=200)],
) -> dict[str, Any]:
    _check(services, caller, deployment)
    found, project_crn = EmbeddedAccess(services.store).connection(deployment, connection)
    return {"connection": found.to_dict(), "project_crn": project_crn}


@router.get("/{name}/labels", summary="A monitor's label imports and watermark")
def label_imports(
    services: ServicesDep,
    caller: Reader,
    name: str,
    deployment: Deployment,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> dict[str, Any]:
    _check(services, caller, deployment)
    labels = services.registry.labels
    return {
        "watermark": labels.watermark(_name(name)),
        "imports": [r.to_dict() for r in labels.imports(_name(name), limit)],
    }


@router.put("/{name}/labels", summary="Record a monitor's label import (and move its watermark)")
def record_import(
    services: ServicesDep, caller: Writer, name: str, body: ImportIn
) -> dict[str, Any]:
    _check(services, caller, body.deployment, Right.OPERATE)
    monitor = _name(name)
    access = EmbeddedAccess(services.store)
    project_crn = Owners(services).deployment_project(body.deployment) or ""
    try:
        record = ImportRecord.from_dict({**body.record, "monitor": monitor})
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInput(
            f"record={str(body.record)[:200]} is not an import record ({exc}); give monitor, "
            "connection, started_ms, finished_ms and the counts"
        ) from None
    advance = body.watermark if body.advance else KEEP_WATERMARK
    return access.record_import(monitor, body.deployment, project_crn, record, advance).to_dict()
