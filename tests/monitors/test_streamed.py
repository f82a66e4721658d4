"""A window past MODELYARD_MONITOR_MEMORY_ROWS is streamed: same numbers, or within the bound.

The setting is lowered so that a window of 24,000 predictions (more than 10,000 per side, where
both paths use Smirnov's asymptotic KS p-value) is streamed in 20,000-row chunks; the same window
computed in memory is the reference answer. The accumulators are also checked alone against the
in-memory analysis functions on tied and continuous scores.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from modelyard.analysis import DriftReference, classification_metrics, estimate_performance
from modelyard.analysis.streaming import StreamedClassification, StreamedDrift, StreamedEstimate
from modelyard.ids import new_prediction_uuid
from modelyard.monitors import MonitorSpec, run_monitor, upload_reference
from modelyard.store.base import MetricsStore, Prediction

from .conftest import HOUR, T0, _rows, identity, reference_frame

ROWS = 24_000
EXACT = 1e-9  # float summation order only


def _write(store: MetricsStore, seed: int = 3) -> str:
    ident = identity()
    rng = np.random.default_rng(seed)
    rows = _rows(rng, ROWS, tenure_shift=2.0)
    times = np.sort(rng.integers(0, HOUR, ROWS)) + T0
    preds = []
    for i, (row, t) in enumerate(zip(rows.itertuples(index=False), times, strict=True)):
        metrics = {
            "tenure": float(row.tenure),
            "charges": float(row.charges),
            "plan": str(row.plan),
            "probability": float(row.probability),
        }
        if i % 5:  # one in five not labelled yet
            metrics["churned"] = int(row.churned)
        preds.append(Prediction(new_prediction_uuid(), ident, int(t), int(t) + 3, metrics))
    for i in range(0, ROWS, 8000):
        store.write_predictions(preds[i : i + 8000])
    return ident.deployment_crn


def _spec(deployment: str, metrics: list[str]) -> MonitorSpec:
    return MonitorSpec.from_dict(
        {
            "name": "churn",
            "deployment": deployment,
            "reference": {"stored": "training"},
            "features": ["tenure", "charges", "plan"],
            "categorical": ["plan"],
            "prediction": "probability",
            "label": "churned",
            "window": "1h",
            "metrics": metrics,
            "segments": ["plan"],
        }
    )


def test_streamed_window_equals_the_in_memory_one(
    sdk_store: MetricsStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    dep = _write(sdk_store)
    upload_reference(reference_frame(n=4000), dep)
    groups = ["drift", "prediction_drift", "classification", "estimated_performance"]
    spec = _spec(dep, [*groups, "label_coverage", "segments"])
    window = (T0, T0 + HOUR)
    now = T0 + 2 * HOUR
    memory = run_monitor(spec, window=window, now_ms=now, settle_ms=0, notify=False)[0].metrics
    monkeypatch.setenv("MODELYARD_MONITOR_MEMORY_ROWS", "5000")
    streamed = run_monitor(spec, window=window, now_ms=now, settle_ms=0, notify=False)[0].metrics
    assert "window.streamed" not in memory and streamed["window.streamed"] is True
    assert streamed["window.source"] == memory["window.source"] == "raw"
    assert streamed["n"] == memory["n"] == ROWS
    assert (
        "segments.reason" in streamed
        and "MODELYARD_MONITOR_MEMORY_ROWS" in streamed["segments.reason"]
    )
    bounds = {
        "roc_auc": streamed["roc_auc_error_bound"],
        "roc_auc_ci_low": streamed["roc_auc_ci_error_bound"],
        "roc_auc_ci_high": streamed["roc_auc_ci_error_bound"],
        "pr_auc": streamed["pr_auc_error_bound"],
        "estimated_roc_auc": streamed["estimated_roc_auc_error_bound"],
    }
    bounds.update(
        {k: streamed["drift.wasserstein_error_bound"] for k in memory if k.startswith("wass")}
    )
    compared = 0
    for key, value in memory.items():
        if key.startswith(("fairness", "segments", "label_delay_p")):
            continue
        got = streamed[key]
        if isinstance(value, float):
            assert got == pytest.approx(value, rel=EXACT, abs=bounds.get(key, 0.0) + EXACT), key
            compared += 1
        else:
            assert got == value, key
    assert compared > 30
    assert streamed["drift.flagged_features"] == memory["drift.flagged_features"] == ["tenure"]
    assert streamed["labelled"] == memory["labelled"] == ROWS - ROWS // 5
    # Scores are continuous: a few pairs share a grid bin, and the bound is far below the CI.
    assert 0 < streamed["roc_auc_error_bound"] < 1e-4
    assert streamed["roc_auc_error_bound"] < (memory["roc_auc_ci_high"] - memory["roc_auc"]) / 100


@pytest.mark.parametrize("decimals", [2, None])
def test_classification_accumulator_against_the_in_memory_metrics(decimals: int | None) -> None:
    rng = np.random.default_rng(5)
    y = (rng.random(30_000) < 0.3).astype(np.float64)
    s = np.clip(0.25 * y + 0.75 * rng.random(30_000), 0.0, 1.0)
    if decimals is not None:  # heavy ties: each grid bin holds one distinct value, so exact
        s = np.round(s, decimals)
    y[::37] = np.nan
    want = classification_metrics(y, s)
    acc = StreamedClassification()
    for i in range(0, y.shape[0], 4096):
        acc.update(y[i : i + 4096], s[i : i + 4096])
    got = acc.result()
    if decimals is not None:
        assert got["roc_auc_error_bound"] == got["pr_auc_error_bound"] == 0.0
    for key, value in want.items():
        if isinstance(value, float):
            bound = got.get(f"{key}_error_bound", 0.0)
            if key.startswith("roc_auc_ci_"):
                bound = got["roc_auc_ci_error_bound"]
            assert abs(got[key] - value) <= bound + EXACT, key
        else:
            assert got[key] == value, key
    est, streamed = estimate_performance(s[~np.isnan(s)]), StreamedEstimate()
    streamed.update(s[:10_000])
    streamed.update(s[10_000:])
    result = streamed.result()
    for key in ("expected_accuracy", "expected_precision", "expected_recall", "expected_f1"):
        assert result[key] == pytest.approx(est[key], rel=EXACT)
    assert abs(result["expected_roc_auc"] - est["expected_roc_auc"]) <= (
        result["expected_roc_auc_error_bound"] + EXACT
    )


def test_classification_edge_cases_give_the_same_reasons() -> None:
    acc = StreamedClassification()
    acc.update([1.0, 1.0, 1.0], [0.2, 0.3, 0.9])
    got, want = acc.result(), classification_metrics([1, 1, 1], [0.2, 0.3, 0.9])
    assert math.isnan(got["roc_auc"]) and got["reasons"]["roc_auc"] == want["reasons"]["roc_auc"]
    assert got["pr_auc"] == want["pr_auc"] and got["precision"] == want["precision"]
    wrong = StreamedClassification()
    wrong.update([0.0, 1.0], [0.5, 1.5])
    with pytest.raises(Exception, match=r"\[0, 1\]; saw values from 0.5 to 1.5"):
        wrong.result()


def test_drift_accumulator_is_exact_but_wasserstein_within_its_bound() -> None:
    rng = np.random.default_rng(2)
    ref = pd.DataFrame(
        {
            "x": rng.normal(0.0, 1.0, 3000),
            "k": rng.integers(0, 15, 3000).astype(np.float64),  # ties on both sides
            "c": rng.choice(["a", "b", "c"], 3000),
        }
    )
    cur = pd.DataFrame(
        {
            "x": rng.normal(0.1, 1.2, 40_000),
            "k": rng.integers(0, 16, 40_000).astype(np.float64),
            "c": rng.choice(["a", "b", "c", "d"], 40_000),
        }
    )
    cur.loc[::11, "x"] = np.nan
    prepared = DriftReference(ref, categorical=["c"], workers=1)
    want = prepared.compare(cur)
    acc = StreamedDrift(prepared)
    for i in range(0, len(cur), 6000):
        acc.update(cur.iloc[i : i + 6000])
    got = acc.report()
    assert list(got["flagged"]) == list(want["flagged"])
    assert list(got["nan_current"]) == list(want["nan_current"])
    for (_, w), (_, g) in zip(want.iterrows(), got.iterrows(), strict=True):
        assert abs(g["effect"] - w["effect"]) <= g["error_bound"] + EXACT, (
            w["feature"],
            w["method"],
        )
        if w["method"] != "wasserstein":
            assert g["statistic"] == pytest.approx(w["statistic"], rel=EXACT, abs=EXACT)
            assert g["p_value"] == pytest.approx(w["p_value"], rel=1e-6, abs=1e-300, nan_ok=True)
    assert got.loc[got["method"] == "wasserstein", "error_bound"].max() < 1e-3
