"""The gateway in front of real replica processes (``python -m modelyard.serving.replica``).

Two replicas of one decorated function serve every test of the module (started once: a replica
takes about a second to import and load). Records go to a real SQLite store through a real
``BufferedWriter``; one test kills a replica with SIGKILL and checks the gateway routes around it.
"""

from __future__ import annotations

import asyncio
import signal
import textwrap
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

import _async
from _processes import Replica, start_replica, stop_replica, wait_healthy
from modelyard.serving.gateway import (
    DeploymentPool,
    Gateway,
    PoolSettings,
    ReplicaEndpoint,
)
from modelyard.store import BufferedWriter, Identity, Query
from modelyard.store.sqlite import SQLiteStore

pytestmark = pytest.mark.slow

MODEL = """
    import time

    import modelyard


    @modelyard.model_metrics
    def predict(args):
        modelyard.track_metric("tenure", args["tenure"])
        if args.get("fail"):
            raise ValueError(f"tenure={args['tenure']} is not accepted")
        time.sleep(args.get("sleep", 0))
        return {"churn": args["tenure"] > 3}
"""


def start(snapshot: Path, home: Path, replica_id: str) -> Replica:
    args = ["--function", "predict", "--concurrency", "2", "--max-body-bytes", "4K"]
    args += ["--batch-function", "none"]  # /invoke_batch calls predict once per item
    log = snapshot.parent / f"{replica_id}.log"
    return start_replica(snapshot, home, log, "predict.py", *args, replica_id=replica_id)


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gateway-snapshot") / "project"
    root.mkdir()
    (root / "predict.py").write_text(textwrap.dedent(MODEL))
    return root


@pytest.fixture(scope="module")
def replicas(snapshot: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Replica]]:
    home = tmp_path_factory.mktemp("replica-home") / "home"
    started = [start(snapshot, home, rid) for rid in ("r1", "r2")]
    try:
        for replica in started:
            wait_healthy(replica)
        yield started
    finally:
        for replica in started:
            stop_replica(replica)


run = partial(_async.run, timeout_s=60)  # each scenario fails after 60 s


def identity() -> Identity:
    return Identity(
        f"crn:modelyard:model/{uuid.uuid4()}",
        f"crn:modelyard:build/{uuid.uuid4()}",
        f"crn:modelyard:deployment/{uuid.uuid4()}",
    )


def pool_of(replicas: list[Replica], settings: PoolSettings | None = None, **kw: Any) -> Any:
    pool = DeploymentPool(identity(), settings or PoolSettings(), **kw)
    for replica in replicas:
        pool.add_endpoint(ReplicaEndpoint(replica.replica_id, replica.url, capacity=2))
    return pool


def test_predictions_through_real_replicas_are_recorded(
    replicas: list[Replica], tmp_path: Path
) -> None:
    store = SQLiteStore(tmp_path / "metrics.db")
    writer = BufferedWriter(store, flush_interval_ms=50)
    registry = CollectorRegistry()

    async def scenario() -> tuple[DeploymentPool, list[Any], Any]:
        gateway = Gateway(writer, registry)
        pool = pool_of(replicas)
        gateway.set_pool("churn", pool)
        results = await asyncio.gather(
            *(gateway.invoke("churn", orjson.dumps({"tenure": i, "sleep": 0.1})) for i in range(8))
        )
        failed = await gateway.invoke("churn", orjson.dumps({"tenure": 1, "fail": True}))
        await gateway.close()
        return pool, list(results), failed

    pool, results, failed = run(scenario)
    writer.flush()
    assert [r.http_status for r in results] == [200] * 8
    assert {r.replica_id for r in results} == {"r1", "r2"}  # both replicas took a share
    for i, result in enumerate(results):
        envelope = result.envelope
        assert envelope["success"] is True and envelope["ReplicaID"] == result.replica_id
        # The decorator's own output, and the same uuid at the top of the envelope.
        assert envelope["response"] == {"prediction": {"churn": i > 3}, "uuid": result.uuid}
        assert envelope["uuid"] == result.uuid
    assert failed.http_status == 500
    assert failed.envelope["error"]["type"] == "ValueError"
    assert failed.envelope["error"]["message"] == "tenure=1 is not accepted"
    assert "traceback" not in failed.envelope["error"]  # the replica runs without --debug
    records, _ = store.read(Query(deployment_crn=pool.identity.deployment_crn))
    by_uuid = {r.uuid: r for r in records}
    assert set(by_uuid) == {r.uuid for r in results} | {failed.uuid}
    for i, result in enumerate(results):
        record = by_uuid[result.uuid]
        assert record.identity == pool.identity
        assert record.metrics == {"tenure": i}
        assert record.end_ms - record.start_ms >= 90  # the function slept 0.1 s
    assert by_uuid[failed.uuid].metrics["_error"] == {
        "type": "ValueError",
        "message": "tenure=1 is not accepted",
    }
    dep = pool.identity.deployment_crn
    served = {
        rid: registry.get_sample_value(
            "modelyard_requests_total",
            {"model": "churn", "deployment": dep, "replica": rid, "status": "200"},
        )
        for rid in ("r1", "r2")
    }
    assert sum(v or 0 for v in served.values()) == 8
    writer.close()
    store.close()


def test_batch_and_refusals_through_a_real_replica(replicas: list[Replica]) -> None:
    async def scenario() -> None:
        gateway = Gateway()
        gateway.set_pool("churn", pool_of(replicas[:1]))
        batch = await gateway.invoke_batch("churn", orjson.dumps([{"tenure": 2}, {"tenure": 9}]))
        assert batch.http_status == 200
        responses = batch.envelope["responses"]
        assert [item["response"]["prediction"] for item in responses] == [
            {"churn": False},
            {"churn": True},
        ]
        assert [item["response"]["uuid"] for item in responses] == list(batch.uuids)
        assert len(set(batch.uuids)) == 2
        not_json = await gateway.invoke("churn", b"{tenure: 3}")
        assert not_json.http_status == 400
        assert "is not JSON" in not_json.envelope["error"]["message"]
        # The replica's own limit (4K) is below the pool's (5 MB): its 413 passes through.
        too_big = await gateway.invoke("churn", orjson.dumps({"tenure": 1, "pad": "x" * 5000}))
        assert too_big.http_status == 413
        assert "4096" in too_big.envelope["error"]["message"]
        assert (await gateway.invoke("churn", b'{"tenure": 5}')).http_status == 200
        await gateway.close()

    run(scenario)


def test_a_slow_real_replica_times_out_and_is_reported(replicas: list[Replica]) -> None:
    stuck: list[str] = []

    async def scenario() -> None:
        gateway = Gateway()
        settings = PoolSettings(request_timeout_s=0.3)
        gateway.set_pool("churn", pool_of(replicas[:1], settings, on_stuck=stuck.append))
        result = await gateway.invoke("churn", b'{"tenure": 1, "sleep": 1.0}')
        assert result.http_status == 504
        assert result.replica_id == "r1"
        await asyncio.sleep(1.0)  # let the replica finish the abandoned call
        assert (await gateway.invoke("churn", b'{"tenure": 1}')).http_status == 200
        await gateway.close()

    run(scenario)
    assert stuck == ["r1"]


def test_a_killed_replica_is_routed_around(snapshot: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    pair = [start(snapshot, home, rid) for rid in ("k1", "k2")]
    try:
        for replica in pair:
            wait_healthy(replica)

        async def scenario() -> None:
            gateway = Gateway()
            pool = pool_of(pair)
            gateway.set_pool("churn", pool)
            warm = [await gateway.invoke("churn", b'{"tenure": 1}') for _ in range(4)]
            assert {r.replica_id for r in warm} == {"k1", "k2"}  # keep-alive conns to both
            pair[0].process.send_signal(signal.SIGKILL)
            pair[0].process.wait()
            after = [await gateway.invoke("churn", b'{"tenure": 1}') for _ in range(6)]
            assert [r.http_status for r in after] == [200] * 6
            assert {r.replica_id for r in after} == {"k2"}
            await gateway.close()

        run(scenario)
    finally:
        for replica in pair:
            stop_replica(replica)
