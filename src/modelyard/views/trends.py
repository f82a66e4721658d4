"""What the overview draws beside each model's numbers: its state (healthy, degraded,
alerting, stopped, starting) with the reasons, and short trends of requests/s, p99 latency and
its monitor's main metric.

Reads stay small however busy the model is: the gateway's ``tech.*`` aggregates of the last
hour (one record per interval) and the monitor aggregates of the last two weeks (one per
window; the gateway's intervals older than a day are merged hourly by rollup). Blocking.
"""

from __future__ import annotations

import math
from typing import Any

from modelyard.store.base import Query, Record, RecordKind
from modelyard.web.services import Services

__all__ = ["MAIN_METRICS", "TREND_POINTS", "model_health", "model_trends", "overview_trends"]

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
TREND_POINTS = 30  # buckets of the last hour's traffic trend
MONITOR_TREND_MS = 14 * DAY_MS
MAIN_METRICS = ("roc_auc", "accuracy", "f1", "r2", "rmse", "mae", "label_coverage")
"""The first of these a monitor writes is its main metric on the overview."""
DEGRADED_ERROR_RATE = 0.01
_AGGREGATES = frozenset({RecordKind.AGGREGATE})


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def model_health(row: dict[str, Any]) -> tuple[str, list[str]]:
    """An overview row's state and why: ``starting`` (preparing or deploying), ``stopped`` (no
    deployment serves it), ``alerting`` (an alert fires), ``degraded`` (replicas down, errors
    of 1 % or more, drift flagged) or ``healthy``."""
    state = row.get("state")
    if state in ("preparing", "deploying"):
        return "starting", [str(row.get("preparing_what") or state)]
    if row.get("deployment_crn") is None or state != "active":
        return "stopped", [f"deployment {state}"]
    why: list[str] = []
    alerts = row.get("open_alerts") or []
    if alerts:
        why.append(f"{len(alerts)} alert{'s' if len(alerts) > 1 else ''} firing")
    replicas = row.get("replicas") or {}
    healthy, total = replicas.get("healthy", 0), replicas.get("total", 0)
    if healthy < total or total == 0:
        why.append(f"{healthy} of {total} replicas healthy")
    errors = row.get("error_rate")
    if errors is not None and errors >= DEGRADED_ERROR_RATE:
        why.append(f"{errors * 100:.1f} % of requests failed")
    flagged = row.get("drift_flagged")
    count = len(flagged) if isinstance(flagged, list) else (_number(flagged) or 0)
    if count:
        why.append(f"drift flagged on {count:g} feature{'s' if count != 1 else ''}")
    if alerts:
        return "alerting", why
    return ("degraded" if why else "healthy"), why


def _traffic(records: list[Record], now: int) -> dict[str, list[float | None]]:
    width = HOUR_MS // TREND_POINTS
    start = now - HOUR_MS
    requests = [0.0] * TREND_POINTS
    seconds = [0.0] * TREND_POINTS
    weighted = [0.0] * TREND_POINTS
    for record in records:
        slot = (record.start_ms - start) // width
        if not 0 <= slot < TREND_POINTS:
            continue
        n = _number(record.metrics.get("tech.requests")) or 0.0
        requests[slot] += n
        seconds[slot] += max(0.001, (record.end_ms - record.start_ms) / 1000)
        weighted[slot] += n * (_number(record.metrics.get("tech.latency_p99_ms")) or 0.0)
    return {
        "rps": [requests[i] / seconds[i] if seconds[i] else None for i in range(TREND_POINTS)],
        "p99_ms": [weighted[i] / requests[i] if requests[i] else None for i in range(TREND_POINTS)],
    }


def _main_metric(records: list[Record]) -> tuple[str | None, list[float | None]]:
    monitor = [r for r in records if not all(k.startswith("tech.") for k in r.metrics)]
    keys = {k for r in monitor for k in r.metrics}
    name = next((m for m in MAIN_METRICS if m in keys), None)
    if name is None:
        return None, []
    points = sorted((r.end_ms, _number(r.metrics.get(name))) for r in monitor if name in r.metrics)
    return name, [v for _, v in points]


def model_trends(services: Services, deployment_crn: str | None, now: int) -> dict[str, Any]:
    """The last hour's requests/s and p99 latency (``TREND_POINTS`` buckets) and the monitor's
    main metric per window of the last two weeks, for one overview row."""
    if deployment_crn is None:
        return {"rps": [], "p99_ms": [], "metric": None, "metric_values": []}
    store = services.store
    recent = store.read(
        Query(deployment_crn=deployment_crn, start_ms=now - HOUR_MS, end_ms=now, kinds=_AGGREGATES)
    )[0]
    traffic = _traffic([r for r in recent if "tech.requests" in r.metrics], now)
    older = store.read(
        Query(
            deployment_crn=deployment_crn,
            start_ms=now - MONITOR_TREND_MS,
            end_ms=now - HOUR_MS - 1,
            kinds=_AGGREGATES,
        )
    )[0]
    metric, values = _main_metric(older + recent)
    return {**traffic, "metric": metric, "metric_values": values}


def overview_trends(services: Services, rows: list[dict[str, Any]], now: int) -> dict[str, Any]:
    """``model_trends`` of every overview row, by model name."""
    return {row["name"]: model_trends(services, row.get("deployment_crn"), now) for row in rows}
