"""classification_metrics against scikit-learn, DeLong against its definition, and edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from modelyard.analysis import classification_metrics, delong_roc_auc, expected_calibration_error
from modelyard.errors import InvalidInput


def _sample(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(float)
    score = np.clip(rng.beta(2, 5, n) + 0.25 * y, 0, 1)
    return y, score


@pytest.mark.parametrize("seed", range(5))
def test_point_metrics_equal_scikit_learn(seed: int) -> None:
    y, s = _sample(seed, 2000)
    m = classification_metrics(y, s, threshold=0.4)
    pred = s >= 0.4
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
    assert m["pr_auc"] == pytest.approx(skm.average_precision_score(y, s), abs=1e-12)
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, s), abs=1e-12)
    assert m["brier"] == pytest.approx(skm.brier_score_loss(y, s), abs=1e-12)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["precision"] == pytest.approx(skm.precision_score(y, pred))
    assert m["recall"] == pytest.approx(skm.recall_score(y, pred))
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred))
    assert m["n"] == 2000 and m["positives"] == int(y.sum()) and m["n_dropped"] == 0
    assert m["roc_auc_ci_method"] == "delong" and m["reasons"] == {}
    assert m["roc_auc_ci_low"] < m["roc_auc"] < m["roc_auc_ci_high"]


def _delong_by_definition(y: np.ndarray, s: np.ndarray) -> float:
    """DeLong's variance from the O(m n) pairwise kernel, for comparison with the fast version."""
    pos, neg = s[y == 1], s[y == 0]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    return float(np.var(v10, ddof=1) / pos.size + np.var(v01, ddof=1) / neg.size)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.integers(8, 150),
    st.sampled_from([None, 5]),  # None: continuous scores; 5: heavy ties
)
def test_delong_variance_equals_the_pairwise_definition(seed: int, n: int, levels: int | None):
    rng = np.random.default_rng(seed)
    y = np.r_[0.0, 0.0, 1.0, 1.0, (rng.random(n) < 0.4).astype(float)]  # two of each class
    s = rng.random(y.size)
    if levels:
        s = np.round(s * levels) / levels
    auc, var, low, high = delong_roc_auc(y, s)
    assert auc == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
    assert var == pytest.approx(_delong_by_definition(y, s), rel=1e-9, abs=1e-15)
    assert 0.0 <= low <= auc <= high <= 1.0


def test_delong_interval_covers_the_true_auc_about_as_often_as_promised() -> None:
    """Coverage over 300 seeded samples of a known population AUC (binormal, d' = 1)."""
    from scipy.stats import norm

    true_auc = float(norm.cdf(1 / math.sqrt(2)))
    hits = 0
    for seed in range(300):
        rng = np.random.default_rng(seed)
        y = np.r_[np.zeros(150), np.ones(100)]
        s = np.r_[rng.normal(0, 1, 150), rng.normal(1, 1, 100)]
        s = 1 / (1 + np.exp(-s))
        m = classification_metrics(y, s)
        hits += m["roc_auc_ci_low"] <= true_auc <= m["roc_auc_ci_high"]
    assert 0.91 <= hits / 300 <= 0.98


def test_ece_matches_calibration_curve() -> None:
    y, s = _sample(7, 5000)
    prob_true, prob_pred = calibration_curve(y, s, n_bins=10, strategy="uniform")
    counts = np.histogram(s, bins=np.linspace(0, 1, 11))[0]
    weights = counts[counts > 0] / s.size
    expected = float(np.sum(weights * np.abs(prob_true - prob_pred)))
    assert expected_calibration_error(y, s) == pytest.approx(expected, abs=1e-12)


def test_one_class_gives_nan_with_a_reason_not_an_exception() -> None:
    m = classification_metrics([0, 0, 0], [0.1, 0.6, 0.3])
    assert math.isnan(m["roc_auc"]) and math.isnan(m["roc_auc_ci_low"])
    assert "only negative labels" in m["reasons"]["roc_auc"]
    assert math.isnan(m["pr_auc"]) and math.isnan(m["recall"])
    assert m["f1"] == 0.0  # 2 TP / (2 TP + FP + FN) with one false positive, as scikit-learn
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert m["log_loss"] == pytest.approx(skm.log_loss([0, 0, 0], [0.1, 0.6, 0.3], labels=[0, 1]))
    m = classification_metrics([1, 1], [0.9, 0.2])
    assert math.isnan(m["roc_auc"]) and "only positive" in m["reasons"]["roc_auc"]
    assert m["pr_auc"] == 1.0


def test_nothing_predicted_positive_makes_precision_nan_with_reason() -> None:
    m = classification_metrics([0, 1, 1], [0.1, 0.2, 0.3])
    assert math.isnan(m["precision"]) and "no rows predicted positive" in m["reasons"]["precision"]
    assert m["recall"] == 0.0


def test_nan_pairs_are_dropped_and_counted() -> None:
    m = classification_metrics([0, 1, np.nan, 1], [0.2, 0.8, 0.5, np.nan])
    assert m["n"] == 2 and m["n_dropped"] == 2 and m["roc_auc"] == 1.0


def test_bad_inputs_are_refused_with_the_values_named() -> None:
    with pytest.raises(InvalidInput, match="empty"):
        classification_metrics([], [])
    with pytest.raises(InvalidInput, match=r"y_true has 3 values but y_score has 2"):
        classification_metrics([0, 1, 1], [0.1, 0.2])
    with pytest.raises(InvalidInput, match=r"binary labels.*2\.0, 3\.0"):
        classification_metrics([0, 1, 2, 3], [0.1, 0.2, 0.3, 0.4])
    with pytest.raises(InvalidInput, match=r"probabilities in \[0, 1\].*1\.5"):
        classification_metrics([0, 1], [0.1, 1.5])
    with pytest.raises(InvalidInput, match="numbers"):
        classification_metrics(["a", "b"], [0.1, 0.2])
    with pytest.raises(InvalidInput, match="NaN"):
        classification_metrics([np.nan], [0.3])
    with pytest.raises(InvalidInput, match="confidence"):
        classification_metrics([0, 1], [0.1, 0.2], confidence=95)


def test_booleans_are_labels() -> None:
    m = classification_metrics([False, True, True], [0.2, 0.9, 0.7])
    assert m["roc_auc"] == 1.0 and m["positives"] == 2
