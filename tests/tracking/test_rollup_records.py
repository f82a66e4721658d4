"""Rollup records returned by ``read_metrics`` are marked (``kind``, ``tierMs``) while prediction
and aggregate records keep exactly the reference's keys: embedded, and remote through a real
server (uvicorn in a thread, loopback)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import modelyard
from _live import remote_sdk
from modelyard.store import Identity, Prediction, RollupPolicy, open_store
from modelyard.tracking import backends

REFERENCE_KEYS = {
    "modelDeploymentCrn",
    "modelBuildCrn",
    "modelCrn",
    "startTimeStampMs",
    "endTimeStampMs",
    "predictionUuid",
    "metrics",
}
WHO = Identity(
    "crn:modelyard:model/33333333-3333-4333-8333-333333333331",
    "crn:modelyard:build/33333333-3333-4333-8333-333333333332",
    "crn:modelyard:deployment/33333333-3333-4333-8333-333333333333",
)
DAY = 86_400_000
NOW = 1_790_000_000_000
OLD = NOW - 40 * DAY  # beyond the default 30-day raw horizon


def _fill(database_url: str | None = None) -> None:
    """Old predictions (rolled up, coarsened to 1-hour buckets), recent ones, an aggregate."""
    old = [
        Prediction(f"old-{i}", WHO, OLD + i * 1000, OLD + i * 1000 + 5, {"s": i}) for i in range(5)
    ]
    new = [Prediction(f"new-{i}", WHO, NOW + i, NOW + i + 5, {"s": i}) for i in range(3)]
    with open_store(database_url) as store:
        store.write_predictions(old + new)
        store.add_aggregate(WHO.deployment_crn, NOW, NOW + 60_000, {"auc": 0.8})
        report = store.rollup(RollupPolicy(), now_ms=NOW + DAY)
    assert report.raw_rolled == 5


def _check(records: list[dict[str, object]]) -> None:
    rollups = [r for r in records if r.get("kind") == "rollup"]
    others = [r for r in records if r.get("kind") != "rollup"]
    assert len(rollups) == 1 and len(others) == 4
    (bucket,) = rollups
    assert set(bucket) == REFERENCE_KEYS | {"kind", "tierMs"}
    assert (
        bucket["tierMs"] == 3_600_000
    )  # 40 days old: past the 1-minute tier too and bucket["predictionUuid"] is None
    assert bucket["metrics"]["s"]["count"] == 5  # type: ignore[index]
    for record in others:  # predictions and the aggregate: the reference's keys, nothing more
        assert set(record) == REFERENCE_KEYS


def test_embedded_read_metrics_marks_rollups_only() -> None:
    _fill()
    _check(modelyard.read_metrics(WHO.deployment_crn, end_timestamp_ms=NOW + DAY)["metrics"])


@pytest.fixture
def remote(modelyard_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with remote_sdk(modelyard_home, monkeypatch) as url:
        yield url


def test_remote_read_metrics_round_trips_the_rollup_marks(
    remote: str, modelyard_home: Path
) -> None:
    _fill(f"sqlite:///{modelyard_home / 'modelyard.db'}")
    records = modelyard.read_metrics(WHO.deployment_crn, end_timestamp_ms=NOW + DAY)["metrics"]
    assert backends.select().name == "remote"
    _check(records)
    frame = modelyard.read_metrics_frame(WHO.deployment_crn, end_timestamp_ms=NOW + DAY)
    assert sorted(frame["kind"]) == [
        "aggregate",
        "prediction",
        "prediction",
        "prediction",
        "rollup",
    ]
    assert frame.loc[frame["kind"] == "rollup", "tierMs"].tolist() == [3_600_000]
