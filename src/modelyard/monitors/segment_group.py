"""The ``segments`` group of a monitor: metrics per segment of a window, and the largest gaps.

A spec with ``segments: [region, contract]`` gets, for each window and each listed column, the
window's metrics computed once per value of that column (``modelyard.analysis.by_segment``), and
per metric the gap between the best and the worst segment: a model that is fine on average and
poor for one region shows up here, window after window, where the overall metric barely moves.

Keys written (``<column>`` a segment column, ``<value>`` one of its values as text, missing
values as ``(missing)``):

- ``segments.<column>.<value>.n`` (rows of the segment), ``segments.<column>.<value>.labelled``;
- classification: ``segments.<column>.<value>.roc_auc``, ``.accuracy``, ``.recall`` (true
  positive rate) over the segment's labelled rows, ``.selection_rate`` (share scored
  >= 0.5) over all its rows;
- regression: ``.mae`` and ``.rmse`` over the segment's labelled rows;
- ``fairness.<column>.gap.<metric>``: largest minus smallest value of ``<metric>`` across the
  column's segments that have enough rows (``MIN_ROWS``);
- ``fairness.gap.<metric>``: the largest of those over all columns, what an alert rule such as
  ``fairness.gap.roc_auc > 0.1`` reads; ``fairness.gap.<metric>.min_segment`` and
  ``.max_segment`` name the two segments (``region=south``);
- ``fairness.gap.selection_rate`` is fairlearn's demographic parity difference and
  ``fairness.gap.recall`` its equal opportunity difference (``modelyard.analysis.fairness_gaps``).

A segment with fewer than ``MIN_ROWS`` rows (labelled rows for label metrics) gets ``n`` and a
``.reason`` instead of metrics, and takes no part in the gaps: the AUC of a dozen rows is noise,
and an alert on it would fire every other window. A column with more than ``MAX_SEGMENTS`` values
reports its ``MAX_SEGMENTS`` largest and says so in ``segments.<column>.reason``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from modelyard.analysis import by_segment, classification_metrics, regression_metrics
from modelyard.errors import InvalidInput
from modelyard.specs.monitor_outputs import GAP_METRICS, SEGMENT_METRICS, segment_outputs

__all__ = [
    "GAP_METRICS",
    "MAX_SEGMENTS",
    "MIN_ROWS",
    "MISSING",
    "SEGMENT_METRICS",
    "segment_metrics",
    "segment_outputs",
]

MIN_ROWS = 30
MAX_SEGMENTS = 20
MISSING = "(missing)"
_LABEL_FREE = ("selection_rate",)


def _segment_values(frame: pd.DataFrame, column: str) -> pd.Series[Any]:
    """The column as text, missing values as ``MISSING`` (a segment of its own)."""
    values = frame[column]
    text = values.map(lambda v: str(v).lower() if isinstance(v, bool | np.bool_) else str(v))
    return text.where(values.notna(), MISSING)


def _classification(group: pd.DataFrame, min_rows: int) -> tuple[dict[str, Any], dict[str, str]]:
    out: dict[str, Any] = {}
    reasons: dict[str, str] = {}
    scored = group["score"].to_numpy(dtype=np.float64)
    scored = scored[~np.isnan(scored)]
    if scored.size >= min_rows:
        out["selection_rate"] = float(np.mean(scored >= 0.5))
    else:
        reasons["selection_rate"] = f"{scored.size} scored rows, fewer than {min_rows}"
    labelled = group.dropna(subset=["y", "score"])
    if len(labelled) < min_rows:
        reasons["roc_auc"] = f"{len(labelled)} labelled rows, fewer than {min_rows}"
        return out, reasons
    try:
        got = classification_metrics(labelled["y"].to_numpy(), labelled["score"].to_numpy())
    except InvalidInput as exc:
        reasons["roc_auc"] = exc.message
        return out, reasons
    for name in ("roc_auc", "accuracy", "recall"):
        out[name] = got[name]
    reasons.update(got["reasons"])
    return out, reasons


def _regression(group: pd.DataFrame, min_rows: int) -> tuple[dict[str, Any], dict[str, str]]:
    labelled = group.dropna(subset=["y", "score"])
    if len(labelled) < min_rows:
        return {}, {"mae": f"{len(labelled)} labelled rows, fewer than {min_rows}"}
    try:
        got = regression_metrics(
            labelled["y"].to_numpy(), labelled["score"].to_numpy(), n_resamples=0
        )
    except InvalidInput as exc:
        return {}, {"mae": exc.message}
    return {"mae": got["mae"], "rmse": got["rmse"]}, {}


def _per_segment(
    task: str, min_rows: int, reasons: dict[str, dict[str, str]]
) -> Callable[[pd.DataFrame], dict[str, Any]]:
    """``by_segment``'s metric function; why a segment's metrics are missing goes to
    ``reasons`` (keyed by segment) rather than into the table's columns."""

    def metrics(group: pd.DataFrame) -> dict[str, Any]:
        got, why = (
            _classification(group, min_rows)
            if task == "classification"
            else _regression(group, min_rows)
        )
        reasons[str(group["segment"].iloc[0])] = why
        return {"labelled": int(group["y"].notna().sum()), **got}

    return metrics


def segment_metrics(
    frame: pd.DataFrame,
    columns: Sequence[str],
    scores: np.ndarray[Any, np.dtype[np.float64]],
    labels: np.ndarray[Any, np.dtype[np.float64]] | None,
    task: str,
    *,
    min_rows: int = MIN_ROWS,
) -> dict[str, Any]:
    """The group's flat keys (see the module docstring) for one window's raw rows.

    ``scores``: the prediction per row (NaN where missing); ``labels``: 1.0/0.0 for the positive
    class or the numeric truth (regression), NaN where no label has arrived (None: no label key).
    """
    if task not in SEGMENT_METRICS:
        raise InvalidInput(f"task={task!r} is not accepted; choose from {list(SEGMENT_METRICS)}")
    y = np.full(len(frame), np.nan) if labels is None else labels
    out: dict[str, Any] = {}
    largest: dict[str, tuple[float, str, str]] = {}
    for column in columns:
        data = pd.DataFrame({"segment": _segment_values(frame, column), "score": scores, "y": y})
        sizes = data["segment"].value_counts()
        if len(sizes) > MAX_SEGMENTS:
            kept = set(sizes.index[:MAX_SEGMENTS])
            out[f"segments.{column}.reason"] = (
                f"column {column!r} has {len(sizes)} values in this window; only the "
                f"{MAX_SEGMENTS} largest are reported (a segment column should have few values)"
            )
            data = data[data["segment"].isin(kept)]
        reasons: dict[str, dict[str, str]] = {}
        table = by_segment(data, "segment", _per_segment(task, min_rows, reasons))
        values: dict[str, dict[str, float]] = {m: {} for m in GAP_METRICS[task]}
        for row in table.to_dict("records"):
            name = str(row["segment"])
            prefix = f"segments.{column}.{name}"
            out[f"{prefix}.n"] = int(row["rows"])
            out[f"{prefix}.labelled"] = int(row["labelled"])
            for metric in SEGMENT_METRICS[task]:
                value = row.get(metric)
                if isinstance(value, int | float) and math.isfinite(value):
                    out[f"{prefix}.{metric}"] = float(value)
                    values[metric][name] = float(value)
            why = reasons.get(name) or {}
            if why:
                out[f"{prefix}.reason"] = "; ".join(f"{k}: {v}" for k, v in sorted(why.items()))
        for metric, by_value in values.items():
            if len(by_value) < 2:
                continue
            low = min(by_value, key=lambda k: by_value[k])
            high = max(by_value, key=lambda k: by_value[k])
            gap = by_value[high] - by_value[low]
            out[f"fairness.{column}.gap.{metric}"] = gap
            if metric not in largest or gap > largest[metric][0]:
                largest[metric] = (gap, f"{column}={low}", f"{column}={high}")
    for metric in GAP_METRICS[task]:
        if metric in largest:
            gap, low, high = largest[metric]
            out[f"fairness.gap.{metric}"] = gap
            out[f"fairness.gap.{metric}.min_segment"] = low
            out[f"fairness.gap.{metric}.max_segment"] = high
        else:
            out[f"fairness.gap.{metric}"] = None
            out[f"fairness.gap.{metric}.reason"] = (
                f"fewer than two segments of {list(columns)!r} have {min_rows} rows"
                + ("" if metric in _LABEL_FREE else " with labels")
                + " in this window"
            )
    return out
