"""Rollup arithmetic without a database: alignment, folding, coarsening and tier checks."""

from __future__ import annotations

import math
import random

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelyard.errors import InvalidInput
from modelyard.store.base import DAY_MS, DEFAULT_TIERS, HOUR_MS, MINUTE_MS, RollupPolicy, Tier
from modelyard.store.rollup import bucket_start, coarsen, fold, validate_policy, validate_tiers
from modelyard.store.summary import QUANTILES, BucketSummary

QS = [q for _, q in QUANTILES]
A = "crn:modelyard:deployment/a"
B = "crn:modelyard:deployment/b"


def test_bucket_start_aligns_to_epoch() -> None:
    assert bucket_start(0, MINUTE_MS) == 0
    assert bucket_start(59_999, MINUTE_MS) == 0
    assert bucket_start(60_000, MINUTE_MS) == 60_000
    ts = 1_764_161_234_567  # 2025-11-26T12:47:14.567Z
    assert bucket_start(ts, HOUR_MS) == 1_764_158_400_000  # 12:00:00Z
    assert bucket_start(ts, DAY_MS) == 1_764_115_200_000  # 00:00:00Z
    assert bucket_start(-1, MINUTE_MS) == -MINUTE_MS  # before 1970: floor, not truncation


@pytest.mark.parametrize("width", [0, -5, 1.5, True, "60s"])
def test_bucket_start_rejects_bad_widths(width: object) -> None:
    with pytest.raises(InvalidInput, match=f"width_ms={width!r}"):
        bucket_start(1000, width)  # type: ignore[arg-type]


def test_bucket_start_rejects_non_integer_timestamps() -> None:
    with pytest.raises(InvalidInput, match=r"1\.5"):
        bucket_start(1.5, MINUTE_MS)  # type: ignore[arg-type]


def test_fold_groups_by_deployment_and_bucket() -> None:
    rows = [
        (A, 1_000, {"x": 1.0, "y": "a"}),
        (A, 59_000, {"x": 3.0, "y": "b"}),
        (A, 61_000, {"x": 10.0}),
        (B, 2_000, orjson.dumps({"x": 7.0})),  # JSON bytes, as stores keep them
        (B, 3_000, '{"x": 9.0, "flag": true}'),
    ]
    buckets = fold(rows, MINUTE_MS)
    assert sorted(buckets) == [(A, 0), (A, 60_000), (B, 0)]
    first = buckets[(A, 0)]
    assert first.records == 2 and first.numeric["x"].total == 4.0
    assert first.categorical["y"].categories == {"a": 1, "b": 1}
    assert buckets[(A, 60_000)].numeric["x"].count == 1
    assert buckets[(B, 0)].numeric["x"].mean == 8.0
    assert buckets[(B, 0)].categorical["flag"].categories == {"true": 1}


def test_fold_rejects_bad_json_naming_the_record() -> None:
    with pytest.raises(InvalidInput, match="not valid JSON"):
        fold([(A, 5, "{not json")], MINUTE_MS)
    with pytest.raises(InvalidInput, match="dict"):
        fold([(A, 5, "[1, 2]")], MINUTE_MS)


def test_coarsen_merges_and_leaves_inputs_unchanged() -> None:
    rows = [(A, m * MINUTE_MS + 5, {"x": float(m)}) for m in range(180)]
    minutes = fold(rows, MINUTE_MS)
    before = {key: summary.to_dict() for key, summary in minutes.items()}
    hours = coarsen(((crn, start, s) for (crn, start), s in minutes.items()), HOUR_MS)
    assert sorted(hours) == [(A, 0), (A, HOUR_MS), (A, 2 * HOUR_MS)]
    assert [hours[(A, h * HOUR_MS)].records for h in range(3)] == [60, 60, 60]
    assert hours[(A, HOUR_MS)].numeric["x"].min == 60.0
    assert {key: summary.to_dict() for key, summary in minutes.items()} == before


def test_coarsen_never_averages_quantiles() -> None:
    # One minute with many small values, one with a single large value: the hourly median must
    # be the median of all values, not the mean of the two minute medians.
    rows = [(A, 1_000, {"x": 1.0})] * 99 + [(A, MINUTE_MS + 1, {"x": 1000.0})]
    minutes = fold(rows, MINUTE_MS)
    hour = coarsen(((c, s, b) for (c, s), b in minutes.items()), HOUR_MS)[(A, 0)]
    assert hour.numeric["x"].quantiles([0.5]) == [1.0]


@settings(max_examples=30, deadline=None, derandomize=True)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 5_000),
    fine=st.sampled_from([MINUTE_MS, 5 * MINUTE_MS, HOUR_MS]),
    factor=st.sampled_from([2, 6, 24]),
)
def test_fold_then_coarsen_equals_folding_at_the_coarse_width(
    seed: int, n: int, fine: int, factor: int
) -> None:
    """Any grouping and order of merges gives the statistics of the union of the records."""
    rng = np.random.default_rng(seed)
    coarse = fine * factor
    times = rng.integers(0, 3 * coarse, n)
    values = rng.lognormal(0.0, 1.5, n)
    labels = rng.choice(["yes", "no", "maybe"], n)
    crns = rng.choice([A, B], n)
    rows = [
        (str(c), int(t), {"v": float(v), "label": str(lab), "nested": {"w": int(t) % 7}})
        for c, t, v, lab in zip(crns, times, values, labels, strict=True)
    ]
    fine_buckets = list(fold(rows, fine).items())
    random.Random(seed).shuffle(fine_buckets)
    via_fine = coarsen(((c, s, b) for (c, s), b in fine_buckets), coarse)
    direct = fold(rows, coarse)
    assert via_fine.keys() == direct.keys()
    for key, expected in direct.items():
        got = via_fine[key]
        mask = (crns == key[0]) & (times - times % coarse == key[1])
        truth = values[mask]
        assert got.records == expected.records == int(mask.sum())
        for summary in (got.numeric["v"], expected.numeric["v"]):
            assert summary.count == truth.size
            assert (summary.min, summary.max) == (truth.min(), truth.max())
            assert summary.total == pytest.approx(math.fsum(truth), rel=1e-9)
            assert summary.total_sq == pytest.approx(math.fsum(truth * truth), rel=1e-9)
            ordered = np.sort(truth)
            eps = 2.0 * summary.rank_error  # 99%-confidence library bound, doubled
            for q, value in zip(QS, summary.quantiles(QS), strict=True):
                below = np.searchsorted(ordered, value, "left") / truth.size
                at_or_below = np.searchsorted(ordered, value, "right") / truth.size
                assert below - eps <= q <= at_or_below + eps
        assert got.categorical["label"].categories == expected.categorical["label"].categories
        assert got.numeric["nested.w"].total == expected.numeric["nested.w"].total


def test_default_tiers_are_valid() -> None:
    assert validate_tiers(DEFAULT_TIERS) == DEFAULT_TIERS
    assert validate_policy(RollupPolicy()) == RollupPolicy()


@pytest.mark.parametrize(
    ("tiers", "message"),
    [
        ((), "empty"),
        ((Tier(0, DAY_MS),), "positive"),
        ((Tier(MINUTE_MS, 0),), "horizon_ms must be a positive"),
        ((Tier(MINUTE_MS, DAY_MS), Tier(90_000, 2 * DAY_MS)), "not a multiple of"),
        ((Tier(MINUTE_MS, DAY_MS), Tier(HOUR_MS, DAY_MS)), "must be longer"),
        ((Tier(MINUTE_MS, None), Tier(HOUR_MS, DAY_MS)), "only the last tier"),
        ((Tier(1.5, DAY_MS),), "integer"),  # type: ignore[arg-type]
    ],
)
def test_validate_tiers_rejects(tiers: tuple[Tier, ...], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        validate_tiers(tiers)


def test_validate_policy_rejects_bad_raw_horizon() -> None:
    with pytest.raises(InvalidInput, match="raw_horizon_ms=-1"):
        validate_policy(RollupPolicy(raw_horizon_ms=-1))


def test_bucket_summaries_survive_storage_between_tiers() -> None:
    """Coarsening buckets read back from bytes equals coarsening the in-memory ones."""
    rows = [(A, i * 1_000, {"x": float(i % 13), "c": str(i % 3)}) for i in range(7_200)]
    minutes = fold(rows, MINUTE_MS)
    stored = [(c, s, BucketSummary.from_bytes(b.to_bytes())) for (c, s), b in minutes.items()]
    from_storage = coarsen(stored, HOUR_MS)
    in_memory = coarsen(((c, s, b) for (c, s), b in minutes.items()), HOUR_MS)
    for key, summary in in_memory.items():
        other = from_storage[key]
        assert other.records == summary.records
        assert other.numeric["x"].count == summary.numeric["x"].count
        assert other.numeric["x"].total == summary.numeric["x"].total
        assert other.categorical["c"].categories == summary.categorical["c"].categories
