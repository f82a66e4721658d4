"""Store contract, dashboard reads: ``recent`` (newest first, bounded) and ``Query.tier_ms`` (one
rollup tier), on every backend (SQLite file, SQLite in memory, PostgreSQL)."""

from __future__ import annotations

import pytest
from test_contract import DAY, HOUR, MIN, T0, ident, preds

from modelyard.errors import InvalidInput
from modelyard.store import MetricsStore, Query, RecordKind, RollupPolicy, Tier

PRED = frozenset({RecordKind.PREDICTION})
ROLL = frozenset({RecordKind.ROLLUP})


def test_recent_reads_the_newest_records_first(store: MetricsStore) -> None:
    one = ident()
    model = one.model_crn
    two = ident(model=model)
    store.write_predictions(preds(one, 300, step=1000) + preds(two, 300, start=T0 + 500))
    newest = store.recent(Query(model_crn=model, kinds=PRED, end_ms=T0 + DAY), 7)
    expected = sorted(
        store.read(Query(model_crn=model, kinds=PRED, end_ms=T0 + DAY))[0],
        key=lambda r: (r.start_ms, r.uuid),
    )[-7:][::-1]
    assert [r.uuid for r in newest] == [r.uuid for r in expected]
    assert [r.start_ms for r in newest] == sorted((r.start_ms for r in newest), reverse=True)
    assert {r.identity.deployment_crn for r in newest} == {one.deployment_crn, two.deployment_crn}
    window = store.recent(
        Query(deployment_crn=one.deployment_crn, kinds=PRED, end_ms=T0 + 9_000), 3
    )
    assert [r.start_ms for r in window] == [T0 + 9_000, T0 + 8_000, T0 + 7_000]
    assert len(store.recent(Query(model_crn=model, kinds=PRED, end_ms=T0 + DAY), 1000)) == 600
    with pytest.raises(InvalidInput, match="limit=0"):
        store.recent(Query(model_crn=model), 0)


def test_tier_ms_keeps_one_rollup_tier(store: MetricsStore) -> None:
    dep = ident()
    now = T0 + 10 * DAY
    # Two days of old rows, one a minute: the older day past the minute tier's horizon.
    store.write_predictions(preds(dep, 2 * 24 * 60, start=now - 4 * DAY, step=MIN))
    policy = RollupPolicy(raw_horizon_ms=DAY, tiers=(Tier(MIN, 3 * DAY), Tier(HOUR, None)))
    store.rollup(policy, now_ms=now)
    base = Query(deployment_crn=dep.deployment_crn, kinds=ROLL, end_ms=now)
    everything = store.read(base)[0]
    minutes = store.read(Query(**{**_fields(base), "tier_ms": MIN}))[0]
    hours = store.read(Query(**{**_fields(base), "tier_ms": HOUR}))[0]
    assert minutes and hours and len(minutes) + len(hours) == len(everything)
    assert {r.tier_ms for r in minutes} == {MIN} and {r.tier_ms for r in hours} == {HOUR}
    assert store.read(Query(**{**_fields(base), "tier_ms": DAY}))[0] == []
    with pytest.raises(InvalidInput, match="tier_ms=0"):
        store.read(Query(**{**_fields(base), "tier_ms": 0}))


def _fields(query: Query) -> dict[str, object]:
    return {name: getattr(query, name) for name in Query.__dataclass_fields__}
