"""Regression metrics with bootstrap confidence intervals.

Intervals are percentile bootstrap intervals over prediction pairs, with a seed so a monitoring job
gives the same numbers when rerun. A bootstrap is used for all four metrics (rather than analytic
intervals for MAE and RMSE only) so they are comparable and need no normality assumption for
heavy-tailed errors. Each resample draws one index vector shared by all four metrics; resamples are
drawn in chunks so memory stays bounded (about 2 million cells, 16 MB per array, at a time).

MAPE is safe with zeros: rows whose true value is 0 have no percentage error and are left out of
MAPE only (counted in ``mape_excluded_zeros``); MAPE is NaN with a reason if every true value is 0.
It is reported as a fraction (0.1 means 10 %). R² is NaN when the true values are all equal.
Pairs where either side is NaN are dropped and counted in ``n_dropped``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn import metrics as skm

from modelyard.analysis._checks import FloatArray, as_float_array, drop_nan_pairs, same_length
from modelyard.errors import InvalidInput

__all__ = ["regression_metrics"]

_NAMES = ("mae", "rmse", "mape", "r2")
_CHUNK_CELLS = 2_000_000


def _metrics_rows(true: FloatArray, pred: FloatArray) -> FloatArray:
    """The four metrics of each row of (resamples x n) matrices, as a (4, resamples) array."""
    err = pred - true
    mae = np.abs(err).mean(axis=1)
    mse = np.square(err).mean(axis=1)
    nonzero = true != 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        ape = np.where(nonzero, np.abs(err) / np.where(nonzero, np.abs(true), 1.0), 0.0)
        mape = ape.sum(axis=1) / nonzero.sum(axis=1)
        centred = true - true.mean(axis=1, keepdims=True)
        total = np.square(centred).sum(axis=1)
        r2 = np.where(total > 0, 1.0 - np.square(err).sum(axis=1) / total, np.nan)
    return np.vstack([mae, np.sqrt(mse), mape, r2])


def regression_metrics(
    y_true: Any,
    y_pred: Any,
    confidence: float = 0.95,
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """MAE, RMSE, MAPE and R² with bootstrap intervals ``<name>_ci_low``/``<name>_ci_high``.

    ``n_resamples=0`` skips the intervals (they come back NaN).

    >>> m = regression_metrics([1.0, 2.0, 4.0], [1.5, 2.0, 3.0], n_resamples=0)
    >>> m["mae"], m["mape"]
    (0.5, 0.25)
    """
    if not 0.0 < confidence < 1.0:
        raise InvalidInput(f"confidence={confidence!r} must be between 0 and 1, e.g. 0.95")
    if n_resamples < 0:
        raise InvalidInput(f"n_resamples={n_resamples!r} must be 0 (no intervals) or more")
    true = as_float_array(y_true, "y_true")
    pred = as_float_array(y_pred, "y_pred")
    same_length(true, pred, "y_true", "y_pred")
    if true.shape[0] == 0:
        raise InvalidInput("y_true and y_pred are empty; at least one pair is needed")
    true, pred, dropped = drop_nan_pairs(true, pred)
    n = true.shape[0]
    if n == 0:
        raise InvalidInput(f"all {dropped} pairs have a NaN value; at least one pair is needed")
    zeros = int(np.count_nonzero(true == 0.0))
    reasons: dict[str, str] = {}
    out: dict[str, Any] = {"n": n, "n_dropped": dropped, "mape_excluded_zeros": zeros}
    out["mae"] = float(skm.mean_absolute_error(true, pred))
    out["rmse"] = float(skm.root_mean_squared_error(true, pred))
    if zeros < n:
        keep = true != 0.0
        out["mape"] = float(skm.mean_absolute_percentage_error(true[keep], pred[keep]))
    else:
        out["mape"] = math.nan
        reasons["mape"] = f"all {n} true values are 0; a percentage error needs a nonzero value"
    if n > 1 and float(np.ptp(true)) > 0.0:
        out["r2"] = float(skm.r2_score(true, pred))
    else:
        out["r2"] = math.nan
        reasons["r2"] = "the true values are all equal; R² needs variance in y_true"

    if n_resamples and n > 1:
        rng = np.random.default_rng(seed)
        per_chunk = max(1, _CHUNK_CELLS // n)
        parts = []
        for start in range(0, n_resamples, per_chunk):
            rows = min(per_chunk, n_resamples - start)
            idx = rng.integers(0, n, size=(rows, n))
            parts.append(_metrics_rows(true[idx], pred[idx]))
        boot = np.hstack(parts)
        tail = (1.0 - confidence) / 2.0
        for i, name in enumerate(_NAMES):
            values = boot[i][np.isfinite(boot[i])]
            if math.isnan(out[name]) or values.size == 0:
                low = high = math.nan
            else:
                low, high = (float(v) for v in np.quantile(values, [tail, 1.0 - tail]))
            out[f"{name}_ci_low"], out[f"{name}_ci_high"] = low, high
    else:
        for name in _NAMES:
            out[f"{name}_ci_low"] = out[f"{name}_ci_high"] = math.nan
    out["ci_method"] = "bootstrap-percentile"
    out["ci_level"] = confidence
    out["n_resamples"] = n_resamples
    out["seed"] = seed
    out["reasons"] = reasons
    return out
