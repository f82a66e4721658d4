"""One metric of a deployment over a time range, bounded whatever the range or the traffic.

A metric lives in up to three places: aggregate records (one exact value per monitor window),
rollup buckets (count, mean and quantiles per bucket; past the raw horizon) and raw prediction
records. A chart needs about ``POINTS`` points, so each place is read with a bound:

- Aggregates: every record of the range (one per monitor window: few).
- Rollups: skipped when the newest and oldest bucket of the range do not carry the key (an
  aggregate-only metric such as ``roc_auc``). Otherwise one read per tier (``Query.tier_ms``):
  a tier whose buckets over the range fit in ``POINTS`` is read whole; a finer one (the minute
  tier over a 60-day range) is sampled, the first bucket of each of ``SLICES`` equal slices (one
  index seek each), so decoding cost stays at a few hundred buckets, not tens of thousands.
- Raw records: the first ``raw_limit`` when the range holds no more; otherwise an even sample,
  the first ``raw_limit // SLICES`` records of each slice, so a busy day is drawn across the
  whole day, not only its first hour.

``resolution`` says what was drawn (bucket widths, sampled or whole).
"""

from __future__ import annotations

import itertools
from typing import Any

from modelyard.errors import InvalidInput
from modelyard.store.base import DEFAULT_TIERS, MetricsStore, Query, Record, RecordKind
from modelyard.web.services import Services

__all__ = ["POINTS", "RAW_LIMIT", "SLICES", "metric_series"]

POINTS = 1_500  # a chart's target: a tier with more buckets than this over the range is sampled
SLICES = 250  # sampled reads: one slice per this fraction of the range
RAW_LIMIT = 5_000  # raw points one answer may hold; beyond, they are sampled evenly
_AGGREGATES = frozenset({RecordKind.AGGREGATE})
_ROLLUPS = frozenset({RecordKind.ROLLUP})
_RAW = frozenset({RecordKind.PREDICTION})
_TIERS = tuple(sorted({t.width_ms for t in DEFAULT_TIERS}))


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if number == number and abs(number) != float("inf") else None


def _query(
    deployment_crn: str,
    start_ms: int,
    end_ms: int,
    kinds: frozenset[RecordKind],
    limit: int | None = None,
    tier_ms: int | None = None,
) -> Query:
    return Query(
        deployment_crn=deployment_crn,
        start_ms=start_ms,
        end_ms=end_ms,
        kinds=kinds,
        limit=limit,
        tier_ms=tier_ms,
    )


def _slices(start_ms: int, end_ms: int, count: int) -> list[tuple[int, int]]:
    """``count`` adjacent closed windows covering [start_ms, end_ms] (no record in two)."""
    step = max(1, (end_ms - start_ms + 1) // count)
    edges = [*range(start_ms, end_ms + 1, step), end_ms + 1]
    return [(lo, hi - 1) for lo, hi in itertools.pairwise(edges) if lo <= hi - 1]


def _sampled(
    store: MetricsStore,
    deployment_crn: str,
    kinds: frozenset[RecordKind],
    tier_ms: int | None,
    start_ms: int,
    end_ms: int,
    per_slice: int,
) -> list[Record]:
    """The first ``per_slice`` records of each of ``SLICES`` slices: an even sample, each slice
    one bounded index range read."""
    found: list[Record] = []
    for lo, hi in _slices(start_ms, end_ms, SLICES):
        query = _query(deployment_crn, lo, hi, kinds, per_slice, tier_ms)
        found.extend(store.read(query)[0])
    return found


def _width(ms: int) -> str:
    """A bucket or slice width for people: "1 h", "14.4 s"."""
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("min", 60_000), ("s", 1000)):
        if ms >= size:
            return f"{ms / size:.1f}".removesuffix(".0") + f" {unit}"
    return f"{ms} ms"


def _carries(store: MetricsStore, base: Query, key: str) -> bool:
    """Whether the range's rollup buckets hold ``key``: its newest or oldest bucket does (all
    numeric keys of a deployment's predictions are summarized in each bucket)."""
    newest = store.recent(base, 1)
    oldest = store.read(
        _query(base.deployment_crn or "", base.start_ms, base.end_ms or 0, _ROLLUPS, 1)
    )
    return any(key in r.metrics for r in newest + oldest[0])


def _aggregates(
    store: MetricsStore, deployment_crn: str, key: str, start_ms: int, end_ms: int
) -> dict[str, list[Any]]:
    aggregates: dict[str, list[Any]] = {"t": [], "end": [], "value": []}
    for record in store.read(_query(deployment_crn, start_ms, end_ms, _AGGREGATES))[0]:
        value = _number(record.metrics.get(key))
        if value is not None:
            aggregates["t"].append(record.start_ms)
            aggregates["end"].append(record.end_ms)
            aggregates["value"].append(value)
    return aggregates


def _rollups(
    store: MetricsStore, deployment_crn: str, key: str, start_ms: int, end_ms: int
) -> tuple[dict[str, list[Any]], list[str]]:
    """The rollup summaries of ``key``, one tier at a time, and what was drawn of each tier."""
    span = end_ms - start_ms + 1
    rollups: dict[str, list[Any]] = {
        n: [] for n in ("t", "tier_ms", "count", "mean", "p05", "p50", "p95")
    }
    drawn: list[str] = []
    if not _carries(store, _query(deployment_crn, start_ms, end_ms, _ROLLUPS), key):
        return rollups, drawn
    for tier in _TIERS:
        if span // tier <= POINTS:
            records = store.read(_query(deployment_crn, start_ms, end_ms, _ROLLUPS, None, tier))[0]
            how = ""
        elif store.recent(_query(deployment_crn, start_ms, end_ms, _ROLLUPS, None, tier), 1):
            records = _sampled(store, deployment_crn, _ROLLUPS, tier, start_ms, end_ms, 1)
            how = f" (sampled: one in each {_width(max(tier, span // SLICES))})"
        else:
            continue
        kept = 0
        for record in sorted(records, key=lambda r: r.start_ms):
            summary = record.metrics.get(key)
            if not isinstance(summary, dict) or _number(summary.get("mean")) is None:
                continue
            kept += 1
            rollups["t"].append(record.start_ms)
            rollups["tier_ms"].append(record.tier_ms)
            rollups["count"].append(summary.get("count"))
            for name in ("mean", "p05", "p50", "p95"):
                rollups[name].append(_number(summary.get(name)))
        if kept:
            drawn.append(_width(tier) + how)
    return rollups, drawn


def _raw(
    store: MetricsStore, deployment_crn: str, key: str, start_ms: int, end_ms: int, limit: int
) -> dict[str, Any]:
    """Raw values of ``key``: every one up to ``limit``, else an even sample across the range."""
    raw: dict[str, Any] = {"t": [], "value": [], "uuid": []}
    records, token = store.read(_query(deployment_crn, start_ms, end_ms, _RAW, limit))
    sampled = token is not None
    if sampled:  # more than limit: an even sample across the range instead of its start
        per_slice = max(1, limit // SLICES)
        records = _sampled(store, deployment_crn, _RAW, None, start_ms, end_ms, per_slice)
    for record in records:
        value = _number(record.metrics.get(key))
        if value is not None:
            raw["t"].append(record.start_ms)
            raw["value"].append(value)
            raw["uuid"].append(record.uuid)
    raw["truncated"] = sampled
    raw["sampled"] = sampled
    return raw


def metric_series(
    services: Services,
    deployment_crn: str,
    key: str,
    start_ms: int,
    end_ms: int,
    raw_limit: int = RAW_LIMIT,
) -> dict[str, Any]:
    """``GET /api/v1/series``: aggregates, rollups and raw values of ``key``, each bounded (see
    the module's docstring); ``resolution`` names what was drawn."""
    if not key or len(key) > 200:
        raise InvalidInput(f"key={key!r} is not accepted; give a metric key of 1 to 200 characters")
    store = services.store
    store.resolve(deployment_crn)  # NotFound naming the CRN
    span = end_ms - start_ms + 1
    aggregates = _aggregates(store, deployment_crn, key, start_ms, end_ms)
    rollups, drawn = _rollups(store, deployment_crn, key, start_ms, end_ms)
    raw = _raw(store, deployment_crn, key, start_ms, end_ms, raw_limit)
    parts: list[str] = []
    if raw["t"]:
        if raw["sampled"]:
            slice_ms = max(1, span // SLICES)
            parts.append(
                f"raw, sampled: the first {max(1, raw_limit // SLICES)} predictions of each "
                f"{_width(slice_ms)} (narrow the range for every prediction)"
            )
        else:
            parts.append("raw (one point per prediction)")
    if drawn:
        parts.append("rollups of " + ", ".join(drawn))
    if aggregates["t"]:
        parts.append("aggregates (one point per window)")
    return {
        "deployment_crn": deployment_crn,
        "key": key,
        "start_ms": start_ms,
        "end_ms": end_ms,
        "resolution": "; ".join(parts) or "no values in this range",
        "aggregate": aggregates,
        "rollup": rollups,
        "raw": raw,
    }
