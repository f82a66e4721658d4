"""Metrics per segment, and fairness gaps per time window.

A model can be fine on average and poor for one region, plan or age band; ``by_segment`` runs any
metric function (``classification_metrics``, ``regression_metrics``, your own) once per value of a
segment column. ``fairness_gaps`` reports, per window, the two gaps most fairness reviews start
from: demographic parity difference (the largest minus the smallest positive-prediction rate across
groups) and equal opportunity difference (the same for the true positive rate, needing labels).
Both follow fairlearn's definitions (``demographic_parity_difference`` and the true-positive-rate
part of ``equalized_odds_difference``), computed with one pandas group-by rather than a loop.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from modelyard.errors import InvalidInput

__all__ = ["by_segment", "fairness_gaps"]


def _require(frame: pd.DataFrame, *columns: str | None) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise InvalidInput(f"frame must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in columns if c is not None and c not in frame.columns]
    if missing:
        raise InvalidInput(
            f"columns {missing!r} are not in the frame; it has {list(frame.columns)!r}"
        )


def by_segment(
    frame: pd.DataFrame,
    segment: str,
    metric_fn: Callable[[pd.DataFrame], Mapping[str, Any]],
    min_rows: int = 1,
    dropna: bool = False,
) -> pd.DataFrame:
    """One row per value of ``segment``: ``rows`` and what ``metric_fn(those_rows)`` returns.

    Segments with fewer than ``min_rows`` rows are kept with ``rows`` and no metrics (a metric of
    three rows is noise; an absent segment would hide that it exists). Missing segment values form
    their own segment unless ``dropna``.

    >>> f = pd.DataFrame({"plan": ["a", "a", "b"], "err": [1.0, 3.0, 5.0]})
    >>> by_segment(f, "plan", lambda g: {"mae": g["err"].abs().mean()})
      plan  rows  mae
    0    a     2  2.0
    1    b     1  5.0
    """
    _require(frame, segment)
    if min_rows < 1:
        raise InvalidInput(f"min_rows={min_rows!r} must be at least 1")
    rows: list[dict[str, Any]] = []
    for value, group in frame.groupby(segment, dropna=dropna, sort=True):
        key = value[0] if isinstance(value, tuple) else value
        row: dict[str, Any] = {segment: key, "rows": len(group)}
        if len(group) >= min_rows:
            result = metric_fn(group)
            if not isinstance(result, Mapping):
                raise InvalidInput(
                    f"metric_fn returned {type(result).__name__} for {segment}={key!r}; "
                    "it must return a dict of metric name -> value"
                )
            clash = {segment, "rows"} & set(result)
            if clash:
                raise InvalidInput(
                    f"metric_fn returned keys {sorted(clash)!r} that collide with the segment "
                    "columns; rename them"
                )
            row.update(result)
        rows.append(row)
    return pd.DataFrame(rows)


def fairness_gaps(
    frame: pd.DataFrame,
    group: str,
    y_pred: str,
    y_true: str | None = None,
    time: str | None = None,
    window_ms: int | None = None,
    threshold: float = 0.5,
) -> pd.DataFrame:
    """Fairness gaps across the values of ``group``, per time window or over the whole frame.

    ``y_pred``: predicted class (0/1) or score (positive when >= ``threshold``). ``y_true``:
    labels 0/1, needed for the equal opportunity difference (NaN without it or when a group has
    no positive label in the window). ``time`` and ``window_ms``: a column of millisecond
    timestamps and a window width; rows are grouped in windows [k·w, (k+1)·w). Columns:
    ``window_start_ms`` (when windowed), ``n``, ``groups``, ``demographic_parity_difference``,
    ``equal_opportunity_difference``, and ``selection_rate_<g>`` per group.
    """
    _require(frame, group, y_pred, y_true, time)
    if (time is None) != (window_ms is None):
        raise InvalidInput("pass both time= and window_ms= for windows, or neither for one window")
    if window_ms is not None and window_ms <= 0:
        raise InvalidInput(f"window_ms={window_ms!r} must be a positive number of milliseconds")
    data = pd.DataFrame({"group": frame[group].astype("string")})
    data["selected"] = (frame[y_pred].to_numpy(dtype=np.float64) >= threshold).astype(np.float64)
    if y_true is not None:
        labels = frame[y_true].to_numpy(dtype=np.float64)
        if np.any((labels != 0) & (labels != 1) & ~np.isnan(labels)):
            raise InvalidInput(f"{y_true} must hold labels 0/1 (NaN where unknown)")
        data["label"] = labels
        data["hit"] = np.where(labels == 1, data["selected"], np.nan)
    if time is not None and window_ms is not None:
        data["window"] = frame[time].to_numpy(dtype=np.int64) // window_ms * window_ms
    else:
        data["window"] = 0
    data = data[data["group"].notna()]
    rates = data.groupby(["window", "group"])["selected"].mean().unstack("group")
    out = pd.DataFrame(index=rates.index)
    out["n"] = data.groupby("window").size()
    out["groups"] = rates.notna().sum(axis=1)
    out["demographic_parity_difference"] = rates.max(axis=1) - rates.min(axis=1)
    if y_true is not None:
        # Mean of "selected" over rows with label 1 = true positive rate of that group.
        tpr = data.groupby(["window", "group"])["hit"].mean().unstack("group")
        out["equal_opportunity_difference"] = tpr.max(axis=1) - tpr.min(axis=1)
    else:
        out["equal_opportunity_difference"] = math.nan
    for name in rates.columns:
        out[f"selection_rate_{name}"] = rates[name]
    out = out.reset_index()
    if time is None:
        return out.drop(columns="window")
    return out.rename(columns={"window": "window_start_ms"})
