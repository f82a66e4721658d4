"""The gateway's technical aggregates under real traffic to real replica processes.

Two replicas of one function run under the real ``LocalRuntime`` (supervised processes), the
gateway samples them through ``replica_stats=runtime.replicas`` and writes to a real SQLite store;
one replica is killed with SIGKILL so its restart shows up in the next interval.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import textwrap
import uuid
from pathlib import Path

import orjson
import pytest

from _async import run
from _processes import replica_argv
from _wait import wait_until
from modelyard.runtime import LocalRuntime, ReplicaSpec, ReplicaStatus, SupervisorConfig, free_port
from modelyard.serving.gateway import DeploymentPool, Gateway, ReplicaEndpoint
from modelyard.store import Identity, Query, RecordKind, techseries
from modelyard.store.sqlite import SQLiteStore

pytestmark = pytest.mark.slow

MODEL = """
    import time


    def predict(args):
        if args.get("fail"):
            raise ValueError("asked to fail")
        time.sleep(args["sleep"])
        return {"ok": True}
"""


def spec(snapshot: Path, replica_id: str) -> ReplicaSpec:
    port = free_port()
    args = ("--function", "predict", "--concurrency", "2")
    argv = replica_argv(snapshot, "predict.py", port, replica_id, *args)
    return ReplicaSpec("dep", replica_id, argv, port=port, health_path="/healthz")


def test_per_replica_requests_cpu_memory_and_restarts_reach_the_store(tmp_path: Path) -> None:
    snapshot = tmp_path / "project"
    snapshot.mkdir()
    (snapshot / "predict.py").write_text(textwrap.dedent(MODEL))
    config = SupervisorConfig(
        poll_interval_s=0.1, health_interval_s=0.2, backoff_base_s=0.1, backoff_cap_s=0.2
    )
    store = SQLiteStore(tmp_path / "metrics.db")
    identity = Identity(
        f"crn:modelyard:model/{uuid.uuid4()}",
        f"crn:modelyard:build/{uuid.uuid4()}",
        f"crn:modelyard:deployment/{uuid.uuid4()}",
    )
    with LocalRuntime(tmp_path / "home", config=config) as runtime:
        specs = [spec(snapshot, "r1"), spec(snapshot, "r2")]
        runtime.start_replicas(specs)

        def healthy() -> bool:
            states = runtime.replicas()
            return all(s.status is ReplicaStatus.HEALTHY for s in states)

        wait_until(healthy, timeout_s=60, what="two healthy replicas")

        async def scenario() -> tuple[int, int]:
            gateway = Gateway(store=store, tech_interval_s=3600, replica_stats=runtime.replicas)
            pool = DeploymentPool(identity)
            for s in specs:
                pool.add_endpoint(ReplicaEndpoint(s.replica_id, f"http://127.0.0.1:{s.port}", 2))
            gateway.set_pool("m", pool)
            bodies = [
                orjson.dumps({"sleep": 0.02, "fail": i % 5 == 0}) for i in range(40)
            ]  # 40 at once over 4 slots: the rest wait in the gateway's queue
            results = await asyncio.gather(*(gateway.invoke("m", b) for b in bodies))
            assert sorted(r.http_status for r in results) == [200] * 32 + [500] * 8
            first = await gateway.write_tech_aggregates()
            r1 = next(s for s in runtime.replicas() if s.replica_id == "r1")
            assert r1.pid is not None
            os.kill(r1.pid, signal.SIGKILL)
            wait_until(
                lambda: any(
                    s.replica_id == "r1" and s.restarts == 1 and s.status is ReplicaStatus.HEALTHY
                    for s in runtime.replicas()
                ),
                timeout_s=60,
                what="r1's restart",
            )
            second = await gateway.write_tech_aggregates()
            await gateway.close()
            return first, second

        written = run(scenario)
    assert written == (1, 1)
    records, _ = store.read(
        Query(deployment_crn=identity.deployment_crn, kinds=frozenset({RecordKind.AGGREGATE}))
    )
    # close() wrote a third interval: the replicas were still running, so they were sampled
    busy, idle, last = (r.metrics for r in records)
    assert last["tech.requests"] == 0 and last["tech.replica.r1.restarts"] == 0
    assert busy["tech.requests"] == 40 and busy["tech.failures"] == busy["tech.status_500"] == 8
    per_replica = [busy[f"tech.replica.{r}.requests"] for r in ("r1", "r2")]
    assert sum(per_replica) == 40 and min(per_replica) > 0  # both replicas served
    assert busy["tech.replica.r1.failures"] + busy["tech.replica.r2.failures"] == 8
    assert busy["tech.in_flight_max"] == 40  # all forty were inside the gateway at once
    for replica in ("r1", "r2"):
        assert busy[f"tech.replica.{replica}.rss_bytes"] > 10_000_000  # a real Python process
        assert busy[f"tech.replica.{replica}.cpu_percent"] >= 0.0
        assert busy[f"tech.replica.{replica}.restarts"] == 0
    # the user function slept 20 ms; requests beyond the 4 slots waited in the queue
    assert busy["tech.latency_function_p50_ms"] >= 20.0
    assert busy["tech.latency_queue_p99_ms"] > busy["tech.latency_queue_p50_ms"] >= 0.0
    assert busy["tech.latency_p99_ms"] >= busy["tech.latency_function_p99_ms"]
    for prefix in techseries.LATENCY_PREFIXES:
        assert techseries.decode_sketch(busy[f"{prefix}_sketch"]).n == 40
    # no traffic since, but the replicas were sampled: r1's restart is counted once
    assert idle["tech.requests"] == 0
    assert idle["tech.replica.r1.restarts"] == 1 and idle["tech.replica.r2.restarts"] == 0
    assert "tech.latency_sketch" not in idle
    with sqlite3.connect(tmp_path / "metrics.db") as db:
        sources = db.execute("SELECT DISTINCT source FROM aggregates").fetchall()
    assert sources == [("tech",)]  # written as the tech source, so rollup merges them
    store.close()
