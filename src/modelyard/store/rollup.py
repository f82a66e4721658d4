"""The pure arithmetic of rollups: bucket alignment, folding raw rows, coarsening, tier checks.

No I/O here: the SQLite and PostgreSQL stores read rows, call these functions and write the
resulting ``BucketSummary`` bytes, so both backends roll up identically and the math is tested
once without a database.

Buckets are aligned to the Unix epoch (a one-hour bucket starts on the hour in UTC), so buckets
of every width nest: when each tier's width is a multiple of the previous one, a fine bucket lies
inside exactly one coarse bucket and coarsening is a merge of summaries, never an average of
quantiles.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

from modelyard.errors import InvalidInput
from modelyard.store.base import RollupPolicy, Tier
from modelyard.store.summary import BucketSummary

__all__ = ["bucket_start", "coarsen", "fold", "validate_policy", "validate_tiers"]

BucketKey = tuple[str, int]


def _check_width(width_ms: object) -> int:
    if isinstance(width_ms, bool) or not isinstance(width_ms, int) or width_ms <= 0:
        raise InvalidInput(
            f"bucket width_ms={width_ms!r} must be a positive integer number of milliseconds, "
            "such as 60000 for one minute"
        )
    return width_ms


def bucket_start(ts_ms: int, width_ms: int) -> int:
    """Start of the ``width_ms`` bucket holding ``ts_ms``, aligned to the Unix epoch.

    Floor division, so times before 1970 land in the bucket below them too.

    >>> bucket_start(90_000, 60_000), bucket_start(-1, 60_000)
    (60000, -60000)
    """
    width = _check_width(width_ms)
    if isinstance(ts_ms, bool) or not isinstance(ts_ms, int):
        raise InvalidInput(f"timestamp {ts_ms!r} must be an integer number of epoch milliseconds")
    return ts_ms - ts_ms % width


def fold(
    rows: Iterable[tuple[str, int, Mapping[str, Any] | str | bytes]], width_ms: int
) -> dict[BucketKey, BucketSummary]:
    """Summarise raw ``(deployment_crn, start_ms, metrics)`` rows into buckets of ``width_ms``.

    ``metrics`` may be a dict or its JSON text (as the stores keep it), decoded with orjson.
    Returns ``{(deployment_crn, bucket_start): BucketSummary}``.
    """
    width = _check_width(width_ms)
    buckets: dict[BucketKey, BucketSummary] = {}
    for deployment_crn, start_ms, metrics in rows:
        key = (deployment_crn, bucket_start(start_ms, width))
        summary = buckets.get(key)
        if summary is None:
            summary = buckets[key] = BucketSummary()
        if isinstance(metrics, str | bytes):
            try:
                metrics = orjson.loads(metrics)
            except orjson.JSONDecodeError as exc:
                raise InvalidInput(
                    f"metrics of a {deployment_crn!r} record at {start_ms} are not valid JSON "
                    f"({exc}); expected a JSON object"
                ) from exc
        summary.add_metrics(metrics)  # non-dicts are rejected inside
    return buckets


def coarsen(
    buckets: Iterable[tuple[str, int, BucketSummary]], width_ms: int
) -> dict[BucketKey, BucketSummary]:
    """Merge finer ``(deployment_crn, start_ms, summary)`` buckets into ``width_ms`` buckets.

    The inputs are not modified (the first bucket of each group is copied). Correct when
    ``width_ms`` is a multiple of the finer width, which ``validate_tiers`` guarantees.
    """
    width = _check_width(width_ms)
    coarse: dict[BucketKey, BucketSummary] = {}
    for deployment_crn, start_ms, summary in buckets:
        key = (deployment_crn, bucket_start(start_ms, width))
        target = coarse.get(key)
        if target is None:
            coarse[key] = summary.copy()
        else:
            target.merge(summary)
    return coarse


def validate_tiers(tiers: Sequence[Tier]) -> tuple[Tier, ...]:
    """Check a tier list and return it as a tuple; InvalidInput naming the first problem.

    Rules: at least one tier; widths positive, each a multiple of the previous (so buckets nest);
    horizons positive and strictly increasing; only the last tier may keep buckets forever
    (``horizon_ms=None``).
    """
    checked = tuple(tiers)
    if not checked:
        raise InvalidInput("rollup tiers are empty; give at least one Tier(width_ms, horizon_ms)")
    previous: Tier | None = None
    for index, tier in enumerate(checked):
        where = f"tier {index} ({tier.width_ms} ms wide, horizon {tier.horizon_ms} ms)"
        if isinstance(tier.width_ms, bool) or not isinstance(tier.width_ms, int):
            raise InvalidInput(f"{where}: width_ms must be an integer number of milliseconds")
        if tier.width_ms <= 0:
            raise InvalidInput(f"{where}: width_ms must be positive, such as 60000 for a minute")
        if tier.horizon_ms is not None and (
            isinstance(tier.horizon_ms, bool)
            or not isinstance(tier.horizon_ms, int)
            or tier.horizon_ms <= 0
        ):
            raise InvalidInput(
                f"{where}: horizon_ms must be a positive integer number of milliseconds, "
                "or None (only for the last tier) to keep its buckets forever"
            )
        if previous is not None:
            if previous.horizon_ms is None:
                raise InvalidInput(
                    f"tier {index - 1} keeps buckets forever (horizon_ms=None) but tier {index} "
                    "follows it; only the last tier may have horizon_ms=None"
                )
            if tier.width_ms % previous.width_ms:
                raise InvalidInput(
                    f"{where}: width {tier.width_ms} ms is not a multiple of the previous tier's "
                    f"{previous.width_ms} ms; use a multiple such as "
                    f"{previous.width_ms * max(tier.width_ms // previous.width_ms, 2)} ms so "
                    "buckets nest"
                )
            if tier.horizon_ms is not None and tier.horizon_ms <= previous.horizon_ms:
                raise InvalidInput(
                    f"{where}: horizon {tier.horizon_ms} ms must be longer than the previous "
                    f"tier's {previous.horizon_ms} ms"
                )
        previous = tier
    return checked


def validate_policy(policy: RollupPolicy) -> RollupPolicy:
    """Check a rollup policy: a positive raw horizon and valid tiers (see ``validate_tiers``)."""
    raw = policy.raw_horizon_ms
    if isinstance(raw, bool) or not isinstance(raw, int) or raw <= 0:
        raise InvalidInput(
            f"raw_horizon_ms={raw!r} must be a positive integer number of milliseconds, "
            "such as 2592000000 for 30 days"
        )
    validate_tiers(policy.tiers)
    return policy
