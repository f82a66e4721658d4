"""Drift from rolled-up summaries against the exact statistics on the raw data.

Uses the store's real ``NumericSummary`` (a KLL sketch from Apache DataSketches, k=200) and
``CategoricalSummary``; the KS estimate must be within its stated bound of scipy's exact value.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from modelyard.analysis import QuantileSummary, drift, sketch_drift, sketch_ks, sketch_quantiles
from modelyard.errors import InvalidInput
from modelyard.store.summary import CategoricalSummary, NumericSummary


def _summary(values: np.ndarray) -> NumericSummary:
    s = NumericSummary()
    # A writable copy: update_many currently fails on read-only arrays (pandas copy-on-write).
    s.update_many(np.array(values))
    return s


def _row(report: pd.DataFrame, feature: str, method: str) -> pd.Series:
    return report[(report["feature"] == feature) & (report["method"] == method)].iloc[0]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("shift", [0.0, 0.05, 0.3])
def test_ks_from_sketches_is_within_its_bound(seed: int, shift: float) -> None:
    rng = np.random.default_rng(seed)
    a = rng.gamma(2.0, 1.0, 60_000)
    b = rng.gamma(2.0, 1.0, 40_000) + shift
    ref, cur = _summary(a), _summary(b)
    assert isinstance(ref, QuantileSummary) and ref.rank_error > 0  # estimation mode
    d, bound = sketch_ks(ref, cur)
    exact = stats.ks_2samp(a, b).statistic
    assert abs(d - exact) <= bound
    assert bound == pytest.approx(ref.rank_error + cur.rank_error + 1 / 2000)
    assert bound < 0.03  # about twice the rank error of k=200


def test_exact_mode_sketches_give_the_exact_ks() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=150), rng.normal(0.5, 1, 120)  # below k=200: sketches keep all
    d, bound = sketch_ks(_summary(a), _summary(b))
    assert bound == pytest.approx(1 / 2000)
    assert d == pytest.approx(stats.ks_2samp(a, b).statistic, abs=1e-12)


def test_sketch_report_agrees_with_the_raw_report() -> None:
    rng = np.random.default_rng(3)
    n = 50_000
    raw_ref = pd.DataFrame({"x": rng.normal(size=n), "c": rng.choice(list("abc"), n)})
    raw_cur = pd.DataFrame(
        {"x": rng.normal(0.4, 1, n), "c": rng.choice(list("abcd"), n, p=[0.3, 0.3, 0.3, 0.1])}
    )
    ref = {"x": _summary(raw_ref["x"].to_numpy()), "c": CategoricalSummary()}
    cur = {"x": _summary(raw_cur["x"].to_numpy()), "c": CategoricalSummary()}
    for value in raw_ref["c"]:
        ref["c"].update(value)
    for value, count in raw_cur["c"].value_counts().items():
        cur["c"].update(str(value), int(count))
    report = sketch_drift(ref, cur)
    exact = drift(raw_ref, raw_cur)
    assert list(report.columns[:-1]) == list(exact.columns) and report.columns[-1] == "error_bound"
    # KLL compaction is random (DataSketches seeds it itself), so each run draws other sketches:
    # KS must stay within its derived bound; PSI and JS have none, and are held to 0.04, above
    # the largest gap measured over 2,000 draws of these sketches (PSI 0.031, JS 0.018; median
    # 0.007 and 0.004) and well below the 0.1 effect threshold. (0.1 x the statistic, as before,
    # failed about one run in ten.)
    for method, tolerance in (("psi", 0.04), ("ks", None), ("jensen_shannon", 0.04)):
        row, raw = _row(report, "x", method), _row(exact, "x", method)
        assert row["flagged"] == raw["flagged"] == True  # noqa: E712
        bound = row["error_bound"] if tolerance is None else tolerance
        assert abs(row["statistic"] - raw["statistic"]) <= bound, (method, row, raw)
    for method in ("psi", "chi2", "jensen_shannon", "unseen_share"):
        row, raw = _row(report, "c", method), _row(exact, "c", method)
        assert row["statistic"] == pytest.approx(raw["statistic"], rel=1e-9)  # counts are exact
        assert row["flagged"] == raw["flagged"] and row["error_bound"] == 0.0


def test_stable_period_from_sketches_is_not_flagged() -> None:
    rng = np.random.default_rng(4)
    report = sketch_drift(
        {"x": _summary(rng.normal(size=80_000))}, {"x": _summary(rng.normal(size=80_000))}
    )
    assert not report["flagged"].any()
    assert _row(report, "x", "ks")["p_value"] > 0.05  # tested on D minus its bound


def test_quantiles_state_their_rank_error() -> None:
    rng = np.random.default_rng(5)
    values = rng.exponential(size=100_000)
    q = sketch_quantiles(_summary(values), [0.5, 0.99])
    assert set(q) == {"p50", "p99", "rank_error"}
    for key, rank in (("p50", 0.5), ("p99", 0.99)):
        true_rank = float(np.mean(values <= q[key]))
        assert abs(true_rank - rank) <= q["rank_error"]


def test_plain_dict_counts_and_errors() -> None:
    report = sketch_drift({"c": {"a": 50, "b": 50}}, {"c": {"a": 10, "b": 10, "z": 80}})
    assert _row(report, "c", "unseen_share")["statistic"] == pytest.approx(0.8)
    empty = sketch_drift({"c": {"a": 5}}, {"c": {}})
    assert empty["statistic"].isna().all() and not empty["flagged"].any()
    with pytest.raises(InvalidInput, match="numeric on one side"):
        sketch_drift({"x": _summary(np.ones(5))}, {"x": {"a": 1}})
    with pytest.raises(InvalidInput, match=r"\['x'\] have a reference summary but no current"):
        sketch_drift({"x": _summary(np.ones(5))}, {})
    with pytest.raises(InvalidInput, match="is a int"):
        sketch_drift({"x": 3}, {"x": 4})
    with pytest.raises(InvalidInput, match="empty"):
        sketch_drift({"x": NumericSummary()}, {"x": _summary(np.ones(3))})
