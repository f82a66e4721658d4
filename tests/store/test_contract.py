"""The metrics store contract: every backend (SQLite file, SQLite in memory, PostgreSQL) must pass.

Numbers are checked against numpy; rollup results against summaries built directly with
``BucketSummary`` from the same values.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from modelyard.errors import Conflict, InvalidInput, NotFound, StoreUnavailable
from modelyard.ids import new_crn
from modelyard.store import (
    BucketSummary,
    Identity,
    MetricsStore,
    Prediction,
    Query,
    Record,
    RecordKind,
    RollupPolicy,
    Tier,
)
from modelyard.store.schema import SCHEMA_VERSION

Opener = Callable[[], MetricsStore]
MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR
T0 = 1_700_000_000_000 - 1_700_000_000_000 % DAY  # a day boundary


def ident(model: str | None = None, build: str | None = None) -> Identity:
    return Identity(
        model_crn=model or new_crn("model"),
        build_crn=build or new_crn("build"),
        deployment_crn=new_crn("deployment"),
    )


def preds(identity: Identity, n: int, start: int = T0, step: int = 1000) -> list[Prediction]:
    return [
        Prediction(
            uuid=str(uuidlib.uuid4()),
            identity=identity,
            start_ms=start + i * step,
            end_ms=start + i * step + 5,
            metrics={"x": float(i), "label": "yes" if i % 3 else "no", "i": i},
        )
        for i in range(n)
    ]


def read_all(store: MetricsStore, query: Query) -> list[Record]:
    records, token = store.read(query)
    assert token is None
    return records


def key_of(record: Record) -> tuple[int, int, str]:
    rank = {"prediction": 0, "aggregate": 1, "rollup": 2}[record.kind]
    return (record.start_ms, rank, record.uuid or "")


# -- writes and reads -----------------------------------------------------------------------------
def test_write_then_read_back_in_order(store: MetricsStore) -> None:
    who = ident()
    batch = preds(who, 50)
    batch.reverse()  # insertion order must not matter
    store.write_predictions(batch)
    records = read_all(store, Query(deployment_crn=who.deployment_crn, end_ms=T0 + DAY))
    assert [r.uuid for r in records] == [p.uuid for p in sorted(batch, key=lambda p: p.start_ms)]
    first = records[0]
    assert first.kind == RecordKind.PREDICTION
    assert first.identity == who
    assert first.metrics == {"x": 0.0, "label": "no", "i": 0}
    assert (first.start_ms, first.end_ms) == (T0, T0 + 5)
    assert first.to_reference()["startTimeStampMs"] == T0
    assert store.resolve(who.deployment_crn) == who


def test_window_bounds_are_inclusive(store: MetricsStore) -> None:
    who = ident()
    store.write_predictions(preds(who, 10, step=100))
    got = read_all(
        store, Query(deployment_crn=who.deployment_crn, start_ms=T0 + 200, end_ms=T0 + 500)
    )
    assert [r.start_ms for r in got] == [T0 + 200, T0 + 300, T0 + 400, T0 + 500]


def test_model_and_build_level_queries(store: MetricsStore) -> None:
    model = new_crn("model")
    build = new_crn("build")
    a, b = ident(model, build), ident(model, build)
    c = ident(model)  # same model, another build
    other = ident()
    for who in (a, b, c, other):
        store.write_predictions(preds(who, 5))
    end = T0 + DAY
    assert len(read_all(store, Query(model_crn=model, end_ms=end))) == 15
    assert len(read_all(store, Query(build_crn=build, end_ms=end))) == 10
    assert len(read_all(store, Query(model_crn=model, build_crn=c.build_crn, end_ms=end))) == 5
    mixed = read_all(store, Query(model_crn=model, end_ms=end))
    assert [key_of(r) for r in mixed] == sorted(key_of(r) for r in mixed)
    # A consistent but empty combination is not an error.
    assert (
        read_all(store, Query(build_crn=build, deployment_crn=c.deployment_crn, end_ms=end)) == []
    )


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        (Query(), "at least one"),
        (Query(deployment_crn="crn:modelyard:deployment/nope"), "deployment/nope"),
        (Query(model_crn="crn:modelyard:model/nope"), "model/nope"),
        (Query(deployment_crn="d", start_ms=10, end_ms=5), "start_ms=10"),
        (Query(deployment_crn="d", start_ms=1.5), "start_ms=1.5"),  # type: ignore[arg-type]
        (Query(deployment_crn="d", end_ms="9"), "end_ms='9'"),  # type: ignore[arg-type]
        (Query(deployment_crn="d", limit=0), "limit=0"),
        (Query(deployment_crn="d", after="garbage!"), "garbage!"),
    ],
)
def test_bad_queries_are_refused_naming_the_value(
    store: MetricsStore, query: Query, fragment: str
) -> None:
    store.register_identity(Identity("crn:m", "crn:b", "d"))
    with pytest.raises(InvalidInput) as info:
        store.read(query)
    assert fragment in str(info.value)
    with pytest.raises(InvalidInput):
        list(store.scan(query))


def test_unknown_identifiers_are_all_named(store: MetricsStore) -> None:
    with pytest.raises(InvalidInput) as info:
        store.read(Query(model_crn="crn:m/1", build_crn="crn:b/2"))
    assert "crn:m/1" in str(info.value) and "crn:b/2" in str(info.value)


def test_pages_follow_the_token_across_kinds(store: MetricsStore) -> None:
    who = ident()
    batch = preds(who, 23, step=10)
    # Same start for several records: the uuid breaks ties.
    for p in batch[5:9]:
        p.start_ms = p.end_ms = T0 + 50
    store.write_predictions(batch)
    store.add_aggregate(who.deployment_crn, T0 + 50, T0 + 100, {"accuracy": 0.9})
    store.add_aggregate(who.deployment_crn, T0, T0 + 500, {"accuracy": 0.8})
    query = Query(deployment_crn=who.deployment_crn, end_ms=T0 + DAY, limit=4)
    seen: list[Record] = []
    token: str | None = None
    pages = 0
    while True:
        page, token = store.read(
            Query(deployment_crn=who.deployment_crn, end_ms=T0 + DAY, limit=4, after=token)
        )
        pages += 1
        seen += page
        assert len(page) <= 4
        if token is None:
            break
    assert pages == 7  # 25 records, 4 per page
    everything = read_all(store, Query(deployment_crn=who.deployment_crn, end_ms=T0 + DAY))
    assert [(r.kind, r.uuid, r.start_ms) for r in seen] == [
        (r.kind, r.uuid, r.start_ms) for r in everything
    ]
    assert len({r.uuid for r in seen if r.uuid}) == 23
    aggregates = [r for r in seen if r.kind == RecordKind.AGGREGATE]
    assert [a.metrics for a in aggregates] == [{"accuracy": 0.8}, {"accuracy": 0.9}]
    assert all(a.uuid is None and a.identity == who for a in aggregates)
    assert query.limit == 4


def test_kinds_filter(store: MetricsStore) -> None:
    who = ident()
    store.write_predictions(preds(who, 3))
    store.add_aggregate(who.deployment_crn, T0, T0 + 10, {"n": 3})
    only = read_all(
        store,
        Query(
            deployment_crn=who.deployment_crn,
            end_ms=T0 + DAY,
            kinds=frozenset({RecordKind.AGGREGATE}),
        ),
    )
    assert [r.kind for r in only] == [RecordKind.AGGREGATE]


# -- conflicts ------------------------------------------------------------------------------------
def test_duplicate_uuid_in_a_batch_writes_nothing(store: MetricsStore) -> None:
    who = ident()
    batch = preds(who, 5)
    batch[4].uuid = batch[1].uuid
    with pytest.raises(Conflict) as info:
        store.write_predictions(batch)
    assert batch[1].uuid in str(info.value)
    assert store.info().predictions == 0


def test_uuid_already_stored_writes_nothing(store: MetricsStore) -> None:
    who = ident()
    first = preds(who, 3)
    store.write_predictions(first)
    second = preds(who, 4, start=T0 + HOUR)
    second[2].uuid = first[0].uuid
    with pytest.raises(Conflict) as info:
        store.write_predictions(second)
    assert first[0].uuid in str(info.value)
    assert info.value.details["uuids"] == [first[0].uuid]
    assert store.info().predictions == 3


def test_a_deployment_keeps_its_build(store: MetricsStore) -> None:
    who = ident()
    store.register_identity(who)
    store.register_identity(who)  # idempotent
    moved = Identity(who.model_crn, new_crn("build"), who.deployment_crn)
    with pytest.raises(Conflict) as info:
        store.write_predictions(preds(moved, 1))
    assert who.deployment_crn in str(info.value)
    with pytest.raises(NotFound, match="deployment/unknown"):
        store.resolve("crn:modelyard:deployment/unknown")


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"start_ms": 1.0}, "start_ms=1.0"),
        ({"end_ms": T0 - 1}, "before start_ms"),
        ({"uuid": ""}, "uuid ''"),
        ({"uuid": "a\x00b"}, "NUL"),  # PostgreSQL text cannot hold NUL: refused everywhere
        ({"metrics": [1, 2]}, "must be a dict"),
        ({"metrics": {"x": object()}}, "JSON"),
        ({"metrics": {"x": "y" * 2_000_000}}, "MODELYARD_MAX_RECORD_BYTES"),
    ],
)
def test_bad_records_are_refused(
    store: MetricsStore, change: dict[str, Any], fragment: str
) -> None:
    good, bad = preds(ident(), 2)
    for name, value in change.items():
        setattr(bad, name, value)
    with pytest.raises(InvalidInput, match=fragment):
        store.write_predictions([good, bad])
    assert store.info().predictions == 0


# -- delayed metrics ------------------------------------------------------------------------------
def test_delayed_values_merge_later_wins_and_null_is_kept(store: MetricsStore) -> None:
    who = ident()
    batch = preds(who, 3)
    store.write_predictions(batch)
    target = batch[1].uuid
    store.add_delayed(target, {"truth": 1, "x": 99.0}, source="labels.csv", tracked_ms=T0 + 10)
    store.add_delayed(target, {"truth": 0, "note": None}, source="fix", tracked_ms=T0 + 20)
    store.add_delayed(target, {"x": None}, source="null-out", tracked_ms=T0 + 30)
    record = next(
        r
        for r in read_all(store, Query(deployment_crn=who.deployment_crn, end_ms=T0 + DAY))
        if r.uuid == target
    )
    assert record.metrics == {"x": None, "label": "yes", "i": 1, "truth": 0, "note": None}
    history = store.delayed_history(target)
    assert [(h.key, h.value, h.tracked_ms, h.source) for h in history] == [
        ("truth", 1, T0 + 10, "labels.csv"),
        ("x", 99.0, T0 + 10, "labels.csv"),
        ("truth", 0, T0 + 20, "fix"),
        ("note", None, T0 + 20, "fix"),
        ("x", None, T0 + 30, "null-out"),
    ]
    assert store.delayed_history(batch[0].uuid) == []
    # scan merges too, and only where there is something to merge
    batches = list(store.scan(Query(deployment_crn=who.deployment_crn, end_ms=T0 + DAY)))
    import orjson

    by_uuid = {u: orjson.loads(m) for b in batches for u, m in zip(b.uuid, b.metrics, strict=True)}
    assert by_uuid[target] == record.metrics
    assert by_uuid[batch[0].uuid] == {"x": 0.0, "label": "no", "i": 0}
    assert store.info().delayed == 5


def test_delayed_for_an_unknown_uuid_is_not_found(store: MetricsStore) -> None:
    missing = str(uuidlib.uuid4())
    with pytest.raises(NotFound) as info:
        store.add_delayed(missing, {"truth": 1}, source="test")
    assert missing in str(info.value)
    assert store.info().delayed == 0
    with pytest.raises(InvalidInput):
        store.add_delayed(missing, {}, source="test")


def test_prediction_identity_finds_raw_and_rolled_up_uuids(store: MetricsStore) -> None:
    """What a scope check asks: whose prediction is this uuid, even after its raw row was
    rolled up (a delayed label can still arrive then)."""
    who, other = ident(), ident()
    old, fresh = preds(who, 3, start=T0), preds(other, 2, start=T0 + 5 * DAY)
    store.write_predictions(old + fresh)
    assert store.prediction_identity(old[0].uuid) == who
    assert store.prediction_identity(fresh[1].uuid) == other
    store.rollup(POLICY, now_ms=T0 + 2 * DAY)
    with pytest.raises(NotFound):
        store.find_prediction(old[0].uuid)  # its raw row is gone
    assert store.prediction_identity(old[0].uuid) == who
    missing = str(uuidlib.uuid4())
    with pytest.raises(NotFound, match=missing):
        store.prediction_identity(missing)
    with pytest.raises(InvalidInput):
        store.prediction_identity("")


# -- aggregates -----------------------------------------------------------------------------------
def test_aggregates_need_a_known_deployment_and_a_window(store: MetricsStore) -> None:
    with pytest.raises(InvalidInput, match="deployment/ghost"):
        store.add_aggregate("crn:modelyard:deployment/ghost", 0, 10, {"a": 1})
    who = ident()
    store.register_identity(who)
    with pytest.raises(InvalidInput, match="start_ms=10"):
        store.add_aggregate(who.deployment_crn, 10, 5, {"a": 1})
    with pytest.raises(InvalidInput):
        store.add_aggregate(who.deployment_crn, 1.5, 5, {"a": 1})  # type: ignore[arg-type]
    store.add_aggregate(who.deployment_crn, T0, T0 + HOUR, {"accuracy": 0.75, "n": 10})
    (record,) = read_all(store, Query(model_crn=who.model_crn, end_ms=T0 + DAY))
    assert record.kind == RecordKind.AGGREGATE
    assert record.uuid is None
    assert record.identity == who
    assert (record.start_ms, record.end_ms) == (T0, T0 + HOUR)
    assert record.metrics == {"accuracy": 0.75, "n": 10}


def test_replace_aggregate_keeps_one_record_per_window_and_source(store: MetricsStore) -> None:
    who = ident()
    store.register_identity(who)
    store.add_aggregate(who.deployment_crn, T0, T0 + HOUR, {"by": "plain"})
    store.replace_aggregate(who.deployment_crn, T0, T0 + HOUR, {"auc": 0.7}, "monitor:a")
    store.replace_aggregate(who.deployment_crn, T0, T0 + HOUR, {"auc": 0.8}, "monitor:a")
    store.replace_aggregate(who.deployment_crn, T0, T0 + HOUR, {"auc": 0.5}, "monitor:b")
    store.replace_aggregate(who.deployment_crn, T0, T0 + 2 * HOUR, {"auc": 0.6}, "monitor:a")
    got = read_all(store, Query(deployment_crn=who.deployment_crn, end_ms=T0 + DAY))
    # the plain record, monitor a's latest for the hour, monitor b's, and a's other window
    assert sorted(map(str, (r.metrics for r in got))) == sorted(
        map(str, [{"by": "plain"}, {"auc": 0.8}, {"auc": 0.5}, {"auc": 0.6}])
    )
    with pytest.raises(InvalidInput, match="source"):
        store.replace_aggregate(who.deployment_crn, T0, T0 + 1, {"a": 1}, "")
    with pytest.raises(InvalidInput, match="deployment/ghost"):
        store.replace_aggregate("crn:modelyard:deployment/ghost", 0, 1, {"a": 1}, "m")
    with pytest.raises(InvalidInput, match="start_ms=10"):
        store.replace_aggregate(who.deployment_crn, 10, 5, {"a": 1}, "m")


# -- scan -----------------------------------------------------------------------------------------
def test_scan_batches_are_bounded_and_complete(store: MetricsStore) -> None:
    a, b = ident("crn:model/shared"), ident("crn:model/shared")
    store.write_predictions(preds(a, 25))
    store.write_predictions(preds(b, 12, step=7))
    store.add_aggregate(a.deployment_crn, T0, T0 + 1, {"n": 1})
    query = Query(model_crn="crn:model/shared", end_ms=T0 + DAY)
    batches = list(store.scan(query, batch_size=10))
    assert all(0 < len(batch) <= 10 for batch in batches)
    rows = [
        (batch.kind[i], batch.uuid[i], batch.deployment_crn[i], batch.start_ms[i], batch.end_ms[i])
        for batch in batches
        for i in range(len(batch))
    ]
    expected = [
        (r.kind.value, r.uuid, r.identity.deployment_crn, r.start_ms, r.end_ms)
        for r in read_all(store, query)
    ]
    assert sorted(rows, key=str) == sorted(expected, key=str)
    assert len(rows) == 38
    for batch in batches:
        assert len(batch.model_crn) == len(batch.build_crn) == len(batch.metrics) == len(batch)
    with pytest.raises(InvalidInput, match="batch_size=0"):
        list(store.scan(query, batch_size=0))


def test_scan_pages_every_kind_and_matches_read(store: MetricsStore) -> None:
    """Keyset pages of each kind (predictions, aggregates, rollups) through ``scan``, checked
    against ``read`` (a separate code path) field by field, delayed values merged."""
    import orjson

    who = ident()
    old = preds(who, 180, start=T0, step=1000)  # three one-minute buckets once rolled up
    fresh = preds(who, 7, start=T0 + 5 * DAY)
    store.write_predictions(old + fresh)
    store.add_delayed(fresh[2].uuid, {"truth": 1, "x": None}, source="t")
    store.add_delayed(fresh[5].uuid, {"truth": 0}, source="t")
    for i in range(5):
        store.add_aggregate(who.deployment_crn, T0 + i, T0 + HOUR, {"accuracy": i / 10})
    store.rollup(POLICY, now_ms=T0 + 2 * DAY)
    query = Query(deployment_crn=who.deployment_crn, end_ms=T0 + 10 * DAY)
    batches = list(store.scan(query, batch_size=2))
    assert all(0 < len(batch) <= 2 for batch in batches)
    scanned = [
        (
            batch.kind[i],
            batch.uuid[i],
            batch.start_ms[i],
            batch.end_ms[i],
            batch.tier_ms[i],
            orjson.loads(batch.metrics[i]),
        )
        for batch in batches
        for i in range(len(batch))
    ]
    expected = [
        (r.kind.value, r.uuid, r.start_ms, r.end_ms, r.tier_ms, r.metrics)
        for r in read_all(store, query)
    ]
    assert sorted(scanned, key=str) == sorted(expected, key=str)
    kinds = [row[0] for row in scanned]
    assert (kinds.count("prediction"), kinds.count("aggregate"), kinds.count("rollup")) == (7, 5, 3)
    merged = {row[1]: row[5] for row in scanned if row[0] == "prediction"}
    assert merged[fresh[2].uuid] == fresh[2].metrics | {"truth": 1, "x": None}
    assert merged[fresh[5].uuid]["truth"] == 0


# -- distribution ---------------------------------------------------------------------------------
def test_distribution_is_exact_from_raw_rows(store: MetricsStore) -> None:
    who = ident()
    rng = np.random.default_rng(7)
    values = rng.normal(10, 3, 500)
    batch = preds(who, 500)
    for p, v in zip(batch, values, strict=True):
        p.metrics = {"score": float(v), "flag": True}
    batch[0].metrics = {"flag": True}  # key missing: not counted
    store.write_predictions(batch)
    store.add_delayed(batch[1].uuid, {"score": 1000.0}, source="t")  # delayed value wins
    expected = values.copy()
    expected[1] = 1000.0
    expected = expected[1:]
    got = store.distribution(
        Query(deployment_crn=who.deployment_crn, end_ms=T0 + DAY), "score", bins=10
    )
    assert got.exact and got.rank_error == 0.0
    assert got.count == 499
    qs = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
    assert got.quantiles == pytest.approx(
        dict(zip(qs, np.quantile(expected, qs, method="inverted_cdf"), strict=True))
    )
    counts, edges = np.histogram(expected, bins=10)
    assert got.bin_counts == counts.tolist()
    assert got.bin_edges == pytest.approx(edges.tolist())
    assert got.mean == pytest.approx(expected.mean())
    assert (got.min, got.max) == (pytest.approx(expected.min()), 1000.0)
    empty = store.distribution(Query(deployment_crn=who.deployment_crn, end_ms=T0 + DAY), "nope")
    assert empty.count == 0 and empty.min is None


# -- rollup ---------------------------------------------------------------------------------------
POLICY = RollupPolicy(
    raw_horizon_ms=DAY, tiers=(Tier(MIN, 3 * DAY), Tier(HOUR, 10 * DAY), Tier(DAY, None))
)


def test_rollup_folds_old_rows_and_is_idempotent(store: MetricsStore) -> None:
    who = ident()
    old = preds(who, 300, start=T0, step=1000)  # five minutes of records at T0
    fresh = preds(who, 10, start=T0 + 5 * DAY)
    store.write_predictions(old + fresh)
    store.add_delayed(old[0].uuid, {"truth": 1.0}, source="before-rollup")
    store.add_aggregate(who.deployment_crn, T0, T0 + HOUR, {"accuracy": 0.5})
    now = T0 + 2 * DAY  # old rows are past the 1-day raw horizon, fresh ones are in the future
    report = store.rollup(POLICY, now_ms=now)
    assert report.raw_rolled == 300
    assert report.buckets_written == 5 and report.buckets_merged == 0
    info = store.info()
    assert info.predictions == 10
    assert info.aggregates == 1
    assert info.rollup_buckets == {MIN: 5}
    again = store.rollup(POLICY, now_ms=now)
    assert (again.raw_rolled, again.buckets_written, again.buckets_merged) == (0, 0, 0)
    assert store.info().rollup_buckets == {MIN: 5}

    records = read_all(store, Query(deployment_crn=who.deployment_crn, end_ms=T0 + 10 * DAY))
    kinds = [r.kind for r in records]
    assert kinds.count(RecordKind.ROLLUP) == 5
    assert kinds.count(RecordKind.AGGREGATE) == 1
    assert kinds.count(RecordKind.PREDICTION) == 10
    rollups = [r for r in records if r.kind == RecordKind.ROLLUP]
    expected = BucketSummary()
    for p in old[:60]:
        expected.add_metrics(p.metrics | ({"truth": 1.0} if p is old[0] else {}))
    first = rollups[0]
    assert (first.start_ms, first.end_ms, first.tier_ms, first.uuid) == (T0, T0 + MIN, MIN, None)
    assert first.identity == who
    assert first.metrics == expected.to_dict()
    assert first.metrics["x"]["count"] == 60
    assert first.metrics["label"]["categories"] == {"yes": 40, "no": 20}
    # The rolled-up uuid still resolves: its bucket learns the value, provenance is kept.
    store.add_delayed(old[61].uuid, {"truth": 0.0}, source="after-rollup")
    second = read_all(
        store, Query(deployment_crn=who.deployment_crn, start_ms=T0 + MIN, end_ms=T0 + MIN)
    )
    assert second[0].metrics["truth"]["count"] == 1
    assert second[0].metrics["_records"] == 60  # values joined, not a new record
    assert [h.source for h in store.delayed_history(old[61].uuid)] == ["after-rollup"]
    assert [h.source for h in store.delayed_history(old[0].uuid)] == ["before-rollup"]
    # A rolled-up uuid is still taken.
    clash = preds(who, 1, start=T0 + 6 * DAY)
    clash[0].uuid = old[5].uuid
    with pytest.raises(Conflict, match=old[5].uuid):
        store.write_predictions(clash)


def test_rollup_coarsens_tiers_and_late_values_follow(store: MetricsStore) -> None:
    who = ident()
    # Two hours of records, one every 30 s.
    batch = preds(who, 240, start=T0, step=30_000)
    store.write_predictions(batch)
    store.rollup(POLICY, now_ms=T0 + 2 * DAY)
    assert store.info().rollup_buckets == {MIN: 120}
    # Four days later the minute buckets are past their 3-day horizon: they become hours.
    report = store.rollup(POLICY, now_ms=T0 + 5 * DAY)
    assert report.buckets_written == 2
    assert store.info().rollup_buckets == {HOUR: 2}
    store.add_delayed(batch[0].uuid, {"truth": 1.0}, source="late")
    hours = read_all(store, Query(deployment_crn=who.deployment_crn, end_ms=T0 + DAY))
    assert [(r.start_ms, r.tier_ms) for r in hours] == [(T0, HOUR), (T0 + HOUR, HOUR)]
    assert hours[0].metrics["truth"]["count"] == 1
    assert hours[0].metrics["x"]["count"] == 120
    expected = BucketSummary()
    for p in batch[:120]:
        expected.add_metrics(p.metrics)
    assert hours[0].metrics["x"]["sum"] == pytest.approx(expected.to_dict()["x"]["sum"])
    # Then days.
    store.rollup(POLICY, now_ms=T0 + 20 * DAY)
    assert store.info().rollup_buckets == {DAY: 1}
    (day,) = read_all(store, Query(deployment_crn=who.deployment_crn, end_ms=T0 + DAY))
    assert day.metrics["x"]["count"] == 240
    assert day.metrics["_records"] == 240
    store.add_delayed(batch[-1].uuid, {"truth": 0.0}, source="later")
    (day,) = read_all(store, Query(deployment_crn=who.deployment_crn, end_ms=T0 + DAY))
    assert day.metrics["truth"]["count"] == 2


def test_old_raw_rows_go_straight_to_the_tier_their_age_calls_for(store: MetricsStore) -> None:
    who = ident()
    batch = preds(who, 240, start=T0, step=30_000)  # two hours
    store.write_predictions(batch)
    report = store.rollup(POLICY, now_ms=T0 + 20 * DAY)  # past every horizon but the last
    assert (report.raw_rolled, report.buckets_written, report.buckets_merged) == (240, 1, 0)
    assert store.info().rollup_buckets == {DAY: 1}
    (day,) = read_all(store, Query(deployment_crn=who.deployment_crn, end_ms=T0 + DAY))
    expected = BucketSummary()
    for p in batch:
        expected.add_metrics(p.metrics)
    want = expected.to_dict()
    assert (day.start_ms, day.tier_ms) == (T0, DAY)
    for key in ("count", "sum", "min", "max", "mean"):
        assert day.metrics["x"][key] == pytest.approx(want["x"][key])
    assert day.metrics["label"] == want["label"]
    assert day.metrics["_records"] == 240


def test_late_raw_rows_merge_into_existing_buckets(store: MetricsStore) -> None:
    who = ident()
    store.write_predictions(preds(who, 30, start=T0, step=1000))
    store.rollup(POLICY, now_ms=T0 + 2 * DAY)
    store.write_predictions(preds(who, 10, start=T0 + 40_000, step=1000))  # same minute, late
    report = store.rollup(POLICY, now_ms=T0 + 2 * DAY)
    assert (report.raw_rolled, report.buckets_written, report.buckets_merged) == (10, 0, 1)
    (bucket,) = read_all(store, Query(deployment_crn=who.deployment_crn, end_ms=T0 + DAY))
    assert bucket.metrics["_records"] == 40


def test_distribution_over_rollups_merges_sketches(store: MetricsStore) -> None:
    who = ident()
    rng = np.random.default_rng(3)
    values = rng.exponential(2.0, 3000)
    batch = preds(who, 3000, start=T0, step=100)  # five minutes
    for p, v in zip(batch, values, strict=True):
        p.metrics = {"score": float(v)}
    store.write_predictions(batch)
    store.rollup(POLICY, now_ms=T0 + 2 * DAY)
    tail = preds(who, 200, start=T0 + HOUR)
    tail_values = rng.exponential(2.0, 200)
    for p, v in zip(tail, tail_values, strict=True):
        p.metrics = {"score": float(v)}
    store.write_predictions(tail)
    got = store.distribution(Query(deployment_crn=who.deployment_crn, end_ms=T0 + DAY), "score")
    everything = np.concatenate([values, tail_values])
    assert not got.exact
    assert got.count == 3200
    assert got.min == pytest.approx(everything.min())
    assert got.max == pytest.approx(everything.max())
    assert got.mean == pytest.approx(everything.mean())
    assert 0.0 <= got.rank_error < 0.05
    # Each reported quantile sits at a true rank within the stated error (plus a little slack).
    ordered = np.sort(everything)
    for q, value in got.quantiles.items():
        rank = np.searchsorted(ordered, value, side="right") / ordered.size
        assert abs(rank - q) <= got.rank_error + 0.01, (q, rank)
    assert sum(got.bin_counts) == pytest.approx(3200, abs=3200 * 0.05)


def test_rollup_rejects_a_bad_policy(store: MetricsStore) -> None:
    with pytest.raises(InvalidInput):
        store.rollup(RollupPolicy(raw_horizon_ms=0))
    with pytest.raises(InvalidInput):
        store.rollup(RollupPolicy(tiers=(Tier(MIN, DAY), Tier(90_000, None))))


# -- info and persistence -------------------------------------------------------------------------
def test_info_counts(store: MetricsStore) -> None:
    who = ident()
    batch = preds(who, 7)
    store.write_predictions(batch)
    store.add_delayed(batch[0].uuid, {"a": 1, "b": 2}, source="t")
    store.add_aggregate(who.deployment_crn, T0, T0 + 1, {"n": 7})
    info = store.info()
    assert (info.predictions, info.delayed, info.aggregates) == (7, 2, 1)
    assert info.schema_version == SCHEMA_VERSION
    assert info.backend == store.backend
    assert info.size_bytes is not None and info.size_bytes > 0


def test_data_survives_reopening(store_opener: Opener) -> None:
    who = ident()
    batch = preds(who, 20)
    with store_opener() as first:
        first.write_predictions(batch)
        first.add_delayed(batch[3].uuid, {"truth": 1}, source="t")
    with store_opener() as second:
        records = read_all(second, Query(deployment_crn=who.deployment_crn, end_ms=T0 + DAY))
        assert len(records) == 20
        assert records[3].metrics["truth"] == 1
        assert second.info().schema_version == SCHEMA_VERSION


def test_a_newer_schema_is_refused(store_opener: Opener) -> None:
    with store_opener() as store:
        # What a future Modelyard would leave behind: a migration this code does not know.
        store._write(  # type: ignore[attr-defined]
            lambda cur: cur.execute(
                "INSERT INTO schema_migrations (version, name, modelyard_version, applied_ms) "
                "VALUES (99, 'future', '9.9.0', 0)"
            )
        )
    with pytest.raises(StoreUnavailable) as info:
        store_opener()
    message = str(info.value)
    assert "schema version 99" in message and "9.9.0" in message


class Interrupted(Exception):
    """Stands for a crash in the middle of a rollup transaction."""


def test_an_interrupted_rollup_loses_nothing_and_counts_nothing_twice(
    store: MetricsStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelyard.store import sqlrollup

    monkeypatch.setattr(sqlrollup, "RAW_CHUNK", 100)
    monkeypatch.setattr(sqlrollup, "BUCKET_CHUNK", 7)
    who = ident()
    batch = preds(who, 1000, start=T0, step=3_000)  # 50 minutes, 20 records a minute
    store.write_predictions(batch)
    expected_sum = sum(p.metrics["x"] for p in batch)

    def totals() -> tuple[int, int, float]:
        records = read_all(store, Query(deployment_crn=who.deployment_crn, end_ms=T0 + DAY))
        rolled = [r for r in records if r.kind == RecordKind.ROLLUP]
        raw = [r for r in records if r.kind == RecordKind.PREDICTION]
        count = sum(r.metrics["_records"] for r in rolled) + len(raw)
        total = sum(r.metrics["x"]["sum"] for r in rolled) + sum(r.metrics["x"] for r in raw)
        return len(raw), count, total

    # Crash while deleting the raw rows of the third chunk: its buckets must not stay.
    real_delete = store._delete_folded  # type: ignore[attr-defined]
    calls = {"n": 0}

    def crashing_delete(*args: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise Interrupted
        real_delete(*args)

    monkeypatch.setattr(store, "_delete_folded", crashing_delete)
    with pytest.raises(Interrupted):
        store.rollup(POLICY, now_ms=T0 + 2 * DAY)
    raw_left, count, total = totals()
    assert raw_left == 800  # two chunks committed, the third rolled back
    assert count == 1000 and total == pytest.approx(expected_sum)
    monkeypatch.setattr(store, "_delete_folded", real_delete)
    store.rollup(POLICY, now_ms=T0 + 2 * DAY)
    assert totals() == (0, 1000, pytest.approx(expected_sum))
    assert store.info().rollup_buckets == {MIN: 50}

    # Crash while coarsening the second chunk of minute buckets into hours.
    real_put = sqlrollup._put
    puts = {"n": 0}

    def crashing_put(*args: Any) -> bool:
        puts["n"] += 1
        if puts["n"] == 2:
            raise Interrupted
        return real_put(*args)

    monkeypatch.setattr(sqlrollup, "_put", crashing_put)
    with pytest.raises(Interrupted):
        store.rollup(POLICY, now_ms=T0 + 5 * DAY)
    assert totals() == (0, 1000, pytest.approx(expected_sum))
    monkeypatch.setattr(sqlrollup, "_put", real_put)
    store.rollup(POLICY, now_ms=T0 + 5 * DAY)
    assert totals() == (0, 1000, pytest.approx(expected_sum))
    assert store.info().rollup_buckets == {HOUR: 1}


@pytest.mark.parametrize("key", ["v", 'we"ird\\key', "a.b"])
def test_distribution_counts_numbers_only(store: MetricsStore, key: str) -> None:
    """Booleans, strings, nulls and missing keys are not numbers; a delayed null hides a value;
    a delayed number replaces one (same answer whether the database or Python extracts)."""
    who = ident()
    batch = preds(who, 8)
    values: list[Any] = [1, 2.5, True, "7", None, [3], 4, 5]
    for p, v in zip(batch, values, strict=True):
        p.metrics = {key: v, "other": 100}
    batch[7].metrics = {"other": 100}  # missing
    store.write_predictions(batch)
    store.add_delayed(batch[6].uuid, {key: None}, source="t")  # hides 4
    store.add_delayed(batch[2].uuid, {key: 9}, source="t")  # replaces True
    store.add_delayed(batch[0].uuid, {"unrelated": 1}, source="t")  # keeps 1
    got = store.distribution(Query(deployment_crn=who.deployment_crn, end_ms=T0 + DAY), key)
    assert got.count == 3
    assert (got.min, got.max) == (1.0, 9.0)
    assert got.mean == pytest.approx((1 + 2.5 + 9) / 3)
