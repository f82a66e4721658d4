"""drift(): every statistic against scipy/numpy, and one battery of contract checks per method."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.spatial import distance

from modelyard.analysis import (
    DEFAULT_THRESHOLDS,
    REPORT_COLUMNS,
    DriftReference,
    drift,
    drift_summary,
    prediction_drift,
)
from modelyard.analysis._numeric import divergence_p_value, ks_wasserstein
from modelyard.errors import InvalidInput

NUMERIC = ("psi", "ks", "wasserstein", "jensen_shannon")
CATEGORICAL = ("psi", "chi2", "jensen_shannon", "unseen_share")
LEVELS = np.array(list("abcdefgh"))
WEIGHTS = np.array([0.3, 0.2, 0.15, 0.1, 0.1, 0.08, 0.05, 0.02])


def _row(report: pd.DataFrame, feature: str, method: str) -> pd.Series:
    rows = report[(report["feature"] == feature) & (report["method"] == method)]
    assert len(rows) == 1
    return rows.iloc[0]


def _frames(seed: int, n_ref: int, n_cur: int, shift: float = 0.0, cat_shift: float = 0.0):
    rng = np.random.default_rng(seed)
    moved = WEIGHTS + cat_shift * (np.arange(8) / 28 - WEIGHTS)  # toward increasing weights
    ref = pd.DataFrame({"x": rng.normal(0, 1, n_ref), "c": rng.choice(LEVELS, n_ref, p=WEIGHTS)})
    cur = pd.DataFrame(
        {"x": rng.normal(shift, 1, n_cur), "c": rng.choice(LEVELS, n_cur, p=moved / moved.sum())}
    )
    return ref, cur


# -- against the reference implementations ---------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.integers(1, 300),
    st.integers(1, 300),
    st.sampled_from([None, 3, 20]),  # continuous, or heavy ties
)
def test_ks_and_wasserstein_equal_scipy(seed: int, n1: int, n2: int, levels: int | None) -> None:
    rng = np.random.default_rng(seed)
    a, b = rng.normal(0, 1, n1), rng.normal(0.3, 1.2, n2)
    if levels:
        a, b = np.round(a * levels / 4), np.round(b * levels / 4)
    d, w = ks_wasserstein(np.sort(a), np.sort(b))
    assert d == pytest.approx(stats.ks_2samp(a, b).statistic, abs=1e-12)
    assert w == pytest.approx(stats.wasserstein_distance(a, b), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize(("n1", "n2"), [(300, 200), (20_000, 15_000)])
def test_report_numbers_equal_scipy_and_numpy(n1: int, n2: int) -> None:
    rng = np.random.default_rng(n1)
    ref = pd.DataFrame({"x": rng.lognormal(0, 0.6, n1), "c": rng.choice(LEVELS, n1, p=WEIGHTS)})
    cur = pd.DataFrame(
        {"x": rng.lognormal(0.05, 0.6, n2), "c": rng.choice(np.r_[LEVELS, ["z"]], n2)}
    )
    report = drift(ref, cur)
    x, xc = ref["x"].to_numpy(), cur["x"].to_numpy()

    ks = stats.ks_2samp(x, xc)  # exact p below 10,000 per side, asymptotic above: as scipy
    assert _row(report, "x", "ks")["statistic"] == pytest.approx(ks.statistic, abs=1e-12)
    assert _row(report, "x", "ks")["p_value"] == pytest.approx(ks.pvalue, rel=1e-6, abs=1e-300)
    w = _row(report, "x", "wasserstein")
    assert w["statistic"] == pytest.approx(stats.wasserstein_distance(x, xc), rel=1e-9)
    assert w["effect"] == pytest.approx(w["statistic"] / x.std(), rel=1e-9)

    edges = np.unique(np.quantile(x, np.linspace(0, 1, 11)[1:-1]))
    r = np.bincount(np.digitize(x, edges), minlength=edges.size + 1) / n1
    c = np.bincount(np.digitize(xc, edges), minlength=edges.size + 1) / n2
    rr, cc = np.maximum(r, 1e-4), np.maximum(c, 1e-4)
    assert _row(report, "x", "psi")["statistic"] == pytest.approx(
        np.sum((cc - rr) * np.log(cc / rr)), rel=1e-9
    )
    assert _row(report, "x", "jensen_shannon")["statistic"] == pytest.approx(
        distance.jensenshannon(r, c, base=2), rel=1e-9
    )

    categories = list(ref["c"].unique())
    ref_counts = ref["c"].value_counts().reindex(categories).to_numpy()
    cur_counts = cur["c"].value_counts().reindex(categories, fill_value=0).to_numpy()
    unseen = int((~cur["c"].isin(categories)).sum())
    table = np.array([np.r_[ref_counts, 0], np.r_[cur_counts, unseen]])
    chi = stats.chi2_contingency(table)
    row = _row(report, "c", "chi2")
    assert row["statistic"] == pytest.approx(chi.statistic, rel=1e-9)
    assert row["p_value"] == pytest.approx(chi.pvalue, rel=1e-6, abs=1e-300)
    assert row["effect"] == pytest.approx(stats.contingency.association(table), rel=1e-9)
    assert _row(report, "c", "unseen_share")["statistic"] == pytest.approx(unseen / n2)
    rp, cp = table[0] / n1, table[1] / n2
    rr, cc = np.maximum(rp, 1e-4), np.maximum(cp, 1e-4)
    assert _row(report, "c", "psi")["statistic"] == pytest.approx(
        np.sum((cc - rr) * np.log(cc / rr)), rel=1e-9
    )
    assert _row(report, "c", "jensen_shannon")["statistic"] == pytest.approx(
        distance.jensenshannon(rp, cp, base=2), rel=1e-9
    )

    tested = report[~report["p_value"].isna() & (report["method"] != "wasserstein")]
    assert tested["p_value_adjusted"].to_numpy() == pytest.approx(
        stats.false_discovery_control(tested["p_value"].to_numpy(), method="bh")
    )


def test_divergence_p_values_are_calibrated_under_no_drift() -> None:
    """Under no drift about 5 % of the PSI and JS p-values fall below 0.05 (chi-square approx).

    The approximation is rough: measured 7 % at 800 current rows and 4 % at 3,000 against a
    3,000-row reference, so the band is wide; the effect threshold gates every flag as well.
    """
    rng = np.random.default_rng(11)
    ref = np.sort(rng.normal(size=3000))
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, 11)[1:-1]))
    r = np.bincount(np.digitize(ref, edges), minlength=10).astype(float)
    below = {"psi": 0, "js": 0}
    for _ in range(600):
        cur = rng.normal(size=800)
        c = np.bincount(np.digitize(cur, edges), minlength=10).astype(float)
        rp, cp = np.maximum(r / r.sum(), 1e-4), np.maximum(c / c.sum(), 1e-4)
        psi = float(np.sum((cp - rp) * np.log(cp / rp)))
        js = float(distance.jensenshannon(r, c, base=2))
        below["psi"] += divergence_p_value("psi", psi, r, c) < 0.05
        below["js"] += divergence_p_value("js", js, r, c) < 0.05
    for kind, count in below.items():
        assert 0.025 <= count / 600 <= 0.095, kind


# -- the contract battery: the same checks over every method ---------------------------------


@pytest.fixture(scope="module")
def stable_reports() -> list[pd.DataFrame]:
    """Twenty independent same-distribution comparisons (2,000 vs 1,000 rows)."""
    return [drift(*_frames(seed, 2000, 1000)) for seed in range(20)]


@pytest.fixture(scope="module")
def shifted_report() -> pd.DataFrame:
    """A clear shift: 0.5 standard deviations, and category weights moved toward uniform-ish."""
    return drift(*_frames(99, 2000, 1000, shift=0.5, cat_shift=1.0))


@pytest.mark.parametrize(
    ("feature", "method"), [("x", m) for m in NUMERIC] + [("c", m) for m in CATEGORICAL]
)
def test_contract_same_distribution_is_not_flagged(stable_reports, feature, method) -> None:
    flags = [bool(_row(r, feature, method)["flagged"]) for r in stable_reports]
    assert sum(flags) <= 1, f"{method} flagged {sum(flags)} of 20 stable comparisons"


@pytest.mark.parametrize(
    ("feature", "method"),
    [("x", m) for m in NUMERIC] + [("c", m) for m in CATEGORICAL if m != "unseen_share"],
)
def test_contract_shifted_distribution_is_flagged(shifted_report, feature, method) -> None:
    row = _row(shifted_report, feature, method)
    assert row["flagged"], row.to_dict()
    assert row["effect"] >= row["threshold"]


def test_contract_unseen_categories_are_flagged() -> None:
    ref, cur = _frames(5, 2000, 1000)
    cur.loc[: len(cur) // 5, "c"] = "brand-new"
    row = _row(drift(ref, cur), "c", "unseen_share")
    assert row["flagged"] and row["statistic"] == pytest.approx((len(cur) // 5 + 1) / len(cur))


def test_contract_shape_columns_and_types(shifted_report) -> None:
    assert tuple(shifted_report.columns) == REPORT_COLUMNS
    assert len(shifted_report) == len(NUMERIC) + len(CATEGORICAL)
    assert shifted_report["flagged"].dtype == bool
    assert set(shifted_report["severity"]) <= {"none", "moderate", "major"}
    assert (shifted_report["threshold"] == shifted_report["method"].map(DEFAULT_THRESHOLDS)).all()
    assert list(shifted_report["kind"].unique()) == ["numeric", "categorical"]


def test_contract_nan_is_dropped_and_counted() -> None:
    ref, cur = _frames(3, 1000, 500)
    clean = drift(ref, cur)
    ref_nan = pd.concat([ref, pd.DataFrame({"x": [np.nan] * 7, "c": [None] * 7})])
    cur_nan = pd.concat([cur, pd.DataFrame({"x": [np.nan] * 3, "c": [np.nan] * 3})])
    with_nan = drift(ref_nan, cur_nan)
    assert (with_nan["nan_reference"] == 7).all() and (with_nan["nan_current"] == 3).all()
    assert (with_nan["n_reference"] == 1000).all() and (with_nan["n_current"] == 500).all()
    pd.testing.assert_series_equal(clean["statistic"], with_nan["statistic"])


def test_contract_all_missing_current_is_reported_not_raised() -> None:
    ref, cur = _frames(3, 500, 100)
    cur["x"] = np.nan
    cur["c"] = None
    report = drift(ref, cur)
    assert report["statistic"].isna().all() and not report["flagged"].any()
    assert (report["note"] == "no non-missing values in the current window").all()


# -- options and errors ---------------------------------------------------------------------


def test_effect_decides_at_large_n_not_the_p_value() -> None:
    """A negligible shift at 200,000 rows is highly significant and still not flagged."""
    rng = np.random.default_rng(1)
    ref = pd.DataFrame({"x": rng.normal(0, 1, 200_000)})
    cur = pd.DataFrame({"x": rng.normal(0.03, 1, 200_000)})
    report = drift(ref, cur)
    ks = _row(report, "x", "ks")
    assert ks["p_value"] < 1e-6 and not ks["flagged"]
    assert not report["flagged"].any()


def test_thresholds_override_and_unknown_method() -> None:
    ref, cur = _frames(4, 2000, 1000, shift=0.5)
    report = drift(ref, cur, thresholds={"ks": 0.9})
    assert not _row(report, "x", "ks")["flagged"] and _row(report, "x", "psi")["flagged"]
    with pytest.raises(InvalidInput, match="unknown method 'kl'"):
        drift(ref, cur, thresholds={"kl": 0.1})
    with pytest.raises(InvalidInput, match="alpha"):
        drift(ref, cur, alpha=5)


def test_numeric_column_can_be_declared_categorical() -> None:
    rng = np.random.default_rng(0)
    ref = pd.DataFrame({"plan": rng.integers(0, 4, 1000)})
    cur = pd.DataFrame({"plan": rng.integers(0, 5, 1000)})
    report = drift(ref, cur, categorical=["plan"])
    assert set(report["method"]) == set(CATEGORICAL)
    assert _row(report, "plan", "unseen_share")["flagged"]


def test_constant_reference_has_a_note() -> None:
    ref = pd.DataFrame({"x": np.ones(100)})
    same = drift(ref, pd.DataFrame({"x": np.ones(50)}))
    assert not same["flagged"].any()
    moved = drift(ref, pd.DataFrame({"x": np.full(50, 2.0)}))
    w = _row(moved, "x", "wasserstein")
    assert w["flagged"] and math.isinf(w["effect"]) and "constant" in w["note"]


def test_errors_name_the_bad_values() -> None:
    ref, cur = _frames(0, 100, 100)
    with pytest.raises(InvalidInput, match=r"features \['nope'\] are not columns of the reference"):
        drift(ref, cur, features=["nope"])
    with pytest.raises(InvalidInput, match=r"\['x'\] of the reference are not columns of current"):
        drift(ref, cur[["c"]])
    with pytest.raises(InvalidInput, match="'x' is numeric in the reference"):
        drift(ref, cur.assign(x="text"))
    with pytest.raises(InvalidInput, match="no non-missing values"):
        drift(ref.assign(x=np.nan), cur)
    with pytest.raises(InvalidInput, match="pandas DataFrame"):
        drift(ref["x"], cur)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="bins"):
        drift(ref, cur, bins=1)


def test_reference_prepared_once_gives_the_same_report() -> None:
    ref, cur = _frames(8, 3000, 700, shift=0.2)
    prepared = DriftReference(ref)
    pd.testing.assert_frame_equal(prepared.compare(cur), drift(ref, cur))
    assert prepared.kind("x") == "numeric" and prepared.kind("c") == "categorical"


def test_prediction_drift_and_summary() -> None:
    rng = np.random.default_rng(2)
    scores = prediction_drift(rng.beta(2, 5, 3000), rng.beta(3, 4, 3000))
    assert set(scores["feature"]) == {"prediction"} and scores["flagged"].all()
    classes = prediction_drift(rng.choice(["yes", "no"], 500), rng.choice(["yes", "no"], 500))
    assert set(classes["method"]) == set(CATEGORICAL) and not classes["flagged"].any()
    with pytest.raises(InvalidInput, match="categorical=False"):
        prediction_drift(["a"], ["b"], categorical=False)
    ref, cur = _frames(5, 2000, 1000, shift=0.5)
    summary = drift_summary(drift(ref, cur))
    assert summary.set_index("feature")["drifted"].to_dict() == {"x": True, "c": False}
    assert summary.set_index("feature").loc["x", "methods_flagged"] == 4
    with pytest.raises(InvalidInput, match="drift_summary needs a report"):
        drift_summary(pd.DataFrame({"a": [1]}))


def test_threads_over_features_give_the_same_report() -> None:
    rng = np.random.default_rng(12)
    n = 60_000  # above the size where threads are used
    ref = pd.DataFrame({f"x{i}": rng.normal(size=n) for i in range(3)}).assign(
        c=rng.choice(LEVELS, n, p=WEIGHTS)
    )
    cur = pd.DataFrame({f"x{i}": rng.normal(0.1 * i, 1, n) for i in range(3)}).assign(
        c=rng.choice(LEVELS, n)
    )
    serial = drift(ref, cur, workers=1)
    pd.testing.assert_frame_equal(drift(ref, cur, workers=3), serial)
    linked = serial[serial["method"] == "wasserstein"]
    ks = serial[serial["method"] == "ks"]
    assert linked["p_value"].tolist() == ks["p_value"].tolist()  # links survive the merge
    with pytest.raises(InvalidInput, match="workers=0"):
        drift(ref, cur, workers=0)


def test_pandas_dtypes_categorical_boolean_nullable_and_string() -> None:
    rng = np.random.default_rng(0)
    n = 500
    ref = pd.DataFrame(
        {
            "cat": pd.Categorical(rng.choice(["a", "b", "c"], n), categories=["a", "b", "c", "d"]),
            "flag": rng.random(n) < 0.5,
            "count": pd.array(rng.integers(0, 5, n), dtype="Int64"),
            "text": pd.Series(rng.choice(["x", "y"], n), dtype="string"),
        }
    )
    cur = ref.copy()
    cur.loc[:10, "count"] = pd.NA
    cur.loc[:5, "text"] = pd.NA
    cur.loc[:5, "cat"] = np.nan
    report = drift(ref, cur)
    kinds = report.groupby("feature", sort=False)["kind"].first().to_dict()
    assert kinds == {
        "cat": "categorical",
        "flag": "categorical",
        "count": "numeric",
        "text": "categorical",
    }
    nan = report.groupby("feature", sort=False)["nan_current"].first().to_dict()
    assert nan == {"cat": 6, "flag": 0, "count": 11, "text": 6}
    assert not report["flagged"].any()
    assert (report.loc[report["method"] == "unseen_share", "statistic"] == 0).all()
