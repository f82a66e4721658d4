"""Rollup buckets in SQL: folding raw rows, coarsening tiers, late values, distributions.

The arithmetic (``fold``, ``coarsen``, ``BucketSummary``) lives in ``rollup`` and ``summary``;
this module moves rows and bucket bytes in and out of the database around it, for every SQL
backend alike.

Invariants that make rollup safe to interrupt and to repeat:

- each chunk is one transaction that writes or merges its buckets *and* deletes the rows or finer
  buckets they replace, so a crash leaves either the sources or the bucket, never both or neither;
- cutoffs align to the target width, so only whole buckets move: a second run with the same
  ``now_ms`` finds nothing to do;
- a summary always goes into the coarsest existing bucket that covers its start (buckets are
  aligned to the epoch, so that is an exact key lookup per tier), else into a new bucket of its
  own tier: a deployment's buckets do not overlap, and a late raw row or a late delayed value
  lands in exactly one bucket.

A rolled-up prediction is found through ``prediction_uuids`` (uuid -> deployment, start_ms),
written once at ingest: its bucket is the one covering that start, whatever tier it has reached.

The gateway's technical aggregates (``source = "tech"``) are rolled up too, under the same rules:
older than a day they are merged into hourly records, older than 30 days into daily ones
(``techseries.TECH_TIERS``; ``techseries.merge`` says how each key combines). A chunk merges its
records into the target record of their hour or day (creating or replacing it) and deletes them
in one transaction. Every other aggregate is left alone.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from modelyard import settings
from modelyard.errors import InvalidInput, NotFound
from modelyard.store import techseries
from modelyard.store.base import Distribution, Query, RecordKind, RollupPolicy, RollupReport
from modelyard.store.query import check_window
from modelyard.store.rollup import bucket_start, coarsen, fold, validate_policy
from modelyard.store.summary import BucketSummary, NumericSummary

if TYPE_CHECKING:
    from modelyard.store.sqlbase import Cursor, SQLStore

__all__ = ["add_to_bucket", "distribution", "rollup"]

RAW_CHUNK = 20_000  # raw rows folded per transaction
BUCKET_CHUNK = 500  # buckets coarsened per transaction
TECH_CHUNK = 1_000  # technical aggregates merged per transaction (a day of minutes is 1,440)


def _merged(metrics: str, delayed: str | None) -> dict[str, Any]:
    out: dict[str, Any] = orjson.loads(metrics)
    if delayed is not None:
        out.update(orjson.loads(delayed))
    return out


# -- buckets ------------------------------------------------------------------------------------
def _tiers(store: SQLStore, cur: Cursor, dep_id: int) -> list[int]:
    """Bucket widths a deployment has, coarsest first."""
    rows = store._exec(
        cur,
        "SELECT DISTINCT tier_ms FROM rollup_buckets WHERE deployment_id = ?",
        (dep_id,),
    ).fetchall()
    return sorted((int(r[0]) for r in rows), reverse=True)


def _covering(
    store: SQLStore, cur: Cursor, dep_id: int, ts_ms: int, tiers: Sequence[int]
) -> tuple[int, bytes] | None:
    """(id, summary) of the coarsest bucket among ``tiers`` holding ``ts_ms``, if any."""
    for tier_ms in tiers:
        row = store._exec(
            cur,
            "SELECT id, summary FROM rollup_buckets "
            "WHERE deployment_id = ? AND tier_ms = ? AND bucket_start_ms = ?",
            (dep_id, tier_ms, bucket_start(ts_ms, tier_ms)),
        ).fetchone()
        if row is not None:
            return int(row[0]), bytes(row[1])
    return None


def _put(
    store: SQLStore,
    cur: Cursor,
    dep_id: int,
    tier_ms: int,
    start_ms: int,
    summary: BucketSummary,
    tiers: list[int],
) -> bool:
    """Merge ``summary`` into the coarsest bucket of at least ``tier_ms`` covering ``start_ms``,
    or store it as a new bucket; True when it was merged. ``tiers`` learns a new width."""
    found = _covering(store, cur, dep_id, start_ms, [t for t in tiers if t >= tier_ms])
    if found is None:
        store._exec(
            cur,
            "INSERT INTO rollup_buckets "
            "(deployment_id, tier_ms, bucket_start_ms, records, summary) VALUES (?, ?, ?, ?, ?)",
            (dep_id, tier_ms, start_ms, summary.records, summary.to_bytes()),
        )
        if tier_ms not in tiers:
            tiers.append(tier_ms)
            tiers.sort(reverse=True)
        return False
    bucket_id, blob = found
    existing = BucketSummary.from_bytes(blob)
    existing.merge(summary)
    store._exec(
        cur,
        "UPDATE rollup_buckets SET records = ?, summary = ? WHERE id = ?",
        (existing.records, existing.to_bytes(), bucket_id),
    )
    return True


def add_to_bucket(
    store: SQLStore, cur: Cursor, dep_id: int, start_ms: int, uuid: str, metrics: dict[str, Any]
) -> None:
    """Add a rolled-up prediction's delayed values to the bucket now holding it."""
    store._lock_buckets(cur)
    found = _covering(store, cur, dep_id, start_ms, _tiers(store, cur, dep_id))
    if found is None:
        raise NotFound(
            f"prediction {uuid!r} was rolled up, but no bucket covers its time any more "
            "(removed by retention); its delayed values cannot be recorded",
            uuid=uuid,
        )
    bucket_id, blob = found
    summary = BucketSummary.from_bytes(blob)
    records = summary.records
    summary.add_metrics(metrics)  # the values join the bucket; the record count does not
    summary.records = records
    store._exec(
        cur, "UPDATE rollup_buckets SET summary = ? WHERE id = ?", (summary.to_bytes(), bucket_id)
    )


# -- rollup -------------------------------------------------------------------------------------
def rollup(store: SQLStore, policy: RollupPolicy | None, now_ms: int | None) -> RollupReport:
    if policy is None:
        policy = RollupPolicy(raw_horizon_ms=settings.get("raw_horizon"))
    validate_policy(policy)
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if isinstance(now, bool) or not isinstance(now, int):
        raise InvalidInput(f"now_ms={now_ms!r} must be integer epoch milliseconds")
    report = RollupReport()
    tiers = policy.tiers
    with store._reading() as cur:
        store._load_identities(cur)
    deployments = sorted(store._by_id)
    raw_cutoff = bucket_start(now - policy.raw_horizon_ms, tiers[0].width_ms)
    plan = _plan(policy, now)
    for dep_id in deployments:
        step = partial(_fold_chunk, store, dep_id=dep_id, cutoff=raw_cutoff, plan=plan)
        while True:
            rolled, written, merged = store._write(step)
            report.raw_rolled += rolled
            report.buckets_written += written
            report.buckets_merged += merged
            if rolled < RAW_CHUNK:
                break
    for fine, coarse in itertools.pairwise(tiers):
        if fine.horizon_ms is None:
            break
        cutoff = bucket_start(now - fine.horizon_ms, coarse.width_ms)
        for dep_id in deployments:
            step = partial(
                _coarsen_chunk,
                store,
                dep_id=dep_id,
                fine_ms=fine.width_ms,
                coarse_ms=coarse.width_ms,
                cutoff=cutoff,
            )
            while True:
                sources, written, merged = store._write(step)
                report.buckets_written += written
                report.buckets_merged += merged
                if sources < BUCKET_CHUNK:
                    break
    for width_ms, age_ms in techseries.TECH_TIERS:
        cutoff = bucket_start(now - age_ms, width_ms)
        for dep_id in deployments:
            tech_step = partial(_tech_chunk, store, dep_id=dep_id, width_ms=width_ms, cutoff=cutoff)
            while True:
                merged_away = store._write(tech_step)
                report.tech_rolled += merged_away
                if merged_away < TECH_CHUNK:
                    break
    return report


def _plan(policy: RollupPolicy, now: int) -> list[tuple[int, int | None]]:
    """(width, cutoff) per tier: a bucket starting before ``cutoff`` belongs in the next tier.

    Raw rows go straight to the tier their age calls for: a backfill of last year's records
    becomes day buckets at once instead of minute buckets merged away in the same run (the
    summaries are the same either way: merging is associative).
    """
    plan: list[tuple[int, int | None]] = []
    for tier, coarser in itertools.zip_longest(policy.tiers, policy.tiers[1:]):
        if coarser is None or tier.horizon_ms is None:
            plan.append((tier.width_ms, None))
            break
        plan.append((tier.width_ms, bucket_start(now - tier.horizon_ms, coarser.width_ms)))
    return plan


def _width_for(start_ms: int, plan: list[tuple[int, int | None]]) -> int:
    for width, cutoff in plan:
        if cutoff is None or start_ms >= cutoff:
            return width
    return plan[-1][0]


def _fold_chunk(
    store: SQLStore, cur: Cursor, dep_id: int, cutoff: int, plan: list[tuple[int, int | None]]
) -> tuple[int, int, int]:
    """Fold one chunk of raw rows older than ``cutoff`` and delete them: one transaction."""
    store._lock_buckets(cur)
    rows = store._exec(
        cur,
        "SELECT start_ms, uuid, metrics, delayed FROM predictions "
        "WHERE deployment_id = ? AND start_ms < ? ORDER BY start_ms, uuid LIMIT ?"
        + store._for_update,
        (dep_id, cutoff, RAW_CHUNK),
    ).fetchall()
    if not rows:
        return 0, 0, 0
    crn = store._identity(cur, dep_id).deployment_crn
    by_width: dict[int, list[tuple[str, int, dict[str, Any]]]] = {}
    for r in rows:
        by_width.setdefault(_width_for(r[0], plan), []).append((crn, r[0], _merged(r[2], r[3])))
    tiers = _tiers(store, cur, dep_id)
    written = merged = 0
    for width_ms, items in by_width.items():
        for (_, start), summary in fold(items, width_ms).items():
            was_merged = _put(store, cur, dep_id, width_ms, start, summary, tiers)
            merged += was_merged
            written += not was_merged
    store._delete_folded(cur, dep_id, [(r[0], r[1]) for r in rows])
    return len(rows), written, merged


def _coarsen_chunk(
    store: SQLStore, cur: Cursor, dep_id: int, fine_ms: int, coarse_ms: int, cutoff: int
) -> tuple[int, int, int]:
    """Merge one chunk of fine buckets older than ``cutoff`` into coarse ones: one transaction."""
    store._lock_buckets(cur)
    rows = store._exec(
        cur,
        "SELECT id, bucket_start_ms, summary FROM rollup_buckets "
        "WHERE deployment_id = ? AND tier_ms = ? AND bucket_start_ms < ? "
        "ORDER BY bucket_start_ms LIMIT ?" + store._for_update,
        (dep_id, fine_ms, cutoff, BUCKET_CHUNK),
    ).fetchall()
    if not rows:
        return 0, 0, 0
    crn = store._identity(cur, dep_id).deployment_crn
    targets = coarsen(((crn, r[1], BucketSummary.from_bytes(r[2])) for r in rows), coarse_ms)
    ids = [int(r[0]) for r in rows]
    for i in range(0, len(ids), 250):
        chunk = ids[i : i + 250]
        marks = ",".join("?" * len(chunk))
        store._exec(cur, f"DELETE FROM rollup_buckets WHERE id IN ({marks})", chunk)
    tiers = _tiers(store, cur, dep_id)
    merged = sum(
        _put(store, cur, dep_id, coarse_ms, start, summary, tiers)
        for (_, start), summary in targets.items()
    )
    return len(rows), len(targets) - merged, merged


def _tech_chunk(store: SQLStore, cur: Cursor, dep_id: int, width_ms: int, cutoff: int) -> int:
    """Merge one chunk of technical aggregates narrower than ``width_ms`` that start before
    ``cutoff`` into the record of their bucket, deleting them: one transaction. Returns how many
    records were merged away."""
    store._lock_buckets(cur)
    rows = store._exec(
        cur,
        "SELECT id, start_ms, metrics FROM aggregates "
        "WHERE deployment_id = ? AND source = ? AND start_ms < ? AND end_ms - start_ms < ? "
        "ORDER BY start_ms, id LIMIT ?" + store._for_update,
        (dep_id, techseries.SOURCE, cutoff, width_ms, TECH_CHUNK),
    ).fetchall()
    if not rows:
        return 0
    groups: dict[int, list[tuple[int, str]]] = {}
    for row in rows:
        groups.setdefault(bucket_start(int(row[1]), width_ms), []).append((int(row[0]), row[2]))
    for start, members in groups.items():
        end = start + width_ms
        target = store._exec(
            cur,
            "SELECT id, metrics FROM aggregates "
            "WHERE deployment_id = ? AND source = ? AND start_ms = ? AND end_ms = ?",
            (dep_id, techseries.SOURCE, start, end),
        ).fetchall()
        parts = [orjson.loads(text) for _, text in [*target, *members]]
        merged = techseries.merge(parts, width_ms / 1000)
        ids = [int(r[0]) for r in target] + [i for i, _ in members]
        for i in range(0, len(ids), 250):
            chunk = ids[i : i + 250]
            store._exec(
                cur, f"DELETE FROM aggregates WHERE id IN ({','.join('?' * len(chunk))})", chunk
            )
        store._exec(
            cur,
            "INSERT INTO aggregates "
            "(deployment_id, start_ms, end_ms, metrics, created_ms, source) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                dep_id,
                start,
                end,
                orjson.dumps(merged).decode(),
                int(time.time() * 1000),
                techseries.SOURCE,
            ),
        )
    return len(rows)


# -- distribution -------------------------------------------------------------------------------
def distribution(
    store: SQLStore, query: Query, key: str, quantiles: Sequence[float], bins: int
) -> Distribution:
    """Exact from raw rows when the window holds no buckets; else merged sketches."""
    if not isinstance(key, str) or not key:
        raise InvalidInput(f"key={key!r} must be a metric name")
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise InvalidInput(f"bins={bins!r} must be a positive integer")
    qs = [float(q) for q in quantiles]
    bad = [q for q in qs if not 0.0 <= q <= 1.0]
    if bad:
        raise InvalidInput(f"quantiles {bad!r} are outside [0, 1]; pass ranks such as 0.5")
    window = check_window(query)

    def only(kind: RecordKind) -> Query:
        return Query(
            model_crn=query.model_crn,
            build_crn=query.build_crn,
            deployment_crn=query.deployment_crn,
            start_ms=window.start_ms,
            end_ms=window.end_ms,
            kinds=frozenset({kind}),
        )

    values: list[float] = []
    if RecordKind.PREDICTION in window.kinds:
        values = _raw_values(store, only(RecordKind.PREDICTION), key)
    blobs: list[bytes] = []
    if RecordKind.ROLLUP in window.kinds:
        rollups = only(RecordKind.ROLLUP)
        with store._reading() as cur:
            dep_ids = store._deployment_ids(cur, rollups)
            if dep_ids:
                rows = store._kind_rows(
                    cur, RecordKind.ROLLUP, dep_ids, check_window(rollups), None, None
                )
                blobs = [bytes(row[4]) for row in rows]
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


def _raw_values(store: SQLStore, query: Query, key: str) -> list[float]:
    """Finite numbers under ``key`` in the raw predictions (a delayed value, even null, wins).

    The database extracts them where it can (JSON functions, no Python object per row); the
    fallback decodes each record, with the same rules: booleans, strings, nulls and missing keys
    are not numbers.
    """
    window = check_window(query)
    with store._reading() as cur:
        dep_ids = store._deployment_ids(cur, query)
        extracted = [
            store._numeric_values(cur, dep_id, window.start_ms, window.end_ms, key)
            for dep_id in dep_ids
        ]
    if all(chunk is not None for chunk in extracted):
        return [v for chunk in extracted if chunk is not None for v in chunk if math.isfinite(v)]
    values: list[float] = []
    for batch in store.scan(query):
        for text in batch.metrics:
            value = orjson.loads(text).get(key)
            if type(value) in (int, float) and math.isfinite(value):
                values.append(float(value))
    return values


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
