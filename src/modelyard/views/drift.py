"""Drift as the monitors recorded it: a features x windows matrix, and one cell's distributions.

Shared by ``GET /api/v1/drift``, ``GET /api/v1/drift/distributions`` and the dashboard's drift
page. The matrix comes from the monitors' aggregate records alone (``<method>.<feature>`` keys,
``drift.flagged_features``), one record per window, so its cost does not grow with predictions.
A cell's current distribution is the store's ``distribution()`` over that window (exact from raw
records, from merged sketches once rolled up); the reference side is the stored sample, binned
by numpy; both come with one x range so they are drawn on the same scale.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from modelyard.errors import InvalidInput
from modelyard.store.base import Query, RecordKind
from modelyard.web.services import Services

__all__ = ["METHODS", "drift_distributions", "drift_groups", "drift_matrix"]

# The drift effects the monitors write per feature (docs/monitors.md), numeric then categorical.
METHODS = ("psi", "ks", "wasserstein", "jensen_shannon", "chi2", "unseen_share")
_AGGREGATES = frozenset({RecordKind.AGGREGATE})
CATEGORY_SAMPLE = 20_000  # raw records read for a window's categories (the rest is not scanned)


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def drift_matrix(
    services: Services, deployment_crn: str, start_ms: int, end_ms: int, method: str = "psi"
) -> dict[str, Any]:
    """``values[f][w]``: ``method``'s effect for feature ``f`` in window ``w`` (None where the
    monitor wrote none); ``flagged[f][w]``: whether the monitor flagged it in that window."""
    if method not in METHODS:
        raise InvalidInput(f"method={method!r} is not accepted; accepted: {', '.join(METHODS)}")
    services.store.resolve(deployment_crn)
    query = Query(
        deployment_crn=deployment_crn, start_ms=start_ms, end_ms=end_ms, kinds=_AGGREGATES
    )
    prefix = method + "."
    windows = []
    for record in services.store.read(query)[0]:
        effects = {
            k.removeprefix(prefix): _finite(v)
            for k, v in record.metrics.items()
            if k.startswith(prefix)
        }
        if effects:
            flagged = record.metrics.get("drift.flagged_features") or []
            windows.append((record.start_ms, record.end_ms, effects, set(flagged)))
    features = sorted({f for _, _, effects, _ in windows for f in effects})
    return {
        "deployment_crn": deployment_crn,
        "method": method,
        "methods": list(METHODS),
        "features": features,
        "windows": [{"start_ms": s, "end_ms": e} for s, e, _, _ in windows],
        "values": [[effects.get(f) for _, _, effects, _ in windows] for f in features],
        "flagged": [[f in flags for _, _, _, flags in windows] for f in features],
    }


def drift_distributions(
    services: Services,
    deployment_crn: str,
    feature: str,
    start_ms: int,
    end_ms: int,
    reference: str = "training",
    bins: int = 20,
) -> dict[str, Any]:
    """The reference sample's and the window's histograms of ``feature``, each on its own bin
    edges (the window's come from the store), as shares, with ``x_range`` covering both so the
    dashboard draws them on one scale. Categorical features: category shares on both sides (the
    window's from rollup buckets and at most ``CATEGORY_SAMPLE`` raw records; ``sampled`` says
    when the window held more)."""
    from modelyard.monitors import load_reference  # what the monitors compare against

    if not feature or len(feature) > 200:
        raise InvalidInput(f"feature={feature!r} is not accepted; give a metric key")
    frame = load_reference(deployment_crn, reference, store=services.store)
    if feature not in frame.columns:
        raise InvalidInput(
            f"feature={feature!r} is not a column of reference {reference!r}; its columns: "
            f"{', '.join(map(str, frame.columns))}"
        )
    column = frame[feature]
    answer: dict[str, Any] = {
        "deployment_crn": deployment_crn,
        "feature": feature,
        "reference_name": reference,
        "start_ms": start_ms,
        "end_ms": end_ms,
    }
    numeric = column.dtype.kind in "if"
    if not numeric:
        shares = column.astype(str).value_counts(normalize=True).sort_index()
        counts, sampled = _window_categories(services, deployment_crn, feature, start_ms, end_ms)
        total = max(1, sum(counts.values()))
        answer.update(
            kind="categorical",
            reference={"categories": list(shares.index), "shares": [float(v) for v in shares]},
            current={
                "count": sum(counts.values()),
                "sampled": sampled,
                "categories": sorted(counts),
                "shares": [counts[c] / total for c in sorted(counts)],
            },
        )
        return answer
    ref = column.to_numpy(dtype=float)
    ref = ref[np.isfinite(ref)]
    # end_ms is exclusive for a monitor window; the store's window is inclusive.
    query = Query(
        deployment_crn=deployment_crn, start_ms=start_ms, end_ms=max(start_ms, end_ms - 1)
    )
    current = services.store.distribution(query, feature, bins=bins)
    ref_edges = np.histogram_bin_edges(ref, bins=bins) if ref.size else np.array([0.0, 1.0])
    ref_counts, _ = np.histogram(ref, bins=ref_edges)
    cur_edges = [float(e) for e in current.bin_edges] if current.count else []
    cur_total = max(1, sum(current.bin_counts))
    lows = [float(ref_edges[0]), *cur_edges[:1]]
    highs = [float(ref_edges[-1]), *cur_edges[-1:]]
    answer.update(
        kind="numeric",
        x_range=[min(lows), max(highs)],
        reference={
            "count": int(ref.size),
            "bin_edges": [float(e) for e in ref_edges],
            "shares": [float(c) / max(1, ref.size) for c in ref_counts],
        },
        current={
            "count": current.count,
            "exact": current.exact,
            "rank_error": current.rank_error,
            "bin_edges": cur_edges,
            "shares": [c / cur_total for c in current.bin_counts] if current.count else [],
        },
    )
    return answer


def _window_categories(
    services: Services, deployment_crn: str, feature: str, start_ms: int, end_ms: int
) -> tuple[dict[str, int], bool]:
    """Category counts of a window: summed from rollup buckets' ``categories`` where rolled up,
    from at most ``CATEGORY_SAMPLE`` raw records otherwise (``sampled`` True when the window holds
    more; a full count would be a scan of the window)."""
    counts: dict[str, int] = {}
    last = max(start_ms, end_ms - 1)
    rollups = Query(
        deployment_crn=deployment_crn,
        start_ms=start_ms,
        end_ms=last,
        kinds=frozenset({RecordKind.ROLLUP}),
    )
    for record in services.store.read(rollups)[0]:
        summary = record.metrics.get(feature)
        if isinstance(summary, dict) and isinstance(summary.get("categories"), dict):
            for category, n in summary["categories"].items():
                counts[str(category)] = counts.get(str(category), 0) + int(n)
    raw = Query(
        deployment_crn=deployment_crn,
        start_ms=start_ms,
        end_ms=last,
        kinds=frozenset({RecordKind.PREDICTION}),
        limit=CATEGORY_SAMPLE,
    )
    records, more = services.store.read(raw)
    for record in records:
        value = record.metrics.get(feature)
        if isinstance(value, str | bool):
            key = str(value)  # as the reference's column reads (True -> "True")
            counts[key] = counts.get(key, 0) + 1
    return counts, more is not None


def drift_groups(
    services: Services, deployment_crn: str, start_ms: int, end_ms: int
) -> dict[str, Any]:
    """Per monitor window, the ``multivariate_drift`` and ``segments`` groups' values (domain
    AUC with its interval and driving features; the largest gap per metric and its segments),
    from the monitors' aggregate records like the matrix; a rolled-up window shows its reason.
    ``gap_metrics``: the metrics with a gap in any window, in order, for the table's columns."""
    from modelyard.monitors.extra_groups import window_summary

    services.store.resolve(deployment_crn)
    query = Query(
        deployment_crn=deployment_crn, start_ms=start_ms, end_ms=end_ms, kinds=_AGGREGATES
    )
    windows = []
    for record in services.store.read(query)[0]:
        summary = window_summary(record.metrics)
        if summary is not None:
            windows.append({"start_ms": record.start_ms, "end_ms": record.end_ms, **summary})
    gap_metrics = list(dict.fromkeys(m for w in windows for m in w["gaps"]))
    return {"deployment_crn": deployment_crn, "windows": windows, "gap_metrics": gap_metrics}
