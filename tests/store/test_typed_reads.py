"""Numeric metrics stored typed (schema version 7) read back exactly as JSON would have given them:
records (values, types, key order), frames (column for column against the JSON path of the
frame builder), distributions, and rollup, on every backend."""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import orjson
import pandas.testing as pdt
import pytest

from modelyard.errors import PayloadTooLarge
from modelyard.store import (
    Identity,
    MetricsStore,
    Prediction,
    Query,
    RecordKind,
    RowBatch,
    sqlaccess,
    typed,
)
from modelyard.store.sqlite import SQLiteStore
from modelyard.tracking.frame import batch_to_frame

WHO = Identity("crn:modelyard:model/t", "crn:modelyard:build/t", "crn:modelyard:deployment/t")
T0 = 1_700_000_000_000
RAW = frozenset({RecordKind.PREDICTION})


def _value(rng: random.Random) -> Any:
    return rng.choice(
        [
            rng.random(),
            rng.randint(-5, 5),
            rng.random() < 0.5,
            "text",
            None,
            float("nan"),
            float("inf"),
            2**63 + 1,
            -(2**63),
            -0.0,
            np.float64(1.25),
            np.int64(3),
            {"inner": rng.random(), "deep": {"x": 1}},
            [1, "a"],
        ]
    )


def _records(n: int, seed: int) -> list[dict[str, Any]]:
    """Records of a few recurring layouts (most rows all-numeric, as in practice) and some odd
    ones: any value, missing keys, keys in another order, an empty dict."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for i in range(n):
        pick = rng.random()
        if pick < 0.6:
            out.append({"score": rng.random(), "n": rng.randint(0, 9), "ok": i % 3 == 0})
        elif pick < 0.7:
            out.append({"n": rng.randint(0, 9), "score": rng.random()})
        elif pick < 0.75:
            out.append({})
        else:
            keys = rng.sample(["score", "n", "ok", "label", "features", "x"], rng.randint(1, 4))
            out.append({k: _value(rng) for k in keys})
    return out


def _as_json(metrics: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = orjson.loads(orjson.dumps(metrics, option=orjson.OPT_SERIALIZE_NUMPY))
    return out


def _json_frame(records: list[dict[str, Any]], batch_size: int = 1_000) -> Any:
    """What the frame builder makes of these merged metrics as JSON text (the pre-7 path), in
    batches as a scan of ``batch_size`` gives them."""
    batches = []
    for at in range(0, len(records), batch_size):
        part = range(at, min(at + batch_size, len(records)))
        n = len(part)
        batches.append(
            RowBatch(
                kind=["prediction"] * n,
                uuid=[f"u{i:05d}" for i in part],
                model_crn=[WHO.model_crn] * n,
                build_crn=[WHO.build_crn] * n,
                deployment_crn=[WHO.deployment_crn] * n,
                start_ms=[T0 + i for i in part],
                end_ms=[T0 + i + 1 for i in part],
                metrics=[orjson.dumps(records[i]).decode() for i in part],
                tier_ms=[None] * n,
            )
        )
    return batch_to_frame(batches)


def _write(store: MetricsStore, records: list[dict[str, Any]], first: int = 0) -> None:
    store.write_predictions(
        [
            Prediction(f"u{i:05d}", WHO, T0 + i, T0 + i + 1, m)
            for i, m in enumerate(records, start=first)
        ]
    )


DELAYED: list[tuple[int, dict[str, Any]]] = [
    (1, {"label": 1}),
    (2, {"score": "overridden", "label": 0}),
    (3, {"score": None}),
    (4, {"n": 2.5}),
    (5, {"ok": False, "label": 1}),
    (6, {"n": 7}),
    (7, {"new": {"a": 1}}),
]


@pytest.mark.parametrize("seed", [1, 2])
def test_records_and_frames_read_as_their_json(store: MetricsStore, seed: int) -> None:
    records = _records(400, seed)
    _write(store, records)
    expected = [_as_json(m) for m in records]
    for i, values in DELAYED:
        store.add_delayed(f"u{i:05d}", values, "test")
        expected[i].update(_as_json(values))
    got = store.read(Query(deployment_crn=WHO.deployment_crn, kinds=RAW))[0]
    # Same values, types and key order, byte for byte.
    assert orjson.dumps([r.metrics for r in got]) == orjson.dumps(expected)
    for batch_size in (400, 37):  # one batch; and many, most of them mixing layouts
        frame = batch_to_frame(
            store.scan(Query(deployment_crn=WHO.deployment_crn, kinds=RAW), batch_size)
        )
        pdt.assert_frame_equal(frame, _json_frame(expected, batch_size))
    # The JSON text of a typed batch is there for readers that want it.
    (first,) = store.scan(Query(deployment_crn=WHO.deployment_crn, kinds=RAW), 400)
    assert [orjson.loads(t) for t in first.metrics] == expected
    # Distributions take the typed column: numbers only (no booleans, nulls or text), finite.
    numbers = [
        float(m["score"])
        for m in expected
        if type(m.get("score")) in (int, float) and math.isfinite(m["score"])
    ]
    dist = store.distribution(Query(deployment_crn=WHO.deployment_crn, kinds=RAW), "score")
    assert dist.count == len(numbers)
    assert dist.min == min(numbers) and dist.max == max(numbers)


def test_one_layout_batch_is_one_typed_buffer(store: MetricsStore) -> None:
    _write(store, [{"a": float(i), "b": i, "c": i % 2 == 0} for i in range(50)])
    (batch,) = store.scan(Query(deployment_crn=WHO.deployment_crn), 100)
    assert batch.columns is not None
    columns = batch.columns.columns()
    assert [(k, v.dtype.kind) for k, v in columns.items()] == [("a", "f"), ("b", "i"), ("c", "b")]
    frame = batch_to_frame([batch])
    assert frame["a"].dtype == np.float64 and frame["b"].dtype == np.int64
    frame.loc[0, "a"] = -1.0  # the frame owns its arrays (not views of the fetched bytes)
    assert frame["a"].iloc[0] == -1.0


def test_rollup_folds_typed_rows(store: MetricsStore) -> None:
    _write(store, [{"score": i / 10, "segment": "ab"[i % 2]} for i in range(10)])
    store.add_delayed("u00003", {"truth": 1}, "test")
    report = store.rollup(now_ms=T0 + 400 * 86_400_000)
    assert report.raw_rolled == 10
    (bucket,) = store.read(Query(deployment_crn=WHO.deployment_crn))[0]
    assert bucket.metrics["score"]["count"] == 10
    assert bucket.metrics["score"]["max"] == pytest.approx(0.9)
    assert bucket.metrics["segment"]["categories"] == {"a": 5, "b": 5}
    assert bucket.metrics["truth"]["count"] == 1


def test_the_size_limit_still_counts_json_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELYARD_MAX_RECORD_BYTES", "1000")
    with SQLiteStore(":memory:") as store:
        fits = {f"k{i:02d}": 1.0 for i in range(99)}  # 991 bytes of JSON: under the limit
        assert len(orjson.dumps(fits)) == 991
        _write(store, [fits])
        too_big = {f"k{i:02d}": 1.0 for i in range(100)}  # 1001 bytes
        with pytest.raises(PayloadTooLarge, match=r"metrics are \d+ bytes"):
            store.write_predictions([Prediction("big", WHO, T0, T0, too_big)])


def test_past_the_layout_limit_records_are_kept_as_json(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(typed, "MAX_LAYOUTS", 2)
    records = [{f"k{i}": float(i)} for i in range(5)]
    with SQLiteStore(":memory:") as store:
        _write(store, records[:2])  # two layouts: the limit
        _write(store, records[2:], first=2)
        with sqlaccess.reading(store) as cur:
            cur.execute("SELECT layout_id IS NULL FROM predictions ORDER BY start_ms")
            assert [bool(r[0]) for r in cur.fetchall()] == [False, False, True, True, True]
        got = store.read(Query(deployment_crn=WHO.deployment_crn))[0]
        assert [r.metrics for r in got] == records
        frame = batch_to_frame(store.scan(Query(deployment_crn=WHO.deployment_crn)))
        pdt.assert_frame_equal(frame, _json_frame(records))


def test_pages_of_one_layout_come_column_wise_with_their_delayed_values(
    store: MetricsStore,
) -> None:
    records = [{"score": i / 7, "n": i, "ok": i % 2 == 0} for i in range(120)]
    records[100] = {"other": 1.0}  # one page of the last holds two layouts: read row by row
    _write(store, records)
    expected = [_as_json(m) for m in records]
    late: list[tuple[int, dict[str, Any]]] = [
        (3, {"label": 1}),
        (4, {"score": "x"}),
        (50, {"n": 2.5}),
        (51, {"ok": 1}),
    ]
    for i, values in late:
        store.add_delayed(f"u{i:05d}", values, "test")
        expected[i].update(values)
    query = Query(deployment_crn=WHO.deployment_crn, kinds=RAW)
    batches = list(store.scan(query, 40))
    assert [type(b.columns).__name__ for b in batches] == ["PackedMetrics"] * 2 + ["TypedMetrics"]
    pdt.assert_frame_equal(batch_to_frame(batches), _json_frame(expected, 40))
    assert [orjson.loads(t) for b in batches for t in b.metrics] == expected
    assert [u for b in batches for u in b.uuid] == [f"u{i:05d}" for i in range(120)]


def test_a_uuid_holding_the_page_separator_is_read_row_by_row(store: MetricsStore) -> None:
    ids = ["a\x1fb", "c", "d"]
    store.write_predictions(
        [Prediction(u, WHO, T0 + i, T0 + i, {"x": float(i)}) for i, u in enumerate(ids)]
    )
    (batch,) = store.scan(Query(deployment_crn=WHO.deployment_crn), 10)
    assert batch.uuid == ids
    assert batch_to_frame([batch])["x"].tolist() == [0.0, 1.0, 2.0]


def test_identifier_columns_are_typed_as_pandas_types_lists_of_strings(
    store: MetricsStore,
) -> None:
    import pandas as pd

    _write(store, [{"x": 1.0}, {"x": 2.0}])
    store.add_aggregate(WHO.deployment_crn, T0, T0 + 5, {"auc": 0.5})  # a row without a uuid
    frame = batch_to_frame(store.scan(Query(deployment_crn=WHO.deployment_crn)))
    plain = pd.DataFrame(
        {
            "kind": ["prediction", "prediction", "aggregate"],
            "predictionUuid": ["u00000", "u00001", None],
            "modelCrn": [WHO.model_crn] * 3,
        }
    )
    pdt.assert_frame_equal(frame[list(plain.columns)], plain)


def test_column_pages_join_into_owned_columns_with_their_times(store: MetricsStore) -> None:
    records = [{"a": i / 3, "b": i, "c": i % 3 == 0} for i in range(25)]
    _write(store, records)
    batches = list(store.scan(Query(deployment_crn=WHO.deployment_crn, kinds=RAW), 10))
    assert [type(b.columns).__name__ for b in batches] == ["PackedMetrics"] * 3
    for batch in batches:  # the times are lists of ints, carrying the array they came from
        assert all(type(t) is int for t in batch.start_ms + batch.end_ms)
        assert batch.start_ms.array.tolist() == batch.start_ms  # type: ignore[attr-defined]
    frame = batch_to_frame(batches)
    pdt.assert_frame_equal(frame, _json_frame(records, 10))
    starts = [b.start_ms for b in batches]
    assert frame["startTimeStampMs"].tolist() == [t for s in starts for t in s]
    frame.loc[0, "a"] = -1.0  # joined into arrays of the frame's own
    assert frame["a"].iloc[0] == -1.0 and batches[0].columns.columns()["a"][0] == 0.0  # type: ignore[union-attr]


def test_an_identifier_column_of_one_value_but_one_keeps_every_value() -> None:
    same, other = "crn:modelyard:model/a", "crn:modelyard:model/b"
    models = [same, other, same]
    batch = RowBatch(
        kind=["prediction"] * 3,
        uuid=["u1", "u2", None],
        model_crn=models,
        build_crn=[WHO.build_crn] * 3,
        deployment_crn=[WHO.deployment_crn] * 3,
        start_ms=[T0, T0 + 1, T0 + 2],
        end_ms=[T0, T0 + 1, T0 + 2],
        metrics=['{"x":1.0}'] * 3,
        tier_ms=[None] * 3,
    )
    frame = batch_to_frame([batch])
    assert frame["modelCrn"].tolist() == models
    assert frame["predictionUuid"].isna().tolist() == [False, False, True]
    assert frame["modelBuildCrn"].tolist() == [WHO.build_crn] * 3
