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
3. with ``window=(start, end)``: exactly the aligned windows overlapping [start, end) that have
   begun, recomputed whether or not they were due, plus the late-label windows of 2. (every path
   that writes a window keeps the label mark, so labels arriving after it are found later).

A window that has not ended yet (only a requested one can be) is stored *partial*:
``window.partial: true`` in its metrics, left out of the monitor's computed windows
(``MonitorAccess.state``), so the next scheduled run computes it again once it has closed, with
every prediction it holds. An empty window (no prediction, raw or rolled up) is kept in
``monitor_results`` as the mark that it was looked at, but written as no aggregate record
(``EmbeddedAccess.save``): `metrics read` shows results, not 60 rows of n=0.

Before computing, the spec's keys are checked against what the deployment has recorded
(``check_spec``): a ``prediction`` or feature no recent record carries is an error naming the
closest recorded keys; a ``label`` no value of which has arrived is a warning (labels come late)
unless a recorded key is close to it (``churn`` for ``churned``: an error); a deployment with no
records yet is a warning. ``jobs create --monitor`` runs the same checks on the server.

A window whose raw records rollup has already folded into buckets is computed from what the
buckets keep (``modelyard.monitors.sketched``): drift from sketches, with ``drift.source:
"sketch"`` and its error bounds; label metrics are not recomputable that way.

Each result goes to the store with ``replace_aggregate`` (source ``monitor:<name>``), so a
recomputed window has one aggregate record, and to the registry's ``monitor_results``
(``Registry.monitors``: the alerts' history and the mark of what was computed), unless it would
replace a better one (``keep_better``): a result from raw records is never replaced by one from
sketches, nor by one from fewer raw records (retention or rollup took some away); the kept result
only gains the drift keys it lacked. Then the spec's alert rules are evaluated and their
notifications sent (``modelyard.monitors.alerts``).

Where the data comes from is ``modelyard.monitors.access``: the embedded store, or the server
over HTTP with the SDK's key when ``MODELYARD_URL`` is set.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, NamedTuple

import pandas as pd

from modelyard.analysis import DriftReference
from modelyard.clock import now_ms
from modelyard.errors import InvalidInput
from modelyard.monitors import alerts as alerts_mod
from modelyard.monitors import extra_groups
from modelyard.monitors.access import MonitorAccess, StoredResult
from modelyard.monitors.compute import (
    apply_minimums,
    clean_metrics,
    window_metrics,
)
from modelyard.monitors.labels import import_labels
from modelyard.monitors.open_access import open_access
from modelyard.monitors.references import connection_reference
from modelyard.monitors.sketched import sketch_window_metrics
from modelyard.monitors.streamed import window_or_stream
from modelyard.monitors.window import WindowData, read_window
from modelyard.specs.monitor import MonitorSpec
from modelyard.specs.monitor_outputs import closest, insufficient_groups
from modelyard.store.base import MetricsStore, Query, RecordKind

__all__ = [
    "DEFAULT_SETTLE_MS",
    "MAX_WINDOWS",
    "WindowResult",
    "check_spec",
    "keep_better",
    "parse_window",
    "run_monitor",
]

DEFAULT_SETTLE_MS = 60_000
MAX_WINDOWS = 1000
PARTIAL = "window.partial"  # in a window's metrics: computed before it ended

log = logging.getLogger(__name__)
Warn = Callable[[str], None]


@dataclass(frozen=True)
class WindowResult:
    """One computed window: [start_ms, end_ms), why it was computed, and what it now holds.

    ``written`` is False when the stored result was kept because it came from more data
    (``metrics`` is then that stored result). ``not_evaluated``: the spec's alert rules this
    window gave no evidence for because a group had too few rows, each with why ("4 labelled
    predictions < min_labels 30"): their episodes kept their state.
    """

    start_ms: int
    end_ms: int
    reason: str  # "new", "late_labels" or "requested"
    metrics: dict[str, Any]
    written: bool = True
    not_evaluated: dict[str, str] = field(default_factory=dict)

    @property
    def partial(self) -> bool:
        """Computed before the window ended: the next run after its end computes it again."""
        return bool(self.metrics.get(PARTIAL))

    @property
    def empty(self) -> bool:
        """No prediction in the window (kept as looked at, written as no aggregate record)."""
        return not self.metrics.get("n")

    @property
    def insufficient(self) -> dict[str, str]:
        """The metric groups left out for too few rows (``min_labels``, ``min_predictions``),
        each with why."""
        return insufficient_groups(self.metrics)

    def notes(self) -> list[str]:
        """One line per group left out and per alert rule not evaluated on this window."""
        lines = [f"{group} not computed: {why}" for group, why in self.insufficient.items()]
        lines += [
            f"alert {rule!r} not evaluated: {why}" for rule, why in self.not_evaluated.items()
        ]
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "reason": self.reason,
            "written": self.written,
            "partial": self.partial,
            "empty": self.empty,
            "metrics": self.metrics,
            "insufficient": self.insufficient,
            "not_evaluated": self.not_evaluated,
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


class _Reference(NamedTuple):
    """What windows are compared with: the reference frame, the drift reference built from its
    features, and its prediction scores (each None when no metric asked needs it)."""

    frame: pd.DataFrame | None
    drift: DriftReference | None
    predictions: pd.Series[Any] | None


def _reference(
    spec: MonitorSpec, access: MonitorAccess, deployment: str, warn: Warn | None = None
) -> _Reference:
    needs_drift = "drift" in spec.metrics
    needs_prediction = "prediction_drift" in spec.metrics
    needs_multivariate = "multivariate_drift" in spec.metrics  # reads the frame itself
    if not (needs_drift or needs_prediction or needs_multivariate):
        return _Reference(None, None, None)
    if spec.reference_stored is not None:
        frame = access.reference(deployment, spec.reference_stored)
    elif spec.reference_source is not None:  # a table or file of a connection
        frame = connection_reference(access, deployment, spec.reference_source)
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
    if needs_drift or needs_multivariate:
        missing = [f for f in spec.features if f not in frame.columns]
        if missing:
            near = {m: closest(m, [str(c) for c in frame.columns]) for m in missing}
            raise InvalidInput(
                f"monitor {spec.name!r}: field 'features' names {missing!r}, which are not "
                f"columns of the reference (closest columns: {near!r}; it has "
                f"{list(frame.columns)!r}); fix the names or upload a reference with them"
            )
    if needs_drift:
        drift_ref = DriftReference(
            frame[list(spec.features)], categorical=list(spec.categorical), workers=1
        )
    predictions = None
    if needs_prediction and spec.prediction not in frame.columns:
        nearest = closest(spec.prediction, [str(c) for c in frame.columns])
        problem = (
            f"monitor {spec.name!r} asks for 'prediction_drift' but the reference has no "
            f"column 'prediction'={spec.prediction!r} (closest columns: {nearest!r}; it has "
            f"{list(frame.columns)!r}); add the scores to the reference or leave "
            "'prediction_drift' out of 'metrics'"
        )
        if spec.metrics_given:
            raise InvalidInput(problem)
        (warn or log.warning)(f"{problem}; it is a default, so it is not computed")
    elif needs_prediction:
        predictions = pd.to_numeric(frame[spec.prediction], errors="coerce")
    return _Reference(frame, drift_ref, predictions)


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
    if (
        previous is None
        or previous.metrics.get(PARTIAL)
        or _rank(metrics) >= _rank(previous.metrics, previous.n)
    ):
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
    computed, mark = access.state(spec.name, deployment)  # partial windows are not in computed
    last = max(computed) if computed else None
    chosen: dict[int, str] = {}
    if window is not None:
        start, end = window
        if start >= end:
            raise InvalidInput(f"window {start}..{end} is empty; give START < END")
        first = start // w * w
        # Windows that have not begun hold nothing yet; the open one is computed partial.
        chosen.update((s, "requested") for s in range(first, min(end, now + 1), w))
    through = None
    if spec.label is not None:
        # Every path keeps the label mark: labels arriving after the windows computed now were
        # read are found by the next run, whichever path computed them.
        through = now_ms() - settle_ms
        if mark is not None and computed and through > mark:
            late = access.late_label_windows(deployment, spec.label, mark, through, w)
            for s in sorted(late & computed):
                chosen.setdefault(s, "late_labels")
        elif mark is not None:
            through = max(mark, through)
    if window is not None:
        todo = sorted(chosen.items())
        if len(todo) > max_windows:  # late-label windows may be among those left: keep the mark
            return todo[:max_windows], mark
        return todo, through
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
    warn: Warn | None = None,
) -> list[WindowResult]:
    """Compute the due windows of ``spec`` (see the module docstring), write, alert, notify.

    ``now_ms`` (default: the clock) decides which windows are complete; ``window`` (epoch ms
    start, end) recomputes exactly those windows. ``store`` defaults to the SDK's backend: its
    embedded store, or the server named by ``MODELYARD_URL`` (``modelyard.monitors.access``).
    ``warn`` receives what the user should know but is no error (a deployment with no records
    yet, a label none of whose values has arrived); by default it goes to this module's logger.
    Returns the windows computed, in time order.
    """
    if not isinstance(spec, MonitorSpec):
        raise InvalidInput(f"spec must be a MonitorSpec, got {type(spec).__name__}")
    if type(max_windows) is not int or max_windows < 1:
        raise InvalidInput(f"max_windows={max_windows!r} must be a positive int")
    access = open_access(store)
    deployment = check_spec(spec, access, warn, reference=False)  # read below when needed
    import_labels(spec, access, deployment)  # ``labels:``: new ground truth first (monitors.labels)
    now = _clock() if now_ms is None else int(now_ms)
    if window is not None and window[1] > (now // spec.window_ms + 1) * spec.window_ms:
        (warn or log.warning)(
            f"windows of monitor {spec.name!r} after now ({now}) have not begun and are not "
            f"computed; the window asked for ends at {window[1]}"
        )
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
        ref = _reference(spec, access, deployment, warn)
        columns = list(
            dict.fromkeys([*spec.features, *spec.segments, spec.prediction, *_label(spec)])
        )
        compute = partial(_compute, spec, ref=ref, access=access, deployment=deployment)
        for start, reason in todo:
            end = start + spec.window_ms
            metrics = window_or_stream(
                spec,
                access,
                deployment,
                (start, end),
                columns,
                ref.drift,
                ref.predictions,
                partial(compute, start=start, end=end),
            )
            metrics = apply_minimums(spec, metrics)  # too few rows: no evidence for alerts
            if end > now:  # still open: stored partial, computed again once it has closed
                metrics[PARTIAL] = True
            kept, write = keep_better(access.result(spec.name, deployment, start), metrics)
            if write:
                n = int(kept.get("n") or 0)
                access.save(spec.name, spec.source, deployment, start, end, n, kept)
            skipped = alerts_mod.not_evaluated(spec, kept)
            results.append(WindowResult(start, end, reason, kept, write, skipped))
    if through is not None:
        access.save_mark(spec.name, deployment, through)
    fired = access.evaluate_alerts(spec.name, deployment, spec.alerts)
    if notify and spec.notify and fired:
        alerts_mod.send_notifications(spec.notify, fired)
    return results


def check_spec(
    spec: MonitorSpec, access: MonitorAccess, warn: Warn | None = None, *, reference: bool = True
) -> str:
    """The deployment ``spec`` watches, with the spec's keys checked against its records and
    its reference (see the module docstring); what a run checks first, and ``jobs create``.

    InvalidInput names the field, the bad key and the closest recorded keys; ``warn`` (default:
    the logger) gets a deployment with no records yet and a label not seen yet.
    """
    say = warn or log.warning
    deployment = access.resolve(spec.deployment, spec.model)
    wanted = list(dict.fromkeys([spec.prediction, *spec.features, *spec.segments, *_label(spec)]))
    found = access.recorded_keys(deployment, wanted)
    if found.records == 0:
        say(
            f"deployment {deployment} has recorded no prediction yet: monitor {spec.name!r} "
            f"cannot check its keys {wanted!r} against the records, and its windows stay empty "
            "until predictions arrive"
        )
    else:
        keys = sorted(found.keys)

        def unknown(name: str, key: str, why: str) -> InvalidInput:
            near = closest(key, keys)
            shown = ", ".join(keys[:40]) + (" ..." if len(keys) > 40 else "")
            return InvalidInput(
                f"monitor spec field {name!r} names {key!r}, {why}; closest recorded keys: "
                f"{near!r} (recorded: {shown})",
                field=name,
                value=key,
                closest=near,
            )

        seen = f"which deployment {deployment} has not recorded (in its latest records)"
        if spec.prediction not in found.keys:
            raise unknown("prediction", spec.prediction, seen)
        for name, values in (("features", spec.features), ("segments", spec.segments)):
            for key in values:
                if key not in found.keys:
                    raise unknown(name, key, seen)
        if spec.label is not None and spec.label not in found.keys:
            if closest(spec.label, keys):
                raise unknown(
                    "label",
                    spec.label,
                    f"no value of which deployment {deployment} has recorded, while a recorded "
                    "key has a close name",
                )
            say(
                f"no value of label {spec.label!r} has arrived for deployment {deployment} yet: "
                "its label metrics stay empty until one does (if the label has another name, "
                f"the recorded keys are {keys[:40]!r})"
            )
    if reference and spec.reference_stored is not None:
        _reference(spec, access, deployment, say)  # exists, has the features and prediction
    return deployment


def _compute(
    spec: MonitorSpec,
    data: WindowData,
    ref: _Reference,
    access: MonitorAccess,
    deployment: str,
    start: int,
    end: int,
) -> dict[str, Any]:
    if data.rolled.buckets:
        metrics = clean_metrics(
            sketch_window_metrics(spec, data, ref.frame, access, deployment, start, end)
        )
        metrics.update(extra_groups.rolled_up_metrics(spec, data, start, end))
        metrics["window.source"] = "sketch"
    else:
        metrics = window_metrics(spec, data, ref.drift, ref.predictions)
        metrics.update(clean_metrics(extra_groups.raw_window_metrics(spec, data, ref.frame)))
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
