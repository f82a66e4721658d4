"""``read_distribution``: quantiles and a histogram of one metric over any window.

Exact when the window holds raw records only; where it reaches rolled-up time the buckets'
sketches are merged (never averaged) and ``rank_error`` states the bound. Works on every backend:
the store's ``distribution`` for dev and embedded, ``GET /api/v1/metrics/distribution`` for
remote, so a notebook gets the same answer wherever the records live.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

from modelyard.errors import InvalidInput
from modelyard.store.base import Distribution
from modelyard.tracking import backends
from modelyard.tracking.read import build_query

__all__ = ["DEFAULT_QUANTILES", "MAX_BINS", "check_arguments", "read_distribution", "to_dict"]

DEFAULT_QUANTILES: tuple[float, ...] = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
MAX_BINS = 10_000  # a histogram is returned whole: keep it a size a caller can hold and chart


def check_arguments(key: object, quantiles: object, bins: object) -> tuple[str, list[float]]:
    """The key and the quantiles as floats; InvalidInput naming the bad value otherwise."""
    if not isinstance(key, str) or not key:
        raise InvalidInput(f"key must be a metric name (a non-empty string), got {key!r:.80}")
    if isinstance(quantiles, str | bytes) or not isinstance(quantiles, Sequence):
        raise InvalidInput(
            f"quantiles must be a sequence of ranks in [0, 1] such as (0.5, 0.9), "
            f"got {quantiles!r:.80}"
        )
    ranks: list[float] = []
    for q in quantiles:
        if isinstance(q, bool) or not isinstance(q, numbers.Real) or not 0.0 <= float(q) <= 1.0:
            raise InvalidInput(
                f"quantile {q!r:.40} is not a rank in [0, 1]; pass ranks such as 0.5 or 0.99"
            )
        ranks.append(float(q))
    if isinstance(bins, bool) or not isinstance(bins, int) or not 1 <= bins <= MAX_BINS:
        raise InvalidInput(f"bins must be an int from 1 to {MAX_BINS}, got {bins!r:.80}")
    return key, ranks


def to_dict(distribution: Distribution) -> dict[str, Any]:
    """The JSON-ready form: quantile ranks as float keys (the REST route sends them as strings)."""
    return {
        "key": distribution.key,
        "count": distribution.count,
        "exact": distribution.exact,
        "rank_error": distribution.rank_error,
        "quantiles": {float(q): _number(v) for q, v in distribution.quantiles.items()},
        "bin_edges": [float(e) for e in distribution.bin_edges],
        "bin_counts": [int(c) for c in distribution.bin_counts],
        "min": _number(distribution.min),
        "max": _number(distribution.max),
        "mean": _number(distribution.mean),
    }


def _number(value: float | None) -> float | None:
    """NaN (no values) becomes None, so the result is valid JSON everywhere."""
    if value is None or not math.isfinite(float(value)):
        return None
    return float(value)


def read_distribution(  # noqa: PLR0913 the public SDK call: the read_metrics window's keywords
    key: str,
    model_deployment_crn: str | None = None,
    start_timestamp_ms: int | None = None,
    end_timestamp_ms: int | None = None,
    model_crn: str | None = None,
    model_build_crn: str | None = None,
    quantiles: Sequence[float] = DEFAULT_QUANTILES,
    bins: int = 20,
    dev: bool = False,
) -> dict[str, Any]:
    """Quantiles and a histogram of metric ``key`` over the window, as a dict.

    Keys: ``key``, ``count`` (finite numeric values seen), ``exact`` (True when computed from raw
    records only), ``rank_error`` (0 when exact; else the merged sketch's normalised rank bound:
    a reported p50 is the true value at some rank within 0.5 +- rank_error), ``quantiles``
    (``{rank: value}``), ``bin_edges`` (``bins + 1`` floats) and ``bin_counts`` (``bins`` ints),
    both empty when nothing was found, and ``min``, ``max``, ``mean`` (None when nothing was
    found). The window and identifier arguments are ``read_metrics``'s; string, boolean and
    missing values are not counted.
    """
    name, ranks = check_arguments(key, quantiles, bins)
    query = build_query(
        model_deployment_crn, start_timestamp_ms, end_timestamp_ms, model_crn, model_build_crn
    )
    backend = backends.select(dev)
    backend.flush()  # this process's own predictions are counted too
    return to_dict(backend.distribution(query, name, ranks, bins))
