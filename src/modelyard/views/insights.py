"""Read-side service functions shared by the REST API (``insights_api``) and the dashboard.

Both call these and nothing else, so a page never shows what the API would not. Every function
reads what stays small however many predictions the store holds: the gateway's ``tech.*``
aggregates (one record per deployment per interval), monitor aggregates, rollup buckets, one
record through the uuid index, or a bounded page of raw records (``limit``). None scans a large
window of raw predictions.

All functions block on the database: routes call them from plain ``def`` routes (FastAPI's
worker threads) or through ``web.offloop.off_loop``, never on the event loop.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from modelyard import clock
from modelyard.errors import InvalidInput, NotFound
from modelyard.registry import Model
from modelyard.runtime import ReplicaStatus
from modelyard.store.base import Query, Record, RecordKind
from modelyard.views.series import RAW_LIMIT, metric_series
from modelyard.views.trends import model_health
from modelyard.web.access import Caller
from modelyard.web.jsonable import jsonable
from modelyard.web.services import Services

__all__ = [
    "MAX_RANGE_MS",
    "RAW_LIMIT",
    "build_log",
    "check_range",
    "find_prediction",
    "metric_keys",
    "metric_series",
    "model_status",
    "overview",
    "recent_predictions",
    "tech_series",
]

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
MAX_RANGE_MS = 400 * DAY_MS
TECH_POINTS = 300  # a chart's points: tech intervals are merged into wider buckets beyond this
OVERVIEW_TECH_MS = 5 * MINUTE_MS  # "now" for requests/s, p99 and errors on the overview
OVERVIEW_MONITOR_MS = DAY_MS  # where the overview looks for the latest monitor results
_AGGREGATES = frozenset({RecordKind.AGGREGATE})
_ROLLUPS = frozenset({RecordKind.ROLLUP})
_RAW = frozenset({RecordKind.PREDICTION})


def check_range(
    start_ms: int | None, end_ms: int | None, default_ms: int = HOUR_MS
) -> tuple[int, int]:
    """(start, end) in epoch ms; end defaults to now and start to ``default_ms`` before it."""
    end = clock.now_ms() if end_ms is None else end_ms
    start = end - default_ms if start_ms is None else start_ms
    if start > end:
        raise InvalidInput(f"start={start} is after end={end}; give start <= end (epoch ms)")
    if end - start > MAX_RANGE_MS:
        raise InvalidInput(
            f"the range {start}..{end} spans {(end - start) / DAY_MS:.0f} days; accepted: at most "
            f"{MAX_RANGE_MS // DAY_MS} days"
        )
    return start, end


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


# -- models ---------------------------------------------------------------------------------------


def model_status(services: Services, name: str) -> dict[str, Any]:
    """``GET /api/v1/models/{name}``: the controller's status as JSON."""
    body = jsonable(services.controller.status(name))
    return body if isinstance(body, dict) else {"status": body}


def _latest(records: Iterable[Record], prefix: str) -> Record | None:
    latest = None
    for record in records:
        if any(k.startswith(prefix) for k in record.metrics):
            latest = record
    return latest


def overview(
    services: Services,
    caller: Caller,
    now_ms: int | None = None,
    project_crn: str | None = None,
) -> dict[str, Any]:
    """Every model ``caller`` may see (of ``project_crn`` only, when given) with its state,
    replicas, requests/s, p99 latency, error rate (the last ``tech.*`` interval of the last five
    minutes), latest ROC AUC and drift flags (the latest monitor aggregate of the last day that
    carries them), and its health (``trends.model_health``: healthy, degraded, alerting,
    stopped, starting, with the reasons). A key limited to one model sees that model only;
    nobody sees the models of a project they have no role in."""
    now = clock.now_ms() if now_ms is None else now_ms
    rows = []
    for model in services.registry.list_models(project_crn):
        if caller.sees_model(model):
            row = _overview_row(services, model, now)
            row["health"], row["health_why"] = model_health(row)
            rows.append(row)
    return {"models": rows, "generated_ms": now}


def _state(preparing: str | None, active: Any) -> str:
    if preparing:
        return "preparing"
    return str(active.state.value) if active else "not serving"


def _overview_row(services: Services, model: Model, now: int) -> dict[str, Any]:
    status = services.controller.status(model.name)
    active = status.active
    healthy = sum(1 for r in status.replicas if r.state.status is ReplicaStatus.HEALTHY)
    row: dict[str, Any] = {
        "name": model.name,
        "crn": model.crn,
        # "preparing": this server is fetching the build's snapshot or making its environment
        # before it starts replicas (serving/controller/prepare.py); "preparing_what" says which.
        "state": _state(status.preparing, active),
        "preparing_what": status.preparing,
        "deployment_crn": active.crn if active else None,
        "replicas": {"healthy": healthy, "total": len(status.replicas)},
        "rps": None,
        "p99_ms": None,
        "error_rate": None,
        "roc_auc": None,
        "drift_flagged": None,
        "monitor_ms": None,
        "open_alerts": [],
    }
    if active is None:
        return row
    store = services.store
    tech_query = Query(
        deployment_crn=active.crn, start_ms=now - OVERVIEW_TECH_MS, end_ms=now, kinds=_AGGREGATES
    )
    tech = _latest(store.read(tech_query)[0], "tech.requests")
    if tech is not None:
        requests = _number(tech.metrics.get("tech.requests")) or 0.0
        failures = _number(tech.metrics.get("tech.failures")) or 0.0
        row["rps"] = _number(tech.metrics.get("tech.rps"))
        row["p99_ms"] = _number(tech.metrics.get("tech.latency_p99_ms"))
        row["error_rate"] = failures / requests if requests else None
    # Monitor windows are usually an hour or a day: look back two hours first, and read the
    # whole day (every tech interval in it too) only when nothing more recent is there.
    monitor_records: list[Record] = []
    for back in (2 * HOUR_MS, OVERVIEW_MONITOR_MS):
        monitor_query = Query(
            deployment_crn=active.crn, start_ms=now - back, end_ms=now, kinds=_AGGREGATES
        )
        monitor_records = [
            r
            for r in store.read(monitor_query)[0]
            if not all(k.startswith("tech.") for k in r.metrics)
        ]
        if monitor_records:
            break
    auc = _latest(monitor_records, "roc_auc")
    if auc is not None:
        row["roc_auc"] = _number(auc.metrics.get("roc_auc"))
        row["monitor_ms"] = auc.end_ms
    drift = _latest(monitor_records, "drift.flagged")  # not a window marked drift.insufficient
    if drift is not None:
        # The monitors write drift.flagged (how many) and drift.flagged_features (which).
        names = drift.metrics.get("drift.flagged_features")
        row["drift_flagged"] = names if names is not None else drift.metrics.get("drift.flagged")
        row["monitor_ms"] = max(row["monitor_ms"] or 0, drift.end_ms)
    from modelyard.monitors import list_alerts  # what GET /api/v1/alerts calls

    row["open_alerts"] = [
        {"rule": a["rule"], "monitor": a["monitor"], "value": a["value"]}
        for a in list_alerts(store=store, deployment_crn=active.crn)
    ]
    return row


def build_log(services: Services, name: str, build_id: str, tail: int = 400) -> list[str]:
    """The last ``tail`` lines of a build's log. The path comes from the registry's build
    record, never from the request; the build must belong to the model."""
    model = services.registry.get_model(name)
    crn = build_id if build_id.startswith("crn:") else f"crn:modelyard:build/{build_id}"
    build = services.registry.get_build(crn)
    if build.model_crn != model.crn:
        raise NotFound(f"build {build_id!r} is not a build of model {name!r}", build=build_id)
    if not build.log_path:
        return []
    path = Path(build.log_path)
    try:
        with path.open(encoding="utf-8", errors="replace") as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError:
        raise NotFound(f"the log of build {build_id!r} is gone ({path} was removed)") from None
    return lines[-tail:] if tail else []


# -- time series ----------------------------------------------------------------------------------


def tech_series(
    services: Services, name: str, start_ms: int, end_ms: int, points: int = TECH_POINTS
) -> dict[str, Any]:
    """Requests/s, latency percentiles and failures of every deployment of ``name`` from the
    gateway's ``tech.*`` aggregates. With more intervals than ``points``, intervals are merged
    into buckets of ``resolution_ms``: counts are summed, rates recomputed over the bucket and a
    bucket's percentiles are the request-weighted mean of its intervals' (an approximation the
    answer names)."""
    model = services.registry.get_model(name)
    query = Query(model_crn=model.crn, start_ms=start_ms, end_ms=end_ms, kinds=_AGGREGATES)
    intervals = [r for r in services.store.read(query)[0] if "tech.requests" in r.metrics]
    width = max(1, end_ms - start_ms)
    resolution = max(1_000, math.ceil(width / max(1, points)))
    natural = min((r.end_ms - r.start_ms for r in intervals), default=resolution)
    merged = len(intervals) > points
    if not merged:
        resolution = max(1, natural)
    buckets: dict[int, dict[str, float]] = {}
    for record in intervals:
        m = record.metrics
        slot = start_ms + ((record.start_ms - start_ms) // resolution) * resolution
        if not merged:
            slot = record.start_ms
        b = buckets.setdefault(
            slot,
            {"requests": 0.0, "failures": 0.0, "seconds": 0.0, "p50": 0.0, "p95": 0.0, "p99": 0.0},
        )
        n = _number(m.get("tech.requests")) or 0.0
        b["requests"] += n
        b["failures"] += _number(m.get("tech.failures")) or 0.0
        b["seconds"] += max(0.001, (record.end_ms - record.start_ms) / 1000)
        for q in ("p50", "p95", "p99"):
            b[q] += n * (_number(m.get(f"tech.latency_{q}_ms")) or 0.0)
    out: dict[str, list[Any]] = {
        k: [] for k in ("t", "requests", "failures", "rps", "p50_ms", "p95_ms", "p99_ms")
    }
    for slot in sorted(buckets):
        b = buckets[slot]
        seconds = resolution / 1000 if merged else b["seconds"]
        out["t"].append(slot)
        out["requests"].append(int(b["requests"]))
        out["failures"].append(int(b["failures"]))
        out["rps"].append(b["requests"] / seconds if seconds else None)
        for q in ("p50", "p95", "p99"):
            out[f"{q}_ms"].append(b[q] / b["requests"] if b["requests"] else None)
    return {
        "model": name,
        "start_ms": start_ms,
        "end_ms": end_ms,
        "intervals": len(intervals),
        "resolution_ms": resolution,
        "merged": merged,
        "series": out,
    }


def _with(base: Query, kinds: frozenset[RecordKind], limit: int | None = None) -> Query:
    return Query(
        deployment_crn=base.deployment_crn,
        start_ms=base.start_ms,
        end_ms=base.end_ms,
        kinds=kinds,
        limit=limit,
    )


def _width(ms: int) -> str:
    for unit, size in (("d", DAY_MS), ("h", HOUR_MS), ("min", MINUTE_MS), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size} {unit}"
    return f"{ms} ms"


def metric_keys(
    services: Services, deployment_crn: str, start_ms: int, end_ms: int, sample: int = 200
) -> dict[str, Any]:
    """The metric keys seen in a bounded sample of the range (first ``sample`` raw records,
    rollup buckets and aggregates), numeric ones only, sorted, with where each was seen."""
    services.store.resolve(deployment_crn)
    base = Query(deployment_crn=deployment_crn, start_ms=start_ms, end_ms=end_ms)
    seen: dict[str, set[str]] = {}
    for kinds in (_RAW, _ROLLUPS, _AGGREGATES):
        for record in services.store.read(_with(base, kinds, limit=sample))[0]:
            for k, v in record.metrics.items():
                if k.startswith("_"):  # a bucket's own bookkeeping (``_records``), not a metric
                    continue
                numeric = _number(v) is not None or (
                    isinstance(v, dict) and _number(v.get("mean")) is not None
                )
                if numeric:
                    seen.setdefault(k, set()).add(record.kind.value)
    return {"keys": [{"key": k, "kinds": sorted(v)} for k, v in sorted(seen.items())]}


# -- predictions ----------------------------------------------------------------------------------


def _reference(record: Record) -> dict[str, Any]:
    item = record.to_reference()
    item["kind"] = record.kind.value
    return item


def recent_predictions(
    services: Services, name: str, limit: int = 20, now_ms: int | None = None
) -> dict[str, Any]:
    """The model's latest ``limit`` raw prediction records, newest first: one backward index
    read per deployment (``store.recent``), so a busy model costs what a quiet one does; and
    ``delayed_keys``, those of their keys that arrive later (ground truth)."""
    if not 1 <= limit <= 500:
        raise InvalidInput(f"limit={limit!r} is not accepted; give 1 to 500")
    model = services.registry.get_model(name)
    now = clock.now_ms() if now_ms is None else now_ms
    found = services.store.recent(Query(model_crn=model.crn, end_ms=now, kinds=_RAW), limit)
    return {
        "model": name,
        "predictions": [_reference(r) for r in found],
        "delayed_keys": _delayed_keys(services, found),
    }


def _delayed_keys(services: Services, records: list[Record]) -> list[str]:
    """Which of the records' top-level keys arrive later (ground truth tracked with
    ``track_delayed_metrics``): one indexed lookup per key and deployment, at most 50 keys."""
    keys: dict[str, list[str]] = {}
    for record in records:
        named = keys.setdefault(record.identity.deployment_crn, [])
        named.extend(k for k in record.metrics if k not in named and len(named) < 50)
    found: set[str] = set()
    for deployment, named in keys.items():
        found |= services.store.delayed_keys(deployment, named)
    return sorted(found)


def find_prediction(services: Services, uuid: str) -> dict[str, Any]:
    """One prediction by uuid (delayed values merged) and each delayed value's arrival."""
    record = services.store.find_prediction(uuid)
    history = services.store.delayed_history(uuid)
    return {
        "prediction": _reference(record),
        "delayed": [jsonable(d) for d in history],
    }
