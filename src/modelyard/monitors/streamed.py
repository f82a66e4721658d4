"""A window too large for memory: its metrics from chunks, in bounded memory.

``window_or_stream`` reads a window with ``iter_window`` (scan batches of 20,000 rows, their
labels' arrival times per batch). While the window has at most ``MODELYARD_MONITOR_MEMORY_ROWS``
raw predictions (default 1,000,000) the chunks are joined and computed as before
(``run._compute``: same numbers). Past that, the chunks held so far and every later one go
through the accumulators of ``modelyard.analysis.streaming`` and are dropped: memory is the
reference, one chunk, and fixed grids, whatever the window's size.

What a streamed window writes (``window.streamed: true``, ``window.source`` stays ``raw``: every
raw record was read):

- ``drift``: PSI, KS, Jensen–Shannon (numeric) and the four categorical methods exactly as in
  memory; Wasserstein within ``drift.wasserstein_error_bound`` (effect units); KS p-values are
  Smirnov's asymptotic ones (exact ones only differ for sides of at most 10,000 values);
- ``prediction_drift`` the same way;
- ``classification``: every key, the point metrics exact or within ``roc_auc_error_bound`` /
  ``pr_auc_error_bound``, the interval within ``roc_auc_ci_error_bound`` (grid of 2^18 bins);
- ``estimated_performance``: exact, ``estimated_roc_auc`` within
  ``estimated_roc_auc_error_bound``;
- ``label_coverage``: coverage, count, mean and max delay exact; the delay quantiles from a KLL
  sketch (k = ``DELAY_K``), their rank within ``label_delay.rank_error`` of the quantile asked;
- ``regression``, ``segments`` and ``multivariate_drift`` need every row at once (bootstrap
  intervals, per-segment ranks, a classifier): ``<group>.reason`` says the window was streamed.

A streamed window that rollup has partly folded is computed from sketches as before, the raw
rows' categories counted on the way (``rolled`` keeps them).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from datasketches import kll_doubles_sketch

from modelyard import settings
from modelyard.analysis import DriftReference
from modelyard.analysis.streaming import StreamedClassification, StreamedDrift, StreamedEstimate
from modelyard.errors import InvalidInput
from modelyard.monitors.access import MonitorAccess
from modelyard.monitors.compute import _positive, _scores, clean_metrics
from modelyard.monitors.window import RolledUp, WindowData, concat_window, iter_window
from modelyard.specs.monitor import MonitorSpec

__all__ = ["DELAY_K", "STREAM_ONLY_IN_MEMORY", "memory_rows", "window_or_stream"]

DELAY_K = 1000
STREAM_ONLY_IN_MEMORY = ("regression", "segments", "multivariate_drift")
_DELAY_QUANTILES = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))


def memory_rows() -> int:
    """Raw predictions a window may hold in memory (``MODELYARD_MONITOR_MEMORY_ROWS``)."""
    return int(settings.get("monitor_memory_rows"))


class _Accumulators:
    """The streamed groups of one window: each fed every chunk, each reporting its keys."""

    def __init__(
        self,
        spec: MonitorSpec,
        drift_ref: DriftReference | None,
        ref_predictions: pd.Series[Any] | None,
    ) -> None:
        self.spec, self.n = spec, 0
        wanted = set(spec.metrics)
        self.reasons: dict[str, str] = {}
        self.drift = StreamedDrift(drift_ref) if "drift" in wanted and drift_ref else None
        self.prediction: StreamedDrift | None = None
        self.scored = 0
        if "prediction_drift" in wanted and ref_predictions is not None:
            try:
                frame = pd.DataFrame({"prediction": ref_predictions.dropna()})
                self.prediction = StreamedDrift(DriftReference(frame, workers=1))
            except InvalidInput as exc:
                self.reasons["prediction_drift.reason"] = exc.message
        labelled = spec.label is not None
        self.classes = StreamedClassification() if labelled and "classification" in wanted else None
        self.estimate = StreamedEstimate() if "estimated_performance" in wanted else None
        self.coverage = labelled and "label_coverage" in wanted
        self.delays = kll_doubles_sketch(DELAY_K)
        self.labelled, self.delay_sum, self.delay_max = 0, 0.0, -math.inf

    def update(self, chunk: WindowData) -> None:
        spec, frame = self.spec, chunk.frame
        self.n += chunk.n
        scores = _scores(frame, spec.prediction)
        if self.coverage:
            self._coverage(chunk)
        for name in ("drift", "prediction", "classes", "estimate"):
            acc = getattr(self, name)
            if acc is None:
                continue
            try:
                if name == "drift":
                    acc.update(frame[list(spec.features)])
                elif name == "prediction":
                    present = scores[~np.isnan(scores)]
                    self.scored += present.shape[0]
                    acc.update(pd.DataFrame({"prediction": present}))
                elif name == "classes":
                    assert spec.label is not None
                    acc.update(_positive(frame[spec.label], spec.positive_label), scores)
                else:
                    acc.update(scores)
            except InvalidInput as exc:
                group = {"classes": "classification", "estimate": "estimated", "drift": "drift"}
                self.reasons[f"{group.get(name, 'prediction_drift')}.reason"] = exc.message
                setattr(self, name, None)

    def _coverage(self, chunk: WindowData) -> None:
        assert self.spec.label is not None and chunk.label_ms is not None
        has_value = chunk.frame[self.spec.label].notna().to_numpy()
        at = np.where(has_value & np.isnan(chunk.label_ms), chunk.prediction_ms, chunk.label_ms)
        known = ~np.isnan(at)
        delays = at[known] - chunk.prediction_ms[known]
        if delays.size and delays.min() < 0:
            worst = int(np.argmin(delays))
            raise InvalidInput(
                f"a label arrived {-delays[worst]:.0f} ms before its prediction "
                f"(prediction at {chunk.prediction_ms[known][worst]:.0f}); label times must be "
                "at or after prediction times"
            )
        if delays.size:
            self.delays.update(np.ascontiguousarray(delays, dtype=np.float64))
            self.labelled += int(delays.size)
            self.delay_sum += float(delays.sum())
            self.delay_max = max(self.delay_max, float(delays.max()))

    def metrics(self) -> dict[str, Any]:
        spec = self.spec
        out: dict[str, Any] = {"n": self.n, "window.streamed": True}
        out.update(self.reasons)
        if self.coverage:
            out["label_coverage"] = self.labelled / self.n
            out["labelled"] = self.labelled
            for name, q in _DELAY_QUANTILES:
                value = self.delays.get_quantile(q) if self.labelled else math.nan
                out[f"label_delay_{name}_ms"] = value
            out["label_delay_mean_ms"] = self.delay_sum / self.labelled if self.labelled else None
            out["label_delay_max_ms"] = self.delay_max if self.labelled else None
            out["label_delay.rank_error"] = self.delays.normalized_rank_error(False)
        if self.classes is not None:
            _classification(out, self.classes, self.n)
        if self.estimate is not None:
            try:
                est = self.estimate.result()
                for key in ("roc_auc", "accuracy", "precision", "recall", "f1"):
                    out[f"estimated_{key}"] = est[f"expected_{key}"]
                out["estimated_roc_auc_error_bound"] = est["expected_roc_auc_error_bound"]
            except InvalidInput as exc:
                out["estimated.reason"] = exc.message
        if self.drift is not None:
            _drift(out, self.drift.report(thresholds=spec.thresholds or None))
        if self.prediction is not None and self.scored:
            report = self.prediction.report(thresholds=spec.thresholds or None)
            for row in report.itertuples(index=False):
                out[f"prediction_drift.{row.method}"] = row.effect
            out["prediction_drift.flagged"] = int(report["flagged"].astype(bool).any())
        for group in STREAM_ONLY_IN_MEMORY:
            if group in spec.metrics:
                out[f"{group}.reason"] = (
                    f"the window holds {self.n} predictions, more than the {memory_rows()} "
                    f"kept in memory (MODELYARD_MONITOR_MEMORY_ROWS), so it was streamed; {group} "
                    "needs every row at once and is not computed from a stream"
                )
        return clean_metrics(out)


def _classification(out: dict[str, Any], acc: StreamedClassification, n: int) -> None:
    from modelyard.specs.monitor_outputs import CLASSIFICATION_OUTPUTS

    out["classification.labelled"] = acc.n
    if acc.n == 0:
        out["classification.reason"] = f"none of the {n} predictions is labelled yet"
        return
    try:
        got = acc.result()
    except InvalidInput as exc:
        out["classification.reason"] = exc.message
        return
    for key in (*CLASSIFICATION_OUTPUTS, "roc_auc_error_bound", "roc_auc_ci_error_bound"):
        if key in got:
            out[key] = got[key]
    out["pr_auc_error_bound"] = got.get("pr_auc_error_bound")
    for key, why in got["reasons"].items():
        out[f"{key}.reason"] = why


def _drift(out: dict[str, Any], report: pd.DataFrame) -> None:
    for row in report.itertuples(index=False):
        out[f"{row.method}.{row.feature}"] = row.effect
    flagged = sorted(set(report.loc[report["flagged"].astype(bool), "feature"]))
    out["drift.flagged"] = len(flagged)
    out["drift.flagged_features"] = flagged
    bounds = report.loc[report["method"] == "wasserstein", "error_bound"]
    out["drift.wasserstein_error_bound"] = float(bounds.max()) if len(bounds) else None


def window_or_stream(
    spec: MonitorSpec,
    access: MonitorAccess,
    deployment: str,
    window: tuple[int, int],
    columns: Sequence[str],
    drift_ref: DriftReference | None,
    ref_predictions: pd.Series[Any] | None,
    in_memory: Callable[[WindowData], dict[str, Any]],
) -> dict[str, Any]:
    """The window's metrics: ``in_memory`` of the whole window while it has at most
    ``memory_rows()`` raw predictions, else streamed (see the module docstring)."""
    limit, rolled = memory_rows(), RolledUp()
    chunks = iter_window(access, deployment, window, columns, spec.label, rolled)
    held: list[WindowData] = []
    count = 0
    for chunk in chunks:
        held.append(chunk)
        count += chunk.n
        if count > limit:
            break
    else:
        return in_memory(concat_window(held, columns, spec.label, rolled))
    acc = _Accumulators(spec, drift_ref, ref_predictions)
    categorical = [c for c in spec.features if c in spec.categorical]
    raw_categories: dict[str, dict[str, float]] = {c: {} for c in categorical}
    for chunk in _chain(held, chunks):
        acc.update(chunk)
        for column in categorical:
            counts = raw_categories[column]
            for key, value in _category_counts(chunk.frame[column]).items():
                counts[key] = counts.get(key, 0.0) + value
    if not rolled.buckets:
        metrics = acc.metrics()
        metrics["window.source"] = "raw"
        return metrics
    # Partly rolled up: from sketches, as in memory; the raw rows count as folded ones here.
    for column, counts in raw_categories.items():
        into = rolled.categories.setdefault(column, {})
        for key, value in counts.items():
            into[key] = into.get(key, 0.0) + value
    rolled.records += acc.n
    empty = concat_window([], columns, spec.label, rolled)
    return in_memory(empty)


def _chain(held: list[WindowData], rest: Any) -> Any:
    while held:
        yield held.pop(0)  # dropped as it is used: memory stays one chunk past the limit
    yield from rest


def _category_counts(values: pd.Series[Any]) -> dict[str, float]:
    from modelyard.monitors.sketched import _category_counts as counts

    return counts(values)
