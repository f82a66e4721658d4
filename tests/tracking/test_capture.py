"""The capture seam: under ``capture()`` decorated calls hand their records over, no store used."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

import modelyard
from _threads import in_threads
from modelyard.tracking import backends, capture
from modelyard.tracking.capture import active


@modelyard.model_metrics
def predict(args: dict[str, int]) -> dict[str, int]:
    modelyard.track_metric("tenure", args["tenure"])
    if args["tenure"] < 0:
        raise ValueError(f"tenure={args['tenure']} is negative")
    return {"churn": args["tenure"] % 2}


def _no_backend(dev: bool = False) -> backends.Backend:
    raise AssertionError(f"a backend was resolved (dev={dev}) while a capture was active")


def test_under_capture_records_come_back_and_nothing_reaches_a_store(
    modelyard_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backends, "select", _no_backend)
    with capture() as captured:
        out = predict({"tenure": 3})
        with pytest.raises(ValueError, match="negative"):
            predict({"tenure": -1})
    assert active() is None
    ok, failed = captured.records
    assert ok.uuid == out["uuid"]
    assert ok.metrics == {"tenure": 3}
    assert ok.start_ms <= ok.end_ms
    assert failed.metrics == {
        "tenure": -1,
        "_error": {"type": "ValueError", "message": "tenure=-1 is negative"},
    }
    assert captured.find(out["uuid"]) is ok
    assert ok.to_reference() == {
        "predictionUuid": out["uuid"],
        "startTimeStampMs": ok.start_ms,
        "endTimeStampMs": ok.end_ms,
        "metrics": {"tenure": 3},
    }
    # The embedded backend would have created the home and its database on first submit.
    assert not modelyard_home.exists()


def test_without_capture_the_record_goes_to_the_store(modelyard_home: Path) -> None:
    """The contrast: the same call outside a capture is written to the embedded store."""
    out = predict({"tenure": 4})
    modelyard.flush()
    records = modelyard.read_metrics(modelyard.current_identity().deployment_crn)["metrics"]
    assert [r["predictionUuid"] for r in records] == [out["uuid"]]
    assert (modelyard_home / "modelyard.db").exists()


def test_captures_in_threads_and_tasks_stay_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backends, "select", _no_backend)
    seen: dict[int, list[str]] = {}
    barrier = threading.Barrier(4)

    def work(i: int) -> None:
        with capture() as captured:
            barrier.wait()
            uuids = [predict({"tenure": i})["uuid"] for _ in range(20)]
        assert [r.uuid for r in captured.records] == uuids
        assert {r.metrics["tenure"] for r in captured.records} == {i}
        seen[i] = uuids

    in_threads(work, 4)
    assert sorted(seen) == [0, 1, 2, 3]

    @modelyard.model_metrics
    async def apredict(i: int) -> int:
        await asyncio.sleep(0.001)
        modelyard.track_metric("i", i)
        return i

    async def one(i: int) -> tuple[str, list[int]]:
        with capture() as captured:
            out = await apredict(i)
        return out["uuid"], [r.metrics["i"] for r in captured.records]

    async def main() -> list[tuple[str, list[int]]]:
        return await asyncio.gather(*(one(i) for i in range(10)))

    results = asyncio.run(main())
    assert [values for _, values in results] == [[i] for i in range(10)]


def test_nested_decorated_calls_are_all_captured_outermost_last(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(backends, "select", _no_backend)

    @modelyard.model_metrics
    def outer(x: int) -> int:
        inner = predict({"tenure": x})
        return int(inner["prediction"]["churn"])

    with capture() as captured:
        out = outer(5)
    assert [r.metrics for r in captured.records] == [{"tenure": 5}, {}]
    assert captured.records[-1].uuid == out["uuid"]
