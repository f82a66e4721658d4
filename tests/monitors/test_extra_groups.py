"""The ``segments`` and ``multivariate_drift`` monitor groups on seeded, simulated shifts in a real
SQLite store: one segment breaking while the overall AUC barely moves (the gap grows and its
alert fires), and a correlation flipping while every feature keeps its distribution (univariate
drift stays quiet, the domain classifier flags it). Numbers are checked against scikit-learn."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from modelyard.analysis import fairness_gaps
from modelyard.errors import InvalidInput
from modelyard.ids import new_prediction_uuid
from modelyard.monitors import MonitorSpec, list_alerts, run_monitor, upload_reference
from modelyard.monitors.extra_groups import window_summary
from modelyard.monitors.multivariate_group import auc_interval
from modelyard.specs.monitor_outputs import produced_metrics
from modelyard.store.base import MetricsStore, Prediction, RollupPolicy

from .conftest import HOUR, T0, identity
from .test_cli import run_main

REGIONS = ["north", "east", "west", "south"]
SHARES = [0.35, 0.3, 0.25, 0.1]


def _write(store: MetricsStore, frames: list[pd.DataFrame], seed: int) -> str:
    """One hour window per frame, rows at distinct, increasing times; returns the deployment."""
    ident = identity()
    store.register_identity(ident)
    rng = np.random.default_rng(seed)
    for w, frame in enumerate(frames):
        times = np.sort(rng.choice(HOUR, size=len(frame), replace=False)) + T0 + w * HOUR
        preds = [
            Prediction(new_prediction_uuid(), ident, int(t), int(t) + 2, row)
            for row, t in zip(frame.to_dict("records"), times, strict=True)
        ]
        store.write_predictions(preds)
    return ident.deployment_crn


def _segment_rows(rng: np.random.Generator, n: int, broken: bool) -> pd.DataFrame:
    """A calibrated churn score; when ``broken``, region south's scores are shuffled among its
    rows: the same score distribution there, but no longer related to the label."""
    region = rng.choice(REGIONS, n, p=SHARES)
    contract = rng.choice(["monthly", "yearly"], n, p=[0.6, 0.4])
    tenure = rng.normal(24, 8, n)
    probability = 1 / (1 + np.exp(0.25 * (tenure - 24) - rng.normal(0, 0.5, n)))
    churned = (rng.random(n) < probability).astype(int)
    score = probability.copy()
    if broken:
        south = region == "south"
        score[south] = rng.permutation(score[south])
    return pd.DataFrame(
        {
            "tenure": tenure,
            "region": region,
            "contract": contract,
            "probability": score,
            "churned": churned,
        }
    )


SEGMENT_WINDOWS = 6
BROKEN = frozenset({3, 4, 5})


def _segment_spec(dep: str, name: str = "segments") -> MonitorSpec:
    return MonitorSpec.from_dict(
        {
            "name": name,
            "deployment": dep,
            "prediction": "probability",
            "label": "churned",
            "window": "1h",
            "segments": ["region", "contract"],
            "metrics": ["classification"],
            "alerts": ["fairness.gap.roc_auc > 0.1", "roc_auc < 0.8"],
        }
    )


def test_one_segment_breaking_grows_the_gap_and_fires_while_overall_auc_barely_moves(
    sdk_store: MetricsStore,
) -> None:
    rng = np.random.default_rng(11)
    frames = [_segment_rows(rng, 3000, w in BROKEN) for w in range(SEGMENT_WINDOWS)]
    dep = _write(sdk_store, frames, seed=12)
    spec = _segment_spec(dep)
    results = run_monitor(spec, window=(T0, T0 + SEGMENT_WINDOWS * HOUR), settle_ms=0)
    assert [r.metrics["n"] for r in results] == [3000] * SEGMENT_WINDOWS

    for result, frame in zip(results, frames, strict=True):
        m = result.metrics
        # Every per-segment number is scikit-learn's on that segment's rows.
        for region in REGIONS:
            rows = frame[frame["region"] == region]
            assert m[f"segments.region.{region}.n"] == len(rows)
            assert m[f"segments.region.{region}.roc_auc"] == pytest.approx(
                roc_auc_score(rows["churned"], rows["probability"]), abs=1e-12
            )
            assert m[f"segments.region.{region}.selection_rate"] == pytest.approx(
                float(np.mean(rows["probability"] >= 0.5)), abs=1e-12
            )
        aucs = {
            f"{c}={v}": roc_auc_score(g["churned"], g["probability"])
            for c in ("region", "contract")
            for v, g in frame.groupby(c)
        }
        per_column = {
            c: max(a for k, a in aucs.items() if k.startswith(c + "="))
            - min(a for k, a in aucs.items() if k.startswith(c + "="))
            for c in ("region", "contract")
        }
        assert m["fairness.region.gap.roc_auc"] == pytest.approx(per_column["region"], abs=1e-12)
        assert m["fairness.gap.roc_auc"] == pytest.approx(max(per_column.values()), abs=1e-12)
        # The selection-rate gap is fairlearn's demographic parity difference, the recall gap its
        # equal opportunity difference, as modelyard.analysis.fairness_gaps computes them.
        gaps = fairness_gaps(frame, "region", "probability", "churned")
        assert m["fairness.region.gap.selection_rate"] == pytest.approx(
            gaps["demographic_parity_difference"].iloc[0], abs=1e-12
        )
        assert m["fairness.region.gap.recall"] == pytest.approx(
            gaps["equal_opportunity_difference"].iloc[0], abs=1e-12
        )

    overall = [r.metrics["roc_auc"] for r in results]
    gap = [r.metrics["fairness.gap.roc_auc"] for r in results]
    stable_auc = np.mean([overall[w] for w in range(SEGMENT_WINDOWS) if w not in BROKEN])
    broken_auc = np.mean([overall[w] for w in BROKEN])
    assert max(gap[w] for w in range(SEGMENT_WINDOWS) if w not in BROKEN) < 0.1
    assert min(gap[w] for w in BROKEN) > 0.25
    assert all(
        results[w].metrics["fairness.gap.roc_auc.min_segment"] == "region=south" for w in BROKEN
    )
    assert 0 < stable_auc - broken_auc < 0.06  # the overall AUC barely moves ...
    assert min(overall) > 0.8  # ... and its own rule never fires
    (alert,) = list_alerts(monitor="segments")
    assert alert["rule"] == "fairness.gap.roc_auc > 0.1"
    assert alert["first_window_start_ms"] == T0 + min(BROKEN) * HOUR
    assert alert["breaching"]["fairness.gap.roc_auc"] == pytest.approx(gap[min(BROKEN)])

    # The dashboard's summary of a window names the gap and its two segments.
    summary = window_summary(results[min(BROKEN)].metrics)
    assert summary is not None and summary["multivariate"] is None
    assert summary["gaps"]["roc_auc"]["min_segment"] == "region=south"


def _correlated(rng: np.random.Generator, n: int, rho: float) -> pd.DataFrame:
    """x1, x2 standard normal with correlation ``rho``; x3 independent. The marginals never
    depend on ``rho``: only how x1 and x2 move together does."""
    x1 = rng.normal(0, 1, n)
    x2 = rho * x1 + np.sqrt(1 - rho**2) * rng.normal(0, 1, n)
    x3 = rng.normal(5, 2, n)
    return pd.DataFrame({"x1": x1, "x2": x2, "x3": x3, "score": 1 / (1 + np.exp(-x3 + 5))})


RHOS = [0.8, 0.8, -0.8, -0.8]


def _sklearn_domain_auc(reference: pd.DataFrame, current: pd.DataFrame, seed: int = 0) -> float:
    """The cross-validated AUC of a reference-vs-window classifier, with scikit-learn alone: the
    same seeded sample (as many reference rows as the window has), folds and model."""
    rng = np.random.default_rng(seed)
    features = ["x1", "x2", "x3"]
    picked = []
    for frame in (reference, current):
        rows = np.sort(rng.choice(len(frame), size=min(len(frame), len(current)), replace=False))
        picked.append(frame.iloc[rows][features])
    x = pd.concat(picked, ignore_index=True)
    y = np.r_[np.zeros(len(picked[0])), np.ones(len(picked[1]))]
    aucs = []
    for train, test in StratifiedKFold(3, shuffle=True, random_state=seed).split(x, y):
        model = HistGradientBoostingClassifier(
            random_state=seed, max_iter=100, early_stopping=True, n_iter_no_change=5
        ).fit(x.iloc[train], y[train])
        aucs.append(roc_auc_score(y[test], model.predict_proba(x.iloc[test])[:, 1]))
    return float(np.mean(aucs))


def test_a_flipped_correlation_is_quiet_univariately_and_flagged_multivariately(
    sdk_store: MetricsStore,
) -> None:
    rng = np.random.default_rng(21)
    frames = [_correlated(rng, 500, rho) for rho in RHOS]
    dep = _write(sdk_store, frames, seed=22)
    reference = _correlated(np.random.default_rng(23), 4000, 0.8)
    upload_reference(reference, dep)
    spec = MonitorSpec.from_dict(
        {
            "name": "joint",
            "deployment": dep,
            "reference": {"stored": "training"},
            "features": ["x1", "x2", "x3"],
            "prediction": "score",
            "window": "1h",
            "metrics": ["drift", "multivariate_drift"],
            "alerts": ["multivariate_drift.flagged > 0", "drift.flagged > 0"],
        }
    )
    results = run_monitor(spec, window=(T0, T0 + len(RHOS) * HOUR), settle_ms=0)
    m = [r.metrics for r in results]
    assert [w["drift.flagged"] for w in m] == [0, 0, 0, 0]  # every marginal is unchanged
    assert [w["multivariate_drift.flagged"] for w in m] == [0, 0, 1, 1]
    for w in (2, 3):
        assert m[w]["multivariate_drift.auc"] > 0.8
        assert m[w]["multivariate_drift.auc_ci_low"] > 0.5
        assert set(m[w]["multivariate_drift.top_features"]) == {"x1", "x2"}
        assert m[w]["multivariate_drift.importance.x3"] < 0.01
    for w in (0, 1):
        assert m[w]["multivariate_drift.top_features"] == []
        assert m[w]["multivariate_drift.auc_ci_low"] <= 0.5
    for w, frame in enumerate(frames):
        assert m[w]["multivariate_drift.auc"] == pytest.approx(
            _sklearn_domain_auc(reference, frame), abs=1e-12
        )
        assert m[w]["multivariate_drift.n_current"] == m[w]["multivariate_drift.n_reference"] == 500
        low, high = auc_interval(m[w]["multivariate_drift.auc"], 500, 500)
        assert (m[w]["multivariate_drift.auc_ci_low"], m[w]["multivariate_drift.auc_ci_high"]) == (
            low,
            high,
        )
    alerts = list_alerts(monitor="joint")
    assert [(a["rule"], a["first_window_start_ms"]) for a in alerts] == [
        ("multivariate_drift.flagged > 0", T0 + 2 * HOUR)
    ]
    # Rerunning a window gives the same numbers (every sample and fold is seeded).
    again = run_monitor(spec, window=(T0 + 2 * HOUR, T0 + 3 * HOUR), settle_ms=0)
    assert again[0].metrics == m[2]


def test_auc_interval_matches_the_spread_of_simulated_aucs() -> None:
    # Binormal scores with a true AUC of 0.8, 50 rows a side: the standard deviation of
    # scikit-learn's AUC over 4,000 seeded draws is the standard error the interval uses.
    rng = np.random.default_rng(51)
    shift = np.sqrt(2) * 0.8416212335729143  # Phi^-1(0.8): P(positive > negative) = 0.8
    y = np.r_[np.zeros(50), np.ones(50)]
    draws = [
        roc_auc_score(y, np.r_[rng.normal(0, 1, 50), rng.normal(shift, 1, 50)]) for _ in range(4000)
    ]
    low, high = auc_interval(0.8, 50, 50)
    assert (high - low) / (2 * 1.959963984540054) == pytest.approx(np.std(draws), abs=0.002)
    wide, narrow = auc_interval(0.7, 30, 30), auc_interval(0.7, 3000, 3000)
    assert wide[0] < narrow[0] < 0.7 < narrow[1] < wide[1]
    assert auc_interval(1.0, 10, 10) == (1.0, 1.0)


def test_rolled_up_windows_are_refused_by_name_and_raw_results_kept(
    sdk_store: MetricsStore,
) -> None:
    rng = np.random.default_rng(31)
    frames = [
        pd.concat([_segment_rows(rng, 400, False), _correlated(rng, 400, 0.8)], axis=1)
        for _ in range(2)
    ]
    dep = _write(sdk_store, frames, seed=32)
    reference = pd.concat([_segment_rows(rng, 2000, False), _correlated(rng, 2000, 0.8)], axis=1)
    upload_reference(reference, dep)
    fields: dict[str, Any] = {
        "deployment": dep,
        "reference": {"stored": "training"},
        "features": ["x1", "x2"],
        "prediction": "probability",
        "label": "churned",
        "window": "1h",
        "segments": ["region"],
        "metrics": ["classification", "multivariate_drift"],
    }
    everything = (T0, T0 + 2 * HOUR)
    raw = run_monitor(MonitorSpec.from_dict({"name": "early", **fields}), window=everything)
    assert all("fairness.gap.roc_auc" in r.metrics for r in raw)
    assert all("multivariate_drift.auc" in r.metrics for r in raw)

    sdk_store.rollup(RollupPolicy(raw_horizon_ms=1000), now_ms=T0 + 4 * HOUR)
    # A monitor that computed the windows from raw records keeps those results ...
    kept = run_monitor(MonitorSpec.from_dict({"name": "early", **fields}), window=everything)
    assert [r.written for r in kept] == [False, False]
    assert [r.metrics for r in kept] == [r.metrics for r in raw]
    # ... one that first sees them rolled up says, per group, why they are not there.
    late = run_monitor(MonitorSpec.from_dict({"name": "late", **fields}), window=everything)
    for result in late:
        m = result.metrics
        assert m["window.source"] == "sketch" and m["n"] == 400
        for group in ("segments", "multivariate_drift"):
            assert "is rolled up" in m[f"{group}.reason"]
            assert f"{group} needs each raw row" in m[f"{group}.reason"]
        assert not any(
            k.startswith(("fairness.", "segments.region", "multivariate_drift.a")) for k in m
        )
        summary = window_summary(m)
        assert summary is not None and "rolled up" in summary["segments_reason"]
        assert "rolled up" in summary["multivariate"]["reason"]


def test_spec_checks_and_declared_outputs(tmp_path: Path) -> None:
    base: dict[str, Any] = {
        "name": "m",
        "deployment": "crn:modelyard:deployment/x",
        "prediction": "p",
        "label": "y",
        "window": "1h",
        "reference": {"stored": "training"},
        "features": ["a", "b"],
    }
    spec = MonitorSpec.from_dict(
        {**base, "segments": ["region"], "metrics": ["classification", "multivariate_drift"]}
    )
    assert MonitorSpec.from_dict(spec.to_dict()) == spec
    assert spec.to_dict()["segments"] == ["region"]
    assert spec.metrics == ("classification", "multivariate_drift", "segments")  # the field asks
    outputs = produced_metrics(spec)
    assert "fairness.gap.roc_auc" in outputs and "segments.region.*.roc_auc" in outputs
    assert "multivariate_drift.auc" in outputs and "multivariate_drift.importance.b" in outputs
    # Rules on the groups' outputs are accepted; a near miss gets the name it meant.
    ruled = MonitorSpec.from_dict(
        {**base, "segments": ["region"], "metrics": ["classification", "multivariate_drift"],
         "alerts": ["fairness.gap.roc_auc > 0.1", "segments.region.south.roc_auc < 0.6",
                    "multivariate_drift.auc > 0.7", "multivariate_drift.importance.* > 0.2"]}
    )  # fmt: skip
    assert len(ruled.alerts) == 4
    with pytest.raises(InvalidInput, match=r"did you mean 'fairness\.gap\.roc_auc'"):
        MonitorSpec.from_dict(
            {**base, "segments": ["region"], "alerts": ["fairness.gap.rocauc > 0.1"]}
        )
    with pytest.raises(InvalidInput, match="'segments'"):
        MonitorSpec.from_dict({**base, "alerts": ["fairness.gap.roc_auc > 0.1"]})
    with pytest.raises(InvalidInput, match="field 'segments' is empty"):
        MonitorSpec.from_dict({**base, "metrics": ["classification", "segments"]})
    with pytest.raises(InvalidInput, match="at least 2 features") as one:
        MonitorSpec.from_dict({**base, "features": ["a"], "metrics": ["multivariate_drift"]})
    assert "'a'" in one.value.message
    no_reference = {k: v for k, v in base.items() if k != "reference"}
    with pytest.raises(InvalidInput, match="reference"):
        MonitorSpec.from_dict({**no_reference, "metrics": ["multivariate_drift"]})
    with pytest.raises(InvalidInput, match="segments"):
        MonitorSpec.from_dict({**base, "segments": ["region", "region"]})


def test_the_cli_table_shows_the_gap_and_the_domain_auc(
    sdk_store: MetricsStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(41)
    frames = [pd.concat([_segment_rows(rng, 300, True), _correlated(rng, 300, -0.8)], axis=1)]
    dep = _write(sdk_store, frames, seed=42)
    upload_reference(_correlated(rng, 2000, 0.8), dep)
    path = tmp_path / "groups.yaml"
    path.write_text(
        f"deployment: {dep}\nreference: {{stored: training}}\nfeatures: [x1, x2]\n"
        "prediction: probability\nlabel: churned\nwindow: 1h\nsegments: [region]\n"
        "metrics: [classification, multivariate_drift]\n"
    )
    window = f"{T0}..{T0 + HOUR}"
    code, out, _ = run_main(capsys, "monitors", "run", str(path), "--window", window)
    assert code == 0
    assert "fairness.gap.roc_auc" in out and "multivariate_drift.auc" in out
    code, out, _ = run_main(capsys, "monitors", "run", str(path), "--window", window, "--json")
    assert code == 0, (out, _)
    (window,) = orjson.loads(out)
    assert window["metrics"]["multivariate_drift.flagged"] == 1
    assert "fairness.gap.roc_auc.min_segment" in window["metrics"]


def test_segment_metrics_of_a_regression_small_and_missing_segments_and_many_values() -> None:
    from sklearn.metrics import mean_absolute_error, root_mean_squared_error

    from modelyard.monitors.segment_group import MAX_SEGMENTS, MISSING, segment_metrics

    rng = np.random.default_rng(61)
    n = 600
    plan = rng.choice(["basic", "pro", "tiny"], n, p=[0.6, 0.37, 0.03]).astype(object)
    plan[:40] = None  # 40 rows without a plan: a segment of their own
    truth = rng.normal(100, 10, n)
    pred = truth + rng.normal(0, np.where(plan == "pro", 8.0, 2.0))
    labels = truth.copy()
    labels[-100:] = np.nan  # not labelled yet
    frame = pd.DataFrame({"plan": plan, "shop": [f"s{i % 30}" for i in range(n)]})
    m = segment_metrics(frame, ["plan", "shop"], pred, labels, "regression")
    for name in ("basic", "pro"):
        rows = (plan == name) & ~np.isnan(labels)
        assert m[f"segments.plan.{name}.labelled"] == int(rows.sum())
        assert m[f"segments.plan.{name}.mae"] == pytest.approx(
            mean_absolute_error(truth[rows], pred[rows]), abs=1e-12
        )
        assert m[f"segments.plan.{name}.rmse"] == pytest.approx(
            root_mean_squared_error(truth[rows], pred[rows]), abs=1e-12
        )
    assert m[f"segments.plan.{MISSING}.n"] == 40
    assert m["segments.plan.tiny.n"] < 30 and "fewer than 30" in m["segments.plan.tiny.reason"]
    assert "segments.plan.tiny.mae" not in m  # a dozen rows take no part in the gap
    qualified = [m[f"segments.plan.{v}.mae"] for v in ("basic", "pro", MISSING)]
    assert m["fairness.plan.gap.mae"] == pytest.approx(max(qualified) - min(qualified))
    assert m["fairness.gap.mae.max_segment"] == "plan=pro"
    # 30 shops: only the 20 largest are reported, and the window says so.
    assert "30 values" in m["segments.shop.reason"]
    assert len({k.split(".")[2] for k in m if k.startswith("segments.shop.s")}) == MAX_SEGMENTS
    # Without labels, a classification still gets selection rates; label metrics say why not.
    scores = rng.random(n)
    unlabelled = segment_metrics(frame, ["plan"], scores, None, "classification")
    assert unlabelled["fairness.gap.selection_rate"] is not None
    assert unlabelled["fairness.gap.roc_auc"] is None
    assert "with labels" in unlabelled["fairness.gap.roc_auc.reason"]
