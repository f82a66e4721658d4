from __future__ import annotations

import asyncio
import time
import uuid

import pytest

import modelyard
from modelyard.errors import InvalidInput, PayloadTooLarge
from modelyard.tracking import DEV_IDENTITY


def _records(dev: bool = False) -> list[dict[str, object]]:
    ident = modelyard.current_identity(dev=dev)
    return modelyard.read_metrics(ident.deployment_crn, dev=dev)["metrics"]


def test_call_returns_reference_shape_and_records_timestamps_and_metrics() -> None:
    @modelyard.model_metrics
    def predict(args: dict[str, int]) -> dict[str, float]:
        """Docstring kept."""
        modelyard.track_metric("input", args)
        modelyard.track_metrics({"probability": 0.8, "tags": ["a", "b"]})
        time.sleep(0.02)
        return {"churn": 0.8}

    before = time.time_ns() // 1_000_000
    out = predict({"tenure": 3})
    after = time.time_ns() // 1_000_000
    assert set(out) == {"prediction", "uuid"}
    assert out["prediction"] == {"churn": 0.8}
    assert uuid.UUID(out["uuid"]).version == 7  # time-ordered: see modelyard.ids
    assert predict.__doc__ == "Docstring kept."
    (record,) = _records()
    assert list(record) == [
        "modelDeploymentCrn",
        "modelBuildCrn",
        "modelCrn",
        "startTimeStampMs",
        "endTimeStampMs",
        "predictionUuid",
        "metrics",
    ]
    assert record["predictionUuid"] == out["uuid"]
    assert record["metrics"] == {"input": {"tenure": 3}, "probability": 0.8, "tags": ["a", "b"]}
    start, end = record["startTimeStampMs"], record["endTimeStampMs"]
    assert isinstance(start, int) and isinstance(end, int)
    assert before <= start and start + 20 <= end <= after


def test_each_call_gets_a_fresh_uuid() -> None:
    @modelyard.model_metrics
    def predict(x: int) -> int:
        return x

    uuids = {predict(i)["uuid"] for i in range(50)}
    assert len(uuids) == 50
    assert len(_records()) == 50


def test_a_raising_call_is_recorded_with_an_error_marker_and_the_exception_propagates() -> None:
    @modelyard.model_metrics
    def predict(x: int) -> int:
        modelyard.track_metric("x", x)
        raise KeyError("no feature 'age'")

    with pytest.raises(KeyError, match="age"):
        predict(5)
    (record,) = _records()
    assert record["metrics"] == {
        "x": 5,
        "_error": {"type": "KeyError", "message": "\"no feature 'age'\""},
    }
    assert uuid.UUID(str(record["predictionUuid"]))


def test_bad_metric_inside_a_call_fails_that_call_and_is_marked() -> None:
    @modelyard.model_metrics
    def predict() -> int:
        modelyard.track_metric("p", float("nan"))
        return 1

    with pytest.raises(InvalidInput, match="'p'"):
        predict()
    (record,) = _records()
    assert record["metrics"]["_error"]["type"] == "modelyard.errors.InvalidInput"  # type: ignore[index]


def test_record_size_limit_is_enforced_while_tracking(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELYARD_MAX_RECORD_BYTES", "1K")
    seen: list[str] = []

    @modelyard.model_metrics
    def predict() -> int:
        for i in range(40):
            try:
                modelyard.track_metric(f"k{i}", "x" * 40)
            except PayloadTooLarge as exc:
                seen.append(str(exc))
                break
        modelyard.track_metric("k0", "overwrite keeps the size")  # exact size is under the limit
        return 1

    predict()
    assert seen and "over the limit of 1024 bytes" in seen[0]
    (record,) = _records()
    assert len(record["metrics"]) < 40  # type: ignore[arg-type]


def test_async_functions_are_recorded() -> None:
    @modelyard.model_metrics
    async def predict(x: int) -> int:
        await asyncio.sleep(0)
        modelyard.track_metric("x", x)
        return x * 2

    out = asyncio.run(predict(21))
    assert out["prediction"] == 42
    (record,) = _records()
    assert record["metrics"] == {"x": 21}


def test_async_failure_is_recorded_too() -> None:
    @modelyard.model_metrics
    async def predict() -> int:
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        asyncio.run(predict())
    (record,) = _records()
    assert record["metrics"] == {"_error": {"type": "ValueError", "message": "bad input"}}


def test_dev_mode_records_under_the_fixed_dev_identity(capsys: pytest.CaptureFixture[str]) -> None:
    @modelyard.model_metrics(dev=True)
    def predict() -> int:
        modelyard.track_metric("a", 1)
        return 1

    predict()
    predict()
    err = capsys.readouterr().err
    assert err.count("dev mode") == 1 and DEV_IDENTITY.deployment_crn in err
    records = modelyard.read_metrics(DEV_IDENTITY.deployment_crn, dev=True)["metrics"]
    assert len(records) == 2
    assert records[0]["modelCrn"] == "crn:modelyard:model/00000000-0000-0000-0000-000000000000"
    # the dev store is separate from the embedded one
    assert _records() == []
