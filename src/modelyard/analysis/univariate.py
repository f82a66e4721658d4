"""Univariate data drift: one row per feature and method, flagged on effect size.

Numeric features get PSI (bins at the reference's deciles), Kolmogorov–Smirnov, the Wasserstein
distance divided by the reference's standard deviation, and the Jensen–Shannon distance over the
PSI bins. Categorical features get PSI, chi-square (effect: Cramér's V), Jensen–Shannon and the
share of current rows whose category the reference never had.

Why effect sizes decide: at a million rows every p-value is tiny for a shift nobody cares about,
and at a few hundred rows an effect estimate is noisy (the Wasserstein effect of two samples of 500
from one distribution exceeds 0.1 in about one window in ten). So a method flags only when both
hold: its effect reaches its threshold, and the difference is more than noise: its
Benjamini–Hochberg adjusted p-value (``scipy.stats.false_discovery_control``, over every p-value
of the report, so twenty features do not mean twenty chances of a false alarm) is below ``alpha``.
KS and chi-square have their exact or classical p-values; PSI and Jensen–Shannon get the
asymptotic chi-square p-value of a divergence (see ``divergence_p_value``); Wasserstein borrows
the KS p-value of the same two samples (its row says so). The share of unseen categories has no
p-value and flags on its effect alone. docs/analysis.md has the measured false-alarm rates.

Missing values (NaN, None) are dropped and counted in ``nan_reference`` / ``nan_current``; a rise
in missing values is a data-quality signal of its own, reported but not flagged here.

Cost: each reference column is sorted once when the ``DriftReference`` is built; each current
column is sorted once per comparison; everything else is linear or a binary search. Nothing is
sampled.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from modelyard.analysis._categorical import categorical_stats
from modelyard.analysis._checks import FloatArray
from modelyard.analysis._numeric import (
    bin_counts,
    divergence_p_value,
    jensen_shannon,
    ks_p_value,
    ks_wasserstein,
    psi,
    quantile_edges,
)
from modelyard.analysis._report import (
    CATEGORICAL_METHODS,
    DEFAULT_ALPHA,
    DEFAULT_BINS,
    DEFAULT_EPS,
    DEFAULT_THRESHOLDS,
    EMPTY_NOTE,
    MAJOR_THRESHOLDS,
    NUMERIC_METHODS,
    REPORT_COLUMNS,
    Feature,
    Rows,
    thresholds_with,
)
from modelyard.errors import InvalidInput

__all__ = [
    "CATEGORICAL_METHODS",
    "DEFAULT_ALPHA",
    "DEFAULT_BINS",
    "DEFAULT_EPS",
    "DEFAULT_THRESHOLDS",
    "MAJOR_THRESHOLDS",
    "NUMERIC_METHODS",
    "REPORT_COLUMNS",
    "DriftReference",
    "drift",
    "drift_summary",
    "prediction_drift",
]


_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class _NumericProfile:
    sorted: FloatArray
    edges: FloatArray
    counts: FloatArray
    std: float
    nan: int


@dataclass(frozen=True, slots=True)
class _CategoricalProfile:
    categories: pd.Index[Any]
    counts: FloatArray
    nan: int


def _is_categorical(series: pd.Series[Any]) -> bool:
    return not pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)


def _numeric_values(series: pd.Series[Any], feature: str, side: str) -> tuple[FloatArray, int]:
    """Sorted non-missing values and how many were missing."""
    try:
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(
            f"feature {feature!r} is numeric in the reference but the {side} has non-numeric "
            f"values such as {series.dropna().iloc[:3].tolist()!r}; pass it in categorical=[...] "
            "or fix the column"
        ) from exc
    missing = np.isnan(values)
    present = np.sort(values[~missing] if missing.any() else values)
    return present, int(values.shape[0] - present.shape[0])


# Below this many rows a thread pool costs more than it saves (measured: ~0.2 ms per window).
_THREADED_MIN_ROWS = 50_000


def _map(fn: Callable[[str], _T], names: Sequence[str], workers: int | None, rows: int) -> list[_T]:
    """``[fn(n) for n in names]``, over a thread pool for large frames.

    Threads, not processes: the work per feature is numpy sorting, binary search and ufuncs,
    which release the GIL, so two cores give about 1.6x; results keep the order of ``names``.
    """
    count = min(4, os.cpu_count() or 1) if workers is None else workers
    if count < 1:
        raise InvalidInput(f"workers={workers!r} must be at least 1 (or None for automatic)")
    if count == 1 or len(names) < 2 or rows < _THREADED_MIN_ROWS:
        return [fn(n) for n in names]
    with ThreadPoolExecutor(max_workers=min(count, len(names))) as pool:
        return list(pool.map(fn, names))


class DriftReference:
    """The reference side of a drift comparison, prepared once and compared with many windows.

    Sorting the reference, fixing its bins and counting its categories happens here, once;
    ``compare(current)`` then costs one sort per numeric column of the window. ``workers``:
    threads over features for frames of 50,000 rows or more (None: up to 4, the machine's
    cores; 1: no threads). Results do not depend on it.

    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> ref = DriftReference(pd.DataFrame({"age": rng.normal(40, 10, 5000)}))
    >>> report = ref.compare(pd.DataFrame({"age": rng.normal(48, 10, 5000)}))
    >>> report.set_index("method")["flagged"].to_dict()
    {'psi': True, 'ks': True, 'wasserstein': True, 'jensen_shannon': True}
    """

    def __init__(
        self,
        reference: pd.DataFrame,
        features: Sequence[str] | None = None,
        categorical: Iterable[str] | None = None,
        bins: int = DEFAULT_BINS,
        eps: float = DEFAULT_EPS,
        workers: int | None = None,
    ) -> None:
        if not isinstance(reference, pd.DataFrame):
            raise InvalidInput(
                f"reference must be a pandas DataFrame, got {type(reference).__name__}"
            )
        if bins < 2:
            raise InvalidInput(f"bins={bins!r} must be at least 2 (10 is the usual choice)")
        if not 0.0 < eps < 0.01:
            raise InvalidInput(f"eps={eps!r} must be a small positive share, e.g. 1e-4")
        names = list(reference.columns) if features is None else list(features)
        missing = [f for f in names if f not in reference.columns]
        if missing:
            raise InvalidInput(
                f"features {missing!r} are not columns of the reference; it has "
                f"{list(reference.columns)!r}"
            )
        if not names:
            raise InvalidInput("no features to compare; pass features=[...] or a non-empty frame")
        forced = set(categorical or ())
        unknown = forced - set(names)
        if unknown:
            raise InvalidInput(
                f"categorical={sorted(unknown)!r} are not among the features {names!r}"
            )
        self.features = names
        self.bins = bins
        self.eps = eps
        self.n = int(reference.shape[0])
        self.workers = workers

        def profile(name: str) -> _NumericProfile | _CategoricalProfile:
            column = reference[name]
            if name in forced or _is_categorical(column):
                return self._categorical_profile(column, name)
            return self._numeric_profile(column, name)

        built = _map(profile, names, self.workers, self.n)
        self.profiles: dict[str, _NumericProfile | _CategoricalProfile] = dict(
            zip(names, built, strict=True)
        )

    def _numeric_profile(self, column: pd.Series[Any], name: str) -> _NumericProfile:
        values, nan = _numeric_values(column, name, "reference")
        if values.shape[0] == 0:
            raise InvalidInput(
                f"reference feature {name!r} has no non-missing values; a reference needs some"
            )
        edges = quantile_edges(values, self.bins)
        return _NumericProfile(values, edges, bin_counts(values, edges), float(values.std()), nan)

    def _categorical_profile(self, column: pd.Series[Any], name: str) -> _CategoricalProfile:
        counts = column.value_counts(dropna=True, sort=False)
        if counts.empty:
            raise InvalidInput(
                f"reference feature {name!r} has no non-missing values; a reference needs some"
            )
        nan = int(column.shape[0] - counts.sum())
        return _CategoricalProfile(counts.index, np.asarray(counts, dtype=np.float64), nan)

    def kind(self, feature: str) -> str:
        return "numeric" if isinstance(self.profiles[feature], _NumericProfile) else "categorical"

    def compare(
        self,
        current: pd.DataFrame,
        thresholds: Mapping[str, float] | None = None,
        alpha: float = DEFAULT_ALPHA,
    ) -> pd.DataFrame:
        """The drift report of ``current`` against this reference (columns: REPORT_COLUMNS)."""
        if not isinstance(current, pd.DataFrame):
            raise InvalidInput(f"current must be a pandas DataFrame, got {type(current).__name__}")
        limits = thresholds_with(thresholds)
        if not 0.0 < alpha < 1.0:
            raise InvalidInput(f"alpha={alpha!r} must be between 0 and 1, e.g. 0.01")
        missing = [f for f in self.features if f not in current.columns]
        if missing:
            raise InvalidInput(
                f"features {missing!r} of the reference are not columns of current; it has "
                f"{list(current.columns)!r}"
            )

        def feature_rows(name: str) -> Rows:
            rows = Rows()
            profile = self.profiles[name]
            if isinstance(profile, _NumericProfile):
                self._numeric_rows(rows, name, profile, current[name])
            else:
                self._categorical_rows(rows, name, profile, current[name])
            return rows

        report = Rows()
        for part in _map(feature_rows, self.features, self.workers, int(current.shape[0])):
            report.extend(part)
        return report.frame(limits, alpha)

    def _numeric_rows(
        self, rows: Rows, name: str, ref: _NumericProfile, column: pd.Series[Any]
    ) -> None:
        cur, nan = _numeric_values(column, name, "current window")
        feature = Feature(name, "numeric", (ref.sorted.shape[0], cur.shape[0], ref.nan, nan))
        if cur.shape[0] == 0:
            for method in NUMERIC_METHODS:
                rows.add(feature, method, math.nan, math.nan, math.nan, EMPTY_NOTE)
            return
        counts = bin_counts(cur, ref.edges)
        d, w = ks_wasserstein(ref.sorted, cur)
        if ref.std > 0:
            w_effect, note = w / ref.std, ""
        else:
            w_effect = 0.0 if w == 0 else math.inf
            note = "reference is constant: any change is an infinite shift in its spread"
        p = psi(ref.counts, counts, self.eps)
        rows.add(feature, "psi", p, divergence_p_value("psi", p, ref.counts, counts), None)
        ks_row = rows.add(feature, "ks", d, ks_p_value(d, ref.sorted, cur), None)
        # Wasserstein has no cheap null distribution; the KS test on the same two samples (both
        # read the two CDFs) says whether the gap is more than noise, Wasserstein says how big.
        note = note or "significance from the KS test on the same samples"
        rows.add(feature, "wasserstein", w, math.nan, w_effect, note, ks_row)
        js = jensen_shannon(ref.counts, counts)
        js_p = divergence_p_value("js", js, ref.counts, counts)
        rows.add(feature, "jensen_shannon", js, js_p, None)

    def _categorical_rows(
        self, rows: Rows, name: str, ref: _CategoricalProfile, column: pd.Series[Any]
    ) -> None:
        nan = int(column.isna().sum())
        present_n = int(column.shape[0] - nan)
        feature = Feature(name, "categorical", (int(ref.counts.sum()), present_n, ref.nan, nan))
        if present_n == 0:
            for method in CATEGORICAL_METHODS:
                rows.add(feature, method, math.nan, math.nan, math.nan, EMPTY_NOTE)
            return
        # Codes against the reference's categories: hashing, O(n); -1 marks a category the
        # reference never had, and a missing value (the reference's categories exclude NaN).
        codes = ref.categories.get_indexer(pd.Index(column))
        seen = codes[codes >= 0]
        counts = np.bincount(seen, minlength=ref.counts.shape[0]).astype(np.float64)
        unseen = float(present_n - seen.shape[0])
        s = categorical_stats(ref.counts, counts, unseen, self.eps)
        rows.add(feature, "psi", s.psi, s.psi_p, None)
        rows.add(feature, "chi2", s.chi2, s.chi2_p, s.cramers_v)
        rows.add(feature, "jensen_shannon", s.js, s.js_p, None)
        rows.add(feature, "unseen_share", s.unseen_share, math.nan, None)


def drift(  # noqa: PLR0913 - the public one-call form of DriftReference(...).compare(...)
    reference: pd.DataFrame,
    current: pd.DataFrame,
    features: Sequence[str] | None = None,
    categorical: Iterable[str] | None = None,
    thresholds: Mapping[str, float] | None = None,
    alpha: float = DEFAULT_ALPHA,
    bins: int = DEFAULT_BINS,
    eps: float = DEFAULT_EPS,
    workers: int | None = None,
) -> pd.DataFrame:
    """Drift of ``current`` against ``reference``: one row per feature and method.

    ``features``: columns to compare (default: all of the reference). ``categorical``: columns to
    treat as categories even if numeric (non-numeric and boolean columns always are).
    ``thresholds``: per-method effect thresholds overriding ``DEFAULT_THRESHOLDS``. ``alpha``:
    false discovery rate for the methods with p-values. To compare many windows with one
    reference, build a ``DriftReference`` once and call its ``compare``. ``workers``: threads
    over features (see ``DriftReference``).
    """
    prepared = DriftReference(reference, features, categorical, bins, eps, workers)
    return prepared.compare(current, thresholds, alpha)


def prediction_drift(
    reference: Any,
    current: Any,
    categorical: bool | None = None,
    name: str = "prediction",
    **options: Any,
) -> pd.DataFrame:
    """Drift of a model's output (scores or predicted classes), checked like any feature.

    ``reference`` and ``current`` are 1-d arrays, lists or Series of the outputs. ``categorical``:
    None infers from the values (text and booleans are categories).
    """
    ref = pd.DataFrame({name: pd.Series(reference)})
    cur = pd.DataFrame({name: pd.Series(current)})
    forced = [name] if categorical else None
    if categorical is False and _is_categorical(ref[name]):
        raise InvalidInput(
            f"categorical=False but the reference {name} values are not numbers "
            f"(dtype {ref[name].dtype}); pass categorical=True or numeric outputs"
        )
    return drift(ref, cur, categorical=forced, **options)


def drift_summary(report: pd.DataFrame) -> pd.DataFrame:
    """One row per feature: how many methods flagged it, ``drifted`` if any did, worst severity."""
    if not set(REPORT_COLUMNS) <= set(report.columns):
        raise InvalidInput(
            f"drift_summary needs a report from drift(); missing columns "
            f"{sorted(set(REPORT_COLUMNS) - set(report.columns))!r}"
        )
    rank = report["severity"].map({"none": 0, "moderate": 1, "major": 2})
    grouped = report.assign(_rank=rank).groupby("feature", sort=False)
    out = pd.DataFrame(
        {
            "kind": grouped["kind"].first(),
            "methods": grouped["method"].size(),
            "methods_flagged": grouped["flagged"].sum().astype(int),
            "max_rank": grouped["_rank"].max(),
        }
    )
    out["drifted"] = out["methods_flagged"] > 0
    out["severity"] = out.pop("max_rank").map({0: "none", 1: "moderate", 2: "major"})
    return out.reset_index()
