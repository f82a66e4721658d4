"""Binary classification metrics with a confidence interval for ROC AUC.

The point metrics come from scikit-learn (the reference everyone checks against). The ROC AUC
interval is DeLong's: analytic, O(n log n) through midranks (Sun & Xu 2014), so it costs about as
much as the AUC itself, where a bootstrap would cost hundreds of AUCs. It is a normal interval on
the AUC clipped to [0, 1]; with perfect separation DeLong's variance is 0 and the interval collapses
to the point, which understates the uncertainty of very small samples (say so, do not hide it).

Edge cases are reported, not raised: with one class only, ROC AUC is undefined and comes back as
NaN with the reason under ``reasons``. Pairs where the label or the score is NaN (a prediction
whose ground truth has not arrived) are dropped and counted in ``n_dropped``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats
from sklearn import metrics as skm

from modelyard.analysis._checks import (
    FloatArray,
    as_float_array,
    binary_labels,
    drop_nan_pairs,
    same_length,
)
from modelyard.errors import InvalidInput

__all__ = ["classification_metrics", "delong_roc_auc", "expected_calibration_error"]


def delong_roc_auc(
    y_true: FloatArray, y_score: FloatArray, confidence: float = 0.95
) -> tuple[float, float, float, float]:
    """ROC AUC, its DeLong variance and a normal ``confidence`` interval: (auc, var, low, high).

    Needs both classes present; callers check that first.
    """
    positives = y_score[y_true == 1.0]
    negatives = y_score[y_true == 0.0]
    m, n = positives.shape[0], negatives.shape[0]
    # Midranks of each class alone and of both together give every structural component at once.
    rank_pos = stats.rankdata(positives)
    rank_neg = stats.rankdata(negatives)
    rank_all = stats.rankdata(np.concatenate([positives, negatives]))
    auc = float((rank_all[:m].sum() / m - (m + 1) / 2.0) / n)
    v10 = (rank_all[:m] - rank_pos) / n  # per positive: share of negatives scored below it
    v01 = 1.0 - (rank_all[m:] - rank_neg) / m  # per negative: share of positives scored above it
    s10 = float(np.var(v10, ddof=1)) if m > 1 else 0.0
    s01 = float(np.var(v01, ddof=1)) if n > 1 else 0.0
    variance = s10 / m + s01 / n
    z = float(stats.norm.ppf(0.5 + confidence / 2.0))
    half = z * math.sqrt(variance)
    return auc, variance, max(0.0, auc - half), min(1.0, auc + half)


def expected_calibration_error(y_true: FloatArray, y_prob: FloatArray, n_bins: int = 10) -> float:
    """Expected calibration error over ``n_bins`` equal-width bins of [0, 1].

    The sum over bins of (share of rows in the bin) x |observed positive rate - mean score|.
    """
    if y_true.shape[0] == 0:
        return math.nan
    index = np.minimum((y_prob * n_bins).astype(np.int64), n_bins - 1)
    label_sums = np.bincount(index, weights=y_true, minlength=n_bins)
    score_sums = np.bincount(index, weights=y_prob, minlength=n_bins)
    return float(np.abs(label_sums - score_sums).sum() / y_true.shape[0])


def classification_metrics(
    y_true: Any,
    y_score: Any,
    threshold: float = 0.5,
    confidence: float = 0.95,
    n_bins: int = 10,
) -> dict[str, Any]:
    """Metrics of a binary classifier from labels (0/1) and scores (probabilities in [0, 1]).

    Returns a flat dict ready for ``track_aggregate_metrics``: ``n``, ``positives``,
    ``n_dropped``, ``roc_auc`` with ``roc_auc_ci_low``/``roc_auc_ci_high`` and
    ``roc_auc_ci_method`` ("delong"), ``pr_auc`` (average precision), ``log_loss``, ``brier``,
    ``accuracy``, ``precision``, ``recall``, ``f1`` (at ``threshold``: score >= threshold is
    positive), ``ece`` and ``reasons`` (metric -> why it is NaN).

    >>> m = classification_metrics([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    >>> m["roc_auc"], m["accuracy"]
    (0.75, 0.75)
    """
    if not 0.0 < confidence < 1.0:
        raise InvalidInput(f"confidence={confidence!r} must be between 0 and 1, e.g. 0.95")
    if not 0.0 <= threshold <= 1.0:
        raise InvalidInput(f"threshold={threshold!r} must be a probability in [0, 1]")
    labels, scores, dropped = _labelled_pairs(y_true, y_score)
    n = labels.shape[0]
    positives = int(labels.sum())
    predicted = (scores >= threshold).astype(np.float64)
    reasons: dict[str, str] = {}
    out: dict[str, Any] = {"n": n, "positives": positives, "n_dropped": dropped}

    if 0 < positives < n:
        auc, _, low, high = delong_roc_auc(labels, scores, confidence)
        out.update(roc_auc=auc, roc_auc_ci_low=low, roc_auc_ci_high=high)
        out["pr_auc"] = float(skm.average_precision_score(labels, scores))
    else:
        only = "positive" if positives else "negative"
        reason = f"only {only} labels in {n} rows; ROC AUC needs both classes"
        out.update(roc_auc=math.nan, roc_auc_ci_low=math.nan, roc_auc_ci_high=math.nan)
        reasons["roc_auc"] = reason
        if positives:
            out["pr_auc"] = float(skm.average_precision_score(labels, scores))
        else:
            out["pr_auc"] = math.nan
            reasons["pr_auc"] = f"no positive labels in {n} rows; precision-recall is undefined"
    out["roc_auc_ci_method"] = "delong"
    out["roc_auc_ci_level"] = confidence
    out["log_loss"] = float(skm.log_loss(labels, scores, labels=[0.0, 1.0]))
    out["brier"] = float(skm.brier_score_loss(labels, scores, pos_label=1.0))
    out["accuracy"] = float(skm.accuracy_score(labels, predicted))
    prf = skm.precision_recall_fscore_support(
        labels, predicted, average="binary", pos_label=1.0, zero_division=np.nan
    )
    for name, value in zip(("precision", "recall", "f1"), prf[:3], strict=True):
        out[name] = float(value)
        if math.isnan(out[name]):
            reasons[name] = (
                f"no rows predicted positive at threshold {threshold}"
                if name == "precision"
                else f"no positive labels in {n} rows"
                if name == "recall"
                else "precision or recall is undefined"
            )
    out["threshold"] = threshold
    out["ece"] = expected_calibration_error(labels, scores, n_bins)
    out["reasons"] = reasons
    return out


def _labelled_pairs(y_true: Any, y_score: Any) -> tuple[FloatArray, FloatArray, int]:
    """0/1 labels and [0, 1] scores without the NaN pairs, and how many pairs were dropped."""
    labels = as_float_array(y_true, "y_true")
    scores = as_float_array(y_score, "y_score")
    same_length(labels, scores, "y_true", "y_score")
    if labels.shape[0] == 0:
        raise InvalidInput("y_true and y_score are empty; at least one labelled prediction needed")
    labels, scores, dropped = drop_nan_pairs(labels, scores)
    if labels.shape[0] == 0:
        raise InvalidInput(
            f"all {dropped} pairs have a NaN label or score; "
            "at least one labelled prediction is needed"
        )
    binary_labels(labels)
    if scores.min() < 0.0 or scores.max() > 1.0:
        raise InvalidInput(
            f"y_score must be probabilities in [0, 1]; saw values from {scores.min()!r} "
            f"to {scores.max()!r}"
        )
    return labels, scores, dropped
