"""Running a monitor: which windows are due, computing them, writing one result per window.

Windows are aligned to the window length (a 1h monitor computes 13:00-14:00, never
13:17-14:17) and end-exclusive: a prediction at exactly 14:00 belongs to the next window. A run
computes:

1. every complete window after the last one this monitor computed (the first run starts at the
   spec's ``start`` or at the deployment's first prediction), at most ``max_windows`` per run;
2. every window it computed before whose labels changed since: late labels are found by their
   arrival time, the ``tracked_ms`` the store keeps for each delayed value. Each run looks at
   the values of the label key tracked in (previous run's mark, now - ``settle_ms``]; the mark
   stays ``settle_ms`` (60 s) behind the clock so a label stamped just before a run but committed
   just after it is still seen by the next one;
3. with ``window=(start, end)``: exactly the aligned windows overlapping [start, end), recomputed
   whether or not they were due.

Each result goes to the store with ``replace_aggregate`` (source ``monitor:<name>``), so a
recomputed window has one aggregate record, and to table ``monitor_results`` (the alerts'
history and the mark of what was computed). Then the spec's alert rules are evaluated and their
notifications sent (``modelyard.monitors.alerts``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import pandas as pd

from modelyard.analysis import DriftReference
from modelyard.errors import InvalidInput, NotFound
from modelyard.monitors import alerts as alerts_mod
from modelyard.monitors._store import monitor_store, now_ms
from modelyard.monitors.compute import window_metrics
from modelyard.monitors.references import load_reference
from modelyard.monitors.spec import MonitorSpec
from modelyard.monitors.window import read_window
from modelyard.store import sqlaccess
from modelyard.store.base import MetricsStore, Query, RecordKind

__all__ = ["DEFAULT_SETTLE_MS", "MAX_WINDOWS", "WindowResult", "parse_window", "run_monitor"]

DEFAULT_SETTLE_MS = 60_000
MAX_WINDOWS = 1000


@dataclass(frozen=True)
class WindowResult:
    """One computed window: [start_ms, end_ms), why it was computed, and what was written."""

    start_ms: int
    end_ms: int
    reason: str  # "new", "late_labels" or "requested"
    metrics: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "reason": self.reason,
            "metrics": self.metrics,
        }


def resolve_deployment(spec: MonitorSpec, store: MetricsStore) -> str:
    """The deployment CRN the spec watches (a model name resolves to its active deployment)."""
    if spec.deployment is not None:
        store.resolve(spec.deployment)  # NotFound naming the CRN if unknown
        return spec.deployment
    from modelyard.registry import Registry

    assert spec.model is not None
    active = Registry(store).active_deployment(spec.model)
    if active is None:
        raise NotFound(
            f"model {spec.model!r} of monitor {spec.name!r} has no active deployment; deploy it "
            "or give the spec a 'deployment' CRN"
        )
    return active.crn


def _first_prediction_ms(store: MetricsStore, deployment: str) -> int | None:
    query = Query(deployment_crn=deployment, kinds=frozenset({RecordKind.PREDICTION}), limit=1)
    records, _ = store.read(query)
    return records[0].start_ms if records else None


def _state(store: MetricsStore, monitor: str) -> tuple[int | None, int | None, set[int]]:
    """(last window start, labels-through mark, starts of every computed window)."""
    with sqlaccess.reading(store) as cur:
        starts = {
            int(r[0])
            for r in cur.execute(
                sqlaccess.sql(store, "SELECT start_ms FROM monitor_results WHERE monitor = ?"),
                (monitor,),
            ).fetchall()
        }
        row = cur.execute(
            sqlaccess.sql(store, "SELECT labels_through_ms FROM monitor_state WHERE monitor = ?"),
            (monitor,),
        ).fetchone()
    return (max(starts) if starts else None), (int(row[0]) if row else None), starts


def _late_label_windows(
    store: MetricsStore, deployment: str, key: str, after_ms: int, through_ms: int, window_ms: int
) -> set[int]:
    """Starts of the windows holding predictions whose ``key`` arrived in (after, through]."""
    with sqlaccess.reading(store) as cur:
        rows = cur.execute(
            sqlaccess.sql(
                store,
                "SELECT DISTINCT p.start_ms FROM delayed_metrics d "
                "JOIN prediction_uuids p ON p.uuid = d.uuid "
                "JOIN identities i ON i.id = p.deployment_id "
                "WHERE d.tracked_ms > ? AND d.tracked_ms <= ? AND d.key = ? "
                "AND i.deployment_crn = ?",
            ),
            (after_ms, through_ms, key, deployment),
        ).fetchall()
    return {int(r[0]) // window_ms * window_ms for r in rows}


def _reference(
    spec: MonitorSpec, store: MetricsStore, deployment: str
) -> tuple[DriftReference | None, pd.Series[Any] | None]:
    needs_drift = "drift" in spec.metrics
    needs_prediction = "prediction_drift" in spec.metrics
    if not (needs_drift or needs_prediction):
        return None, None
    if spec.reference_stored is not None:
        frame = load_reference(deployment, spec.reference_stored, store=store)
    else:
        assert spec.reference_window is not None
        w = spec.reference_window
        columns = [*spec.features, spec.prediction]
        frame = read_window(store, deployment, w.start_ms, w.end_ms, columns, None).frame
        if frame.empty:
            raise InvalidInput(
                f"monitor {spec.name!r}: reference window {w.start_ms}..{w.end_ms} of "
                f"{deployment} holds no predictions; pick a window with data"
            )
    drift_ref = None
    if needs_drift:
        missing = [f for f in spec.features if f not in frame.columns]
        if missing:
            raise InvalidInput(
                f"monitor {spec.name!r}: features {missing!r} are not columns of the reference "
                f"(it has {list(frame.columns)!r}); upload a reference with those columns"
            )
        drift_ref = DriftReference(
            frame[list(spec.features)], categorical=list(spec.categorical), workers=1
        )
    predictions = None
    if needs_prediction and spec.prediction in frame.columns:
        predictions = pd.to_numeric(frame[spec.prediction], errors="coerce")
    return drift_ref, predictions


def _save(
    store: MetricsStore, spec: MonitorSpec, deployment: str, result: WindowResult, n: int
) -> None:
    labelled = result.metrics.get("labelled") or 0
    text = orjson.dumps(result.metrics).decode()

    def write(cur: sqlaccess.Cursor) -> None:
        cur.execute(
            sqlaccess.sql(store, "DELETE FROM monitor_results WHERE monitor = ? AND start_ms = ?"),
            (spec.name, result.start_ms),
        )
        cur.execute(
            sqlaccess.sql(
                store,
                "INSERT INTO monitor_results (monitor, deployment_crn, start_ms, end_ms, n, "
                "labelled, metrics, computed_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            ),
            (spec.name, deployment, result.start_ms, result.end_ms, n, labelled, text, now_ms()),
        )

    store.replace_aggregate(deployment, result.start_ms, result.end_ms, result.metrics, spec.source)
    sqlaccess.transaction(store, write)


def _save_mark(store: MetricsStore, monitor: str, deployment: str, through: int) -> None:
    def write(cur: sqlaccess.Cursor) -> None:
        cur.execute(sqlaccess.sql(store, "DELETE FROM monitor_state WHERE monitor = ?"), (monitor,))
        cur.execute(
            sqlaccess.sql(
                store,
                "INSERT INTO monitor_state (monitor, deployment_crn, labels_through_ms, "
                "updated_ms) VALUES (?, ?, ?, ?)",
            ),
            (monitor, deployment, through, now_ms()),
        )

    sqlaccess.transaction(store, write)


def due_windows(
    spec: MonitorSpec,
    store: MetricsStore,
    deployment: str,
    *,
    window: tuple[int, int] | None,
    now: int,
    settle_ms: int,
    max_windows: int,
) -> tuple[list[tuple[int, str]], int | None]:
    """(window start, reason) pairs in time order, and the new labels-through mark."""
    w = spec.window_ms
    last, mark, computed = _state(store, spec.name)
    if window is not None:
        start, end = window
        if start >= end:
            raise InvalidInput(f"window {start}..{end} is empty; give START < END")
        first = start // w * w
        return [(s, "requested") for s in range(first, end, w)][:max_windows], mark
    chosen: dict[int, str] = {}
    through = None
    if spec.label is not None:
        through = now_ms() - settle_ms
        if mark is not None and computed and through > mark:
            late = _late_label_windows(store, deployment, spec.label, mark, through, w)
            chosen.update((s, "late_labels") for s in late & computed)
        elif mark is not None:
            through = max(mark, through)
    if last is not None:
        begin = last + w
    elif spec.start_ms is not None:
        begin = spec.start_ms // w * w
    else:
        first_ms = _first_prediction_ms(store, deployment)
        begin = now if first_ms is None else first_ms // w * w
    for s in range(begin, now - w + 1, w):
        if len(chosen) >= max_windows:
            break
        chosen.setdefault(s, "new")
    return sorted(chosen.items()), through


def run_monitor(
    spec: MonitorSpec,
    *,
    window: tuple[int, int] | None = None,
    now_ms: int | None = None,
    store: MetricsStore | None = None,
    settle_ms: int = DEFAULT_SETTLE_MS,
    max_windows: int = MAX_WINDOWS,
    notify: bool = True,
) -> list[WindowResult]:
    """Compute the due windows of ``spec`` (see the module docstring), write, alert, notify.

    ``now_ms`` (default: the clock) decides which windows are complete; ``window`` (epoch ms
    start, end) recomputes exactly those windows. ``store`` defaults to the SDK's embedded store.
    Returns the windows computed, in time order.
    """
    if not isinstance(spec, MonitorSpec):
        raise InvalidInput(f"spec must be a MonitorSpec, got {type(spec).__name__}")
    if type(max_windows) is not int or max_windows < 1:
        raise InvalidInput(f"max_windows={max_windows!r} must be a positive int")
    db = monitor_store(store)
    deployment = resolve_deployment(spec, db)
    now = _clock() if now_ms is None else int(now_ms)
    todo, through = due_windows(
        spec, db, deployment, window=window, now=now, settle_ms=settle_ms, max_windows=max_windows
    )
    results: list[WindowResult] = []
    if todo:
        drift_ref, ref_predictions = _reference(spec, db, deployment)
        columns = list(dict.fromkeys([*spec.features, spec.prediction, *_label(spec)]))
        for start, reason in todo:
            end = start + spec.window_ms
            data = read_window(db, deployment, start, end, columns, spec.label)
            metrics = window_metrics(spec, data, drift_ref, ref_predictions)
            result = WindowResult(start, end, reason, metrics)
            _save(db, spec, deployment, result, data.n)
            results.append(result)
    if through is not None:
        _save_mark(db, spec.name, deployment, through)
    fired = alerts_mod.evaluate_monitor(db, spec.name, deployment, spec.alerts)
    if notify and spec.notify and fired:
        alerts_mod.send_notifications(spec.notify, fired)
    return results


def parse_window(text: str) -> tuple[int, int]:
    """``START..END`` (epoch ms, ISO 8601, or a duration before now) as (start_ms, end_ms)."""
    from modelyard.timeparse import parse_time_ms

    start, sep, end = str(text).partition("..")
    if not sep or not start.strip() or not end.strip():
        raise InvalidInput(
            f"window {text!r} is not START..END; e.g. 2026-11-01..2026-11-02 or 3d..1d "
            "(epoch ms, ISO 8601, or a duration before now)"
        )
    first, last = parse_time_ms(start, "window start"), parse_time_ms(end, "window end")
    if first >= last:
        raise InvalidInput(f"window {text!r} starts at {first}, not before its end {last}")
    return first, last


def _label(spec: MonitorSpec) -> list[str]:
    return [spec.label] if spec.label is not None else []


def _clock() -> int:
    return now_ms()
