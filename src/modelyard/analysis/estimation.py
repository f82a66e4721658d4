"""Performance without labels: confidence-based estimates for calibrated classifiers.

While ground truth is delayed, a calibrated classifier's own scores say what its accuracy should
be: if the score p is the probability of the positive class, a row predicted positive is right
with probability p and a row predicted negative with probability 1 - p. Summing these gives the
expected confusion matrix (the idea of NannyML's CBPE), and from it expected accuracy, precision,
recall and F1 (ratios of expected counts, accurate when the window has hundreds of rows).

For ROC AUC the estimate is the expected AUC when each label is an independent Bernoulli(p_i):
the expected number of correctly ordered (positive, negative) pairs, sum over i != j of
p_i (1 - p_j) [s_i > s_j] (+1/2 on ties), divided by the expected number of pairs. It is computed
in O(n log n) with one sort and cumulative sums.

The one assumption that matters: the scores are calibrated on the current data. If the relation
between features and labels has changed (concept drift), the estimate cannot see it; compare it
with the realised metrics once labels arrive, and recalibrate (isotonic, Platt) on a recent labelled
window if they part.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from modelyard.analysis._checks import FloatArray, as_float_array
from modelyard.errors import InvalidInput

__all__ = ["estimate_performance", "expected_roc_auc"]


def expected_roc_auc(scores: FloatArray) -> float:
    """Expected ROC AUC when each row's label is Bernoulli(its score)."""
    values, inverse = np.unique(scores, return_inverse=True)
    p_group = np.bincount(inverse, weights=scores, minlength=values.shape[0])
    q_group = np.bincount(inverse, weights=1.0 - scores, minlength=values.shape[0])
    self_pairs = float(np.sum(scores * (1.0 - scores)))  # i paired with itself is not a pair
    pairs = float(p_group.sum() * q_group.sum()) - self_pairs
    if pairs <= 0:
        return math.nan
    # Negatives scored strictly below each group, then half of the pairs within each group.
    q_below = np.cumsum(q_group) - q_group
    ordered = float(np.dot(p_group, q_below))
    tied = float(np.dot(p_group, q_group)) - self_pairs
    return (ordered + 0.5 * tied) / pairs


def estimate_performance(y_score: Any, threshold: float = 0.5) -> dict[str, Any]:
    """Expected metrics of a calibrated binary classifier from its scores alone.

    Returns ``n``, ``n_dropped`` (NaN scores), the expected confusion matrix (``expected_tp``,
    ``expected_fp``, ``expected_tn``, ``expected_fn``), ``expected_accuracy``,
    ``expected_precision``, ``expected_recall``, ``expected_f1`` (at ``threshold``: score >=
    threshold is positive), ``expected_roc_auc`` and ``method`` ("cbpe").

    >>> e = estimate_performance([0.9, 0.8, 0.2, 0.1])
    >>> round(e["expected_accuracy"], 3)
    0.85
    """
    if not 0.0 <= threshold <= 1.0:
        raise InvalidInput(f"threshold={threshold!r} must be a probability in [0, 1]")
    scores = as_float_array(y_score, "y_score")
    if scores.shape[0] == 0:
        raise InvalidInput("y_score is empty; at least one prediction is needed")
    present = scores[~np.isnan(scores)]
    dropped = int(scores.shape[0] - present.shape[0])
    if present.shape[0] == 0:
        raise InvalidInput(f"all {dropped} scores are NaN; at least one score is needed")
    if present.min() < 0.0 or present.max() > 1.0:
        raise InvalidInput(
            f"y_score must be calibrated probabilities in [0, 1]; saw values from "
            f"{present.min()!r} to {present.max()!r}"
        )
    positive = present >= threshold
    tp = float(present[positive].sum())
    fp = float((1.0 - present[positive]).sum())
    fn = float(present[~positive].sum())
    tn = float((1.0 - present[~positive]).sum())
    n = present.shape[0]
    precision = tp / (tp + fp) if tp + fp > 0 else math.nan
    recall = tp / (tp + fn) if tp + fn > 0 else math.nan
    f1 = (
        2 * precision * recall / (precision + recall)
        if precision + recall > 0  # NaN compares False, so NaN stays NaN below
        else math.nan
    )
    return {
        "n": n,
        "n_dropped": dropped,
        "expected_tp": tp,
        "expected_fp": fp,
        "expected_tn": tn,
        "expected_fn": fn,
        "expected_accuracy": (tp + tn) / n,
        "expected_precision": precision,
        "expected_recall": recall,
        "expected_f1": f1,
        "expected_roc_auc": expected_roc_auc(present),
        "threshold": threshold,
        "method": "cbpe",
    }
