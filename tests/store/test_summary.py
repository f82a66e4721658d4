"""Bucket summaries: flattening rules, exact statistics, sketch bounds, merging, serialisation.

References are numpy on the raw values. Quantile checks use the library's own bound
(``kll_doubles_sketch.get_normalized_rank_error``), which DataSketches derives from the 99th
percentile of the maximum error over many trials, i.e. about 99% confidence per sketch. We allow
twice that bound; over 300 seeded trials of merged sketches the worst error seen was 0.49 of it.
"""

from __future__ import annotations

import math
import struct

import numpy as np
import orjson
import pytest
from datasketches import kll_doubles_sketch
from hypothesis import given, settings
from hypothesis import strategies as st

from modelyard.errors import InvalidInput, ModelyardError
from modelyard.store.summary import (
    KLL_K,
    MAX_CATEGORIES,
    OTHER,
    QUANTILES,
    BucketSummary,
    CategoricalSummary,
    NumericSummary,
)

QS = [q for _, q in QUANTILES]
SLACK = 2.0  # multiples of the stated rank error allowed (the bound is probabilistic)


def numeric(values: np.ndarray | list[float]) -> NumericSummary:
    summary = NumericSummary()
    summary.update_many(np.asarray(values, dtype=np.float64))
    return summary


def assert_rank_within(data: np.ndarray, q: float, value: float, eps: float) -> None:
    """``value`` must sit at a true rank within q ± eps (an interval, since values may repeat)."""
    ordered = np.sort(data)
    below = np.searchsorted(ordered, value, "left") / data.size  # share strictly below
    at_or_below = np.searchsorted(ordered, value, "right") / data.size
    assert below - eps <= q <= at_or_below + eps, (q, value, below, at_or_below, eps)


# -- NumericSummary -------------------------------------------------------------------------------


def test_exact_statistics_match_numpy() -> None:
    data = np.random.default_rng(3).normal(50.0, 7.0, size=150)
    summary = numeric(data)
    assert summary.count == 150
    assert summary.min == data.min() and summary.max == data.max()
    assert summary.total == pytest.approx(math.fsum(data), rel=1e-12)
    assert summary.total_sq == pytest.approx(math.fsum(data * data), rel=1e-12)
    assert summary.mean == pytest.approx(data.mean(), rel=1e-12)
    assert summary.std == pytest.approx(data.std(), rel=1e-9)


def test_quantiles_are_exact_while_sketch_holds_everything() -> None:
    data = np.random.default_rng(4).integers(0, 20, size=KLL_K).astype(float)
    summary = numeric(data)
    assert summary.is_exact
    assert summary.rank_error == 0.0
    expected = np.quantile(data, QS, method="inverted_cdf")
    assert summary.quantiles(QS) == list(expected)
    assert summary.quantiles([0.0, 1.0]) == [data.min(), data.max()]


def test_rank_error_is_the_library_value_in_estimation_mode() -> None:
    data = np.random.default_rng(5).exponential(size=50_000)
    summary = numeric(data)
    assert not summary.is_exact
    assert summary.rank_error == kll_doubles_sketch.get_normalized_rank_error(KLL_K, False)
    assert summary.rank_error == pytest.approx(0.0133, abs=1e-4)
    assert summary.histogram_rank_error == kll_doubles_sketch.get_normalized_rank_error(KLL_K, True)
    for q, value in zip(QS, summary.quantiles(QS), strict=True):
        assert_rank_within(data, q, value, SLACK * summary.rank_error)


def test_single_updates_equal_vectorised_updates() -> None:
    data = np.random.default_rng(6).uniform(-5, 5, size=10_000)  # crosses the internal buffer
    one_by_one = NumericSummary()
    for value in data:
        one_by_one.update(float(value))
    batched = numeric(data)
    assert one_by_one.count == batched.count == 10_000
    assert one_by_one.min == batched.min and one_by_one.max == batched.max
    assert one_by_one.total == pytest.approx(batched.total, rel=1e-12)
    assert one_by_one.std == pytest.approx(batched.std, rel=1e-9)
    for q, value in zip(QS, one_by_one.quantiles(QS), strict=True):
        assert_rank_within(data, q, value, SLACK * one_by_one.rank_error)


@pytest.mark.parametrize("n", [1, 5, 31, 32, 100])
def test_few_single_updates_match_numpy(n: int) -> None:
    # Short buffers are folded in plain Python, longer ones with numpy: both must agree.
    data = np.random.default_rng(n).normal(3.0, 2.0, size=n)
    summary = NumericSummary()
    for value in data:
        summary.update(float(value))
    assert summary.count == n
    assert (summary.min, summary.max) == (data.min(), data.max())
    assert summary.total == pytest.approx(data.sum(), rel=1e-12)
    assert summary.total_sq == pytest.approx(np.dot(data, data), rel=1e-12)
    assert summary.std == pytest.approx(data.std(), rel=1e-9, abs=1e-12)
    assert summary.quantiles(QS) == list(np.quantile(data, QS, method="inverted_cdf"))


def test_std_is_stable_for_large_offsets() -> None:
    # Sum of squares would cancel catastrophically here; the Welford/Chan moments do not.
    data = 1.7e12 + np.arange(1000, dtype=float)
    left, right = numeric(data[:300]), numeric(data[300:])
    left += right
    assert left.std == pytest.approx(data.std(), rel=1e-6)


def test_histogram_exact_matches_numpy() -> None:
    data = np.random.default_rng(7).integers(0, 10, size=180).astype(float)
    edges = [0.0, 2.5, 5.0, 7.0, 9.0]
    expected, _ = np.histogram(data, bins=edges)
    assert numeric(data).histogram(edges) == list(expected)
    # values outside the edges are not counted, the last bin includes its right edge
    assert numeric([1.0, 2.0, 3.0, 10.0]).histogram([2.0, 3.0]) == [2]


def test_histogram_approximate_within_pmf_bound() -> None:
    data = np.random.default_rng(8).normal(size=100_000)
    summary = numeric(data)
    edges = np.linspace(-3, 3, 13)
    expected, _ = np.histogram(data, bins=edges)
    got = summary.histogram(list(edges))
    eps = SLACK * summary.histogram_rank_error
    for g, e in zip(got, expected, strict=True):
        assert abs(g - e) <= eps * data.size
    assert all(g >= 0 for g in got)


def test_empty_numeric_summary() -> None:
    summary = NumericSummary()
    assert summary.count == 0 and summary.is_exact and summary.rank_error == 0.0
    assert math.isnan(summary.mean) and math.isnan(summary.std)
    assert all(math.isnan(v) for v in summary.quantiles([0.5, 0.9]))
    assert summary.histogram([0.0, 1.0]) == [0]
    shape = summary.to_dict()
    assert shape["count"] == 0 and shape["min"] is None and shape["p50"] is None


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, "3", None])
def test_update_rejects_non_finite_and_non_numbers(bad: object) -> None:
    with pytest.raises(InvalidInput, match="not"):
        NumericSummary().update(bad)  # type: ignore[arg-type]


def test_update_many_rejects_nan_naming_it() -> None:
    summary = NumericSummary()
    with pytest.raises(InvalidInput, match="nan"):
        summary.update_many(np.array([1.0, np.nan]))
    assert summary.count == 0  # nothing half-applied


def test_update_many_accepts_read_only_arrays() -> None:
    """pandas 3 returns read-only arrays from ``Series.to_numpy()``; DataSketches' binding
    refuses those, so the summary copies them (and only them) before sketching."""
    import pandas as pd

    data = np.random.default_rng(11).lognormal(0.0, 1.0, size=500)
    from_pandas = pd.Series(data).to_numpy()
    frozen = data.copy()
    frozen.flags.writeable = False
    reference = numeric(data)
    for values in (from_pandas, frozen):
        assert not values.flags.writeable
        summary = NumericSummary()
        summary.update_many(values)
        got, want = summary.to_dict(), reference.to_dict()
        for key in ("count", "sum", "min", "max", "mean", "std"):
            assert got[key] == want[key], key
        for name, q in QUANTILES:  # KLL compaction is randomised: within its bound, not equal
            assert_rank_within(data, q, got[name], SLACK * got["rank_error"])
        assert not values.flags.writeable  # the caller's array is left as it was
    np.testing.assert_array_equal(frozen, data)


@pytest.mark.parametrize(
    ("edges", "message"),
    [([1.0], "at least two"), ([1.0, 1.0], "strictly increasing"), ([0.0, math.inf], "finite")],
)
def test_histogram_rejects_bad_edges(edges: list[float], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        numeric([1.0]).histogram(edges)


def test_quantiles_reject_ranks_outside_unit_interval() -> None:
    with pytest.raises(InvalidInput, match=r"1\.5"):
        numeric([1.0]).quantiles([0.5, 1.5])


def test_merge_with_itself_doubles() -> None:
    summary = numeric([1.0, 2.0, 3.0])
    summary.merge(summary)
    assert summary.count == 6 and summary.total == 12.0


def test_merge_rejects_other_types() -> None:
    with pytest.raises(InvalidInput, match="CategoricalSummary"):
        NumericSummary().merge(CategoricalSummary())  # type: ignore[arg-type]


def test_numeric_to_dict_shape() -> None:
    shape = numeric([1.0, 2.0, 3.0, 4.0]).to_dict()
    assert list(shape) == [
        "count",
        "sum",
        "min",
        "max",
        "mean",
        "std",
        *(name for name, _ in QUANTILES),
        "rank_error",
    ]
    assert shape["p50"] == 2.0 and shape["p99"] == 4.0 and shape["rank_error"] == 0.0


# -- CategoricalSummary ---------------------------------------------------------------------------


def test_categorical_counts_and_cap() -> None:
    summary = CategoricalSummary(max_categories=3)
    for category in ["a", "b", "a", "c", "d", "e", "a"]:
        summary.update(category)
    assert summary.categories == {"a": 3, "b": 1, "c": 1, OTHER: 2}
    assert summary.count == 7
    assert CategoricalSummary().max_categories == MAX_CATEGORIES == 1000


def test_categorical_merge_over_cap_keeps_most_frequent_and_total() -> None:
    left, right = CategoricalSummary(2), CategoricalSummary(2)
    left.update("a", 5)
    left.update("b", 1)
    right.update("c", 4)
    right.update("b", 1)
    left += right
    assert left.categories == {"a": 5, "c": 4, OTHER: 2}
    assert left.count == 11


@pytest.mark.parametrize(("category", "n"), [(3, 1), ("a", 0), ("a", True)])
def test_categorical_rejects_bad_updates(category: object, n: object) -> None:
    with pytest.raises(InvalidInput):
        CategoricalSummary().update(category, n)  # type: ignore[arg-type]


def test_categorical_cap_must_be_positive() -> None:
    with pytest.raises(InvalidInput, match="max_categories=0"):
        CategoricalSummary(0)


# -- BucketSummary --------------------------------------------------------------------------------


def test_flattening_rules() -> None:
    bucket = BucketSummary()
    bucket.add_metrics(
        {
            "latency": 12.5,
            "count": 3,
            "flag": True,
            "label": "churn",
            "scores": [0.1, 0.9],
            "tags": ["x", "y", "x"],
            "nested": {"a": {"b": 1}, "c": False},
            "np": np.float32(2.0),
            "npint": np.int64(4),
            "none": None,
            "nan": math.nan,
            "huge": 10**400,
            "deep_list": [[1, 2], {"k": 1}],
            "raw": b"bytes",
        }
    )
    assert sorted(bucket.numeric) == ["count", "latency", "nested.a.b", "np", "npint", "scores"]
    assert sorted(bucket.categorical) == ["flag", "label", "nested.c", "tags"]
    assert bucket.numeric["scores"].count == 2
    assert bucket.numeric["count"].total == 3.0
    assert bucket.categorical["flag"].categories == {"true": 1}  # bool is not the number 1
    assert bucket.categorical["nested.c"].categories == {"false": 1}
    assert bucket.categorical["tags"].categories == {"x": 2, "y": 1}
    # none, nan, huge, two deep_list elements and raw
    assert bucket.skipped == 6
    assert bucket.records == 1


def test_key_that_is_numeric_and_categorical_keeps_both() -> None:
    bucket = BucketSummary()
    bucket.add_metrics({"score": 0.5})
    bucket.add_metrics({"score": "n/a"})
    bucket.add_metrics({"score": 1.5})
    shape = bucket.to_dict()["score"]
    assert shape["count"] == 2 and shape["sum"] == 2.0
    assert shape["categories"] == {"n/a": 1} and shape["categorical_count"] == 1


def test_bucket_to_dict_shape() -> None:
    bucket = BucketSummary()
    bucket.add_metrics({"a": 1.0, "b": "x"})
    bucket.add_metrics({"a": 3.0, "b": "x"})
    shape = bucket.to_dict()
    assert shape["_records"] == 2
    assert "_skipped" not in shape  # only present when something was skipped
    assert shape["a"]["count"] == 2 and shape["a"]["mean"] == 2.0
    assert shape["b"] == {"count": 2, "categories": {"x": 2}}
    orjson.dumps(shape)  # JSON-ready
    bucket.add_metrics({"a": None})
    assert bucket.to_dict()["_skipped"] == 1


def test_add_metrics_rejects_non_dicts() -> None:
    with pytest.raises(InvalidInput, match="list"):
        BucketSummary().add_metrics([1, 2])  # type: ignore[arg-type]


def test_bucket_merge_does_not_alias() -> None:
    left, right = BucketSummary(), BucketSummary()
    right.add_metrics({"a": 1.0, "b": "x"})
    left.merge(right)
    left.add_metrics({"a": 5.0, "b": "y"})
    assert right.numeric["a"].count == 1 and right.categorical["b"].count == 1
    assert left.numeric["a"].count == 2


def test_round_trip_bytes() -> None:
    rng = np.random.default_rng(9)
    bucket = BucketSummary()
    for i in range(3000):
        bucket.add_metrics({"x": float(rng.normal()), "c": f"k{i % 7}", "n": None, "i": i})
    bucket.add_metrics({"only_once": 1})
    data = bucket.to_bytes()
    copy = BucketSummary.from_bytes(memoryview(data))
    assert copy == bucket
    assert copy.to_dict() == bucket.to_dict()
    # Bytes match up to the sketch's "level zero sorted" flag, which a quantile query sets.
    assert len(copy.to_bytes()) == len(data)
    assert BucketSummary.from_bytes(copy.to_bytes()) == bucket
    assert copy.numeric["x"].rank_error > 0
    # a k=200 sketch stays small however many values it has seen
    assert len(data) < 3 * 6_000


def test_round_trip_empty_and_empty_numeric() -> None:
    assert BucketSummary.from_bytes(BucketSummary().to_bytes()) == BucketSummary()


def damaged(data: bytes) -> list[tuple[bytes, str]]:
    header_len = struct.unpack_from("<I", data, 5)[0]
    return [
        (b"", "too short"),
        (b"XXXX" + data[4:], "not a bucket summary"),
        (data[:4] + bytes([99]) + data[5:], "version 99"),
        (data[:-3], "damaged|truncated"),
        (data + b"\x00", "trailing"),
        (data[:9] + b"{" * header_len + data[9 + header_len :], "damaged"),
    ]


def test_from_bytes_rejects_damage() -> None:
    bucket = BucketSummary()
    for i in range(500):
        bucket.add_metrics({"x": float(i)})
    for bad, message in damaged(bucket.to_bytes()):
        with pytest.raises(InvalidInput, match=message) as info:
            BucketSummary.from_bytes(bad)
        assert isinstance(info.value, ModelyardError)


def test_from_bytes_never_unpickles() -> None:
    import pickle

    with pytest.raises(InvalidInput):
        BucketSummary.from_bytes(pickle.dumps(BucketSummary().to_dict()))


# -- properties -----------------------------------------------------------------------------------


def split_and_merge(parts: list[NumericSummary], order: list[int], tree: bool) -> NumericSummary:
    """Merge ``parts`` in the given order, either left to right or as a balanced tree."""
    items = [parts[i] for i in order]
    if not tree:
        total = NumericSummary()
        for item in items:
            total += item
        return total
    while len(items) > 1:
        paired = []
        for i in range(0, len(items) - 1, 2):
            items[i].merge(items[i + 1])
            paired.append(items[i])
        if len(items) % 2:
            paired.append(items[-1])
        items = paired
    return items[0]


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 20_000),
    pieces=st.integers(1, 12),
    shape=st.sampled_from(["normal", "lognormal", "integers", "constant"]),
    tree=st.booleans(),
)
def test_merged_numeric_equals_statistics_of_union(
    seed: int, n: int, pieces: int, shape: str, tree: bool
) -> None:
    rng = np.random.default_rng(seed)
    data = {
        "normal": lambda: rng.normal(100.0, 20.0, n),
        "lognormal": lambda: rng.lognormal(0.0, 2.0, n),
        "integers": lambda: rng.integers(-50, 50, n).astype(float),
        "constant": lambda: np.full(n, 4.25),
    }[shape]()
    cuts = np.sort(rng.integers(0, n + 1, pieces - 1))
    parts = [numeric(chunk) for chunk in np.split(data, cuts)]
    merged = split_and_merge(parts, list(rng.permutation(len(parts))), tree)

    assert merged.count == n
    assert merged.min == data.min() and merged.max == data.max()
    scale = math.fsum(np.abs(data)) + 1.0
    assert abs(merged.total - math.fsum(data)) <= 1e-9 * scale
    assert abs(merged.total_sq - math.fsum(data * data)) <= 1e-9 * (math.fsum(data * data) + 1)
    assert merged.std == pytest.approx(data.std(), rel=1e-6, abs=1e-9)
    assert merged.is_exact == (n <= KLL_K)
    eps = SLACK * merged.rank_error
    for q, value in zip(QS, merged.quantiles(QS), strict=True):
        assert_rank_within(data, q, value, eps)


scalar = st.one_of(
    st.floats(-1e6, 1e6, allow_nan=False),
    st.integers(-1000, 1000),
    st.booleans(),
    st.sampled_from(["a", "b", "c"]),
    st.none(),
)
record = st.dictionaries(
    st.sampled_from(["x", "y", "z"]),
    st.one_of(scalar, st.lists(scalar, max_size=3), st.dictionaries(st.just("k"), scalar)),
    max_size=3,
)


@settings(max_examples=60, deadline=None)
@given(records=st.lists(record, max_size=40), data=st.data())
def test_bucket_merge_in_any_grouping_equals_one_bucket(
    records: list[dict[str, object]], data: st.DataObject
) -> None:
    whole = BucketSummary()
    for metrics in records:
        whole.add_metrics(metrics)
    group_of = [data.draw(st.integers(0, 3)) for _ in records]
    groups = [BucketSummary() for _ in range(4)]
    for metrics, group in zip(records, group_of, strict=True):
        groups[group].add_metrics(metrics)
    order = data.draw(st.permutations(range(4)))
    merged = BucketSummary()
    for index in order:
        merged += groups[index]

    assert merged.records == whole.records and merged.skipped == whole.skipped
    assert merged.keys() == whole.keys()
    for key, expected in whole.numeric.items():
        got = merged.numeric[key]
        assert (got.count, got.min, got.max) == (expected.count, expected.min, expected.max)
        assert got.total == pytest.approx(expected.total, rel=1e-9, abs=1e-6)
        # all small: the sketches hold every value, so quantiles are exact and equal
        assert got.quantiles(QS) == expected.quantiles(QS)
    for key, expected_c in whole.categorical.items():
        assert merged.categorical[key].categories == expected_c.categories
    restored = BucketSummary.from_bytes(merged.to_bytes())
    assert restored == merged
