"""A model's story on one time axis: what changed (deploys, rollbacks, scale changes, replica
restarts, stops) and what was seen (the monitored metric with its interval, label coverage, drift
flags, alerts firing and resolving), for ``GET /api/v1/models/{name}/timeline`` and the
dashboard's timeline page.

Everything comes from what stays small however many predictions the store holds: the registry's
deployments, builds, replica events (bounded per deployment) and alert episodes, the audit log's
scale/stop/start entries for the model, and the monitors' aggregate records (one per window).
No raw prediction is read.

Builds are named by their order among the model's builds ("build 3"), with their id, so "AUC fell
right after build 3 rolled out" reads from the page as it would be said.
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from modelyard.errors import InvalidInput
from modelyard.registry import Deployment, Model
from modelyard.store.base import Query, RecordKind
from modelyard.web.services import Services

__all__ = [
    "MAIN_METRICS",
    "RANGES",
    "build_names",
    "deployment_windows",
    "main_metric",
    "monitor_windows",
    "range_bounds",
    "read_aggregates",
    "timeline",
]

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
RANGES = {"24h": DAY_MS, "7d": 7 * DAY_MS, "30d": 30 * DAY_MS, "all": None}
# The metric a monitor is judged by, the first one its windows carry (classification first).
MAIN_METRICS = (
    "roc_auc",
    "rmse",
    "mae",
    "r2",
    "accuracy",
    "pr_auc",
    "estimated_roc_auc",
)
REPLICA_EVENTS = 500  # newest replica events read per deployment
AUDIT_ENTRIES = 1_000  # newest scale/stop/start audit entries read
_AGGREGATES = frozenset({RecordKind.AGGREGATE})
# Replica event kinds shown (``healthy`` and ``waiting_for_resources`` are routine and many).
_REPLICA_KINDS = {
    "exited": "Replica exited",
    "recycled": "Replica recycled",
    "unhealthy": "Replica unhealthy",
    "spawn_failed": "Replica failed to start",
    "leftover_killed": "Leftover replica killed",
    "restarted": "Replica restarted",
}
_AUDITED = {"models.scale": "scale", "models.stop": "stop", "models.start": "start"}


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def range_bounds(name: str, now_ms: int, first_ms: int | None = None) -> tuple[int, int]:
    """(start, end) of a named range ending now; ``all`` starts at ``first_ms`` (the model's
    creation) or the epoch."""
    if name not in RANGES:
        raise InvalidInput(f"range={name!r} is not accepted; accepted: {', '.join(RANGES)}")
    width = RANGES[name]
    if width is None:
        return (first_ms or 0), now_ms
    return now_ms - width, now_ms


def build_names(services: Services, model: Model) -> dict[str, str]:
    """Build CRN -> "build N (abcdef12)", N its place among the model's builds, oldest first."""
    builds = sorted(services.registry.list_builds(model.name), key=lambda b: b.created_ms)
    return {b.crn: f"build {i} ({b.crn.rsplit('/', 1)[-1][:8]})" for i, b in enumerate(builds, 1)}


def main_metric(windows: list[dict[str, Any]]) -> str | None:
    """The first of ``MAIN_METRICS`` any window carries a value of."""
    for name in MAIN_METRICS:
        if any(_finite(w["metrics"].get(name)) is not None for w in windows):
            return name
    return None


def monitor_windows(
    services: Services, deployments: list[Deployment], start_ms: int, end_ms: int
) -> list[dict[str, Any]]:
    """The monitors' window records of ``deployments`` in the range (the gateway's ``tech.*``
    intervals left out), oldest first: start, end, deployment, build and metrics."""
    out = []
    for d in deployments:
        for w in deployment_windows(services, d.crn, start_ms, end_ms):
            out.append({**w, "build_crn": d.build_crn})
    out.sort(key=lambda w: (w["start_ms"], w["end_ms"]))
    return out


def deployment_windows(
    services: Services, deployment_crn: str, start_ms: int, end_ms: int
) -> list[dict[str, Any]]:
    """One deployment's monitor window records starting in the range: start, end, metrics."""
    return read_aggregates(services, deployment_crn, start_ms, end_ms)[0]


def read_aggregates(
    services: Services, deployment_crn: str, start_ms: int, end_ms: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One deployment's aggregate records starting in the range, oldest first, read once and
    split: the monitors' windows (any key not ``tech.*``) and the gateway's intervals (a
    ``tech.requests`` count); each as start, end, deployment and metrics. Read column-wise
    (``store.scan``: JSON text, decoded once here), not as ``Record`` objects: a day of the
    gateway's 10 s intervals is 8,640 of them."""
    query = Query(
        deployment_crn=deployment_crn, start_ms=start_ms, end_ms=end_ms, kinds=_AGGREGATES
    )
    windows: list[dict[str, Any]] = []
    tech: list[dict[str, Any]] = []
    for batch in services.store.scan(query):
        for start, end, text in zip(batch.start_ms, batch.end_ms, batch.metrics, strict=True):
            metrics = orjson.loads(text)
            item = {
                "start_ms": start,
                "end_ms": end,
                "deployment_crn": deployment_crn,
                "metrics": metrics,
            }
            # The first key settles most records (a monitor's "n"); the rest are looked at whole.
            first = next(iter(metrics), "tech.")
            if not first.startswith("tech.") or not all(k.startswith("tech.") for k in metrics):
                windows.append(item)
            if "tech.requests" in metrics:
                tech.append(item)
    return windows, tech


def _event(at_ms: int, kind: str, title: str, detail: str = "", **extra: Any) -> dict[str, Any]:
    return {"at_ms": int(at_ms), "kind": kind, "title": title, "detail": detail, **extra}


def _deploy_events(deployments: list[Deployment], names: dict[str, str]) -> list[dict[str, Any]]:
    events = []
    seen: set[str] = set()
    for d in sorted(deployments, key=lambda d: d.created_ms):
        build = names.get(d.build_crn, d.build_crn.rsplit("/", 1)[-1][:8])
        again = d.build_crn in seen
        seen.add(d.build_crn)
        kind, verb = ("rollback", "Rolled back to") if again else ("deploy", "Deployed")
        detail = f"{d.replicas} replica{'s' if d.replicas != 1 else ''}; now {d.state.value}"
        events.append(_event(d.created_ms, kind, f"{verb} {build}", detail, build=build))
        if d.state.value in ("stopped", "failed") and d.updated_ms > d.created_ms:
            events.append(_event(d.updated_ms, d.state.value, f"{build} {d.state.value}"))
    return events


def _replica_events(services: Services, deployments: list[Deployment]) -> list[dict[str, Any]]:
    events = []
    for d in deployments:
        for e in services.registry.events(d.crn, REPLICA_EVENTS):
            title = _REPLICA_KINDS.get(e.kind)
            if title is None:
                continue
            code = e.details.get("exit_code")
            reason = e.details.get("reason") or e.details.get("error") or ""
            detail = f"{e.replica_id}" + (f", exit code {code}" if code is not None else "")
            detail += f": {reason}" if reason else ""
            events.append(_event(e.at_ms, "replica", title, detail, replica_event=e.kind))
    return events


def _audit_events(services: Services, model: Model, start_ms: int) -> list[dict[str, Any]]:
    entries = services.registry.audit.list(
        project_crn=model.project_crn, action="models", since_ms=start_ms, limit=AUDIT_ENTRIES
    )
    events = []
    for entry in entries:
        kind = _AUDITED.get(entry.action)
        if kind is None or entry.object != model.name or entry.outcome != "ok":
            continue
        title = {"scale": "Scaled", "stop": "Stopped", "start": "Started"}[kind]
        events.append(_event(entry.at_ms, kind, f"{title} by {entry.actor}"))
    return events


def _window_events(windows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drift flags: the first flagged window of each run of flagged windows, and the first
    clean one after it."""
    events = []
    flagged_before = False
    for w in windows:
        count = _finite(w["metrics"].get("drift.flagged"))
        if count is None:
            continue
        features = w["metrics"].get("drift.flagged_features") or []
        if count > 0 and not flagged_before:
            names = ", ".join(map(str, features)) or f"{count:.0f} features"
            events.append(_event(w["start_ms"], "drift", f"Drift flagged: {names}"))
        elif count == 0 and flagged_before:
            events.append(_event(w["start_ms"], "drift_clear", "No drift flagged any more"))
        flagged_before = count > 0
    return events


def _alert_events(
    services: Services, deployments: list[Deployment], start_ms: int, end_ms: int
) -> list[dict[str, Any]]:
    events = []
    for d in deployments:
        for a in services.registry.monitors.alerts(all_states=True, deployment_crn=d.crn):
            value = _finite(a.get("value"))
            shown = f"value {value:.3g}" if value is not None else ""
            events.append(
                _event(a["fired_ms"], "alert", f"Alert fired: {a['rule']}", shown, rule=a["rule"])
            )
            if a.get("resolved_ms"):
                events.append(_event(a["resolved_ms"], "resolved", f"Alert resolved: {a['rule']}"))
    return [e for e in events if start_ms <= e["at_ms"] <= end_ms]


def _series(windows: list[dict[str, Any]], metric: str | None) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {
        k: [] for k in ("t", "value", "low", "high", "coverage", "flagged", "n")
    }
    for w in windows:
        m = w["metrics"]
        out["t"].append((w["start_ms"] + w["end_ms"]) // 2)
        out["value"].append(_finite(m.get(metric)) if metric else None)
        out["low"].append(_finite(m.get(f"{metric}_ci_low")) if metric else None)
        out["high"].append(_finite(m.get(f"{metric}_ci_high")) if metric else None)
        out["coverage"].append(_finite(m.get("label_coverage")))
        out["flagged"].append(_finite(m.get("drift.flagged")))
        out["n"].append(_finite(m.get("n")))
    return out


def timeline(services: Services, name: str, start_ms: int, end_ms: int) -> dict[str, Any]:
    """The model's events in the range, oldest first, and its monitor windows' series (the main
    metric with its interval, label coverage, features flagged). The caller's right to read the
    model is checked before."""
    if start_ms > end_ms:
        raise InvalidInput(f"start={start_ms} is after end={end_ms}; give start <= end (epoch ms)")
    model = services.registry.get_model(name)
    deployments = services.registry.list_deployments(model.crn)
    names = build_names(services, model)
    windows = monitor_windows(services, deployments, start_ms, end_ms)
    metric = main_metric(windows)
    events = [
        *_deploy_events(deployments, names),
        *_replica_events(services, deployments),
        *_audit_events(services, model, start_ms),
        *_window_events(windows),
        *_alert_events(services, deployments, start_ms, end_ms),
    ]
    events = sorted(
        (e for e in events if start_ms <= e["at_ms"] <= end_ms),
        key=lambda e: (e["at_ms"], e["kind"]),
    )
    return {
        "model": model.name,
        "start_ms": start_ms,
        "end_ms": end_ms,
        "metric": metric,
        "windows": len(windows),
        "series": _series(windows, metric),
        "events": events,
    }
