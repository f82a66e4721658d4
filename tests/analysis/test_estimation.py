"""CBPE estimates against realised metrics once labels are simulated from calibrated scores."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from sklearn import metrics as skm

from modelyard.analysis import estimate_performance, expected_roc_auc
from modelyard.errors import InvalidInput

# The realised metric is itself a sample: the estimate is held to 3.5 binomial standard errors
# of the realised value over the rows that metric is a share of (all rows for accuracy, predicted
# positives for precision, positives for recall); ROC AUC to 0.03 (its standard error at 2,000
# rows is about 0.012).
AUC_TOLERANCE = 0.03


@pytest.mark.parametrize(("a", "b"), [(2, 5), (1, 1), (0.5, 0.5)])
def test_estimates_match_realised_metrics_across_seeds(a: float, b: float) -> None:
    """Labels ~ Bernoulli(score): in every one of 30 seeds of 2,000 predictions the estimate is
    within tolerance of the realised metric, and the mean gap is within a third of it."""
    gaps: dict[str, list[float]] = {k: [] for k in ("roc_auc", "accuracy", "precision", "recall")}
    tolerance = {"roc_auc": AUC_TOLERANCE}
    for seed in range(30):
        rng = np.random.default_rng(seed)
        score = rng.beta(a, b, 2000)
        label = (rng.random(2000) < score).astype(float)
        e = estimate_performance(score, threshold=0.5)
        pred = score >= 0.5
        realised = {
            "roc_auc": skm.roc_auc_score(label, score),
            "accuracy": skm.accuracy_score(label, pred),
            "precision": skm.precision_score(label, pred),
            "recall": skm.recall_score(label, pred),
        }
        shares = {"accuracy": 2000, "precision": pred.sum(), "recall": label.sum()}
        for name, value in realised.items():
            gap = e[f"expected_{name}"] - value
            gaps[name].append(gap)
            if name in shares:
                tolerance[name] = 3.5 * math.sqrt(value * (1 - value) / shares[name])
            assert abs(gap) <= tolerance[name], (name, seed, gap, tolerance[name])
    for name, values in gaps.items():
        assert abs(np.mean(values)) <= 0.01, name


def test_expected_auc_equals_the_exact_expectation_on_small_samples() -> None:
    """Enumerate all 2^n labelings: the pairwise-expectation formula is the ratio of expected
    correctly ordered pairs to expected pairs, which the enumeration computes directly."""
    rng = np.random.default_rng(4)
    p = np.round(rng.random(8), 1)  # ties included
    ordered = pairs = 0.0
    for labels in itertools.product([0, 1], repeat=p.size):
        y = np.array(labels)
        weight = float(np.prod(np.where(y == 1, p, 1 - p)))
        pos, neg = p[y == 1], p[y == 0]
        ordered += weight * float(((pos[:, None] > neg) + 0.5 * (pos[:, None] == neg)).sum())
        pairs += weight * pos.size * neg.size
    assert expected_roc_auc(p) == pytest.approx(ordered / pairs, rel=1e-12)


def test_expected_confusion_matrix_sums_to_n() -> None:
    e = estimate_performance([0.9, 0.8, 0.2, 0.1, np.nan])
    total = e["expected_tp"] + e["expected_fp"] + e["expected_tn"] + e["expected_fn"]
    assert total == pytest.approx(4) and e["n_dropped"] == 1
    assert e["expected_accuracy"] == pytest.approx((0.9 + 0.8 + 0.8 + 0.9) / 4)


def test_edge_cases() -> None:
    e = estimate_performance([0.1, 0.2])
    assert math.isnan(e["expected_precision"])
    assert math.isnan(estimate_performance([1.0, 1.0])["expected_roc_auc"])
    with pytest.raises(InvalidInput, match=r"probabilities in \[0, 1\].*7"):
        estimate_performance([0.2, 7])
    with pytest.raises(InvalidInput, match="empty"):
        estimate_performance([])
