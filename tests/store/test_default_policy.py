"""The default rollup policy keeps every tier: each tier's horizon exceeds the raw horizon."""

from __future__ import annotations

from pathlib import Path

from modelyard.store import DEFAULT_TIERS, Identity, Prediction, RollupPolicy, SQLiteStore
from modelyard.store.base import DAY_MS, HOUR_MS, MINUTE_MS

NOW = 1_800_000_000_000
IDENTITY = Identity("crn:modelyard:model/m", "crn:modelyard:build/b", "crn:modelyard:deployment/d")


def test_every_default_tier_outlives_the_raw_horizon() -> None:
    raw = RollupPolicy().raw_horizon_ms
    horizons = [t.horizon_ms for t in DEFAULT_TIERS]
    assert all(h is None or h > raw for h in horizons), horizons


def test_defaults_put_each_age_in_its_own_tier(tmp_path: Path) -> None:
    ages_days = {"minute": 32, "hour": 100, "day": 500}
    with SQLiteStore(tmp_path / "m.db") as store:
        store.write_predictions(
            [
                Prediction(name, IDENTITY, NOW - days * DAY_MS, NOW - days * DAY_MS + 5, {"v": 1})
                for name, days in ages_days.items()
            ]
        )
        store.rollup(RollupPolicy(), now_ms=NOW)
        buckets = store.info().rollup_buckets
    assert {int(k): v for k, v in buckets.items() if v} == {MINUTE_MS: 1, HOUR_MS: 1, DAY_MS: 1}
