"""``modelyard store info`` shows the rollup policy in force next to the bucket counts."""

from __future__ import annotations

import orjson
import pytest
from click.testing import CliRunner

from modelyard.cli import cli
from modelyard.store import DEFAULT_TIERS, Identity, Prediction, RollupPolicy, open_store

DAY = 86_400_000
NOW = 1_790_000_000_000


def _info(*args: str) -> str:
    result = CliRunner().invoke(cli, ["store", "info", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_store_info_shows_the_policy_in_force(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELYARD_RAW_HORIZON", "12d")
    who = Identity("crn:m/1", "crn:b/1", "crn:d/1")
    with open_store() as store:  # three old predictions folded into one 1-minute bucket
        store.write_predictions(
            [
                Prediction(f"u{i}", who, NOW - 2 * DAY + i, NOW - 2 * DAY + i, {"s": i})
                for i in range(3)
            ]
        )
        store.rollup(RollupPolicy(raw_horizon_ms=DAY), now_ms=NOW)

    data = orjson.loads(_info("--json"))
    assert data["rollup_policy"] == {
        "raw_horizon_ms": 12 * DAY,
        "tiers": [{"width_ms": t.width_ms, "horizon_ms": t.horizon_ms} for t in DEFAULT_TIERS],
    }
    assert data["rollup_buckets"] == {"60000": 1}

    table = _info()
    assert "raw horizon" in table and "12d (MODELYARD_RAW_HORIZON)" in table
    assert "1 (kept 35d, then merged into 1h)" in table  # the one bucket, with its tier's horizon
    assert "0 (kept 395d, then merged into 1d)" in table
    assert "0 (kept forever)" in table
