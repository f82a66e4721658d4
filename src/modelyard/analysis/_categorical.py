"""Two-sample statistics of one categorical feature, from category counts.

Counts are all a categorical comparison needs, which is why the same code serves raw data (counted
with pandas categorical codes and ``np.bincount``) and rolled-up ``CategoricalSummary`` buckets
(counts kept exactly). Categories of the current window never seen in the reference are pooled in
one "unseen" cell: for PSI, Jensen–Shannon and chi-square they are a bin the reference has empty.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from modelyard.analysis._checks import FloatArray
from modelyard.analysis._numeric import divergence_p_value, jensen_shannon, psi

__all__ = ["CategoricalStats", "categorical_stats"]


class CategoricalStats:
    """PSI, Jensen–Shannon distance, chi-square (with Cramér's V) and the unseen share."""

    __slots__ = ("chi2", "chi2_p", "cramers_v", "js", "js_p", "psi", "psi_p", "unseen_share")

    def __init__(
        self,
        psi: tuple[float, float],
        js: tuple[float, float],
        chi2: tuple[float, float],
        cramers_v: float,
        unseen_share: float,
    ) -> None:
        (self.psi, self.psi_p), (self.js, self.js_p), (self.chi2, self.chi2_p) = psi, js, chi2
        self.cramers_v, self.unseen_share = cramers_v, unseen_share


def categorical_stats(
    reference_counts: FloatArray, current_counts: FloatArray, unseen: float, eps: float
) -> CategoricalStats:
    """Compare counts over the reference's categories plus ``unseen`` current rows.

    ``reference_counts`` and ``current_counts`` are aligned on the reference's categories.
    """
    ref = np.append(reference_counts, 0.0)
    cur = np.append(current_counts, unseen)
    n_cur = float(cur.sum())
    p = psi(ref, cur, eps)
    js = jensen_shannon(ref, cur)
    table = np.vstack([ref, cur])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        chi2, p_value = 0.0, 1.0  # one category in all: nothing can differ
    else:
        result = stats.chi2_contingency(table)
        chi2, p_value = float(result.statistic), float(result.pvalue)
    v = math.sqrt(chi2 / float(table.sum()))  # Cramér's V of a 2 x k table: min(2, k) - 1 = 1
    return CategoricalStats(
        (p, divergence_p_value("psi", p, ref, cur)),
        (js, divergence_p_value("js", js, ref, cur)),
        (chi2, p_value),
        v,
        float(unseen / n_cur),
    )
