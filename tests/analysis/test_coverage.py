"""label_coverage: share labelled and delay quantiles, against numpy on seeded data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from modelyard.analysis import label_coverage
from modelyard.errors import InvalidInput


def test_coverage_and_delays_match_numpy() -> None:
    rng = np.random.default_rng(0)
    predicted = np.sort(rng.integers(0, 3_600_000, 5000)).astype(float)
    delay = rng.exponential(600_000, 5000)
    labelled = np.where(rng.random(5000) < 0.7, predicted + delay, np.nan)
    c = label_coverage(predicted, labelled, quantiles=(0.5, 0.9, 0.999))
    have = ~np.isnan(labelled)
    assert c["n"] == 5000 and c["labelled"] == int(have.sum())
    assert c["coverage"] == pytest.approx(have.mean())
    expected = np.quantile(delay[have], [0.5, 0.9, 0.999])
    assert [c["delay_p50_ms"], c["delay_p90_ms"], c["delay_p99.9_ms"]] == pytest.approx(expected)
    assert c["delay_max_ms"] == pytest.approx(delay[have].max())


def test_as_of_counts_only_labels_that_had_arrived() -> None:
    c = label_coverage([0, 0, 0, 0], [10, 20, 30, None], as_of_ms=20)
    assert c["labelled"] == 2 and c["coverage"] == 0.5 and c["delay_max_ms"] == 20


def test_no_labels_and_no_predictions() -> None:
    c = label_coverage([1, 2], [None, None])
    assert c["coverage"] == 0.0 and math.isnan(c["delay_p50_ms"])
    c = label_coverage([], [])
    assert c["n"] == 0 and math.isnan(c["coverage"])


def test_label_before_prediction_is_refused() -> None:
    with pytest.raises(InvalidInput, match="500 ms before its prediction"):
        label_coverage([1000], [500])
    with pytest.raises(InvalidInput, match="prediction_ms has 1 values but label_ms has 2"):
        label_coverage([1000], [500, 600])
    with pytest.raises(InvalidInput, match="quantile"):
        label_coverage([1], [2], quantiles=(1.5,))
