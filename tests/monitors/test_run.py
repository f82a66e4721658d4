"""run_monitor over a real SQLite store: windows, keys, AUC against scikit-learn, replacement,
late labels, drift at a known window, an alert that fires once and resolves, and its webhooks."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

import modelyard
from modelyard.monitors import MonitorSpec, run_monitor, upload_reference
from modelyard.monitors.alerts import list_alerts
from modelyard.store.base import MetricsStore

from .conftest import HOUR, T0, Webhook, reference_frame, write_stream


def spec_for(deployment: str, **extra: object) -> MonitorSpec:
    data = {
        "name": "churn",
        "deployment": deployment,
        "reference": {"stored": "training"},
        "features": ["tenure", "charges", "plan"],
        "categorical": ["plan"],
        "prediction": "probability",
        "label": "churned",
        "window": "1h",
        **extra,
    }
    return MonitorSpec.from_dict(data)


def aggregates(deployment: str) -> dict[int, list[dict[str, object]]]:
    page = modelyard.read_metrics(deployment, 0, T0 + 100 * HOUR)
    out: dict[int, list[dict[str, object]]] = {}
    for record in page["metrics"]:
        if record["predictionUuid"] is None:
            out.setdefault(record["startTimeStampMs"], []).append(record["metrics"])
    return out


def test_windows_keys_auc_and_replacement(sdk_store: MetricsStore) -> None:
    stream = write_stream(sdk_store, 4)
    dep = stream.ident.deployment_crn
    upload_reference(reference_frame(), dep)
    spec = spec_for(dep)
    # 20 minutes into hour 4: windows 0..3 are complete, 4 is not
    results = run_monitor(spec, now_ms=T0 + 4 * HOUR + 20 * 60_000, settle_ms=0)
    assert [(r.start_ms, r.end_ms, r.reason) for r in results] == [
        (T0 + w * HOUR, T0 + (w + 1) * HOUR, "new") for w in range(4)
    ]
    for w, result in enumerate(results):
        m = result.metrics
        rows = stream.windows[w]
        for key in [
            "n",
            "roc_auc",
            "roc_auc_ci_low",
            "roc_auc_ci_high",
            "accuracy",
            "psi.tenure",
            "ks.charges",
            "chi2.plan",
            "drift.flagged",
            "drift.flagged_features",
            "label_coverage",
            "estimated_roc_auc",
            "prediction_drift.psi",
        ]:
            assert key in m, key
        assert m["n"] == len(rows)
        expected = roc_auc_score(rows["churned"], rows["probability"])
        assert m["roc_auc"] == pytest.approx(expected, abs=1e-12)
        assert m["roc_auc_ci_low"] < m["roc_auc"] < m["roc_auc_ci_high"]
        assert m["label_coverage"] == 1.0
    stored = aggregates(dep)
    assert sorted(stored) == [T0 + w * HOUR for w in range(4)]
    assert all(len(v) == 1 for v in stored.values())
    assert stored[T0][0]["roc_auc"] == results[0].metrics["roc_auc"]

    # nothing new is due: nothing computed; an explicit window is recomputed and replaced
    assert run_monitor(spec, now_ms=T0 + 4 * HOUR + 30 * 60_000, settle_ms=0) == []
    again = run_monitor(spec, window=(T0 + HOUR, T0 + 3 * HOUR), settle_ms=0)
    assert [(r.start_ms, r.reason) for r in again] == [
        (T0 + HOUR, "requested"),
        (T0 + 2 * HOUR, "requested"),
    ]
    stored = aggregates(dep)
    assert all(len(v) == 1 for v in stored.values()), stored
    assert stored[T0 + HOUR][0] == again[0].metrics


def test_late_labels_recompute_only_their_window(sdk_store: MetricsStore) -> None:
    stream = write_stream(sdk_store, 3, unlabelled=frozenset({2}))
    dep = stream.ident.deployment_crn
    upload_reference(reference_frame(), dep)
    spec = spec_for(dep, metrics=["classification", "label_coverage", "estimated_performance"])
    first = run_monitor(spec, now_ms=T0 + 3 * HOUR, settle_ms=0)
    late = first[2].metrics
    assert late["label_coverage"] == 0.0 and late["labelled"] == 0
    assert "roc_auc" not in late and "classification.reason" in late
    assert 0.5 < late["estimated_roc_auc"] < 1.0  # estimated without labels

    rows = stream.windows[2]
    labelled = rows.index[:PER_HALF]
    for i in labelled:
        modelyard.track_delayed_metrics({"churned": int(rows["churned"][i])}, stream.uuids[2][i])
    second = run_monitor(spec, now_ms=T0 + 3 * HOUR, settle_ms=0)
    assert [(r.start_ms, r.reason) for r in second] == [(T0 + 2 * HOUR, "late_labels")]
    m = second[0].metrics
    assert m["labelled"] == PER_HALF and m["label_coverage"] == PER_HALF / len(rows)
    assert m["label_delay_p50_ms"] > 0
    expected = roc_auc_score(rows["churned"][labelled], rows["probability"][labelled])
    assert m["roc_auc"] == pytest.approx(expected, abs=1e-12)
    assert [len(v) for v in aggregates(dep).values()] == [1, 1, 1]
    # the labels were seen: the next run recomputes nothing
    assert run_monitor(spec, now_ms=T0 + 3 * HOUR, settle_ms=0) == []


PER_HALF = 150


def test_drift_at_a_known_window_and_an_alert_that_fires_once_and_resolves(
    sdk_store: MetricsStore, webhook: Webhook
) -> None:
    stream = write_stream(sdk_store, 8, drifted=frozenset({4, 5}))
    dep = stream.ident.deployment_crn
    upload_reference(reference_frame(), dep)
    spec = spec_for(dep, alerts=["drift.flagged > 0", "roc_auc < 0.2"], notify=[webhook.url])

    results = run_monitor(spec, now_ms=T0 + 6 * HOUR, settle_ms=0)
    flagged = [r.metrics["drift.flagged_features"] for r in results]
    assert flagged[:4] == [[], [], [], []]  # no flag on the four stable windows before
    assert "tenure" in flagged[4] and "tenure" in flagged[5]
    assert results[4].metrics["psi.tenure"] > 0.25
    (alert,) = list_alerts()
    assert alert["rule"] == "drift.flagged > 0" and alert["state"] == "firing"
    assert alert["first_window_start_ms"] == T0 + 4 * HOUR
    assert alert["last_window_end_ms"] == T0 + 6 * HOUR
    assert [(b["rule"], b["state"]) for b in webhook.received] == [("drift.flagged > 0", "firing")]

    # recomputing the windows changes nothing about the alert: no second notification
    run_monitor(spec, window=(T0, T0 + 6 * HOUR), settle_ms=0)
    assert len(webhook.received) == 1

    run_monitor(spec, now_ms=T0 + 8 * HOUR, settle_ms=0)  # windows 6 and 7 are stable again
    (alert,) = list_alerts(all_states=True)
    assert alert["state"] == "resolved" and alert["resolved_window_start_ms"] == T0 + 6 * HOUR
    assert list_alerts() == []
    assert [(b["rule"], b["state"]) for b in webhook.received] == [
        ("drift.flagged > 0", "firing"),
        ("drift.flagged > 0", "resolved"),
    ]
    body = webhook.received[1]
    assert body["kind"] == "modelyard.alert" and body["monitor"] == "churn"
    assert body["deployment_crn"] == dep and body["value"] >= 1


def test_estimated_auc_tracks_the_realised_one(sdk_store: MetricsStore) -> None:
    stream = write_stream(sdk_store, 3, seed=11)
    upload_reference(reference_frame(), stream.ident.deployment_crn)
    spec = spec_for(
        stream.ident.deployment_crn, metrics=["classification", "estimated_performance"]
    )
    for r in run_monitor(spec, now_ms=T0 + 3 * HOUR, settle_ms=0):
        # a calibrated model: the estimate is within sampling error of the realised AUC
        width = r.metrics["roc_auc_ci_high"] - r.metrics["roc_auc_ci_low"]
        assert abs(r.metrics["estimated_roc_auc"] - r.metrics["roc_auc"]) < width
        assert np.isfinite(r.metrics["estimated_accuracy"])
