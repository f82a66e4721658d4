"""Minimum sample sizes: a window with too few labelled predictions (``min_labels``) or too few
predictions (``min_predictions``) holds no label metrics (no drift), says so, and neither fires
nor resolves an alert: the 4-prediction window whose ROC AUC of 1.0 resolved a firing
'roc_auc < 0.7' keeps it firing."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from modelyard.ids import new_prediction_uuid
from modelyard.monitors import MonitorSpec, run_monitor, upload_reference
from modelyard.monitors.__main__ import main
from modelyard.monitors.alerts import list_alerts
from modelyard.store.base import Identity, MetricsStore, Prediction

from .conftest import HOUR, T0, identity, reference_frame, write_stream

RULE = "roc_auc < 0.7"


def _window(
    store: MetricsStore, ident: Identity, index: int, labels: list[int], good: bool
) -> None:
    """One window of labelled predictions: scores that rank the labels right (``good``, AUC 1.0)
    or backwards (AUC 0.0)."""
    rng = np.random.default_rng(index)
    start = T0 + index * HOUR
    preds = []
    for i, label in enumerate(labels):
        score = float(rng.uniform(0.6, 0.9) if label == good else rng.uniform(0.1, 0.4))
        t = start + 1000 * (i + 1)
        metrics: dict[str, Any] = {"probability": score, "churned": label}
        preds.append(Prediction(new_prediction_uuid(), ident, t, t + 3, metrics))
    store.write_predictions(preds)


def _spec(ident: Identity, **extra: Any) -> MonitorSpec:
    data = {
        "name": "churn",
        "deployment": ident.deployment_crn,
        "prediction": "probability",
        "label": "churned",
        "window": "1h",
        "metrics": ["classification"],
        "alerts": [RULE],
        **extra,
    }
    return MonitorSpec.from_dict(data)


def _alert() -> dict[str, Any]:
    (alert,) = list_alerts(all_states=True)
    return alert


def test_four_labels_neither_resolve_nor_fire(sdk_store: MetricsStore) -> None:
    ident = identity()
    for w in range(2):  # two bad windows of 100 labels: the rule fires
        _window(sdk_store, ident, w, [0, 1] * 50, good=False)
    _window(sdk_store, ident, 2, [0, 0, 1, 1], good=True)  # 4 labels ranked right: AUC 1.0
    spec = _spec(ident)

    results = run_monitor(spec, now_ms=T0 + 3 * HOUR, settle_ms=0)
    assert [r.metrics["roc_auc"] for r in results[:2]] == [0.0, 0.0]
    small = results[2].metrics
    assert "roc_auc" not in small and "accuracy" not in small  # left out: no evidence
    assert small["classification.insufficient"] is True
    assert small["classification.labelled"] == 4
    assert small["classification.reason"] == "4 labelled predictions < min_labels 30"
    assert results[2].insufficient == {"classification": small["classification.reason"]}
    assert results[2].not_evaluated == {RULE: "4 labelled predictions < min_labels 30"}
    assert (
        results[1].not_evaluated == {} and "classification.insufficient" not in results[1].metrics
    )
    alert = _alert()
    assert alert["state"] == "firing"  # the old behaviour: resolved at window 2
    assert alert["first_window_start_ms"] == T0

    # A small bad window after a good one does not fire again either.
    _window(sdk_store, ident, 3, [0, 1] * 50, good=True)  # a real recovery: resolves
    _window(sdk_store, ident, 4, [0, 1, 0], good=False)
    results = run_monitor(spec, now_ms=T0 + 5 * HOUR, settle_ms=0)
    assert results[0].metrics["roc_auc"] == 1.0 and "roc_auc" not in results[1].metrics
    alert = _alert()
    assert alert["state"] == "resolved" and alert["resolved_window_start_ms"] == T0 + 3 * HOUR


def test_min_labels_one_computes_every_window(sdk_store: MetricsStore) -> None:
    ident = identity()
    _window(sdk_store, ident, 0, [0, 1] * 50, good=False)
    _window(sdk_store, ident, 1, [0, 0, 1, 1], good=True)
    results = run_monitor(_spec(ident, min_labels=1), now_ms=T0 + 2 * HOUR, settle_ms=0)
    assert results[1].metrics["roc_auc"] == 1.0
    assert results[1].metrics["classification.labelled"] == 4
    assert "classification.insufficient" not in results[1].metrics
    assert _alert()["state"] == "resolved"  # asked for: every window counts


def test_drift_on_a_tiny_window_does_not_resolve(sdk_store: MetricsStore) -> None:
    stream = write_stream(sdk_store, 3, drifted=frozenset({1, 2}))
    dep = stream.ident.deployment_crn
    upload_reference(reference_frame(), dep)
    _window(sdk_store, stream.ident, 3, [0, 1, 0, 1], good=True)  # 4 stable-looking rows
    spec = MonitorSpec.from_dict(
        {
            "name": "drifty",
            "deployment": dep,
            "reference": {"stored": "training"},
            "features": ["tenure"],
            "prediction": "probability",
            "metrics": ["drift", "prediction_drift"],
            "window": "1h",
            "alerts": ["drift.flagged > 0", "prediction_drift.flagged > 0"],
            "min_predictions": 50,
        }
    )
    results = run_monitor(spec, now_ms=T0 + 4 * HOUR, settle_ms=0)
    assert results[1].metrics["drift.flagged"] == 1
    tiny = results[3].metrics
    assert tiny["n"] == 4 and "drift.flagged" not in tiny and "psi.tenure" not in tiny
    assert tiny["drift.insufficient"] is True and tiny["prediction_drift.insufficient"] is True
    assert tiny["drift.reason"] == "4 predictions < min_predictions 50"
    assert results[3].not_evaluated["drift.flagged > 0"] == "4 predictions < min_predictions 50"
    firing = {a["rule"]: a["state"] for a in list_alerts(all_states=True)}
    assert firing["drift.flagged > 0"] == "firing"


def test_run_output_says_not_evaluated(
    sdk_store: MetricsStore, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    ident = identity()
    _window(sdk_store, ident, 0, [0, 1] * 50, good=False)
    _window(sdk_store, ident, 1, [0, 0, 1, 1], good=True)
    path = tmp_path / "churn.yaml"
    path.write_text(
        f"deployment: {ident.deployment_crn}\nprediction: probability\nlabel: churned\n"
        f"window: 1h\nmetrics: [classification]\nstart: {T0}\nalerts: ['{RULE}']\n",
        encoding="utf-8",
    )
    assert main(["run", str(path)]) == 0
    out = capsys.readouterr().out
    assert "  classification not computed: 4 labelled predictions < min_labels 30" in out
    assert f"  alert '{RULE}' not evaluated: 4 labelled predictions < min_labels 30" in out
    assert _alert()["state"] == "firing"
