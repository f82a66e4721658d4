"""regression_metrics against scikit-learn, its bootstrap against scipy.stats.bootstrap."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from modelyard.analysis import regression_metrics
from modelyard.errors import InvalidInput


@pytest.mark.parametrize("seed", range(4))
def test_point_metrics_equal_scikit_learn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.gamma(2.0, 3.0, 800)
    p = y + rng.normal(0, 1.5, 800)
    m = regression_metrics(y, p, n_resamples=0)
    assert m["mae"] == pytest.approx(skm.mean_absolute_error(y, p), rel=1e-12)
    assert m["rmse"] == pytest.approx(math.sqrt(skm.mean_squared_error(y, p)), rel=1e-12)
    assert m["mape"] == pytest.approx(skm.mean_absolute_percentage_error(y, p), rel=1e-12)
    assert m["r2"] == pytest.approx(skm.r2_score(y, p), rel=1e-12)
    assert math.isnan(m["mae_ci_low"])


def test_bootstrap_intervals_agree_with_scipy_bootstrap() -> None:
    rng = np.random.default_rng(3)
    y = rng.normal(10, 2, 400)
    p = y + rng.standard_t(4, 400)
    m = regression_metrics(y, p, n_resamples=2000, seed=1)
    for name, fn in {
        "mae": lambda t, q, axis=-1: np.mean(np.abs(q - t), axis=axis),
        "rmse": lambda t, q, axis=-1: np.sqrt(np.mean((q - t) ** 2, axis=axis)),
    }.items():
        ref = stats.bootstrap(
            (y, p), fn, paired=True, n_resamples=2000, method="percentile", rng=7
        ).confidence_interval
        width = ref.high - ref.low
        assert m[f"{name}_ci_low"] == pytest.approx(ref.low, abs=0.1 * width)
        assert m[f"{name}_ci_high"] == pytest.approx(ref.high, abs=0.1 * width)
        assert m[f"{name}_ci_low"] < m[name] < m[f"{name}_ci_high"]
    assert m["r2_ci_low"] < m["r2"] < m["r2_ci_high"]
    assert m["ci_method"] == "bootstrap-percentile"


def test_intervals_are_reproducible_with_the_seed_and_chunking_does_not_change_them() -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(size=300)
    p = y + rng.normal(size=300)
    a = regression_metrics(y, p, n_resamples=300, seed=5)
    b = regression_metrics(y, p, n_resamples=300, seed=5)
    assert a == b
    import modelyard.analysis.regression as module

    original = module._CHUNK_CELLS
    module._CHUNK_CELLS = 1000  # 3 resamples per chunk instead of all at once
    try:
        c = regression_metrics(y, p, n_resamples=300, seed=5)
    finally:
        module._CHUNK_CELLS = original
    assert c == a


def test_mape_leaves_out_zero_true_values_and_says_how_many() -> None:
    m = regression_metrics([0.0, 2.0, 4.0], [1.0, 1.0, 5.0], n_resamples=0)
    assert m["mape_excluded_zeros"] == 1
    assert m["mape"] == pytest.approx((0.5 + 0.25) / 2)
    m = regression_metrics([0.0, 0.0], [1.0, 2.0], n_resamples=50)
    assert math.isnan(m["mape"]) and "all 2 true values are 0" in m["reasons"]["mape"]
    assert math.isnan(m["mape_ci_low"])


def test_constant_truth_makes_r2_nan_with_reason() -> None:
    m = regression_metrics([3.0, 3.0, 3.0], [2.0, 3.0, 4.0], n_resamples=0)
    assert math.isnan(m["r2"]) and "variance" in m["reasons"]["r2"]


def test_bad_inputs() -> None:
    with pytest.raises(InvalidInput, match="y_true has 2 values but y_pred has 1"):
        regression_metrics([1, 2], [1])
    with pytest.raises(InvalidInput, match="empty"):
        regression_metrics([], [])
    with pytest.raises(InvalidInput, match="n_resamples"):
        regression_metrics([1, 2], [1, 2], n_resamples=-1)
    m = regression_metrics([1.0, np.nan, 3.0], [1.0, 2.0, np.nan], n_resamples=0)
    assert m["n"] == 1 and m["n_dropped"] == 2
