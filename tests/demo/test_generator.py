"""The synthetic customers: the known churn model, and what each drift switch changes."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from modelyard.demo import generator


def test_same_seed_same_customers() -> None:
    a = generator.customers(np.random.default_rng(3), 50)
    b = generator.customers(np.random.default_rng(3), 50)
    assert a.equals(b)
    assert list(a.columns) == list(generator.FEATURES)


def test_churn_follows_the_known_model() -> None:
    rng = np.random.default_rng(0)
    frame = generator.customers(rng, 40_000)
    p = generator.true_churn_probability(frame)
    churned = generator.draw_churn(rng, frame)
    # Observed churn by decile of the true probability matches the probability (calibration).
    deciles = np.quantile(p, np.linspace(0, 1, 11))
    bucket = np.clip(np.searchsorted(deciles, p, side="right") - 1, 0, 9)
    for b in range(10):
        inside = bucket == b
        assert abs(churned[inside].mean() - p[inside].mean()) < 0.03
    assert 0.15 < churned.mean() < 0.4
    assert roc_auc_score(churned, p) > 0.75


def test_covariate_drift_moves_the_inputs_not_the_relationship() -> None:
    rng = np.random.default_rng(1)
    base = generator.customers(rng, 20_000)
    new = generator.customers(rng, 20_000, covariate_drift=True)
    assert new["tenure"].mean() < base["tenure"].mean() / 2
    assert new["monthly_charges"].mean() > base["monthly_charges"].mean() + 15
    assert (new["contract"] == "month-to-month").mean() > 0.8
    # The region's distribution does not move (a control column for the drift monitor).
    shares = base["region"].value_counts(normalize=True) - new["region"].value_counts(
        normalize=True
    )
    assert shares.abs().max() < 0.02
    # Same relationship: the true model still ranks the new customers well.
    churned = generator.draw_churn(rng, new)
    assert roc_auc_score(churned, generator.true_churn_probability(new)) > 0.7


def test_concept_drift_breaks_the_old_relationship() -> None:
    rng = np.random.default_rng(2)
    frame = generator.customers(rng, 20_000)
    churned = generator.draw_churn(rng, frame, concept_drift=True)
    old = roc_auc_score(churned, generator.true_churn_probability(frame))
    new = roc_auc_score(churned, generator.true_churn_probability(frame, concept_drift=True))
    assert new > 0.7
    assert old < new - 0.1


@pytest.mark.parametrize("n", [0, 1])
def test_tiny_draws(n: int) -> None:
    frame = generator.customers(np.random.default_rng(0), n)
    assert len(frame) == n
    assert len(generator.draw_churn(np.random.default_rng(0), frame)) == n
