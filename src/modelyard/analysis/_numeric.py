"""Two-sample statistics of one numeric feature, from sorted arrays.

Why sorted arrays: every statistic here is a function of the two empirical CDFs. Sorting each side
once (the reference once for all windows, see ``DriftReference``) makes everything else linear or
a binary search: the merged order of both samples comes from two ``np.searchsorted`` calls and a
scatter, not from a third sort, and gives the Kolmogorov–Smirnov statistic and the Wasserstein
distance in one pass; bin counts for PSI and Jensen–Shannon are a ``searchsorted`` of the bin edges.
The results equal ``scipy.stats.ks_2samp`` and ``scipy.stats.wasserstein_distance`` (tested).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats
from scipy.spatial import distance

from modelyard.analysis._checks import FloatArray

__all__ = [
    "EXACT_KS_MAX_N",
    "bin_counts",
    "divergence_p_value",
    "jensen_shannon",
    "ks_p_value",
    "ks_wasserstein",
    "psi",
    "quantile_edges",
]

# Up to this many values per side, scipy's exact KS p-value is cheap; above it, scipy itself
# switches to Smirnov's asymptotic distribution, and so do we (same formula, same numbers).
EXACT_KS_MAX_N = 10_000


def quantile_edges(sorted_reference: FloatArray, bins: int) -> FloatArray:
    """Inner bin edges at the reference's quantiles, deduplicated (ties make fewer bins)."""
    # numpy's default (linear) quantile, read straight off the sorted array: no partition pass.
    position = np.linspace(0.0, 1.0, bins + 1)[1:-1] * (sorted_reference.shape[0] - 1)
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, sorted_reference.shape[0] - 1)
    values = sorted_reference[low] + (position - low) * (
        sorted_reference[high] - sorted_reference[low]
    )
    edges: FloatArray = np.unique(values)
    return edges


def bin_counts(sorted_values: FloatArray, edges: FloatArray) -> FloatArray:
    """Counts in the bins (-inf, e1), [e1, e2), ..., [ek, inf) of a sorted array."""
    cuts = np.searchsorted(sorted_values, edges, side="left")
    counts: FloatArray = np.diff(np.concatenate([[0], cuts, [sorted_values.shape[0]]])).astype(
        np.float64
    )
    return counts


def psi(reference_counts: FloatArray, current_counts: FloatArray, eps: float) -> float:
    """Population stability index: sum of (c - r) ln(c / r) over bins of proportions.

    A bin empty on one side would make the log infinite; its proportion is raised to ``eps``
    (1e-4 by default, as in common practice), which caps one empty bin's contribution near 1.
    """
    r = np.maximum(reference_counts / reference_counts.sum(), eps)
    c = np.maximum(current_counts / current_counts.sum(), eps)
    return float(np.sum((c - r) * np.log(c / r)))


def jensen_shannon(reference_counts: FloatArray, current_counts: FloatArray) -> float:
    """Jensen–Shannon distance in base 2 (0 identical, 1 disjoint); empty bins need no epsilon."""
    value = float(distance.jensenshannon(reference_counts, current_counts, base=2.0))
    # Identical histograms can give a tiny negative under the square root: NaN, meaning 0.
    return 0.0 if math.isnan(value) else value


def divergence_p_value(
    kind: str, value: float, reference_counts: FloatArray, current_counts: FloatArray
) -> float:
    """Asymptotic p-value of PSI or the Jensen–Shannon distance under "same distribution".

    Both are smooth divergences of the binned proportions, and for two samples of one
    distribution both are, to second order, Pearson's chi-square statistic divided by a known
    factor: PSI (a symmetric Kullback–Leibler divergence) ≈ X² / n_eff, and the Jensen–Shannon
    divergence in nats ≈ X² / (8 n_eff), with n_eff = n_r n_c / (n_r + n_c) and X² ~ chi²(k - 1)
    over the k bins used. So PSI has expected value (k - 1)(1/n_r + 1/n_c) under no drift, the
    known result, and a p-value follows. Trust it as you would Pearson's test: when every bin
    expects about five rows or more.
    """
    used = int(np.count_nonzero(reference_counts + current_counts))
    if used < 2 or math.isnan(value):
        return 1.0 if used < 2 else math.nan
    n_r, n_c = float(reference_counts.sum()), float(current_counts.sum())
    n_eff = n_r * n_c / (n_r + n_c)
    # Jensen–Shannon distance in base 2: the divergence in nats is distance² · ln 2.
    chi2 = value * n_eff if kind == "psi" else 8.0 * n_eff * value * value * math.log(2.0)
    return float(stats.chi2.sf(chi2, used - 1))


def ks_wasserstein(sorted_reference: FloatArray, sorted_current: FloatArray) -> tuple[float, float]:
    """Kolmogorov–Smirnov D and the Wasserstein-1 distance of two sorted, non-empty samples."""
    n1, n2 = sorted_reference.shape[0], sorted_current.shape[0]
    total = n1 + n2
    # Where each current value lands in the merged order (after equal reference values): one
    # binary search per current value; the reference values fill the remaining slots in order.
    # Any order among ties works because both CDFs are read only at the last of each tied run.
    at_cur = np.arange(n2) + np.searchsorted(sorted_reference, sorted_current, side="right")
    from_ref = np.ones(total, dtype=bool)
    from_ref[at_cur] = False
    merged = np.empty(total)
    merged[at_cur] = sorted_current
    merged[from_ref] = sorted_reference
    cum_ref = np.cumsum(from_ref, dtype=np.int64)
    # F_ref - F_cur after each merged position: cum_ref/n1 - (k + 1 - cum_ref)/n2.
    gap = cum_ref * (1.0 / n1 + 1.0 / n2)
    gap -= np.arange(1, total + 1) / n2
    np.abs(gap, out=gap)
    run_end = np.empty(total, dtype=bool)
    run_end[-1] = True
    np.not_equal(merged[:-1], merged[1:], out=run_end[:-1])
    d = float(gap[run_end].max())
    w = float(np.dot(gap[:-1], np.diff(merged)))
    return d, w


def ks_p_value(d: float, sorted_reference: FloatArray, sorted_current: FloatArray) -> float:
    """Two-sided KS p-value as ``scipy.stats.ks_2samp`` computes it (exact when small)."""
    n1, n2 = sorted_reference.shape[0], sorted_current.shape[0]
    if max(n1, n2) <= EXACT_KS_MAX_N:
        return float(stats.ks_2samp(sorted_reference, sorted_current).pvalue)
    m, n = float(max(n1, n2)), float(min(n1, n2))
    en = m * n / (m + n)
    return float(np.clip(stats.kstwo.sf(d, np.round(en)), 0.0, 1.0))
