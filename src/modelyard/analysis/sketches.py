"""Quantiles, PSI and KS from rolled-up summaries, so drift stays available after raw data is gone.

Rollup keeps, per bucket and metric, a ``NumericSummary`` (a KLL sketch from Apache DataSketches)
or a ``CategoricalSummary`` (exact counts, see ``modelyard.store.summary``). This module compares
two such summaries (merge the buckets of a period first) and returns the same report as ``drift``,
plus an ``error_bound`` column. Anything with ``count``, ``min``, ``max``, ``rank_error``,
``quantiles(qs)`` and ``histogram(edges)`` works (``QuantileSummary``); categories may be a
``CategoricalSummary`` or a plain mapping of category to count.

The KS error bound, derived: a KLL sketch's estimated CDF F̂ satisfies |F̂(x) - F(x)| <= ε at every
x (ε = ``rank_error``, about 1.3 % for k=200, with about 99 % confidence). F̂ is a step function
that jumps only at the items the sketch retained, so sup |F̂_r - F̂_c| is attained at one of them;
we evaluate both CDFs at the quantiles of both sketches on a grid of ``grid`` ranks, which visits
every retained item whose weight is at least 1/grid and misses at most 1/grid of the sup
otherwise. By the triangle inequality, |D̂ - D| <= ε_r + ε_c + 1/grid: about twice the rank error
(2.7 % at k=200, plus 0.05 % for the default grid of 2,000). A flag within that bound of the
threshold is uncertain; the row's ``error_bound`` says how far.

PSI and Jensen–Shannon use the reference's decile edges (from its sketch) and the sketches'
histogram shares, each within the sketch's histogram error (about 1.65 % of the rows per bin for
k=200); no tight bound on PSI follows from that, so their ``error_bound`` is the per-bin share
error. docs/analysis.md gives the measured gap to the exact PSI, and the first-order propagation
of the rank error through PSI and JS that the tests hold them to (3-4x the largest gap seen).
Their p-values treat the sketched shares as exact, so at large counts sketch noise alone can look
significant: for them the effect threshold, set well above the sketch error, is what keeps a
stable period unflagged.
Categorical counts are exact (``error_bound`` 0) while a key has at most 1,000 categories; beyond,
rare ones are pooled in ``__other__``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd
from scipy import stats

from modelyard.analysis._categorical import categorical_stats
from modelyard.analysis._checks import FloatArray
from modelyard.analysis._numeric import divergence_p_value, jensen_shannon, psi
from modelyard.analysis._report import (
    DEFAULT_ALPHA,
    DEFAULT_BINS,
    DEFAULT_EPS,
    Feature,
    Rows,
    thresholds_with,
)
from modelyard.errors import InvalidInput

__all__ = [
    "DEFAULT_GRID",
    "QuantileSummary",
    "sketch_drift",
    "sketch_ks",
    "sketch_quantiles",
]

DEFAULT_GRID = 2000


@runtime_checkable
class QuantileSummary(Protocol):
    """What a numeric summary must provide (``modelyard.store.summary.NumericSummary`` does)."""

    @property
    def count(self) -> int: ...

    @property
    def min(self) -> float: ...

    @property
    def max(self) -> float: ...

    @property
    def rank_error(self) -> float: ...

    def quantiles(self, qs: Iterable[float]) -> Sequence[float]: ...

    def histogram(self, edges: Sequence[float]) -> Sequence[int]: ...


def _histogram_error(summary: QuantileSummary) -> float:
    value = getattr(summary, "histogram_rank_error", None)
    return float(value) if value is not None else summary.rank_error


def sketch_quantiles(summary: QuantileSummary, qs: Sequence[float]) -> dict[str, float]:
    """``{"p50": ..., "p99": ..., "rank_error": ε}``: each value's rank is within ε of its q."""
    values = summary.quantiles(qs)
    out = {f"p{q * 100:g}": float(v) for q, v in zip(qs, values, strict=True)}
    out["rank_error"] = float(summary.rank_error)
    return out


def _cdf_below(summary: QuantileSummary, points: FloatArray, top: float) -> FloatArray:
    """Estimated share of values strictly below each of the sorted ``points``."""
    edges = np.append(points, top)
    counts = np.asarray(summary.histogram(edges.tolist()), dtype=np.float64)
    below: FloatArray = np.concatenate([[0.0], np.cumsum(counts)[:-1]]) / summary.count
    return below


def sketch_ks(
    reference: QuantileSummary, current: QuantileSummary, grid: int = DEFAULT_GRID
) -> tuple[float, float]:
    """Estimated KS statistic D and its error bound ε_r + ε_c + 1/grid (see the module doc)."""
    ranks = np.linspace(0.0, 1.0, grid + 1)
    points = np.unique(
        np.concatenate([reference.quantiles(ranks.tolist()), current.quantiles(ranks.tolist())])
    )
    top = float(np.nextafter(max(reference.max, current.max), math.inf))
    gap = _cdf_below(reference, points, top) - _cdf_below(current, points, top)
    d = float(np.abs(gap).max())
    return d, reference.rank_error + current.rank_error + 1.0 / grid


def _numeric_rows(
    rows: Rows,
    bounds: list[float],
    name: str,
    ref: QuantileSummary,
    cur: QuantileSummary,
    bins: int,
    eps: float,
    grid: int,
) -> None:
    feature = Feature(name, "numeric", (int(ref.count), int(cur.count), 0, 0))
    inner = np.unique(ref.quantiles(np.linspace(0.0, 1.0, bins + 1)[1:-1].tolist()))
    low = min(ref.min, cur.min)
    top = float(np.nextafter(max(ref.max, cur.max), math.inf))
    edges = np.concatenate([[low], inner[inner > low], [top]])
    ref_counts = np.asarray(ref.histogram(edges.tolist()), dtype=np.float64)
    cur_counts = np.asarray(cur.histogram(edges.tolist()), dtype=np.float64)
    share_error = max(_histogram_error(ref), _histogram_error(cur))
    p = psi(ref_counts, cur_counts, eps)
    p_value = divergence_p_value("psi", p, ref_counts, cur_counts)
    rows.add(feature, "psi", p, p_value, None, "from sketches")
    bounds.append(share_error)
    d, bound = sketch_ks(ref, cur, grid)
    m, n = float(max(ref.count, cur.count)), float(min(ref.count, cur.count))
    # The p-value is computed on the lower end of D's interval, so sketch noise alone (which at
    # large counts exceeds sampling noise) cannot make the test significant.
    d_low = max(0.0, d - bound)
    ks_p = float(np.clip(stats.kstwo.sf(d_low, np.round(m * n / (m + n))), 0.0, 1.0))
    rows.add(feature, "ks", d, ks_p, None, "from sketches")
    bounds.append(bound)
    js = jensen_shannon(ref_counts, cur_counts)
    js_p = divergence_p_value("js", js, ref_counts, cur_counts)
    rows.add(feature, "jensen_shannon", js, js_p, None, "from sketches")
    bounds.append(share_error)


def _counts(value: Any, name: str) -> dict[str, float]:
    counts = getattr(value, "categories", value)
    if not isinstance(counts, Mapping):
        raise InvalidInput(
            f"summary for {name!r} is a {type(value).__name__}; pass a NumericSummary-like object "
            "(quantiles, histogram, rank_error), a CategoricalSummary or a dict of category counts"
        )
    return {str(k): float(v) for k, v in counts.items()}


def _categorical_rows(
    rows: Rows,
    bounds: list[float],
    name: str,
    ref: dict[str, float],
    cur: dict[str, float],
    eps: float,
) -> None:
    categories = list(ref)
    ref_counts = np.asarray([ref[c] for c in categories], dtype=np.float64)
    cur_counts = np.asarray([cur.get(c, 0.0) for c in categories], dtype=np.float64)
    unseen = float(sum(v for c, v in cur.items() if c not in ref))
    feature = Feature(
        name, "categorical", (int(ref_counts.sum()), int(cur_counts.sum() + unseen), 0, 0)
    )
    s = categorical_stats(ref_counts, cur_counts, unseen, eps)
    rows.add(feature, "psi", s.psi, s.psi_p, None)
    rows.add(feature, "chi2", s.chi2, s.chi2_p, s.cramers_v)
    rows.add(feature, "jensen_shannon", s.js, s.js_p, None)
    rows.add(feature, "unseen_share", s.unseen_share, math.nan, None)
    bounds.extend([0.0] * 4)


def sketch_drift(
    reference: Mapping[str, Any],
    current: Mapping[str, Any],
    thresholds: Mapping[str, float] | None = None,
    alpha: float = DEFAULT_ALPHA,
    bins: int = DEFAULT_BINS,
    eps: float = DEFAULT_EPS,
    grid: int = DEFAULT_GRID,
) -> pd.DataFrame:
    """Drift report from summaries: feature -> numeric summary or category counts, per side.

    Numeric features get PSI, KS and Jensen–Shannon (Wasserstein needs the values, not kept);
    categorical features the same four methods as ``drift``. Columns are those of ``drift`` plus
    ``error_bound``.
    """
    limits = thresholds_with(thresholds)
    if not 0.0 < alpha < 1.0:
        raise InvalidInput(f"alpha={alpha!r} must be between 0 and 1, e.g. 0.01")
    if grid < 10:
        raise InvalidInput(f"grid={grid!r} must be at least 10 (2000 is the default)")
    missing = [f for f in reference if f not in current]
    if missing:
        raise InvalidInput(
            f"features {missing!r} have a reference summary but no current one; current has "
            f"{list(current)!r}"
        )
    rows = Rows()
    bounds: list[float] = []
    for name, ref in reference.items():
        cur = current[name]
        if isinstance(ref, QuantileSummary) and isinstance(cur, QuantileSummary):
            if ref.count == 0:
                raise InvalidInput(f"reference summary of {name!r} is empty; it needs values")
            if cur.count == 0:
                empty = Feature(name, "numeric", (int(ref.count), 0, 0, 0))
                for method in ("psi", "ks", "jensen_shannon"):
                    rows.add(empty, method, math.nan, math.nan, math.nan, "empty")
                    bounds.append(math.nan)
                continue
            _numeric_rows(rows, bounds, name, ref, cur, bins, eps, grid)
        elif isinstance(ref, QuantileSummary) or isinstance(cur, QuantileSummary):
            raise InvalidInput(
                f"feature {name!r} is numeric on one side and categorical on the other; "
                "pass the same kind of summary for both"
            )
        else:
            ref_counts = _counts(ref, name)
            if not sum(ref_counts.values()):
                raise InvalidInput(f"reference counts of {name!r} are empty; they need values")
            cur_counts = _counts(cur, name)
            if not sum(cur_counts.values()):
                empty = Feature(name, "categorical", (int(sum(ref_counts.values())), 0, 0, 0))
                for method in ("psi", "chi2", "jensen_shannon", "unseen_share"):
                    rows.add(empty, method, math.nan, math.nan, math.nan, "empty")
                    bounds.append(math.nan)
                continue
            _categorical_rows(rows, bounds, name, ref_counts, cur_counts, eps)
    frame = rows.frame(limits, alpha)
    frame["error_bound"] = bounds
    return frame
