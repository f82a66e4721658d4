"""Distributions of one metric: exact from raw values, or from merged bucket sketches.

``SQLStore.distribution`` reads the window's raw numbers and its rollup buckets' summaries; this
module checks the request and turns what was read into a ``Distribution``. Exact figures come
from raw rows when the window holds no buckets; once part of it is rolled up, the raw values join
the buckets' merged sketches and the result carries the sketch's rank error.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import orjson

from modelyard.errors import InvalidInput
from modelyard.store.base import Distribution, Query, RecordKind
from modelyard.store.query import Window
from modelyard.store.summary import BucketSummary, NumericSummary

__all__ = ["check_request", "numbers_in", "one_kind", "summarise"]


def check_request(key: str, quantiles: Sequence[float], bins: int) -> list[float]:
    """The quantile ranks as floats; InvalidInput naming a bad key, rank or bin count."""
    if not isinstance(key, str) or not key:
        raise InvalidInput(f"key={key!r} must be a metric name")
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise InvalidInput(f"bins={bins!r} must be a positive integer")
    qs = [float(q) for q in quantiles]
    bad = [q for q in qs if not 0.0 <= q <= 1.0]
    if bad:
        raise InvalidInput(f"quantiles {bad!r} are outside [0, 1]; pass ranks such as 0.5")
    return qs


def one_kind(query: Query, window: Window, kind: RecordKind) -> Query:
    """``query`` over the checked ``window``, for records of ``kind`` only."""
    return Query(
        model_crn=query.model_crn,
        build_crn=query.build_crn,
        deployment_crn=query.deployment_crn,
        start_ms=window.start_ms,
        end_ms=window.end_ms,
        kinds=frozenset({kind}),
    )


def numbers_in(texts: Iterable[str], key: str) -> list[float]:
    """Finite numbers under ``key`` in metrics JSON texts: booleans, strings, nulls and missing
    keys are not numbers (the rules the databases' JSON extraction follows too)."""
    values: list[float] = []
    for text in texts:
        value = orjson.loads(text).get(key)
        if type(value) in (int, float) and math.isfinite(value):
            values.append(float(value))
    return values


def summarise(
    key: str, values: list[float], blobs: list[bytes], qs: list[float], bins: int
) -> Distribution:
    """Exact from ``values`` when there are no bucket ``blobs``; else merged sketches."""
    if not blobs:
        return _exact(key, np.asarray(values, dtype=np.float64), qs, bins)
    merged = NumericSummary()
    if values:
        merged.update_many(np.asarray(values, dtype=np.float64))
    for blob in blobs:
        numeric = BucketSummary.from_bytes(blob).numeric.get(key)
        if numeric is not None:
            merged.merge(numeric)
    if merged.count == 0:
        return _empty(key, qs, exact=False)
    edges = np.histogram_bin_edges(np.array([merged.min, merged.max]), bins=bins)
    return Distribution(
        key=key,
        count=merged.count,
        exact=False,
        rank_error=merged.rank_error,
        quantiles=dict(zip(qs, merged.quantiles(qs), strict=True)),
        bin_edges=[float(e) for e in edges],
        bin_counts=merged.histogram(list(edges)),
        min=merged.min,
        max=merged.max,
        mean=merged.mean,
    )


def _empty(key: str, qs: list[float], *, exact: bool) -> Distribution:
    return Distribution(
        key=key,
        count=0,
        exact=exact,
        rank_error=0.0,
        quantiles={q: math.nan for q in qs},
        bin_edges=[],
        bin_counts=[],
        min=None,
        max=None,
        mean=None,
    )


def _exact(key: str, values: np.ndarray[Any, Any], qs: list[float], bins: int) -> Distribution:
    """Exact figures from raw values (quantiles by the inverse CDF, as the sketches define them)."""
    if values.size == 0:
        return _empty(key, qs, exact=True)
    counts, edges = np.histogram(values, bins=bins)
    return Distribution(
        key=key,
        count=int(values.size),
        exact=True,
        rank_error=0.0,
        quantiles={
            q: float(v)
            for q, v in zip(qs, np.quantile(values, qs, method="inverted_cdf"), strict=True)
        },
        bin_edges=[float(e) for e in edges],
        bin_counts=[int(c) for c in counts],
        min=float(values.min()),
        max=float(values.max()),
        mean=float(values.mean()),
    )
