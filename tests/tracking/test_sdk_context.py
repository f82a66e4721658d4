"""The per-prediction context keeps concurrent predictions apart in threads and asyncio tasks."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import modelyard
from _threads import in_threads
from modelyard.tracking import context


def test_threads_each_get_their_own_record() -> None:
    barrier = threading.Barrier(8)

    @modelyard.model_metrics(dev=True)
    def predict(n: int) -> int:
        modelyard.track_metric("n", n)
        barrier.wait()  # all eight calls are inside their context at the same moment
        modelyard.track_metric("square", n * n)
        return n

    results: dict[int, dict[str, Any]] = {}

    def run(n: int) -> None:
        results[n] = predict(n)

    in_threads(run, 8)
    ident = modelyard.current_identity(dev=True)
    records = modelyard.read_metrics(ident.deployment_crn, dev=True)["metrics"]
    by_uuid = {r["predictionUuid"]: r["metrics"] for r in records}
    assert len(by_uuid) == 8
    for n, out in results.items():
        assert out["prediction"] == n
        assert by_uuid[out["uuid"]] == {"n": n, "square": n * n}
    assert context.current() is None


def test_async_tasks_are_isolated_and_child_tasks_attach_to_their_call() -> None:
    @modelyard.model_metrics(dev=True)
    async def predict(n: int) -> int:
        modelyard.track_metric("n", n)
        await asyncio.sleep(0.01 * (5 - n))  # interleave the calls

        async def child() -> None:
            modelyard.track_metric("from_child", n)

        await asyncio.create_task(child())
        return n

    async def main() -> list[dict[str, Any]]:
        return await asyncio.gather(*(predict(n) for n in range(5)))

    outs = asyncio.run(main())
    ident = modelyard.current_identity(dev=True)
    records = modelyard.read_metrics(ident.deployment_crn, dev=True)["metrics"]
    by_uuid = {r["predictionUuid"]: r["metrics"] for r in records}
    for n, out in enumerate(outs):
        assert out["prediction"] == n
        assert by_uuid[out["uuid"]] == {"n": n, "from_child": n}


def test_nested_decorated_calls_keep_separate_records() -> None:
    @modelyard.model_metrics(dev=True)
    def inner() -> str:
        modelyard.track_metric("where", "inner")
        return "i"

    @modelyard.model_metrics(dev=True)
    def outer() -> str:
        modelyard.track_metric("before", 1)
        nested = inner()
        modelyard.track_metric("after", nested["uuid"])
        return "o"

    out = outer()
    ident = modelyard.current_identity(dev=True)
    records = modelyard.read_metrics(ident.deployment_crn, dev=True)["metrics"]
    by_uuid = {r["predictionUuid"]: r["metrics"] for r in records}
    inner_uuid = by_uuid[out["uuid"]]["after"]
    assert by_uuid[out["uuid"]] == {"before": 1, "after": inner_uuid}
    assert by_uuid[inner_uuid] == {"where": "inner"}
