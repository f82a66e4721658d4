"""A rolled-up window's drift, from the store's merged sketches against the reference sample.

Once rollup has folded a window's raw records into buckets (``modelyard.store.rollup``), only
summaries remain: per numeric key a KLL sketch, per categorical key exact counts. This module
computes the window's drift from them with ``modelyard.analysis.sketch_drift``:

- numeric features: PSI, KS and Jensen–Shannon. The window side is the store's merged sketch
  (``MonitorAccess.distribution``: raw values and buckets of the window) read as its quantile
  function on a grid of ``GRID`` ranks; that adds at most 1/``GRID`` to the sketch's rank error,
  and ``GridSummary.rank_error`` includes it. The reference side is the stored sample itself,
  exact (rank error 0). So ``drift.ks_error_bound`` = sketch rank error + 2/``GRID`` (the grid
  here and the one ``sketch_ks`` walks): about 0.0143 for a k=200 sketch. Wasserstein needs the
  values and is not written;
- categorical features: PSI, chi-square, Jensen–Shannon and the unseen share from the buckets'
  category counts plus the window's raw records, exact while a key has at most 1,000 categories;
- the prediction key the same way as a numeric feature (``prediction_drift.*``).

Metrics that join each prediction to its label (classification, regression, label coverage) or
need each score (estimated performance) cannot be recomputed from sketches: the window's
``<metric>.reason`` says so, and ``run_monitor`` keeps a result computed earlier from raw records.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from modelyard.analysis import sketch_drift
from modelyard.errors import InvalidInput
from modelyard.monitors.access import MonitorAccess
from modelyard.monitors.window import WindowData
from modelyard.specs.monitor import MonitorSpec
from modelyard.store.base import Distribution

__all__ = ["GRID", "ExactSummary", "GridSummary", "sketch_window_metrics"]

GRID = 2000
_RANKS = [i / GRID for i in range(GRID + 1)]
_LABEL_METRICS = ("classification", "regression", "label_coverage", "estimated_performance")


class ExactSummary:
    """A ``QuantileSummary`` of values held in full (the reference sample): rank error 0."""

    def __init__(self, values: Any) -> None:
        array = np.asarray(values, dtype=np.float64)
        self._values = np.sort(array[np.isfinite(array)])

    @property
    def count(self) -> int:
        return int(self._values.size)

    @property
    def min(self) -> float:
        return float(self._values[0])

    @property
    def max(self) -> float:
        return float(self._values[-1])

    @property
    def rank_error(self) -> float:
        return 0.0

    def quantiles(self, qs: Iterable[float]) -> list[float]:
        ranks = np.clip(np.asarray(list(qs), dtype=np.float64), 0.0, 1.0)
        return [float(v) for v in np.quantile(self._values, ranks, method="inverted_cdf")]

    def histogram(self, edges: Sequence[float]) -> list[int]:
        counts, _ = np.histogram(self._values, bins=np.asarray(edges, dtype=np.float64))
        return [int(c) for c in counts]


class GridSummary:
    """A ``QuantileSummary`` from a store ``Distribution`` taken at the ranks ``i / GRID``.

    Quantiles are read off the grid (the next grid rank up), CDFs by counting grid values below a
    point: each is within 1/``GRID`` in rank of the merged sketch's, which is within its own
    ``rank_error`` of the truth; ``rank_error`` here is the sum.
    """

    def __init__(self, distribution: Distribution) -> None:
        self._dist = distribution
        values = np.asarray([distribution.quantiles[r] for r in _RANKS], dtype=np.float64)
        self._values = np.maximum.accumulate(values)  # a quantile function never decreases

    @property
    def count(self) -> int:
        return int(self._dist.count)

    @property
    def min(self) -> float:
        return float(self._dist.min if self._dist.min is not None else self._values[0])

    @property
    def max(self) -> float:
        return float(self._dist.max if self._dist.max is not None else self._values[-1])

    @property
    def rank_error(self) -> float:
        return float(self._dist.rank_error) + 1.0 / GRID

    def quantiles(self, qs: Iterable[float]) -> list[float]:
        index = np.ceil(np.clip(np.asarray(list(qs), dtype=np.float64), 0.0, 1.0) * GRID)
        return [float(self._values[int(i)]) for i in index]

    def histogram(self, edges: Sequence[float]) -> list[int]:
        points = np.asarray(edges, dtype=np.float64)
        inner = self._values[1:]  # grid ranks 1/GRID .. 1, each standing for 1/GRID of the values
        below = np.searchsorted(inner, points, side="left").astype(np.float64)
        below[-1] = np.searchsorted(inner, points[-1], side="right")  # last bin closed
        cumulative = np.round(below / GRID * self.count)
        return [int(max(b - a, 0)) for a, b in itertools.pairwise(cumulative)]


def _category_counts(values: pd.Series[Any]) -> dict[str, float]:
    """Counts keyed as rollup keeps categories (booleans as "true"/"false")."""
    present = values.dropna()
    text = present.map(lambda v: str(v).lower() if isinstance(v, bool | np.bool_) else str(v))
    return {str(k): float(v) for k, v in text.value_counts().items()}


def _current_numeric(
    access: MonitorAccess, deployment: str, start_ms: int, end_ms: int, key: str
) -> GridSummary | None:
    dist = access.distribution(deployment, start_ms, end_ms, key, _RANKS)
    return GridSummary(dist) if dist.count else None


def sketch_window_metrics(
    spec: MonitorSpec,
    data: WindowData,
    reference: pd.DataFrame | None,
    access: MonitorAccess,
    deployment: str,
    start_ms: int,
    end_ms: int,
) -> dict[str, Any]:
    """The flat metrics of a rolled-up window: ``n``, drift from sketches, and reasons."""
    n = data.n + data.rolled.records
    out: dict[str, Any] = {"n": n}
    for metric in _LABEL_METRICS:
        if metric in spec.metrics:
            out[f"{metric}.reason"] = (
                f"window {start_ms}..{end_ms} is rolled up ({data.rolled.records} of {n} "
                "predictions folded into sketches); this metric needs each prediction and is not "
                "recomputable from sketches"
            )
    wants_drift = "drift" in spec.metrics
    wants_prediction = "prediction_drift" in spec.metrics
    if not (wants_drift or wants_prediction) or reference is None:
        return out
    if data.rolled.last_end_ms > end_ms:
        why = (
            f"window {start_ms}..{end_ms} is rolled up into buckets reaching "
            f"{data.rolled.last_end_ms}, "
            f"wider than the window ({spec.window_ms} ms); drift from sketches needs buckets no "
            "wider than the window (a longer monitor window, or a longer rollup tier horizon)"
        )
        out["drift.reason"] = why
        return out
    out["drift.source"] = "sketch"
    if wants_drift:
        ref_side: dict[str, Any] = {}
        cur_side: dict[str, Any] = {}
        missing = [f for f in spec.features if f not in reference.columns]
        if missing:
            raise InvalidInput(
                f"monitor {spec.name!r}: features {missing!r} are not columns of the reference "
                f"(it has {list(reference.columns)!r}); upload a reference with those columns"
            )
        for feature in spec.features:
            if feature in spec.categorical:
                ref_side[feature] = _category_counts(reference[feature])
                counts = dict(data.rolled.categories.get(feature, {}))
                for category, count in _category_counts(data.frame[feature]).items():
                    counts[category] = counts.get(category, 0.0) + count
                cur_side[feature] = counts
                continue
            ref_values = pd.to_numeric(reference[feature], errors="coerce")
            current = _current_numeric(access, deployment, start_ms, end_ms, feature)
            if current is None or not np.isfinite(ref_values).any():
                out[f"drift.{feature}.reason"] = "no numeric values on one side"
                continue
            ref_side[feature] = ExactSummary(ref_values)
            cur_side[feature] = current
        _write_report(out, sketch_drift(ref_side, cur_side, thresholds=spec.thresholds or None))
    if wants_prediction and spec.prediction in reference.columns:
        ref_scores = pd.to_numeric(reference[spec.prediction], errors="coerce")
        current = _current_numeric(access, deployment, start_ms, end_ms, spec.prediction)
        if current is not None and np.isfinite(ref_scores).any():
            report = sketch_drift(
                {"prediction": ExactSummary(ref_scores)},
                {"prediction": current},
                thresholds=spec.thresholds or None,
            )
            for row in report.itertuples(index=False):
                out[f"prediction_drift.{row.method}"] = row.effect
            out["prediction_drift.flagged"] = int(report["flagged"].astype(bool).any())
    return out


def _write_report(out: dict[str, Any], report: pd.DataFrame) -> None:
    for row in report.itertuples(index=False):
        out[f"{row.method}.{row.feature}"] = row.effect
    flagged = sorted(set(report.loc[report["flagged"].astype(bool), "feature"]))
    out["drift.flagged"] = len(flagged)
    out["drift.flagged_features"] = flagged
    bounds: dict[str, float] = {}
    if len(report):
        grouped = report.groupby("method")["error_bound"].max()
        bounds = {str(m): float(v) for m, v in grouped.items()}
    ks = bounds.get("ks")
    share = [v for m, v in bounds.items() if m in ("psi", "jensen_shannon") and math.isfinite(v)]
    out["drift.ks_error_bound"] = ks if ks is not None and math.isfinite(ks) else None
    out["drift.share_error_bound"] = max(share) if share else None
