"""``find_prediction``: one record by uuid through the uuid index, on every backend."""

from __future__ import annotations

import pytest

from modelyard.errors import InvalidInput, NotFound
from modelyard.store import MetricsStore
from modelyard.store.base import Identity, Prediction, RollupPolicy, Tier

IDENT = Identity("crn:modelyard:model/m", "crn:modelyard:build/b", "crn:modelyard:deployment/d")


def test_find_prediction_merges_delayed_values(store: MetricsStore) -> None:
    store.write_predictions(
        [
            Prediction("a", IDENT, 1_000, 1_005, {"score": 0.2}),
            Prediction("b", IDENT, 1_000, 1_007, {"score": 0.9}),  # same millisecond
        ]
    )
    store.add_delayed("b", {"label": 1}, "test", tracked_ms=5_000)
    record = store.find_prediction("b")
    assert (record.uuid, record.start_ms, record.end_ms) == ("b", 1_000, 1_007)
    assert record.metrics == {"score": 0.9, "label": 1}
    assert record.identity == IDENT
    assert store.find_prediction("a").metrics == {"score": 0.2}


def test_find_prediction_unknown_rolled_up_and_bad(store: MetricsStore) -> None:
    with pytest.raises(NotFound, match="'nope'"):
        store.find_prediction("nope")
    with pytest.raises(InvalidInput, match="uuid"):
        store.find_prediction("")
    store.write_predictions([Prediction("old", IDENT, 1_000, 1_001, {"score": 0.5})])
    store.rollup(RollupPolicy(raw_horizon_ms=1, tiers=(Tier(60_000, None),)), now_ms=10_000_000)
    with pytest.raises(NotFound, match="rolled up"):
        store.find_prediction("old")
