"""The monitor metric groups that need each raw row: ``segments`` and ``multivariate_drift``.

What ``run_monitor`` calls for them, in one place:

- ``raw_window_metrics``: a window read from raw records gets the groups its spec asks for
  (``modelyard.monitors.segment_group``, ``modelyard.monitors.multivariate_group``);
- ``rolled_up_metrics``: a window whose records rollup has folded (even partly) gets, per group,
  ``segments.reason`` / ``multivariate_drift.reason`` saying that it is rolled up and the group
  needs raw rows. Computing them from the rows left would be computing them from a part of the
  window nobody chose, so they are refused, never silently skipped; a result computed from raw
  records before rollup is kept (``run.keep_better``);
- the keys each group writes, for checking alert rules against, are declared in
  ``modelyard.specs.monitor_outputs`` (``GROUP_OUTPUTS``, ``segment_outputs``,
  ``multivariate_outputs``), below the groups, next to the spec that checks the rules;
- ``shown_keys(spec)``: the columns ``modelyard monitors run`` adds for them;
- ``window_summary(metrics)``: one window's values of both groups as the dashboard shows them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from modelyard.monitors.multivariate_group import multivariate_metrics
from modelyard.monitors.segment_group import GAP_METRICS, segment_metrics
from modelyard.monitors.window import WindowData
from modelyard.specs.monitor import MonitorSpec

__all__ = [
    "GROUPS",
    "raw_window_metrics",
    "rolled_up_metrics",
    "shown_keys",
    "window_summary",
]

GROUPS = ("segments", "multivariate_drift")


def _wanted(spec: MonitorSpec) -> list[str]:
    """The groups of this module that ``spec`` asks for."""
    return [g for g in GROUPS if g in spec.metrics]


def _labels(spec: MonitorSpec, frame: pd.DataFrame) -> np.ndarray[Any, np.dtype[np.float64]]:
    from modelyard.monitors.compute import _positive  # the classification group's own rule

    assert spec.label is not None
    if spec.task == "classification":
        return _positive(frame[spec.label], spec.positive_label)
    return np.asarray(pd.to_numeric(frame[spec.label], errors="coerce"), dtype=np.float64)


def raw_window_metrics(
    spec: MonitorSpec, data: WindowData, reference: pd.DataFrame | None
) -> dict[str, Any]:
    """The keys of the groups ``spec`` asks for, from a window's raw rows (none when empty)."""
    groups = _wanted(spec)
    if not groups or data.n == 0:
        return {}
    frame = data.frame
    out: dict[str, Any] = {}
    if "segments" in groups:
        scores = np.asarray(pd.to_numeric(frame[spec.prediction], errors="coerce"), np.float64)
        labels = _labels(spec, frame) if spec.label is not None else None
        out.update(segment_metrics(frame, spec.segments, scores, labels, spec.task))
    if "multivariate_drift" in groups:
        if reference is None:
            out["multivariate_drift.reason"] = "the spec has no reference to compare with"
        else:
            out.update(
                multivariate_metrics(reference, frame, spec.features, spec.categorical, seed=0)
            )
    return out


def rolled_up_metrics(
    spec: MonitorSpec, data: WindowData, start_ms: int, end_ms: int
) -> dict[str, Any]:
    """Reasons for a window that rollup has folded: these groups need every raw row."""
    n = data.n + data.rolled.records
    why = (
        f"window {start_ms}..{end_ms} is rolled up ({data.rolled.records} of {n} predictions "
        "folded into sketches); {group} needs each raw row and is not computed from sketches or "
        "from the rows left"
    )
    return {f"{group}.reason": why.format(group=group) for group in _wanted(spec)}


def shown_keys(spec: MonitorSpec) -> list[str]:
    """Extra columns of ``modelyard monitors run``'s table for the spec's groups."""
    out = []
    if "segments" in _wanted(spec):
        main = GAP_METRICS[spec.task][0]
        out += [f"fairness.gap.{main}", f"fairness.gap.{main}.min_segment"]
    if "multivariate_drift" in _wanted(spec):
        out += ["multivariate_drift.auc", "multivariate_drift.flagged"]
    return out


def window_summary(metrics: dict[str, Any]) -> dict[str, Any] | None:
    """One window's groups as the dashboard's table shows them; None if it has neither.

    ``multivariate``: auc, interval, flagged, top features (or the reason); ``gaps``: per
    metric the largest gap and its two segments (or the reason); ``reasons``: group reasons.
    """
    has_mv = any(k.startswith("multivariate_drift.") for k in metrics)
    gap_keys = sorted(
        k.removeprefix("fairness.gap.")
        for k in metrics
        if k.startswith("fairness.gap.") and k.count(".") == 2
    )
    reason = metrics.get("segments.reason")
    if not (has_mv or gap_keys or reason):
        return None
    multivariate = None
    if has_mv:
        p = "multivariate_drift."
        multivariate = {
            key: metrics.get(p + key)
            for key in ("auc", "auc_ci_low", "auc_ci_high", "flagged", "top_features", "reason")
        }
    gaps = {
        m: {
            "value": metrics.get(f"fairness.gap.{m}"),
            "min_segment": metrics.get(f"fairness.gap.{m}.min_segment"),
            "max_segment": metrics.get(f"fairness.gap.{m}.max_segment"),
            "reason": metrics.get(f"fairness.gap.{m}.reason"),
        }
        for m in gap_keys
    }
    return {
        "multivariate": multivariate,
        "gaps": gaps,
        "segments_reason": reason,
        "source": metrics.get("window.source"),
        "n": metrics.get("n"),
    }
