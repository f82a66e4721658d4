"""A regression monitor (``task: regression``): MAE, RMSE, MAPE and R² per window with bootstrap
intervals, checked against scikit-learn on a real SQLite store."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from modelyard.errors import InvalidInput
from modelyard.ids import new_prediction_uuid
from modelyard.monitors import MonitorSpec, run_monitor
from modelyard.store.base import MetricsStore, Prediction

from .conftest import HOUR, T0, identity


def test_regression_windows_match_scikit_learn(sdk_store: MetricsStore) -> None:
    rng = np.random.default_rng(3)
    ident = identity()
    truth: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for w in range(2):
        y = rng.gamma(4.0, 50.0, 400)
        y[:5] = 0.0  # MAPE must skip these, not divide by them
        pred = y + rng.normal(0.0, 15.0 * (w + 1), y.size)
        times = T0 + w * HOUR + np.sort(rng.integers(0, HOUR, y.size))
        sdk_store.write_predictions(
            [
                Prediction(new_prediction_uuid(), ident, int(t), int(t) + 1, {"pred": p, "y": v})
                for t, p, v in zip(times, pred.tolist(), y.tolist(), strict=True)
            ]
        )
        truth[w] = (y, pred)
    spec = MonitorSpec.from_dict(
        {
            "name": "price",
            "deployment": ident.deployment_crn,
            "task": "regression",
            "prediction": "pred",
            "label": "y",
            "window": "1h",
            "metrics": ["regression", "label_coverage"],
        }
    )
    assert MonitorSpec.from_dict(spec.to_dict()) == spec
    defaults = {**spec.to_dict(), "features": ["y"], "reference": {"stored": "training"}}
    del defaults["metrics"]
    assert MonitorSpec.from_dict(defaults).metrics == (
        "regression",
        "drift",
        "label_coverage",
        "prediction_drift",
    )
    results = run_monitor(spec, window=(T0, T0 + 2 * HOUR), settle_ms=0)
    assert [r.start_ms for r in results] == [T0, T0 + HOUR]
    for w, result in enumerate(results):
        m = result.metrics
        y, pred = truth[w]
        nonzero = y != 0
        assert m["mae"] == pytest.approx(skm.mean_absolute_error(y, pred))
        assert m["rmse"] == pytest.approx(skm.root_mean_squared_error(y, pred))
        assert m["r2"] == pytest.approx(skm.r2_score(y, pred))
        assert m["mape"] == pytest.approx(
            skm.mean_absolute_percentage_error(y[nonzero], pred[nonzero])
        )
        assert m["mape_excluded_zeros"] == 5
        for name in ("mae", "rmse", "mape", "r2"):
            assert m[f"{name}_ci_low"] < m[name] < m[f"{name}_ci_high"]
        assert m["label_coverage"] == 1.0 and "roc_auc" not in m
    assert results[1].metrics["rmse"] > results[0].metrics["rmse"]  # noisier second window


def test_a_regression_spec_refuses_classification_metrics() -> None:
    base = {"name": "r", "deployment": "crn:modelyard:deployment/x", "prediction": "p"}
    with pytest.raises(InvalidInput, match=r"'classification'.*regression"):
        MonitorSpec.from_dict(
            {
                **base,
                "task": "regression",
                "label": "y",
                "window": "1h",
                "metrics": ["classification"],
            }
        )
    with pytest.raises(InvalidInput, match=r"task.*'forecast'.*classification, regression"):
        MonitorSpec.from_dict({**base, "task": "forecast", "window": "1h"})
    with pytest.raises(InvalidInput, match="label"):
        MonitorSpec.from_dict(
            {**base, "task": "regression", "window": "1h", "metrics": ["regression"]}
        )
