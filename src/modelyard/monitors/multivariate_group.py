"""The ``multivariate_drift`` group of a monitor: can a classifier tell the window from the
reference?

Univariate drift compares one feature at a time and misses a change in how features move
together (two features that rose together now move apart, each with the same distribution). This
group runs ``modelyard.analysis.domain_classifier`` on the spec's features, reference rows against
the window's rows, and writes:

- ``multivariate_drift.auc``: the cross-validated ROC AUC (3 folds; 0.5 = indistinguishable);
- ``multivariate_drift.auc_ci_low`` / ``auc_ci_high``: a 95 % interval, Hanley & McNeil's
  standard error for an AUC from ``n_reference`` and ``n_current`` rows (every row is scored once,
  out of fold); ``multivariate_drift.auc_std``: the spread of the fold AUCs;
- ``multivariate_drift.flagged``: 1 when the AUC is at least ``multivariate_drift.threshold``
  (0.55) *and* the interval's lower end is above 0.5, else 0: on a small window an AUC of 0.56
  is within noise of 0.5, and a flag on noise would fire about one window in fifty;
- ``multivariate_drift.importance.<feature>``: permutation importance (how much the AUC drops when
  the feature is shuffled), and ``multivariate_drift.top_features``: the features that drive a
  flagged window (importance at least ``MIN_IMPORTANCE``, largest first; empty when not flagged);
- ``multivariate_drift.n_reference`` / ``n_current``: rows used.

Sampling: the reference side is a seeded sample of as many rows as the window has (at least
``MIN_SIDE_ROWS``, at most ``MAX_ROWS``, fewer if the reference is smaller), so the classes are
balanced and a window costs the same whatever the reference's size. Seeds are fixed: rerunning a
window gives the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from modelyard.analysis import domain_classifier
from modelyard.analysis.multivariate import DEFAULT_AUC_THRESHOLD
from modelyard.errors import InvalidInput
from modelyard.specs.monitor_outputs import multivariate_outputs

__all__ = [
    "FOLDS",
    "MAX_ROWS",
    "MIN_FEATURES",
    "MIN_IMPORTANCE",
    "MIN_SIDE_ROWS",
    "auc_interval",
    "multivariate_metrics",
    "multivariate_outputs",
]

FOLDS = 3
MIN_SIDE_ROWS = 30
MAX_ROWS = 10_000
MIN_FEATURES = 2
MIN_IMPORTANCE = 0.01
_Z95 = 1.959963984540054


def auc_interval(auc: float, n_negative: int, n_positive: int) -> tuple[float, float]:
    """95 % normal interval of an AUC from Hanley & McNeil (1982), clipped to [0, 1]."""
    q1 = auc / (2.0 - auc)
    q2 = 2.0 * auc * auc / (1.0 + auc)
    variance = (
        auc * (1.0 - auc)
        + (n_positive - 1) * (q1 - auc * auc)
        + (n_negative - 1) * (q2 - auc * auc)
    ) / (n_negative * n_positive)
    half = _Z95 * math.sqrt(max(variance, 0.0))
    return max(0.0, auc - half), min(1.0, auc + half)


def _side(frame: pd.DataFrame, features: Sequence[str], categorical: set[str]) -> pd.DataFrame:
    """Numeric features as floats (a value that is not a number becomes NaN), categories as text:
    both sides then encode the same way whatever types the records carried."""
    out: dict[str, pd.Series[Any]] = {}
    for name in features:
        column = frame[name]
        if name in categorical:
            out[name] = column.astype("string")
        else:
            out[name] = pd.to_numeric(column, errors="coerce").astype("float64")
    return pd.DataFrame(out)


def multivariate_metrics(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    features: Sequence[str],
    categorical: Sequence[str],
    *,
    seed: int = 0,
) -> dict[str, Any]:
    """The group's flat keys for one window's raw rows against the reference sample."""
    missing = [f for f in features if f not in reference.columns]
    if missing:
        raise InvalidInput(
            f"features {missing!r} are not columns of the reference (it has "
            f"{list(reference.columns)!r}); upload a reference with those columns"
        )
    if len(features) < MIN_FEATURES:
        raise InvalidInput(
            f"multivariate_drift needs at least {MIN_FEATURES} features, got {list(features)!r}"
        )
    n_cur = len(current)
    if min(n_cur, len(reference)) < MIN_SIDE_ROWS:
        return {
            "multivariate_drift.reason": (
                f"the window has {n_cur} rows and the reference {len(reference)}; the domain "
                f"classifier needs at least {MIN_SIDE_ROWS} on each side"
            )
        }
    cats = set(categorical)
    per_side = min(MAX_ROWS, max(n_cur, MIN_SIDE_ROWS))
    result = domain_classifier(
        _side(reference, features, cats),
        _side(current, features, cats),
        features=list(features),
        categorical=sorted(cats & set(features)),
        max_rows_per_side=per_side,
        folds=FOLDS,
        seed=seed,
    )
    low, high = auc_interval(result.auc, result.n_reference_used, result.n_current_used)
    flagged = result.auc >= result.threshold and low > 0.5
    out: dict[str, Any] = {
        "multivariate_drift.auc": result.auc,
        "multivariate_drift.auc_ci_low": low,
        "multivariate_drift.auc_ci_high": high,
        "multivariate_drift.auc_std": result.auc_std,
        "multivariate_drift.flagged": int(flagged),
        "multivariate_drift.threshold": DEFAULT_AUC_THRESHOLD,
        "multivariate_drift.n_reference": result.n_reference_used,
        "multivariate_drift.n_current": result.n_current_used,
    }
    table = result.importances
    importance = table["importance"].to_numpy(dtype=float)
    for feature, value in zip(table["feature"], importance, strict=True):
        out[f"multivariate_drift.importance.{feature}"] = float(value)
    top = [str(f) for f, v in zip(table["feature"], importance, strict=True) if v >= MIN_IMPORTANCE]
    out["multivariate_drift.top_features"] = top if flagged else []
    return out
