"""``add_delayed_many``: delayed metrics in bulk, on every backend (SQLite file and memory,
PostgreSQL): the same merge and history as ``add_delayed``, unknown uuids reported, rolled-up
uuids added to their buckets, one transaction, and ``skip_unchanged`` for re-read rows."""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Iterator
from typing import Any

import pytest

from modelyard.errors import InvalidInput
from modelyard.ids import new_crn
from modelyard.store import (
    DelayedBatch,
    Identity,
    MetricsStore,
    Prediction,
    Query,
    RecordKind,
    RollupPolicy,
    Tier,
)

MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR
T0 = 1_700_000_000_000 - 1_700_000_000_000 % DAY
POLICY = RollupPolicy(
    raw_horizon_ms=DAY, tiers=(Tier(MIN, 3 * DAY), Tier(HOUR, 10 * DAY), Tier(DAY, None))
)


def ident() -> Identity:
    return Identity(new_crn("model"), new_crn("build"), new_crn("deployment"))


def preds(who: Identity, n: int, start: int = T0, step: int = 1000) -> list[Prediction]:
    return [
        Prediction(str(uuidlib.uuid4()), who, start + i * step, start + i * step + 5, {"x": i})
        for i in range(n)
    ]


def metrics_of(store: MetricsStore, who: Identity) -> dict[str, dict[str, object]]:
    kinds = frozenset({RecordKind.PREDICTION})
    query = Query(deployment_crn=who.deployment_crn, end_ms=T0 + 10 * DAY, kinds=kinds)
    records, _ = store.read(query)
    return {str(r.uuid): r.metrics for r in records}


def test_bulk_merges_like_add_delayed_and_reports_unknown(store: MetricsStore) -> None:
    who = ident()
    batch = preds(who, 50)
    store.write_predictions(batch)
    store.add_delayed(batch[0].uuid, {"truth": 5, "keep": "k"}, source="single", tracked_ms=T0)
    ghost = str(uuidlib.uuid4())
    items = [(p.uuid, {"truth": i % 2}) for i, p in enumerate(batch)]
    items += [(ghost, {"truth": 1}), (batch[1].uuid, {"truth": 7, "x": None})]
    result = store.add_delayed_many(items, source="bulk", tracked_ms=T0 + 5)
    assert result == DelayedBatch(stored=51, unknown=(ghost,), unchanged=0)
    found = metrics_of(store, who)
    assert found[batch[0].uuid] == {"x": 0, "truth": 0, "keep": "k"}
    assert found[batch[1].uuid] == {"x": None, "truth": 7}  # later items of a uuid win
    assert found[batch[2].uuid] == {"x": 2, "truth": 0}
    history = store.delayed_history(batch[1].uuid)
    assert [(h.key, h.value, h.tracked_ms, h.source) for h in history] == [
        ("truth", 1, T0 + 5, "bulk"),
        ("truth", 7, T0 + 5, "bulk"),
        ("x", None, T0 + 5, "bulk"),
    ]
    assert [h.source for h in store.delayed_history(batch[0].uuid)] == ["single", "single", "bulk"]
    assert store.info().delayed == 2 + 50 + 2
    assert store.prediction_deployments([batch[3].uuid, ghost, batch[3].uuid]) == {
        batch[3].uuid: who.deployment_crn
    }


def test_skip_unchanged_leaves_re_read_rows_alone(store: MetricsStore) -> None:
    who = ident()
    batch = preds(who, 10)
    store.write_predictions(batch)
    items = [(p.uuid, {"truth": 1.0}) for p in batch]
    assert store.add_delayed_many(items, "src", skip_unchanged=True).stored == 10
    again = items[:5] + [(p.uuid, {"truth": 0.0}) for p in batch[5:]]
    result = store.add_delayed_many(again, "src", skip_unchanged=True)
    assert (result.stored, result.unchanged) == (5, 5)
    assert store.info().delayed == 15
    # Same number, other JSON type: a change (1 is not 1.0 once stored).
    assert store.add_delayed_many([(batch[0].uuid, {"truth": 1})], "src", skip_unchanged=True) == (
        DelayedBatch(stored=1)
    )


def test_a_bad_item_writes_nothing_and_is_named(store: MetricsStore) -> None:
    who = ident()
    batch = preds(who, 3)
    store.write_predictions(batch)
    bad = [(batch[0].uuid, {"truth": 1}), (batch[1].uuid, {})]
    with pytest.raises(InvalidInput, match="item 1"):
        store.add_delayed_many(bad, "src")
    with pytest.raises(InvalidInput, match="item 0"):
        store.add_delayed_many([("only-one",)], "src")  # type: ignore[list-item]
    assert store.info().delayed == 0
    assert store.add_delayed_many([], "src") == DelayedBatch(stored=0)


def test_rolled_up_uuids_join_their_buckets(store: MetricsStore) -> None:
    who = ident()
    batch = preds(who, 240, start=T0, step=30_000)
    store.write_predictions(batch)
    store.rollup(POLICY, now_ms=T0 + 2 * DAY)
    fresh = preds(who, 2, start=T0 + 2 * DAY)
    store.write_predictions(fresh)
    items = [(batch[0].uuid, {"truth": 1.0}), (batch[1].uuid, {"truth": 0.0})]
    items += [(fresh[0].uuid, {"truth": 1.0})]
    result = store.add_delayed_many(items, "late", skip_unchanged=True)
    assert result == DelayedBatch(stored=3)
    query = Query(deployment_crn=who.deployment_crn, start_ms=T0, end_ms=T0 + MIN - 1)
    (bucket,) = store.read(query)[0]
    assert bucket.metrics["truth"]["count"] == 2
    # The same labels again: unchanged, the bucket is not counted twice.
    assert store.add_delayed_many(items, "late", skip_unchanged=True).unchanged == 3
    (bucket,) = store.read(query)[0]
    assert bucket.metrics["truth"]["count"] == 2
    assert len(store.delayed_history(batch[0].uuid)) == 1


def test_many_uuids_in_one_call(store: MetricsStore) -> None:
    who = ident()
    batch = preds(who, 20_000, step=10)
    for i in range(0, len(batch), 5000):
        store.write_predictions(batch[i : i + 5000])
    items = [(p.uuid, {"truth": i % 2, "score": i / 7}) for i, p in enumerate(batch)]
    assert store.add_delayed_many(items, "bulk").stored == 20_000
    found = metrics_of(store, who)
    assert found[batch[12_345].uuid] == {"x": 12_345, "truth": 1, "score": 12_345 / 7}
    assert store.info().delayed == 40_000


def test_postgres_merge_reads_the_batch_once_on_tables_never_analyzed(
    postgres_schema_url: str,
) -> None:
    """The labels' UPDATE on a store whose tables have no statistics yet (a new store, or one
    that just grew): the batch table is read once, each of its uuids looked up by index. Joined
    the old way the planner read the whole batch once per row (20,000 labels took 81 s)."""
    from modelyard.store import sqldelayed
    from modelyard.store.postgres import PostgresStore

    store = PostgresStore(postgres_schema_url)
    try:
        batch = preds(ident(), 3000, step=10)
        store.write_predictions(batch)
        rows = sqldelayed._fast_rows([(p.uuid, {"truth": 1}) for p in batch])
        assert rows is not None

        class Explained(Exception):
            """Carries the plan out of the transaction, which it rolls back (EXPLAIN ANALYZE
            ran the UPDATE)."""

        def explain(cur: Any) -> None:
            sqldelayed._load_batch(store, cur, rows.payload())
            sql = "EXPLAIN (ANALYZE, FORMAT JSON) " + sqldelayed._SQL_MERGE
            raise Explained(cur.execute(sql).fetchone()[0][0]["Plan"])

        def nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
            yield node
            for child in node.get("Plans", []):
                yield from nodes(child)

        with pytest.raises(Explained) as explained:
            store._write(explain)
        root = explained.value.args[0]
        reads = [n for n in nodes(root) if n.get("Relation Name") == sqldelayed._BATCH]
        assert [(n["Node Type"], n["Actual Loops"]) for n in reads] == [("Seq Scan", 1)]
        assert root["Actual Rows"] == 0 and root["Plans"][-1]["Actual Rows"] == 3000
    finally:
        store.close()
