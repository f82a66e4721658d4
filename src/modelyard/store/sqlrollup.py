"""Rollup buckets in SQL: folding raw rows, coarsening tiers, late values, technical series.

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
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Protocol, TypeVar

import orjson

from modelyard import clock, settings
from modelyard.errors import InvalidInput, NotFound
from modelyard.store import techseries
from modelyard.store.base import RollupPolicy, RollupReport
from modelyard.store.rollup import bucket_start, coarsen, fold, validate_policy
from modelyard.store.sqltypes import Cursor, marks
from modelyard.store.summary import BucketSummary

__all__ = ["RollupDatabase", "add_to_bucket", "rollup"]

T = TypeVar("T")


class RollupDatabase(Protocol):
    """All that the rollup code needs from an SQL store, and all it may use of one.

    ``SQLStore`` hands rollup one of these (``sqlbase.StoreRollupDatabase``) instead of itself,
    so the two meet at these six names: the store keeps its connections, identity cache and
    read paths private, and this module keeps the bucket tables' SQL.
    """

    #: appended to a SELECT of rows the transaction then deletes or rewrites: " FOR UPDATE"
    #: where concurrent transactions must queue for them (PostgreSQL), else "".
    for_update: str

    def write(self, fn: Callable[[Cursor], T]) -> T:
        """Run ``fn`` in one write transaction (retried while the database is busy)."""
        ...

    def execute(self, cur: Cursor, sql: str, params: Sequence[Any] = ()) -> Cursor:
        """Run one statement written with ``?`` placeholders."""
        ...

    def lock_buckets(self, cur: Cursor) -> None:
        """Serialise transactions that change rollup buckets (a no-op where writes are serial)."""
        ...

    def delete_folded(self, cur: Cursor, dep_id: int, keys: list[tuple[int, str]]) -> None:
        """Delete the raw rows just folded: the deployment's first ``keys`` (start_ms, uuid)."""
        ...

    def deployments(self) -> list[tuple[int, str]]:
        """(id, deployment CRN) of every deployment stored, by id."""
        ...

    def raw_metrics(
        self, cur: Cursor, metrics: str, delayed: str | None, layout_id: int | None, numbers: Any
    ) -> dict[str, Any]:
        """A raw row's metrics (its ``metrics, delayed, layout_id, numbers`` columns) as a dict,
        delayed values merged."""
        ...


RAW_CHUNK = 20_000  # raw rows folded per transaction
BUCKET_CHUNK = 500  # buckets coarsened per transaction
TECH_CHUNK = 1_000  # technical aggregates merged per transaction (a day of minutes is 1,440)


# -- buckets ------------------------------------------------------------------------------------
def _tiers(db: RollupDatabase, cur: Cursor, dep_id: int) -> list[int]:
    """Bucket widths a deployment has, coarsest first."""
    rows = db.execute(
        cur,
        "SELECT DISTINCT tier_ms FROM rollup_buckets WHERE deployment_id = ?",
        (dep_id,),
    ).fetchall()
    return sorted((int(r[0]) for r in rows), reverse=True)


def _covering(
    db: RollupDatabase, cur: Cursor, dep_id: int, ts_ms: int, tiers: Sequence[int]
) -> tuple[int, bytes] | None:
    """(id, summary) of the coarsest bucket among ``tiers`` holding ``ts_ms``, if any."""
    for tier_ms in tiers:
        row = db.execute(
            cur,
            "SELECT id, summary FROM rollup_buckets "
            "WHERE deployment_id = ? AND tier_ms = ? AND bucket_start_ms = ?",
            (dep_id, tier_ms, bucket_start(ts_ms, tier_ms)),
        ).fetchone()
        if row is not None:
            return int(row[0]), bytes(row[1])
    return None


def _put(
    db: RollupDatabase,
    cur: Cursor,
    dep_id: int,
    tier_ms: int,
    start_ms: int,
    summary: BucketSummary,
    tiers: list[int],
) -> bool:
    """Merge ``summary`` into the coarsest bucket of at least ``tier_ms`` covering ``start_ms``,
    or store it as a new bucket; True when it was merged. ``tiers`` learns a new width."""
    found = _covering(db, cur, dep_id, start_ms, [t for t in tiers if t >= tier_ms])
    if found is None:
        db.execute(
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
    db.execute(
        cur,
        "UPDATE rollup_buckets SET records = ?, summary = ? WHERE id = ?",
        (existing.records, existing.to_bytes(), bucket_id),
    )
    return True


def add_to_bucket(
    db: RollupDatabase, cur: Cursor, dep_id: int, start_ms: int, uuid: str, metrics: dict[str, Any]
) -> None:
    """Add a rolled-up prediction's delayed values to the bucket now holding it."""
    db.lock_buckets(cur)
    found = _covering(db, cur, dep_id, start_ms, _tiers(db, cur, dep_id))
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
    db.execute(
        cur, "UPDATE rollup_buckets SET summary = ? WHERE id = ?", (summary.to_bytes(), bucket_id)
    )


# -- rollup -------------------------------------------------------------------------------------
def rollup(db: RollupDatabase, policy: RollupPolicy | None, now_ms: int | None) -> RollupReport:
    if policy is None:
        policy = RollupPolicy(raw_horizon_ms=settings.get("raw_horizon"))
    validate_policy(policy)
    now = clock.now_ms() if now_ms is None else now_ms
    if isinstance(now, bool) or not isinstance(now, int):
        raise InvalidInput(f"now_ms={now_ms!r} must be integer epoch milliseconds")
    report = RollupReport()
    tiers = policy.tiers
    deployments = db.deployments()
    raw_cutoff = bucket_start(now - policy.raw_horizon_ms, tiers[0].width_ms)
    plan = _plan(policy, now)
    for dep_id, crn in deployments:
        step = partial(_fold_chunk, db, dep_id=dep_id, crn=crn, cutoff=raw_cutoff, plan=plan)
        while True:
            rolled, written, merged = db.write(step)
            report.raw_rolled += rolled
            report.buckets_written += written
            report.buckets_merged += merged
            if rolled < RAW_CHUNK:
                break
    for fine, coarse in itertools.pairwise(tiers):
        if fine.horizon_ms is None:
            break
        cutoff = bucket_start(now - fine.horizon_ms, coarse.width_ms)
        for dep_id, crn in deployments:
            step = partial(
                _coarsen_chunk,
                db,
                dep_id=dep_id,
                crn=crn,
                fine_ms=fine.width_ms,
                coarse_ms=coarse.width_ms,
                cutoff=cutoff,
            )
            while True:
                sources, written, merged = db.write(step)
                report.buckets_written += written
                report.buckets_merged += merged
                if sources < BUCKET_CHUNK:
                    break
    for width_ms, age_ms in techseries.TECH_TIERS:
        cutoff = bucket_start(now - age_ms, width_ms)
        for dep_id, _ in deployments:
            tech_step = partial(_tech_chunk, db, dep_id=dep_id, width_ms=width_ms, cutoff=cutoff)
            while True:
                merged_away = db.write(tech_step)
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
    db: RollupDatabase,
    cur: Cursor,
    dep_id: int,
    crn: str,
    cutoff: int,
    plan: list[tuple[int, int | None]],
) -> tuple[int, int, int]:
    """Fold one chunk of raw rows older than ``cutoff`` and delete them: one transaction."""
    db.lock_buckets(cur)
    rows = db.execute(
        cur,
        "SELECT start_ms, uuid, metrics, delayed, layout_id, numbers FROM predictions "
        "WHERE deployment_id = ? AND start_ms < ? ORDER BY start_ms, uuid LIMIT ?" + db.for_update,
        (dep_id, cutoff, RAW_CHUNK),
    ).fetchall()
    if not rows:
        return 0, 0, 0
    by_width: dict[int, list[tuple[str, int, dict[str, Any]]]] = {}
    for r in rows:
        by_width.setdefault(_width_for(r[0], plan), []).append(
            (crn, r[0], db.raw_metrics(cur, *r[2:6]))
        )
    tiers = _tiers(db, cur, dep_id)
    written = merged = 0
    for width_ms, items in by_width.items():
        for (_, start), summary in fold(items, width_ms).items():
            was_merged = _put(db, cur, dep_id, width_ms, start, summary, tiers)
            merged += was_merged
            written += not was_merged
    db.delete_folded(cur, dep_id, [(r[0], r[1]) for r in rows])
    return len(rows), written, merged


def _coarsen_chunk(
    db: RollupDatabase,
    cur: Cursor,
    dep_id: int,
    crn: str,
    fine_ms: int,
    coarse_ms: int,
    cutoff: int,
) -> tuple[int, int, int]:
    """Merge one chunk of fine buckets older than ``cutoff`` into coarse ones: one transaction."""
    db.lock_buckets(cur)
    rows = db.execute(
        cur,
        "SELECT id, bucket_start_ms, summary FROM rollup_buckets "
        "WHERE deployment_id = ? AND tier_ms = ? AND bucket_start_ms < ? "
        "ORDER BY bucket_start_ms LIMIT ?" + db.for_update,
        (dep_id, fine_ms, cutoff, BUCKET_CHUNK),
    ).fetchall()
    if not rows:
        return 0, 0, 0
    targets = coarsen(((crn, r[1], BucketSummary.from_bytes(r[2])) for r in rows), coarse_ms)
    ids = [int(r[0]) for r in rows]
    for i in range(0, len(ids), 250):
        chunk = ids[i : i + 250]
        db.execute(cur, f"DELETE FROM rollup_buckets WHERE id IN ({marks(len(chunk))})", chunk)
    tiers = _tiers(db, cur, dep_id)
    merged = sum(
        _put(db, cur, dep_id, coarse_ms, start, summary, tiers)
        for (_, start), summary in targets.items()
    )
    return len(rows), len(targets) - merged, merged


def _tech_chunk(db: RollupDatabase, cur: Cursor, dep_id: int, width_ms: int, cutoff: int) -> int:
    """Merge one chunk of technical aggregates narrower than ``width_ms`` that start before
    ``cutoff`` into the record of their bucket, deleting them: one transaction. Returns how many
    records were merged away."""
    db.lock_buckets(cur)
    rows = db.execute(
        cur,
        "SELECT id, start_ms, metrics FROM aggregates "
        "WHERE deployment_id = ? AND source = ? AND start_ms < ? AND end_ms - start_ms < ? "
        "ORDER BY start_ms, id LIMIT ?" + db.for_update,
        (dep_id, techseries.SOURCE, cutoff, width_ms, TECH_CHUNK),
    ).fetchall()
    if not rows:
        return 0
    groups: dict[int, list[tuple[int, str]]] = {}
    for row in rows:
        groups.setdefault(bucket_start(int(row[1]), width_ms), []).append((int(row[0]), row[2]))
    for start, members in groups.items():
        end = start + width_ms
        target = db.execute(
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
            db.execute(cur, f"DELETE FROM aggregates WHERE id IN ({marks(len(chunk))})", chunk)
        db.execute(
            cur,
            "INSERT INTO aggregates "
            "(deployment_id, start_ms, end_ms, metrics, created_ms, source) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                dep_id,
                start,
                end,
                orjson.dumps(merged).decode(),
                clock.now_ms(),
                techseries.SOURCE,
            ),
        )
    return len(rows)
