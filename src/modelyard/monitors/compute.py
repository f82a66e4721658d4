"""The metrics of one window: the analysis functions applied, flattened to one level of keys.

Keys written (when the spec asks for the metric and the window has what it needs):

- always: ``n`` (predictions in the window);
- ``label_coverage``: ``label_coverage`` (share labelled), ``labelled``, ``label_delay_p50_ms``,
  ``label_delay_p90_ms``, ``label_delay_p99_ms``, ``label_delay_mean_ms``, ``label_delay_max_ms``;
- ``classification`` (labelled rows only): ``roc_auc``, ``roc_auc_ci_low``, ``roc_auc_ci_high``
  (DeLong, 95 %), ``pr_auc``, ``log_loss``, ``brier``, ``accuracy``, ``precision``, ``recall``,
  ``f1``, ``ece``, ``positives``;
- ``regression`` (specs with ``task: regression``; labelled rows only): ``mae``, ``rmse``,
  ``mape``, ``r2``, each with ``<name>_ci_low`` / ``<name>_ci_high`` (bootstrap, 95 %, seeded),
  and ``mape_excluded_zeros``;
- ``estimated_performance`` (all scored rows, labels not needed): ``estimated_roc_auc``,
  ``estimated_accuracy``, ``estimated_precision``, ``estimated_recall``, ``estimated_f1``;
- ``drift``: ``<method>.<feature>`` (the method's effect: ``psi.tenure``, ``ks.tenure``,
  ``wasserstein.tenure``, ``jensen_shannon.plan``, ``chi2.plan``, ``unseen_share.plan``),
  ``drift.flagged`` (how many features any method flagged), ``drift.flagged_features`` (their
  names);
- ``prediction_drift``: ``prediction_drift.<method>`` and ``prediction_drift.flagged`` (0 or 1).

A metric that cannot be computed for the window (no labels yet, one class only) is written as
null or left out, and ``<metric>.reason`` says why: an alert treats it as no evidence.

Minimum sample sizes (``apply_minimums``, for every way a window is computed: raw, streamed or
from sketches). ``classification`` and ``regression`` write ``<group>.labelled`` (the labelled,
scored predictions they used); below the spec's ``min_labels`` the group's values are left out
and the window says ``<group>.insufficient: true`` with ``<group>.reason`` ("4 labelled
predictions < min_labels 30"). Below ``min_predictions`` predictions the same holds for
``drift``, ``prediction_drift``, ``multivariate_drift`` and ``estimated_performance``
(``drift.insufficient``, ...). A ROC AUC from 4 labels is 1.0 as often as anything else, and a
drift test on 4 rows can never be significant (``drift.flagged: 0``): left out, such values
neither fire nor resolve an alert, whose episode keeps its state.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from modelyard.analysis import (
    DriftReference,
    classification_metrics,
    estimate_performance,
    label_coverage,
    prediction_drift,
    regression_metrics,
)
from modelyard.errors import InvalidInput
from modelyard.monitors.window import WindowData
from modelyard.specs.monitor import MonitorSpec
from modelyard.specs.monitor_outputs import (
    CLASSIFICATION_OUTPUTS,
    INSUFFICIENT,
    REGRESSION_OUTPUTS,
)

__all__ = [
    "apply_minimums",
    "clean_metrics",
    "window_metrics",
]

# The names each group writes are declared once, in ``spec.GROUP_OUTPUTS`` (alert rules are
# checked against them).
_CLASSIFICATION_KEYS = CLASSIFICATION_OUTPUTS
_REGRESSION_KEYS = REGRESSION_OUTPUTS
_ESTIMATED_KEYS = ("roc_auc", "accuracy", "precision", "recall", "f1")


def _clean(value: Any) -> Any:
    """NaN and infinities become None: JSON has no NaN, and None is 'no evidence' to alerts."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def clean_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """``metrics`` with NaN, infinities and numpy scalars made JSON-ready (see ``_clean``)."""
    return {key: _clean(value) for key, value in metrics.items()}


def _scores(frame: pd.DataFrame, key: str) -> np.ndarray[Any, np.dtype[np.float64]]:
    return np.asarray(pd.to_numeric(frame[key], errors="coerce"), dtype=np.float64)


def _positive(labels: pd.Series[Any], positive: Any) -> np.ndarray[Any, np.dtype[np.float64]]:
    """1.0 where the label is the positive class, 0.0 where it is another value, NaN if missing."""
    present = labels.notna().to_numpy()
    text = str(positive).lower() if isinstance(positive, bool) else str(positive)
    same = labels.map(
        lambda v: v == positive or (str(v).lower() if isinstance(v, bool) else str(v)) == text
    )
    out = np.where(same.to_numpy(dtype=bool), 1.0, 0.0)
    out[~present] = np.nan
    return out


def window_metrics(
    spec: MonitorSpec,
    data: WindowData,
    reference: DriftReference | None,
    reference_predictions: pd.Series[Any] | None,
) -> dict[str, Any]:
    """The flat metrics dict of one window (values JSON-ready, NaN written as None)."""
    out: dict[str, Any] = {"n": data.n}
    if data.n == 0:
        return out
    frame = data.frame
    wanted = set(spec.metrics)
    scores = _scores(frame, spec.prediction)
    if spec.label is not None:
        if "label_coverage" in wanted:
            _label_coverage(out, frame[spec.label], data)
        if "classification" in wanted:
            y = _positive(frame[spec.label], spec.positive_label)
            why = f"none of the {data.n} predictions is labelled yet"
            _labelled(out, "classification", y, scores, why)
        if "regression" in wanted:
            y = np.asarray(pd.to_numeric(frame[spec.label], errors="coerce"), dtype=np.float64)
            why = f"none of the {data.n} predictions has a numeric label yet"
            _labelled(out, "regression", y, scores, why)
    if "estimated_performance" in wanted:
        _estimated(out, scores)
    if "drift" in wanted and reference is not None:
        _feature_drift(out, spec, frame, reference)
    if "prediction_drift" in wanted and reference_predictions is not None:
        _prediction_drift(out, spec, scores, reference_predictions)
    return clean_metrics(out)


def _label_coverage(out: dict[str, Any], labels: pd.Series[Any], data: WindowData) -> None:
    """How many predictions have a label, and how long labels took to arrive."""
    labelled_at = data.label_ms
    assert labelled_at is not None
    # A label value may also arrive with the prediction itself (no delayed record).
    has_value = labels.notna().to_numpy()
    labelled_at = np.where(has_value & np.isnan(labelled_at), data.prediction_ms, labelled_at)
    cov = label_coverage(data.prediction_ms, labelled_at)
    out["label_coverage"] = cov["coverage"]
    out["labelled"] = cov["labelled"]
    for key, value in cov.items():
        if key.startswith("delay_"):
            out[f"label_{key}"] = value


def _estimated(out: dict[str, Any], scores: np.ndarray[Any, np.dtype[np.float64]]) -> None:
    """Performance estimated from the scores alone (no labels needed)."""
    present = scores[~np.isnan(scores)]
    if not present.size:
        return
    try:
        est = estimate_performance(present)
    except InvalidInput as exc:
        out["estimated.reason"] = exc.message
        return
    for key in _ESTIMATED_KEYS:
        out[f"estimated_{key}"] = est[f"expected_{key}"]


def _feature_drift(
    out: dict[str, Any], spec: MonitorSpec, frame: pd.DataFrame, reference: DriftReference
) -> None:
    """Per-feature drift against the reference, and which features were flagged."""
    try:
        report = reference.compare(frame[list(spec.features)], thresholds=spec.thresholds or None)
    except InvalidInput as exc:
        out["drift.reason"] = exc.message
        return
    for row in report.itertuples(index=False):
        out[f"{row.method}.{row.feature}"] = row.effect
    flagged = sorted(set(report.loc[report["flagged"].astype(bool), "feature"]))
    out["drift.flagged"] = len(flagged)
    out["drift.flagged_features"] = flagged


def _prediction_drift(
    out: dict[str, Any],
    spec: MonitorSpec,
    scores: np.ndarray[Any, np.dtype[np.float64]],
    reference_predictions: pd.Series[Any],
) -> None:
    """Drift of the scores themselves against the reference's predictions."""
    current_scores = scores[~np.isnan(scores)]
    if not current_scores.size:
        return
    try:
        report = prediction_drift(
            reference_predictions.dropna().to_numpy(),
            current_scores,
            thresholds=spec.thresholds or None,
        )
    except InvalidInput as exc:
        out["prediction_drift.reason"] = exc.message
        return
    for row in report.itertuples(index=False):
        out[f"prediction_drift.{row.method}"] = row.effect
    out["prediction_drift.flagged"] = int(report["flagged"].astype(bool).any())


# What each labelled group computes, and which of its results go into a window's metrics.
_LABELLED: dict[str, tuple[Callable[..., dict[str, Any]], tuple[str, ...]]] = {
    "classification": (classification_metrics, _CLASSIFICATION_KEYS),
    "regression": (regression_metrics, _REGRESSION_KEYS),
}


def _labelled(
    out: dict[str, Any],
    group: str,
    y: np.ndarray[Any, np.dtype[np.float64]],
    scores: np.ndarray[Any, np.dtype[np.float64]],
    unlabelled: str,
) -> None:
    """The ``group``'s metrics over the rows that have both a label ``y`` and a score; without
    such rows, or when the statistic refuses them, ``<group>.reason`` says why."""
    usable = ~np.isnan(y) & ~np.isnan(scores)
    out[f"{group}.labelled"] = int(usable.sum())
    if not usable.any():
        out[f"{group}.reason"] = unlabelled
        return
    compute, keys = _LABELLED[group]
    try:
        got = compute(y[usable], scores[usable])
    except InvalidInput as exc:
        out[f"{group}.reason"] = exc.message
        return
    for key in keys:
        out[key] = got[key]
    for key, why in got.get("reasons", {}).items():
        out[f"{key}.reason"] = why


# The groups a minimum applies to, and which keys of a window's metrics each group wrote.
_LABEL_GROUPS = ("classification", "regression")
_PREDICTION_GROUPS = ("drift", "prediction_drift", "multivariate_drift", "estimated_performance")
_DRIFT_HEADS = ("psi", "ks", "wasserstein", "jensen_shannon", "chi2", "unseen_share", "drift")
_ERROR_BOUNDS = ("roc_auc_error_bound", "roc_auc_ci_error_bound", "pr_auc_error_bound")


def _of_group(key: str, group: str) -> bool:
    """Whether ``key`` (a value or its ``.reason``) is one ``group`` writes."""
    if key.endswith(".reason"):
        key = key[: -len(".reason")]
    head = key.split(".", 1)[0]
    if group == "classification":
        return key in _CLASSIFICATION_KEYS or key in _ERROR_BOUNDS or head == group
    if group == "regression":
        return key in _REGRESSION_KEYS or head == group
    if group == "drift":
        return head in _DRIFT_HEADS
    if group == "estimated_performance":
        return key.startswith("estimated_") or head == "estimated"
    return head == group  # prediction_drift, multivariate_drift


def _rows(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


def apply_minimums(spec: MonitorSpec, metrics: dict[str, Any]) -> dict[str, Any]:
    """``metrics`` without the values of groups computed from fewer rows than the spec's
    ``min_labels`` / ``min_predictions``, each such group marked ``<group>.insufficient: true``
    with its ``<group>.reason`` (see the module docstring). An empty window is left as it is."""
    n = int(metrics.get("n") or 0)
    if n == 0:
        return metrics
    short: dict[str, str] = {}
    for group in _LABEL_GROUPS:
        labelled = metrics.get(f"{group}.labelled")
        # 0 labelled: nothing to leave out, and the reason already says none is labelled yet
        if group in spec.metrics and isinstance(labelled, int) and 0 < labelled < spec.min_labels:
            short[group] = (
                f"{_rows(labelled, 'labelled prediction')} < min_labels {spec.min_labels}"
            )
    if n < spec.min_predictions:
        for group in _PREDICTION_GROUPS:
            if group in spec.metrics:
                short[group] = f"{_rows(n, 'prediction')} < min_predictions {spec.min_predictions}"
    if not short:
        return metrics
    out = {
        key: value
        for key, value in metrics.items()
        if key.endswith(".labelled") or not any(_of_group(key, g) for g in short)
    }
    for group, why in short.items():
        out[f"{group}.{INSUFFICIENT}"] = True
        out[f"{group}.reason"] = why
    return out
