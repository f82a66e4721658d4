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

A window whose raw records rollup has already folded into buckets is computed from what the
buckets keep (``modelyard.monitors.sketched``): drift from sketches, with ``drift.source:
"sketch"`` and its error bounds; label metrics are not recomputable that way.

Each result goes to the store with ``replace_aggregate`` (source ``monitor:<name>``), so a
recomputed window has one aggregate record, and to table ``monitor_results`` (the alerts'
history and the mark of what was computed), unless it would replace a better one
(``keep_better``): a result from raw records is never replaced by one from sketches, nor by one
from fewer raw records (retention or rollup took some away); the kept result only gains the
drift keys it lacked. Then the spec's alert rules are evaluated and their notifications sent
(``modelyard.monitors.alerts``).

Where the data comes from is ``modelyard.monitors.access``: the embedded store, or the server
over HTTP with the SDK's key when ``MODELYARD_URL`` is set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from modelyard.analysis import DriftReference
from modelyard.errors import InvalidInput
from modelyard.monitors import alerts as alerts_mod
from modelyard.monitors._store import now_ms
from modelyard.monitors.access import MonitorAccess, StoredResult, open_access
from modelyard.monitors.compute import clean_metrics, window_metrics
from modelyard.monitors.sketched import sketch_window_metrics
from modelyard.monitors.spec import MonitorSpec
from modelyard.monitors.window import WindowData, read_window
from modelyard.store.base import MetricsStore, Query, RecordKind

__all__ = [
    "DEFAULT_SETTLE_MS",
    "MAX_WINDOWS",
    "WindowResult",
    "keep_better",
    "parse_window",
    "run_monitor",
]

DEFAULT_SETTLE_MS = 60_000
MAX_WINDOWS = 1000


@dataclass(frozen=True)
class WindowResult:
    """One computed window: [start_ms, end_ms), why it was computed, and what it now holds.

    ``written`` is False when the stored result was kept because it came from more data
    (``metrics`` is then that stored result).
    """

    start_ms: int
    end_ms: int
    reason: str  # "new", "late_labels" or "requested"
    metrics: dict[str, Any]
    written: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "reason": self.reason,
            "written": self.written,
            "metrics": self.metrics,
        }


def _first_record_ms(access: MonitorAccess, deployment: str) -> int | None:
    """Start of the deployment's first prediction, raw or already rolled up."""
    firsts = []
    for kind in (RecordKind.PREDICTION, RecordKind.ROLLUP):
        query = Query(deployment_crn=deployment, kinds=frozenset({kind}))
        for batch in access.scan(query, 1):
            if len(batch):
                firsts.append(min(batch.start_ms))
            break
    return min(firsts) if firsts else None


def _reference(
    spec: MonitorSpec, access: MonitorAccess, deployment: str
) -> tuple[pd.DataFrame | None, DriftReference | None, pd.Series[Any] | None]:
    needs_drift = "drift" in spec.metrics
    needs_prediction = "prediction_drift" in spec.metrics
    if not (needs_drift or needs_prediction):
        return None, None, None
    if spec.reference_stored is not None:
        frame = access.reference(deployment, spec.reference_stored)
    else:
        assert spec.reference_window is not None
        w = spec.reference_window
        columns = [*spec.features, spec.prediction]
        frame = read_window(access, deployment, w.start_ms, w.end_ms, columns, None).frame
        if frame.empty:
            raise InvalidInput(
                f"monitor {spec.name!r}: reference window {w.start_ms}..{w.end_ms} of "
                f"{deployment} holds no raw predictions; pick a window with data"
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
    return frame, drift_ref, predictions


def _rank(metrics: dict[str, Any], n: int | None = None) -> tuple[bool, int]:
    """(computed from raw records, predictions counted): the better result ranks higher."""
    return metrics.get("window.source", "raw") == "raw", int(metrics.get("n") or n or 0)


_DRIFT_METHODS = ("psi", "ks", "wasserstein", "jensen_shannon", "chi2", "unseen_share")


def _group(key: str) -> str:
    """Which result a key belongs to: ``drift`` (its effects too), ``prediction_drift``, ..."""
    head = key.split(".", 1)[0]
    return "drift" if head in _DRIFT_METHODS else head


def keep_better(
    previous: StoredResult | None, metrics: dict[str, Any]
) -> tuple[dict[str, Any], bool]:
    """What the window should hold, and whether that must be written.

    The new result replaces the stored one unless it ranks lower (``_rank``: a result from raw
    records beats one from sketches, then more predictions beat fewer). A kept raw result gains
    the keys of a sketch result that it lacks (the drift of a window computed before the spec
    asked for drift), never the reasons of metrics it has, and stays ``window.source: raw``.
    """
    if previous is None or _rank(metrics) >= _rank(previous.metrics, previous.n):
        return metrics, True
    old = previous.metrics
    has = {_group(k) for k in old if k.endswith(".flagged")}
    added = {
        k: v
        for k, v in metrics.items()
        if k not in old
        and k not in ("n", "window.source")
        and not k.endswith(".reason")
        and _group(k) not in has
    }
    if not added:
        return old, False
    return {**old, **added}, True


def due_windows(
    spec: MonitorSpec,
    access: MonitorAccess,
    deployment: str,
    *,
    window: tuple[int, int] | None,
    now: int,
    settle_ms: int,
    max_windows: int,
) -> tuple[list[tuple[int, str]], int | None]:
    """(window start, reason) pairs in time order, and the new labels-through mark."""
    w = spec.window_ms
    computed, mark = access.state(spec.name, deployment)
    last = max(computed) if computed else None
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
            late = access.late_label_windows(deployment, spec.label, mark, through, w)
            chosen.update((s, "late_labels") for s in late & computed)
        elif mark is not None:
            through = max(mark, through)
    if last is not None:
        begin = last + w
    elif spec.start_ms is not None:
        begin = spec.start_ms // w * w
    else:
        first_ms = _first_record_ms(access, deployment)
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
    start, end) recomputes exactly those windows. ``store`` defaults to the SDK's backend: its
    embedded store, or the server named by ``MODELYARD_URL`` (``modelyard.monitors.access``).
    Returns the windows computed, in time order.
    """
    if not isinstance(spec, MonitorSpec):
        raise InvalidInput(f"spec must be a MonitorSpec, got {type(spec).__name__}")
    if type(max_windows) is not int or max_windows < 1:
        raise InvalidInput(f"max_windows={max_windows!r} must be a positive int")
    access = open_access(store)
    deployment = access.resolve(spec.deployment, spec.model)
    now = _clock() if now_ms is None else int(now_ms)
    todo, through = due_windows(
        spec,
        access,
        deployment,
        window=window,
        now=now,
        settle_ms=settle_ms,
        max_windows=max_windows,
    )
    results: list[WindowResult] = []
    if todo:
        ref_frame, drift_ref, ref_predictions = _reference(spec, access, deployment)
        columns = list(dict.fromkeys([*spec.features, spec.prediction, *_label(spec)]))
        for start, reason in todo:
            end = start + spec.window_ms
            data = read_window(access, deployment, start, end, columns, spec.label)
            metrics = _compute(
                spec, data, ref_frame, drift_ref, ref_predictions, access, deployment, start, end
            )
            kept, write = keep_better(access.result(spec.name, deployment, start), metrics)
            if write:
                n = int(kept.get("n") or 0)
                access.save(spec.name, spec.source, deployment, start, end, n, kept)
            results.append(WindowResult(start, end, reason, kept, write))
    if through is not None:
        access.save_mark(spec.name, deployment, through)
    fired = access.evaluate_alerts(spec.name, deployment, spec.alerts)
    if notify and spec.notify and fired:
        alerts_mod.send_notifications(spec.notify, fired)
    return results


def _compute(
    spec: MonitorSpec,
    data: WindowData,
    ref_frame: pd.DataFrame | None,
    drift_ref: DriftReference | None,
    ref_predictions: pd.Series[Any] | None,
    access: MonitorAccess,
    deployment: str,
    start: int,
    end: int,
) -> dict[str, Any]:
    if data.rolled.buckets:
        metrics = clean_metrics(
            sketch_window_metrics(spec, data, ref_frame, access, deployment, start, end)
        )
        metrics["window.source"] = "sketch"
    else:
        metrics = window_metrics(spec, data, drift_ref, ref_predictions)
        metrics["window.source"] = "raw"
    return metrics


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
