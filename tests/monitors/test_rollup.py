"""Windows whose raw records rollup has folded: a stored result is never replaced by a poorer one,
and drift is computed from the buckets' sketches with its error bound (real SQLite store)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from modelyard.monitors import MonitorSpec, run_monitor, upload_reference
from modelyard.monitors.access import StoredResult
from modelyard.monitors.run import keep_better
from modelyard.store.base import MetricsStore, Query, RecordKind, RollupPolicy

from .conftest import HOUR, T0, reference_frame, write_stream

WINDOWS = 4
DRIFTED = frozenset({2, 3})


def spec(dep: str, name: str, metrics: list[str]) -> MonitorSpec:
    return MonitorSpec.from_dict(
        {
            "name": name,
            "deployment": dep,
            "reference": {"stored": "training"},
            "features": ["tenure", "charges", "plan"],
            "categorical": ["plan"],
            "prediction": "probability",
            "label": "churned",
            "window": "1h",
            "metrics": metrics,
        }
    )


def aggregates(
    store: MetricsStore, dep: str, source_key: str
) -> dict[int, list[dict[str, object]]]:
    query = Query(deployment_crn=dep, kinds=frozenset({RecordKind.AGGREGATE}))
    out: dict[int, list[dict[str, object]]] = {}
    for record in store.read(query)[0]:
        if source_key in record.metrics:
            out.setdefault(record.start_ms, []).append(record.metrics)
    return out


def test_rolled_up_windows_keep_raw_results_and_get_drift_from_sketches(
    sdk_store: MetricsStore,
) -> None:
    stream = write_stream(sdk_store, WINDOWS, drifted=DRIFTED)
    dep = stream.ident.deployment_crn
    reference = reference_frame()
    upload_reference(reference, dep)
    everything = (T0, T0 + WINDOWS * HOUR)
    full = spec(dep, "churn", ["classification", "drift", "label_coverage"])
    accuracy_only = spec(dep, "acc", ["classification"])
    before = run_monitor(full, window=everything, settle_ms=0)
    acc_before = run_monitor(accuracy_only, window=everything, settle_ms=0)
    assert all(r.metrics["window.source"] == "raw" and r.metrics["n"] == 300 for r in before)

    report = sdk_store.rollup(RollupPolicy(raw_horizon_ms=1000), now_ms=T0 + (WINDOWS + 2) * HOUR)
    assert report.raw_rolled == WINDOWS * 300
    assert (
        sdk_store.read(Query(deployment_crn=dep, kinds=frozenset({RecordKind.PREDICTION})))[0] == []
    )

    # 1. Recomputing after rollup keeps what raw records gave (the audit's n: 0 overwrite).
    again = run_monitor(full, window=everything, settle_ms=0)
    assert [r.written for r in again] == [False] * WINDOWS
    assert [r.metrics for r in again] == [r.metrics for r in before]
    stored = aggregates(sdk_store, dep, "label_coverage")
    assert [len(stored[T0 + w * HOUR]) for w in range(WINDOWS)] == [1] * WINDOWS
    assert [stored[T0 + w * HOUR][0]["roc_auc"] for w in range(WINDOWS)] == [
        r.metrics["roc_auc"] for r in before
    ]

    # 2. A result without drift keeps its AUC and gains the drift the sketches still give.
    acc_spec = spec(dep, "acc", ["classification", "drift"])
    acc_after = run_monitor(acc_spec, window=everything, settle_ms=0)
    for old, new in zip(acc_before, acc_after, strict=True):
        assert new.written and new.metrics["roc_auc"] == old.metrics["roc_auc"]
        assert new.metrics["window.source"] == "raw" and new.metrics["drift.source"] == "sketch"
    assert [r.metrics["drift.flagged_features"] for r in acc_after] == [
        ["tenure"] if w in DRIFTED else [] for w in range(WINDOWS)
    ]

    # 3. A monitor created after rollup: drift from sketches, bounded against the exact figures.
    late = run_monitor(spec(dep, "late", ["classification", "drift"]), window=everything)
    for w, (exact, sketched) in enumerate(zip(before, late, strict=True)):
        m = sketched.metrics
        assert m["window.source"] == "sketch" and m["drift.source"] == "sketch"
        assert m["n"] == 300 and "roc_auc" not in m
        assert "not recomputable from sketches" in m["classification.reason"]
        assert m["drift.flagged_features"] == (["tenure"] if w in DRIFTED else [])
        bound = m["drift.ks_error_bound"]
        assert 0 < bound < 0.03
        for feature in ("tenure", "charges"):
            truth = stats.ks_2samp(reference[feature], stream.windows[w][feature]).statistic
            assert abs(m[f"ks.{feature}"] - truth) <= bound
            assert m[f"ks.{feature}"] == pytest.approx(exact.metrics[f"ks.{feature}"], abs=bound)
        # categorical counts are exact in the buckets: the same PSI and chi-square as raw
        assert m["psi.plan"] == pytest.approx(exact.metrics["psi.plan"], rel=1e-9)
        assert m["chi2.plan"] == pytest.approx(exact.metrics["chi2.plan"], rel=1e-9)
        assert "wasserstein.tenure" not in m


def test_buckets_wider_than_the_window_give_no_drift_and_say_why(sdk_store: MetricsStore) -> None:
    stream = write_stream(sdk_store, 2)
    dep = stream.ident.deployment_crn
    upload_reference(reference_frame(), dep)
    # 400 days on (past the default hour tier's 395): the records sit in day buckets, wider
    # than a 1h window
    sdk_store.rollup(RollupPolicy(raw_horizon_ms=1000), now_ms=T0 + 400 * 24 * HOUR)
    day = (T0 // (24 * HOUR)) * 24 * HOUR
    (result,) = run_monitor(spec(dep, "wide", ["drift"]), window=(day, day + HOUR))
    assert result.metrics["n"] == 600
    assert "wider than the window" in result.metrics["drift.reason"]
    assert "psi.tenure" not in result.metrics


@pytest.mark.parametrize(
    ("old", "new", "kept"),
    [
        ({"n": 300, "window.source": "raw"}, {"n": 0, "window.source": "raw"}, True),
        ({"n": 300, "window.source": "raw"}, {"n": 120, "window.source": "raw"}, True),
        ({"n": 300}, {"n": 300, "window.source": "sketch"}, True),  # older rows: raw
        ({"n": 300, "window.source": "raw"}, {"n": 301, "window.source": "raw"}, False),
        ({"n": 300, "window.source": "sketch"}, {"n": 300, "window.source": "raw"}, False),
        ({"n": 300, "window.source": "sketch"}, {"n": 300, "window.source": "sketch"}, False),
    ],
)
def test_a_result_from_more_data_is_never_replaced_by_one_from_less(
    old: dict[str, object], new: dict[str, object], kept: bool
) -> None:
    previous = StoredResult(T0, T0 + HOUR, int(np.int64(old["n"])), {**old, "roc_auc": 0.8})
    result, write = keep_better(previous, {**new, "classification.reason": "rolled up"})
    assert (result == previous.metrics) is kept
    assert write is not kept
