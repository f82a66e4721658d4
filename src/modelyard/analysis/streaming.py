"""Drift and classification metrics of a window fed in chunks: memory bounded by the reference
and a fixed grid, not by the window.

A window of tens of millions of predictions need not be held in one process to be compared with
its reference. Each accumulator here takes the window chunk by chunk (``update``) and keeps only
counts and sums, then gives the same report as the in-memory function (``report`` / ``result``):

- ``StreamedDrift`` (against a ``DriftReference``): per numeric feature, the current values are
  counted (and summed) in the intervals between the reference's distinct values, and in the
  reference's PSI bins. PSI, Jensen–Shannon and their p-values are *exact* (the same bin counts
  as ``DriftReference.compare``); so is Kolmogorov–Smirnov D: both CDFs are step functions and
  F_ref only moves at reference values, so sup |F_ref - F_cur| is reached at a reference value or
  just below one, and the counts at and below each give both. The Wasserstein distance is exact
  in every interval where F_cur stays on one side of F_ref; in an interval where it crosses, the
  integral lies between |∫ g| and the interval's width times the larger end gap; the midpoint
  is used and ``error_bound`` (in the effect's units: divided by the reference's standard
  deviation) sums the half-widths. KS p-values are the asymptotic ones (Smirnov's, as
  ``ks_p_value`` uses above 10,000 values per side). Categorical features: exact counts.
  Memory: about 32 bytes per distinct reference value per numeric feature.
- ``StreamedClassification``: labels and scores counted on a grid of ``GRID_BINS`` equal bins of
  [0, 1] (per bin: positives, negatives, lowest and highest score). A bin holding one distinct
  score is an exact tie class, so ROC AUC, DeLong's variance and average precision are exact when
  every bin holds one distinct value; otherwise the pairs inside a bin are counted as ties and the
  result carries a bound computed from the counts: ``roc_auc_error_bound`` = Σ P_b N_b / (2 m n)
  over bins with more than one value (each such pair moves the AUC by at most 1/(2 m n));
  ``roc_auc_ci_error_bound`` adds z times the bound on DeLong's standard error that follows from
  each structural component being off by at most half its bin's count over the other class's
  size (Cauchy–Schwarz on the variance); ``pr_auc_error_bound`` sums, per such bin, its share of
  positives times the spread of precision across orders inside the bin. Log loss, Brier,
  accuracy, precision, recall, F1, ECE and the counts are exact sums. At 10M continuous scores the
  AUC bound is about 2e-6, far inside DeLong's interval. Memory: 4 arrays of ``GRID_BINS``.
- ``StreamedEstimate``: ``estimate_performance`` the same way (exact confusion sums; the expected
  AUC on the grid, with ``estimated_roc_auc_error_bound`` from the pairs inside a bin).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from modelyard.analysis._categorical import categorical_stats
from modelyard.analysis._checks import FloatArray, binary_labels
from modelyard.analysis._numeric import divergence_p_value, jensen_shannon, psi
from modelyard.analysis._report import (
    CATEGORICAL_METHODS,
    DEFAULT_ALPHA,
    EMPTY_NOTE,
    NUMERIC_METHODS,
    Feature,
    Rows,
    thresholds_with,
)
from modelyard.analysis.univariate import (
    DriftReference,
    _CategoricalProfile,
    _numeric_values,
    _NumericProfile,
)
from modelyard.errors import InvalidInput

__all__ = ["GRID_BINS", "StreamedClassification", "StreamedDrift", "StreamedEstimate"]

GRID_BINS = 1 << 18  # 262,144 bins of [0, 1]: 8 MiB for the four arrays


class _NumericSide:
    """Counts and sums of current values between the reference's distinct values."""

    def __init__(self, profile: _NumericProfile) -> None:
        self.profile = profile
        self.values = np.unique(profile.sorted)  # u_0 < ... < u_{K-1}
        k = self.values.shape[0]
        self.ref_at = np.searchsorted(profile.sorted, self.values, side="right")  # m F_ref(u_i)
        self.count = np.zeros(k + 1, dtype=np.int64)  # [u_{j-1}, u_j), j = 0..K
        self.total = np.zeros(k + 1, dtype=np.float64)
        self.equal = np.zeros(k, dtype=np.int64)  # values equal to u_i
        self.bins = np.zeros(profile.edges.shape[0] + 1, dtype=np.float64)
        self.nan = 0

    def update(self, column: pd.Series[Any], name: str) -> None:
        values, nan = _numeric_values(column, name, "current window")
        self.nan += nan
        if not values.shape[0]:
            return
        k = self.values.shape[0]
        j = np.searchsorted(self.values, values, side="right")
        self.count += np.bincount(j, minlength=k + 1)
        self.total += np.bincount(j, weights=values, minlength=k + 1)
        below = j > 0
        same = np.zeros(values.shape[0], dtype=bool)
        same[below] = values[below] == self.values[j[below] - 1]
        self.equal += np.bincount(j[same] - 1, minlength=k)
        b = np.searchsorted(self.profile.edges, values, side="right")
        self.bins += np.bincount(b, minlength=self.bins.shape[0])

    def ks_wasserstein(self) -> tuple[float, float, float]:
        """(KS D, Wasserstein-1, Wasserstein's error bound) from the counts."""
        n, m = float(self.count.sum()), float(self.profile.sorted.shape[0])
        u = self.values
        lt = np.cumsum(self.count)[:-1]  # values below u_i
        le = lt + self.equal  # values at or below u_i
        f_ref = self.ref_at / m
        f_prev = np.concatenate([[0.0], f_ref[:-1]])
        d = float(max(np.abs(f_ref - le / n).max(), np.abs(f_prev - lt / n).max()))
        w = (self.count[0] * u[0] - self.total[0]) / n
        w += (self.total[-1] - self.count[-1] * u[-1]) / n
        bound = 0.0
        if u.shape[0] > 1:
            width = np.diff(u)
            c = f_ref[:-1]
            inner_count, inner_total = self.count[1:-1], self.total[1:-1]
            integral = (lt[:-1] * width + inner_count * u[1:] - inner_total) / n - c * width
            g_low, g_high = le[:-1] / n - c, lt[1:] / n - c
            above, below = g_low >= 0, g_high <= 0
            cross = ~(above | below)
            low = np.abs(integral)
            high = width * np.maximum(-g_low, g_high)
            w += float(low[~cross].sum()) + float(((low + high) / 2)[cross].sum())
            bound = float(((high - low) / 2)[cross].clip(min=0).sum())
        return d, float(w), bound


def _ks_p(d: float, n1: int, n2: int) -> float:
    m, n = float(max(n1, n2)), float(min(n1, n2))
    return float(np.clip(stats.kstwo.sf(d, np.round(m * n / (m + n))), 0.0, 1.0))


class _CategoricalSide:
    def __init__(self, profile: _CategoricalProfile) -> None:
        self.profile = profile
        self.counts = np.zeros(profile.counts.shape[0], dtype=np.float64)
        self.present = 0
        self.nan = 0

    def update(self, column: pd.Series[Any]) -> None:
        nan = int(column.isna().sum())
        self.nan += nan
        self.present += int(column.shape[0] - nan)
        codes = self.profile.categories.get_indexer(pd.Index(column))
        seen = codes[codes >= 0]
        self.counts += np.bincount(seen, minlength=self.counts.shape[0])


class StreamedDrift:
    """``DriftReference.compare`` over a window given in chunks (see the module docstring).

    >>> rng = np.random.default_rng(0)
    >>> ref = DriftReference(pd.DataFrame({"age": rng.normal(40, 10, 5000)}))
    >>> acc = StreamedDrift(ref)
    >>> for _ in range(3):
    ...     acc.update(pd.DataFrame({"age": rng.normal(48, 10, 20_000)}))
    >>> report = acc.report()
    >>> report.set_index("method")["flagged"].to_dict()
    {'psi': True, 'ks': True, 'wasserstein': True, 'jensen_shannon': True}
    """

    def __init__(self, reference: DriftReference) -> None:
        self.reference = reference
        self.sides: dict[str, _NumericSide | _CategoricalSide] = {
            name: _NumericSide(p) if isinstance(p, _NumericProfile) else _CategoricalSide(p)
            for name, p in reference.profiles.items()
        }

    def update(self, current: pd.DataFrame) -> None:
        """Add one chunk of the window (a frame with the reference's features)."""
        missing = [f for f in self.reference.features if f not in current.columns]
        if missing:
            raise InvalidInput(
                f"features {missing!r} of the reference are not columns of current; it has "
                f"{list(current.columns)!r}"
            )
        for name, side in self.sides.items():
            if isinstance(side, _NumericSide):
                side.update(current[name], name)
            else:
                side.update(current[name])

    def report(self, thresholds: Any = None, alpha: float = DEFAULT_ALPHA) -> pd.DataFrame:
        """The drift report (``REPORT_COLUMNS``) plus ``error_bound`` (0 where exact)."""
        limits = thresholds_with(thresholds)
        if not 0.0 < alpha < 1.0:
            raise InvalidInput(f"alpha={alpha!r} must be between 0 and 1, e.g. 0.01")
        rows, bounds = Rows(), []
        for name, side in self.sides.items():
            if isinstance(side, _NumericSide):
                bounds += self._numeric_rows(rows, name, side)
            else:
                bounds += self._categorical_rows(rows, name, side)
        frame = rows.frame(limits, alpha)
        frame["error_bound"] = bounds
        return frame

    def _numeric_rows(self, rows: Rows, name: str, side: _NumericSide) -> list[float]:
        ref, eps = side.profile, self.reference.eps
        n = int(side.count.sum())
        feature = Feature(name, "numeric", (ref.sorted.shape[0], n, ref.nan, side.nan))
        if n == 0:
            for method in NUMERIC_METHODS:
                rows.add(feature, method, math.nan, math.nan, math.nan, EMPTY_NOTE)
            return [math.nan] * len(NUMERIC_METHODS)
        d, w, w_bound = side.ks_wasserstein()
        if ref.std > 0:
            w_effect, note, bound = w / ref.std, "", w_bound / ref.std
        else:
            w_effect = 0.0 if w == 0 else math.inf
            note, bound = (
                "reference is constant: any change is an infinite shift in its spread",
                0.0,
            )
        p = psi(ref.counts, side.bins, eps)
        rows.add(feature, "psi", p, divergence_p_value("psi", p, ref.counts, side.bins), None)
        ks_row = rows.add(feature, "ks", d, _ks_p(d, ref.sorted.shape[0], n), None)
        note = note or "significance from the KS test on the same samples"
        rows.add(feature, "wasserstein", w, math.nan, w_effect, note, ks_row)
        js = jensen_shannon(ref.counts, side.bins)
        rows.add(
            feature, "jensen_shannon", js, divergence_p_value("js", js, ref.counts, side.bins), None
        )
        return [0.0, 0.0, bound, 0.0]

    def _categorical_rows(self, rows: Rows, name: str, side: _CategoricalSide) -> list[float]:
        ref = side.profile
        feature = Feature(
            name, "categorical", (int(ref.counts.sum()), side.present, ref.nan, side.nan)
        )
        if side.present == 0:
            for method in CATEGORICAL_METHODS:
                rows.add(feature, method, math.nan, math.nan, math.nan, EMPTY_NOTE)
            return [math.nan] * len(CATEGORICAL_METHODS)
        unseen = float(side.present - side.counts.sum())
        s = categorical_stats(ref.counts, side.counts, unseen, self.reference.eps)
        rows.add(feature, "psi", s.psi, s.psi_p, None)
        rows.add(feature, "chi2", s.chi2, s.chi2_p, s.cramers_v)
        rows.add(feature, "jensen_shannon", s.js, s.js_p, None)
        rows.add(feature, "unseen_share", s.unseen_share, math.nan, None)
        return [0.0] * len(CATEGORICAL_METHODS)


class _Grid:
    """Per bin of [0, 1]: two weighted counts and the lowest and highest score seen."""

    def __init__(self, bins: int) -> None:
        if bins < 10:
            raise InvalidInput(f"bins={bins!r} must be at least 10 ({GRID_BINS} is the default)")
        self.size = bins
        self.first = np.zeros(bins, dtype=np.float64)
        self.second = np.zeros(bins, dtype=np.float64)
        self.low = np.full(bins, np.inf)
        self.high = np.full(bins, -np.inf)

    def add(self, scores: FloatArray, first: FloatArray, second: FloatArray) -> None:
        index = np.clip((scores * self.size).astype(np.int64), 0, self.size - 1)
        self.first += np.bincount(index, weights=first, minlength=self.size)
        self.second += np.bincount(index, weights=second, minlength=self.size)
        np.minimum.at(self.low, index, scores)
        np.maximum.at(self.high, index, scores)

    @property
    def spread(self) -> np.ndarray[Any, np.dtype[np.bool_]]:
        """Bins holding more than one distinct score."""
        return self.high > self.low


class StreamedClassification:
    """``classification_metrics`` over pairs given in chunks (see the module docstring).

    >>> acc = StreamedClassification()
    >>> acc.update([0, 0], [0.1, 0.4]); acc.update([1, 1], [0.35, 0.8])
    >>> m = acc.result()
    >>> m["roc_auc"], m["accuracy"], m["roc_auc_error_bound"]
    (0.75, 0.75, 0.0)
    """

    def __init__(self, threshold: float = 0.5, n_bins: int = 10, bins: int = GRID_BINS) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise InvalidInput(f"threshold={threshold!r} must be a probability in [0, 1]")
        self.threshold, self.n_bins = threshold, n_bins
        self.grid = _Grid(bins)
        self.n = self.dropped = 0
        self.smin, self.smax = math.inf, -math.inf
        self.sums = dict.fromkeys(("log_loss", "brier", "tp", "fp", "fn", "correct"), 0.0)
        self.ece_labels = np.zeros(n_bins)
        self.ece_scores = np.zeros(n_bins)

    def update(self, y_true: Any, y_score: Any) -> None:
        """Add a chunk of labels (0/1, NaN: not labelled) and scores (NaN pairs dropped)."""
        y = np.asarray(y_true, dtype=np.float64)
        s = np.asarray(y_score, dtype=np.float64)
        if y.shape != s.shape:
            raise InvalidInput(f"y_true has {y.shape[0]} values and y_score {s.shape[0]}")
        keep = ~(np.isnan(y) | np.isnan(s))
        self.dropped += int(y.shape[0] - keep.sum())
        y, s = binary_labels(y[keep]), s[keep]
        if not y.shape[0]:
            return
        self.n += y.shape[0]
        self.smin, self.smax = min(self.smin, float(s.min())), max(self.smax, float(s.max()))
        self.grid.add(s, y, 1.0 - y)
        eps = np.finfo(np.float64).eps
        p = np.clip(s, eps, 1.0 - eps)
        self.sums["log_loss"] -= float(np.sum(y * np.log(p) + (1.0 - y) * np.log1p(-p)))
        self.sums["brier"] += float(np.sum((y - s) ** 2))
        predicted = s >= self.threshold
        tp = float(np.sum(y[predicted]))
        self.sums["tp"] += tp
        self.sums["fp"] += float(predicted.sum()) - tp
        self.sums["fn"] += float(y[~predicted].sum())
        self.sums["correct"] += tp + float(np.sum(1.0 - y[~predicted]))
        index = np.minimum((s * self.n_bins).astype(np.int64), self.n_bins - 1)
        self.ece_labels += np.bincount(index, weights=y, minlength=self.n_bins)
        self.ece_scores += np.bincount(index, weights=s, minlength=self.n_bins)

    def result(self, confidence: float = 0.95) -> dict[str, Any]:
        """The keys of ``classification_metrics`` plus ``roc_auc_error_bound``,
        ``roc_auc_ci_error_bound`` and ``pr_auc_error_bound`` (0 where exact)."""
        if not 0.0 < confidence < 1.0:
            raise InvalidInput(f"confidence={confidence!r} must be between 0 and 1, e.g. 0.95")
        if self.n == 0:
            raise InvalidInput(
                f"all {self.dropped} pairs have a NaN label or score; "
                "at least one labelled prediction is needed"
            )
        if self.smin < 0.0 or self.smax > 1.0:
            raise InvalidInput(
                f"y_score must be probabilities in [0, 1]; saw values from {self.smin!r} "
                f"to {self.smax!r}"
            )
        n, pos, neg = self.n, self.grid.first, self.grid.second
        positives = int(np.rint(pos.sum()))
        out: dict[str, Any] = {"n": n, "positives": positives, "n_dropped": self.dropped}
        reasons: dict[str, str] = {}
        if 0 < positives < n:
            out.update(_roc(pos, neg, self.grid.spread, confidence))
            out.update(_average_precision(pos, neg, self.grid.spread))
        else:
            only = "positive" if positives else "negative"
            reasons["roc_auc"] = f"only {only} labels in {n} rows; ROC AUC needs both classes"
            out.update(roc_auc=math.nan, roc_auc_ci_low=math.nan, roc_auc_ci_high=math.nan)
            if positives:
                out.update(pr_auc=1.0, pr_auc_error_bound=0.0)
            else:
                out["pr_auc"] = math.nan
                reasons["pr_auc"] = f"no positive labels in {n} rows; precision-recall is undefined"
        out["roc_auc_ci_method"] = "delong"
        out["roc_auc_ci_level"] = confidence
        sums = self.sums
        out["log_loss"] = sums["log_loss"] / n
        out["brier"] = sums["brier"] / n
        out["accuracy"] = sums["correct"] / n
        tp, fp, fn = sums["tp"], sums["fp"], sums["fn"]
        out["precision"] = tp / (tp + fp) if tp + fp else math.nan
        out["recall"] = tp / (tp + fn) if tp + fn else math.nan
        out["f1"] = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else math.nan
        whys = {
            "precision": f"no rows predicted positive at threshold {self.threshold}",
            "recall": f"no positive labels in {n} rows",
            "f1": "precision or recall is undefined",
        }
        reasons.update({k: why for k, why in whys.items() if math.isnan(out[k])})
        out["threshold"] = self.threshold
        out["ece"] = float(np.abs(self.ece_labels - self.ece_scores).sum() / n)
        out["reasons"] = reasons
        return out


def _roc(pos: FloatArray, neg: FloatArray, spread: Any, confidence: float) -> dict[str, float]:
    """ROC AUC and DeLong's interval from per-bin class counts, with their error bounds."""
    m, n = float(pos.sum()), float(neg.sum())
    neg_below = np.cumsum(neg) - neg
    pos_below = np.cumsum(pos) - pos
    v10 = (neg_below + 0.5 * neg) / n  # each positive of the bin: share of negatives below
    v01 = 1.0 - (pos_below + 0.5 * pos) / m  # each negative: share of positives above
    auc = float(np.dot(pos, v10) / m)
    s10 = float(np.dot(pos, (v10 - auc) ** 2) / (m - 1)) if m > 1 else 0.0
    s01 = float(np.dot(neg, (v01 - auc) ** 2) / (n - 1)) if n > 1 else 0.0
    z = float(stats.norm.ppf(0.5 + confidence / 2.0))
    half = z * math.sqrt(s10 / m + s01 / n)
    auc_bound = float(0.5 * np.dot(pos[spread], neg[spread]) / (m * n))
    r10 = float(np.dot(pos[spread], (neg[spread] / (2 * n)) ** 2) / (m - 1)) if m > 1 else 0.0
    r01 = float(np.dot(neg[spread], (pos[spread] / (2 * m)) ** 2) / (n - 1)) if n > 1 else 0.0
    d10 = 2 * math.sqrt(s10 * r10) + r10
    d01 = 2 * math.sqrt(s01 * r01) + r01
    return {
        "roc_auc": auc,
        "roc_auc_ci_low": max(0.0, auc - half),
        "roc_auc_ci_high": min(1.0, auc + half),
        "roc_auc_error_bound": auc_bound,
        "roc_auc_ci_error_bound": auc_bound + z * math.sqrt(d10 / m + d01 / n),
    }


def _average_precision(pos: FloatArray, neg: FloatArray, spread: Any) -> dict[str, float]:
    """Average precision over the bins from the top score down, and its error bound."""
    m = float(pos.sum())
    p, q, wide = pos[::-1], neg[::-1], spread[::-1]
    tp, fp = np.cumsum(p), np.cumsum(q)
    used = p > 0
    ap = float(np.sum(p[used] / m * tp[used] / (tp[used] + fp[used])))
    tp_prev, fp_prev = tp - p, fp - q
    sel = used & wide
    high = (tp_prev[sel] + p[sel]) / (tp_prev[sel] + p[sel] + fp_prev[sel])
    low = (tp_prev[sel] + 1) / (tp_prev[sel] + 1 + fp_prev[sel] + q[sel])
    return {"pr_auc": ap, "pr_auc_error_bound": float(np.sum(p[sel] / m * (high - low)))}


class StreamedEstimate:
    """``estimate_performance`` over scores given in chunks (NaN scores dropped)."""

    def __init__(self, threshold: float = 0.5, bins: int = GRID_BINS) -> None:
        self.threshold = threshold
        self.grid = _Grid(bins)
        self.n = self.dropped = 0
        self.smin, self.smax = math.inf, -math.inf
        self.sums = dict.fromkeys(("tp", "fp", "fn", "tn", "self"), 0.0)

    def update(self, y_score: Any) -> None:
        s = np.asarray(y_score, dtype=np.float64)
        present = s[~np.isnan(s)]
        self.dropped += int(s.shape[0] - present.shape[0])
        if not present.shape[0]:
            return
        self.n += present.shape[0]
        self.smin = min(self.smin, float(present.min()))
        self.smax = max(self.smax, float(present.max()))
        self.grid.add(present, present, 1.0 - present)
        positive = present >= self.threshold
        self.sums["tp"] += float(present[positive].sum())
        self.sums["fp"] += float((1.0 - present[positive]).sum())
        self.sums["fn"] += float(present[~positive].sum())
        self.sums["tn"] += float((1.0 - present[~positive]).sum())
        self.sums["self"] += float(np.sum(present * (1.0 - present)))

    def result(self) -> dict[str, Any]:
        """``expected_accuracy`` ... ``expected_roc_auc`` and ``expected_roc_auc_error_bound``."""
        if self.n == 0:
            raise InvalidInput(f"all {self.dropped} scores are NaN; at least one score is needed")
        if self.smin < 0.0 or self.smax > 1.0:
            raise InvalidInput(
                f"y_score must be calibrated probabilities in [0, 1]; saw values from "
                f"{self.smin!r} to {self.smax!r}"
            )
        tp, fp, fn, tn = (self.sums[k] for k in ("tp", "fp", "fn", "tn"))
        precision = tp / (tp + fp) if tp + fp > 0 else math.nan
        recall = tp / (tp + fn) if tp + fn > 0 else math.nan
        f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else math.nan
        p, q, spread = self.grid.first, self.grid.second, self.grid.spread
        pairs = float(p.sum() * q.sum()) - self.sums["self"]
        auc, bound = math.nan, math.nan
        if pairs > 0:
            q_below = np.cumsum(q) - q
            tied = float(np.dot(p, q)) - self.sums["self"]
            auc = (float(np.dot(p, q_below)) + 0.5 * tied) / pairs
            bound = 0.5 * float(np.dot(p[spread], q[spread])) / pairs
        return {
            "n": self.n,
            "n_dropped": self.dropped,
            "expected_accuracy": (tp + tn) / self.n,
            "expected_precision": precision,
            "expected_recall": recall,
            "expected_f1": f1,
            "expected_roc_auc": auc,
            "expected_roc_auc_error_bound": bound,
            "threshold": self.threshold,
            "method": "cbpe",
        }
