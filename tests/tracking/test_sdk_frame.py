from __future__ import annotations

import time
from typing import Any

import orjson
import pandas as pd
import pytest

import modelyard
from modelyard.errors import InvalidInput
from modelyard.store.base import RowBatch
from modelyard.tracking import frame
from modelyard.tracking.frame import ID_COLUMNS, batch_to_frame


@modelyard.model_metrics
def predict(x: int) -> int:
    modelyard.track_metrics({"score": x / 10, "input": {"age": x, "plan": {"tier": "gold"}}})
    return x


def test_frame_has_id_columns_kinds_and_flattened_metrics() -> None:
    outs = [predict(i) for i in range(3)]
    modelyard.track_delayed_metrics({"actual": 1}, outs[0]["uuid"])
    now = int(time.time() * 1000)
    modelyard.track_aggregate_metrics({"accuracy": 0.5}, now - 1, now)
    ident = modelyard.current_identity()
    df = modelyard.read_metrics_frame(ident.deployment_crn)
    assert list(df.columns[: len(ID_COLUMNS)]) == list(ID_COLUMNS)
    metric_columns = list(df.columns[len(ID_COLUMNS) :])
    assert sorted(metric_columns) == ["accuracy", "actual", "input.age", "input.plan.tier", "score"]
    assert metric_columns.index("input.age") < metric_columns.index("input.plan.tier")
    assert len(df) == 4
    assert sorted(df["kind"]) == ["aggregate", "prediction", "prediction", "prediction"]
    preds = df[df["kind"] == "prediction"].set_index("predictionUuid")
    assert preds.loc[outs[2]["uuid"], "score"] == pytest.approx(0.2)
    assert preds.loc[outs[1]["uuid"], "input.age"] == 1
    assert (preds["input.plan.tier"] == "gold").all()
    assert preds.loc[outs[0]["uuid"], "actual"] == 1
    assert pd.isna(preds.loc[outs[1]["uuid"], "actual"])
    agg = df[df["kind"] == "aggregate"].iloc[0]
    assert agg["accuracy"] == 0.5
    assert pd.isna(agg["predictionUuid"])
    assert df["startTimeStampMs"].dtype == "int64" and df["endTimeStampMs"].dtype == "int64"
    assert (df["modelDeploymentCrn"] == ident.deployment_crn).all()
    assert df["score"].dtype == "float64"


def test_empty_result_has_the_id_columns() -> None:
    # the process's own identity reads fine before anything was recorded under it
    df = modelyard.read_metrics_frame(modelyard.current_identity().deployment_crn)
    assert list(df.columns) == list(ID_COLUMNS) and len(df) == 0


def test_batches_with_different_keys_are_padded() -> None:
    df = batch_to_frame(
        [
            _json_batch(['{"a":1}', '{"a":2,"kind":"x"}'], 0),
            _json_batch(['{"b":{"c":3}}', '{"b":5,"a":null}'], 2),
        ]
    )
    assert list(df.columns) == [*ID_COLUMNS, "a", "metrics.kind", "b", "b.c"]
    assert df["a"].tolist()[:2] == [1, 2] and df["a"].isna().tolist()[2:] == [True, True]
    assert df["metrics.kind"].tolist()[1] == "x"
    assert df["b"].tolist()[3] == 5 and pd.isna(df["b"].tolist()[2])
    assert df["b.c"].tolist()[2] == 3
    assert df["tierMs"].isna().all()


def _json_batch(metrics: list[str], start: int = 0) -> RowBatch:
    """Prediction rows with these metrics (JSON texts), uuids and times counting from start."""
    n = len(metrics)
    return RowBatch(
        kind=["prediction"] * n,
        uuid=[f"u{start + i}" for i in range(n)],
        model_crn=["m"] * n,
        build_crn=["b"] * n,
        deployment_crn=["d"] * n,
        start_ms=list(range(start, start + n)),
        end_ms=list(range(start, start + n)),
        metrics=metrics,
        tier_ms=[None] * n,
    )


def _rows_batch(metrics: list[dict[str, Any]], start: int = 0) -> RowBatch:
    return _json_batch([orjson.dumps(m).decode() for m in metrics], start)


def _dotted(metrics: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The reference flattening, one record at a time."""
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            out.update(_dotted(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_pieces_of_one_batch_keep_types_and_values(monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch is decoded in pieces (for the CPU caches); columns must come out as if it were
    decoded whole: booleans never turned into 1.0, ints kept as int64 only when all are ints,
    keys absent from a piece missing there, and every value equal to a per-record reference."""
    monkeypatch.setattr(frame, "_PIECE", 3)
    metrics: list[dict[str, Any]] = [
        {"f": 0.5, "n": 1, "flag": True, "nest": {"a": 1.5}},
        {"f": 1.5, "n": 2, "flag": False, "nest": {"a": 2.5}},
        {"f": 2.5, "n": 3, "flag": True, "nest": {"a": 3.5}},
        {"f": 3, "n": 4, "flag": 0.25, "s": "x"},  # next piece: int f, float flag, new key
        {"f": 4, "n": 5, "flag": 0.5, "s": "y"},
        {"f": 5, "n": 6, "flag": 0.75, "s": None, "nest": {"a": None, "b": [1, 2]}},
        {"f": 6.5, "n": 7, "flag": 1.0},
    ]
    df = batch_to_frame([_rows_batch(metrics[:6]), _rows_batch(metrics[6:], start=6)])
    expected = [_dotted(m) for m in metrics]
    names = list(dict.fromkeys(k for row in expected for k in row))
    assert list(df.columns) == [*ID_COLUMNS, *names]
    for name in names:
        for i, row in enumerate(expected):
            got, want = df[name].iloc[i], row.get(name)
            if want is None:
                assert got is None or pd.isna(got), (name, i, got)
            elif isinstance(want, bool):
                assert got is want, (name, i, got)
            else:
                assert got == want and not isinstance(got, bool), (name, i, got)
    assert df["f"].dtype == "float64" and df["n"].dtype == "int64"
    assert df["flag"].dtype == object and df["flag"].iloc[0] is True
    assert df["nest.a"].dtype == "float64" and df["nest.b"].iloc[5] == [1, 2]


def test_iter_metrics_yields_bounded_frames_covering_the_window() -> None:
    made = {predict(i)["uuid"] for i in range(25)}
    ident = modelyard.current_identity()
    frames = list(modelyard.iter_metrics(ident.deployment_crn, batch_size=10))
    assert [len(f) for f in frames] == [10, 10, 5]
    assert set(pd.concat(frames)["predictionUuid"]) == made
    with pytest.raises(InvalidInput, match="batch_size must be a positive int"):
        modelyard.iter_metrics(ident.deployment_crn, batch_size=0)
