"""The deployment controller on real parts: builds on the base environment, replica processes
under a ``LocalRuntime``, the gateway, the registry and the metrics store in one SQLite file.

Each test deploys a tiny project (``predict.py`` with a decorated ``predict`` that tracks its
version) and calls it through ``gateway.invoke``, as the server's predict route does. Load during
rollouts is an asyncio loop of calls on the same event loop; every call must answer 200.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

import _async
from _processes import ended
from modelyard.errors import Conflict, NotFound
from modelyard.registry import DeploymentState, Registry
from modelyard.runtime import LocalRuntime, ReplicaStatus, SupervisorConfig
from modelyard.serving.controller import Controller, EventRelay
from modelyard.serving.gateway import Gateway, GatewayResult
from modelyard.store import BufferedWriter, Identity, MetricsStore, Query, open_store
from modelyard.store.sqlite import SQLiteStore

pytestmark = pytest.mark.slow

PREDICT = """
    import os
    import time

    import modelyard

    VERSION = "{version}"

    # Deploy env only (the build's smoke test never sees it): replica r<n> of the deployment
    # hangs while importing, so it never becomes healthy.
    HANG = os.environ.get("HANG_REPLICA")
    if HANG and f"-{HANG}-" in os.environ.get("MODELYARD_REPLICA_ID", ""):
        time.sleep(3600)


    @modelyard.model_metrics
    def predict(args):
        modelyard.track_metric("version", VERSION)
        modelyard.track_metric("x", args["x"])
        time.sleep(args.get("sleep", 0))
        return {"version": VERSION, "double": args["x"] * 2}
"""

BATCH = """
    def predict(args):
        return {"double": args["x"] * 2}


    def predict_batch(items):
        return [{"double": item["x"] * 2, "batch": len(items)} for item in items]
"""

BROKEN = """
    raise RuntimeError("this build must fail")
"""

# Fast supervision: replicas are asked for health every poll until their first good answer.
FAST = SupervisorConfig(
    poll_interval_s=0.05, health_interval_s=0.2, backoff_base_s=0.2, stop_grace_s=1.0
)


run = partial(_async.run, timeout_s=90)  # each scenario fails after 90 s


def project(root: Path, source: str, version: str = "v1") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "predict.py").write_text(textwrap.dedent(source.replace("{version}", version)))
    return root


@dataclass
class Stack:
    """Everything a server composes, over one home and one SQLite file."""

    home: Path
    store: MetricsStore
    writer: BufferedWriter
    registry: Registry
    runtime: LocalRuntime
    gateway: Gateway
    controller: Controller

    async def call(self, model: str, x: int = 1, **extra: Any) -> GatewayResult:
        return await self.gateway.invoke(model, orjson.dumps({"x": x, **extra}))

    def records(self, deployment_crn: str) -> list[Any]:
        self.writer.flush()
        records, _ = self.store.read(Query(deployment_crn=deployment_crn))
        return records

    async def close(self) -> None:
        await self.controller.shutdown()
        await self.gateway.close()
        await asyncio.to_thread(self.runtime.stop_all)
        self.writer.close()
        self.store.close()


def stack(home: Path, db: Path | str, health_timeout_s: float = 30.0) -> Stack:
    """Build the parts (inside the running loop, as the server's startup does) over an SQLite
    file or a PostgreSQL URL."""
    store = open_store(db) if isinstance(db, str) else SQLiteStore(db)
    writer = BufferedWriter(store, flush_interval_ms=50)
    registry = Registry(store, cache_ttl_s=0)
    relay = EventRelay()
    runtime = LocalRuntime(home, on_event=relay, config=FAST)
    gateway = Gateway(writer)
    controller = Controller(
        home, store, registry, runtime, gateway, events=relay, health_timeout_s=health_timeout_s
    )
    return Stack(home, store, writer, registry, runtime, gateway, controller)


class Load:
    """``workers`` loops of calls until stopped; every answer is kept."""

    def __init__(self, s: Stack, model: str, workers: int = 3, pause_s: float = 0.01) -> None:
        self.stack, self.model, self.pause_s = s, model, pause_s
        self.results: list[GatewayResult] = []
        self._stop = asyncio.Event()
        self._tasks = [asyncio.create_task(self._loop(k)) for k in range(workers)]

    async def _loop(self, k: int) -> None:
        i = 0
        while not self._stop.is_set():
            self.results.append(await self.stack.call(self.model, x=k * 100_000 + i))
            i += 1
            await asyncio.sleep(self.pause_s)

    async def stop(self) -> list[GatewayResult]:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        return self.results


def failures(results: list[GatewayResult]) -> list[tuple[int, Any]]:
    return [(r.http_status, r.envelope) for r in results if r.http_status != 200]


def identity_of(s: Stack, deployment_crn: str) -> Identity:
    d = s.registry.get_deployment(deployment_crn)
    return Identity(d.model_crn, d.build_crn, d.crn)


# -- deploy ---------------------------------------------------------------------------------------
def test_deploy_serves_and_records_under_the_deployment_identity(tmp_path: Path) -> None:
    code = project(tmp_path / "churn", PREDICT)

    async def scenario() -> None:
        s = stack(tmp_path / "home", tmp_path / "metrics.db")
        try:
            outcome = await s.controller.deploy(
                "churn", code, "predict.py", "predict", example={"x": 1}, replicas=2,
                env={"GREETING": "hi"},
            )  # fmt: skip
            assert outcome.ok, outcome.log_tail
            assert outcome.access_key is not None and outcome.access_key.startswith("mya_")
            assert outcome.deployment is not None
            deployment = outcome.deployment
            assert deployment.state is DeploymentState.ACTIVE
            assert s.registry.model_by_access_key(outcome.access_key).name == "churn"
            results = await asyncio.gather(*(s.call("churn", x=i) for i in range(20)))
            assert failures(list(results)) == []
            for i, result in enumerate(results):
                assert result.envelope["response"]["prediction"] == {
                    "version": "v1",
                    "double": 2 * i,
                }
            assert len({r.replica_id for r in results}) == 2  # both replicas served
            records = s.records(deployment.crn)
            assert {r.uuid for r in records} == {r.uuid for r in results}
            ident = identity_of(s, deployment.crn)
            assert ident.build_crn == outcome.build.crn
            assert all(r.identity == ident and r.metrics["version"] == "v1" for r in records)

            status = s.controller.status("churn")
            assert status.active is not None and status.active.crn == deployment.crn
            assert [b.crn for b in status.builds] == [outcome.build.crn]
            assert len(status.replicas) == 2 and all(v.in_pool for v in status.replicas)
            # The controller's own probe let the replicas in; the runtime's verdict follows on
            # its next polls.
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and not all(
                v.state.status is ReplicaStatus.HEALTHY for v in status.replicas
            ):
                await asyncio.sleep(0.05)
                status = s.controller.status("churn")
            assert all(v.state.status is ReplicaStatus.HEALTHY for v in status.replicas)
            assert sum(v.served for v in status.replicas) == 20
            replica = status.replicas[0].state
            env = psutil.Process(replica.pid).environ()
            assert env["MODELYARD_DEPLOYMENT_CRN"] == deployment.crn
            assert env["MODELYARD_BUILD_CRN"] == outcome.build.crn
            assert env["MODELYARD_MODEL_CRN"] == outcome.model.crn
            assert env["GREETING"] == "hi"
            logs = s.controller.logs("churn", tail=5)
            assert set(logs) == {v.state.replica_id for v in status.replicas}
            assert any("serving predict.py:predict" in line for line in logs[replica.replica_id])
            assert s.controller.logs("churn", replica.replica_id, tail=1)[replica.replica_id]
            with pytest.raises(NotFound, match="no log"):
                s.controller.logs("churn", "nope-r1-000000")
            await asyncio.sleep(0.2)  # events are written by a worker thread
            kinds = {e.kind for e in s.registry.events(deployment.crn)}
            assert {"started", "healthy"} <= kinds
        finally:
            await s.close()

    run(scenario)


def test_redeploy_under_load_loses_no_call_and_records_each_build(tmp_path: Path) -> None:
    async def scenario() -> None:
        s = stack(tmp_path / "home", tmp_path / "metrics.db")
        try:
            first = await s.controller.deploy(
                "churn", project(tmp_path / "v1", PREDICT), "predict.py", "predict", replicas=2
            )
            assert first.ok and first.deployment is not None
            old_replicas = {v.state.replica_id for v in s.controller.status("churn").replicas}
            load = Load(s, "churn")
            await asyncio.sleep(0.3)
            second = await s.controller.deploy(
                "churn", project(tmp_path / "v2", PREDICT, "v2"), "predict.py", "predict",
                replicas=2, settings={"request_timeout_s": 12},
            )  # fmt: skip
            assert second.ok, second.log_tail
            assert second.access_key is None  # the model existed
            assert second.deployment is not None
            await asyncio.sleep(0.3)
            results = await load.stop()
            assert failures(results) == []
            versions = [r.envelope["response"]["prediction"]["version"] for r in results]
            assert versions[0] == "v1" and versions[-1] == "v2"
            assert len(results) > 20

            old = s.registry.get_deployment(first.deployment.crn)
            new = s.registry.get_deployment(second.deployment.crn)
            assert (old.state, new.state) == (DeploymentState.REPLACED, DeploymentState.ACTIVE)
            status = s.controller.status("churn")
            now_running = {v.state.replica_id for v in status.replicas}
            assert len(now_running) == 2 and not now_running & old_replicas
            assert {v.deployment_crn for v in status.replicas} == {new.crn}
            assert s.runtime.replicas(old.crn.rsplit("/", 1)[-1]) == []  # old processes gone
            # Each record carries the identity of the build that answered it.
            by_uuid = {r.uuid: r for r in results}
            for deployment, version in ((old, "v1"), (new, "v2")):
                records = s.records(deployment.crn)
                assert records, f"no records of {version}"
                ident = identity_of(s, deployment.crn)
                for record in records:
                    assert record.identity == ident
                    assert record.metrics["version"] == version
                    answer = by_uuid[record.uuid].envelope["response"]["prediction"]
                    assert answer["version"] == version
            total = len(s.records(old.crn)) + len(s.records(new.crn))
            assert total == len(results)
            # After the rollout the pool is the new deployment's own.
            pool = s.gateway.pool("churn")
            assert pool is not None and pool.identity == identity_of(s, new.crn)
            assert pool.settings.request_timeout_s == 12  # the deploy's new settings
        finally:
            await s.close()

    run(scenario)


def test_a_failed_build_or_an_unhealthy_replica_leaves_the_old_deployment_serving(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        s = stack(tmp_path / "home", tmp_path / "metrics.db", health_timeout_s=3.0)
        try:
            first = await s.controller.deploy(
                "churn", project(tmp_path / "v1", PREDICT), "predict.py", "predict", replicas=2
            )
            assert first.ok and first.deployment is not None
            load = Load(s, "churn")

            broken = await s.controller.deploy(
                "churn", project(tmp_path / "broken", BROKEN), "predict.py", "predict",
                settings={"request_timeout_s": 7},
            )  # fmt: skip
            assert not broken.ok and broken.deployment is None
            assert s.registry.get_model("churn").settings.request_timeout_s == 30  # unchanged
            assert "this build must fail" in broken.log_tail
            assert broken.error is not None and "importing predict.py failed" in broken.error
            assert s.registry.get_build(broken.build.crn).ok is False

            # The second new replica hangs: by then the first new one serves and one old replica
            # is gone, so rolling back means starting an old replica again, then retiring the
            # new one.
            started = time.monotonic()
            hanging = await s.controller.deploy(
                "churn", project(tmp_path / "v2", PREDICT, "v2"), "predict.py", "predict",
                replicas=2, env={"HANG_REPLICA": "r2"},
            )  # fmt: skip
            waited = time.monotonic() - started
            await asyncio.sleep(0.2)
            results = await load.stop()
            assert not hanging.ok
            assert hanging.deployment is not None
            assert hanging.deployment.state is DeploymentState.FAILED
            assert hanging.error is not None and "did not become healthy within 3s" in hanging.error
            assert "-r2-" in hanging.error and "start #1" in hanging.log_tail  # the replica's log
            assert 3.0 <= waited < 20
            assert failures(results) == []
            versions = [r.envelope["response"]["prediction"]["version"] for r in results]
            # v2's first replica served while the second one hung; v1 serves at the end.
            assert versions[-1] == "v1" and set(versions) == {"v1", "v2"}
            active = s.registry.active_deployment("churn")
            assert active is not None and active.crn == first.deployment.crn
            status = s.controller.status("churn")
            assert len(status.replicas) == 2  # back to the old deployment's two replicas
            assert {v.deployment_crn for v in status.replicas} == {first.deployment.crn}
            hung = hanging.deployment.crn.rsplit("/", 1)[-1]
            assert s.runtime.replicas(hung) == []  # the new replicas were stopped
            pool = s.gateway.pool("churn")
            assert pool is not None and len(pool.endpoints()) == 2
            v2_records = s.records(hanging.deployment.crn)  # what v2 answered meanwhile
            assert len(v2_records) == versions.count("v2")
            assert all(r.metrics["version"] == "v2" for r in v2_records)
        finally:
            await s.close()

    run(scenario)


def test_rollback_redeploys_the_previous_build_without_rebuilding(tmp_path: Path) -> None:
    async def scenario() -> None:
        s = stack(tmp_path / "home", tmp_path / "metrics.db")
        try:
            v1 = await s.controller.deploy(
                "churn", project(tmp_path / "v1", PREDICT), "predict.py", "predict", replicas=1
            )
            v2 = await s.controller.deploy(
                "churn", project(tmp_path / "v2", PREDICT, "v2"), "predict.py", "predict"
            )
            assert v1.ok and v2.ok and v2.deployment is not None
            await s.controller.scale("churn", 2)
            assert (await s.call("churn")).envelope["response"]["prediction"]["version"] == "v2"
            builds_before = len(s.registry.list_builds("churn"))

            load = Load(s, "churn")
            back = await s.controller.rollback("churn")
            results = await load.stop()
            assert back.ok and back.deployment is not None and back.access_key is None
            assert failures(results) == []
            assert back.build.crn == v1.build.crn
            assert back.deployment.replicas == 2  # the current replica count
            assert len(s.registry.list_builds("churn")) == builds_before  # no rebuild
            answer = await s.call("churn")
            assert answer.envelope["response"]["prediction"]["version"] == "v1"
            assert s.registry.get_deployment(v2.deployment.crn).state is DeploymentState.REPLACED
            assert len(s.controller.status("churn").replicas) == 2

            again = await s.controller.rollback("churn", v2.build.crn)  # an explicit build
            assert again.ok and again.build.crn == v2.build.crn
            answer = await s.call("churn")
            assert answer.envelope["response"]["prediction"]["version"] == "v2"
            with pytest.raises(NotFound):
                await s.controller.rollback("churn", "crn:modelyard:build/nope")

            # A caller that goes away mid-deploy (an HTTP client hanging up) does not cut the
            # rollout short: it finishes on its own and the new build serves.
            task = asyncio.create_task(
                s.controller.deploy(
                    "churn", project(tmp_path / "v3", PREDICT, "v3"), "predict.py", "predict"
                )
            )
            await asyncio.sleep(0.3)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                answer = await s.call("churn")
                if answer.envelope["response"]["prediction"]["version"] == "v3":
                    break
                await asyncio.sleep(0.1)
            assert answer.envelope["response"]["prediction"]["version"] == "v3"
            await asyncio.sleep(1.0)  # the old replicas drain and stop after the swap
            status = s.controller.status("churn")
            assert status.active is not None and status.active.build_crn != v2.build.crn
            assert {v.deployment_crn for v in status.replicas} == {status.active.crn}
        finally:
            await s.close()

    run(scenario)


def test_scale_stop_start_and_delete(tmp_path: Path) -> None:
    async def scenario() -> None:
        s = stack(tmp_path / "home", tmp_path / "metrics.db")
        try:
            outcome = await s.controller.deploy(
                "doubler", project(tmp_path / "batch", BATCH), "predict.py", "predict"
            )
            assert outcome.ok and outcome.deployment is not None
            crn = outcome.deployment.crn
            batch = await s.gateway.invoke_batch("doubler", orjson.dumps([{"x": 1}, {"x": 2}]))
            assert batch.http_status == 200
            assert [i["response"]["double"] for i in batch.envelope["responses"]] == [2, 4]

            load = Load(s, "doubler")
            scaled = await s.controller.scale("doubler", 3)
            assert scaled.replicas == 3 and len(s.controller.status("doubler").replicas) == 3
            await asyncio.sleep(0.3)
            scaled = await s.controller.scale("doubler", 1)
            results = await load.stop()
            assert failures(results) == []
            assert len({r.replica_id for r in results}) >= 2  # the added replicas took calls
            assert scaled.replicas == 1 and len(s.controller.status("doubler").replicas) == 1
            assert len(s.runtime.replicas(crn.rsplit("/", 1)[-1])) == 1

            stopped = await s.controller.stop("doubler")
            assert stopped.state is DeploymentState.STOPPED
            refused = await s.call("doubler")
            assert refused.http_status == 503
            assert s.runtime.replicas() == []
            with pytest.raises(Conflict, match="no active deployment to scale"):
                await s.controller.scale("doubler", 2)

            started = await s.controller.start("doubler")
            assert started.ok and started.deployment is not None
            assert started.deployment.crn == crn and started.deployment.state == "active"
            assert (await s.call("doubler", x=4)).envelope["response"] == {"double": 8, "batch": 1}
            with pytest.raises(Conflict, match="already served"):
                await s.controller.start("doubler")

            served = s.records(crn)
            assert served
            await s.controller.delete("doubler")
            assert (await s.call("doubler")).http_status == 503
            with pytest.raises(NotFound):
                s.registry.get_model("doubler")
            assert s.runtime.replicas() == []
            assert len(s.records(crn)) == len(served)  # the metrics store keeps them
        finally:
            await s.close()

    run(scenario)


# -- capacity -------------------------------------------------------------------------------------
class Peak:
    """The most requests a model's replicas held at once and the deepest gateway queue, sampled
    on the event loop the calls run on (every 2 ms, between the pool's own steps)."""

    def __init__(self, s: Stack, model: str) -> None:
        self.gateway, self.model = s.gateway, model
        self.in_flight = self.queued = 0
        self._task = asyncio.create_task(self._sample())

    async def _sample(self) -> None:
        while True:
            pool = self.gateway.pool(self.model)
            if pool is not None:
                for ep in pool.endpoints():
                    self.in_flight = max(self.in_flight, ep.in_flight)
                self.queued = max(self.queued, pool.queue_depth)
            await asyncio.sleep(0.002)

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


def capacities(s: Stack, model: str) -> list[int]:
    pool = s.gateway.pool(model)
    assert pool is not None
    return [ep.capacity for ep in pool.endpoints()]


def batch_sizes(s: Stack, model: str) -> dict[float, float]:
    """The gateway's ``modelyard_batch_size`` histogram of ``model`` (fed by the replicas'
    ``timing.batch_size``): upper bound -> cumulative count."""
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(s.gateway.metrics_text()):
        for sample in family.samples:
            if sample.name == "modelyard_batch_size_bucket" and sample.labels["model"] == model:
                bound = float(sample.labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
    return buckets


def test_a_batched_deployment_fills_batches_past_concurrency_and_a_plain_one_does_not(
    tmp_path: Path,
) -> None:
    """Capacity = concurrency x max_batch_size with a batch function, concurrency without.

    A 200 ms batch wait makes the outcome independent of the machine's speed: a group closes
    early only once it holds max_batch_size (32) items, so with the gateway capped at the
    default concurrency (8) every batch would hold at most 8."""

    async def scenario() -> None:
        s = stack(tmp_path / "home", tmp_path / "metrics.db")
        try:
            batched = await s.controller.deploy(
                "batched", project(tmp_path / "batch", BATCH), "predict.py", "predict",
                settings={"max_batch_wait_ms": 200},
            )  # fmt: skip
            assert batched.ok and batched.batch_function == "predict_batch"
            plain = await s.controller.deploy(
                "plain", project(tmp_path / "plain", PREDICT), "predict.py", "predict",
                settings={"concurrency": 4},
            )  # fmt: skip
            assert plain.ok and plain.batch_function is None
            assert capacities(s, "batched") == [8 * 32]  # default concurrency x max_batch_size
            assert capacities(s, "plain") == [4]

            peak = Peak(s, "batched")
            results = await asyncio.gather(*(s.call("batched", x=i) for i in range(64)))
            await peak.stop()
            assert failures(list(results)) == []
            assert [r.envelope["response"]["double"] for r in results] == [2 * i for i in range(64)]
            sizes = [r.envelope["response"]["batch"] for r in results]
            assert max(sizes) > 8 and max(sizes) <= 32, sizes
            assert peak.in_flight > 8  # the replica held more than its concurrency
            histogram = batch_sizes(s, "batched")
            assert histogram[float("inf")] == 64
            assert histogram[8.0] < 64  # some answers said batch_size > 8
            assert histogram[32.0] == 64

            peak = Peak(s, "plain")
            results = await asyncio.gather(*(s.call("plain", x=i, sleep=0.02) for i in range(64)))
            await peak.stop()
            assert failures(list(results)) == []
            assert peak.in_flight == 4  # reached, never exceeded: the rest waited in the gateway
            assert peak.queued > 0
            histogram = batch_sizes(s, "plain")
            assert histogram[1.0] == histogram[float("inf")] == 64

            # A rollout to a build with a batch function, then a scale-up: every endpoint of the
            # new deployment gets concurrency x max_batch_size (4 x 32).
            again = await s.controller.deploy(
                "plain", project(tmp_path / "plain-batch", BATCH), "predict.py", "predict"
            )
            assert again.ok and again.batch_function == "predict_batch"
            await s.controller.scale("plain", 2)
            assert capacities(s, "plain") == [4 * 32, 4 * 32]
        finally:
            await s.close()

    run(scenario)


def test_a_sigkilled_replica_under_load_fails_no_call_and_comes_back(tmp_path: Path) -> None:
    async def scenario() -> None:
        s = stack(tmp_path / "home", tmp_path / "metrics.db")
        try:
            outcome = await s.controller.deploy(
                "churn", project(tmp_path / "v1", PREDICT), "predict.py", "predict", replicas=2
            )
            assert outcome.ok and outcome.deployment is not None
            victim = s.controller.status("churn").replicas[0].state
            pool = s.gateway.pool("churn")
            assert pool is not None
            load = Load(s, "churn", workers=2, pause_s=0.02)
            await asyncio.sleep(0.5)
            # A request in flight at the kill would be lost by design (never resent: it may have
            # run), and so would one written into a kept-alive connection in the microseconds
            # before the dead process's FIN crosses loopback (measured: a request sent 0.06 ms
            # after the process became a zombie got a reset). Kill between two requests and hold
            # the loop until the FIN has arrived: what a crash under light load meets.
            while next(e for e in pool.endpoints() if e.replica_id == victim.replica_id).in_flight:
                await asyncio.sleep(0)
            os.kill(victim.pid or 0, signal.SIGKILL)
            while not ended(victim.pid or 0):  # sockets closed; loop held: no sends
                time.sleep(0.001)
            time.sleep(0.02)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                state = s.runtime.replica(victim.replica_id)
                if state.restarts == 1 and state.status is ReplicaStatus.HEALTHY:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.5)  # past the gateway's 1 s cooldown: it takes calls again
            results = await load.stop()
            assert failures(results) == []
            state = s.runtime.replica(victim.replica_id)
            assert state.restarts == 1 and state.status is ReplicaStatus.HEALTHY
            assert state.port == victim.port and state.pid != victim.pid
            assert victim.replica_id in {r.replica_id for r in results[-10:]}  # serves again
            await asyncio.sleep(0.2)
            kinds = [
                e.kind
                for e in s.registry.events(outcome.deployment.crn)
                if e.replica_id == victim.replica_id
            ]
            assert {"exited", "restarted", "healthy"} <= set(kinds)
        finally:
            await s.close()

    run(scenario)


def test_a_request_past_its_timeout_gets_the_replica_recycled(tmp_path: Path) -> None:
    async def scenario() -> None:
        s = stack(tmp_path / "home", tmp_path / "metrics.db")
        try:
            outcome = await s.controller.deploy(
                "churn", project(tmp_path / "v1", PREDICT), "predict.py", "predict",
                settings={"request_timeout_s": 0.5},
            )  # fmt: skip
            assert outcome.ok and outcome.deployment is not None
            (view,) = s.controller.status("churn").replicas
            stuck = await s.call("churn", sleep=30)
            assert stuck.http_status == 504 and stuck.replica_id == view.state.replica_id
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:  # killed (no 30 s wait), restarted, healthy
                state = s.runtime.replica(view.state.replica_id)
                if state.restarts == 1 and state.status is ReplicaStatus.HEALTHY:
                    break
                await asyncio.sleep(0.05)
            assert state.restarts == 1 and state.status is ReplicaStatus.HEALTHY
            assert (await s.call("churn")).http_status == 200
            await asyncio.sleep(0.2)
            recycled = [
                e for e in s.registry.events(outcome.deployment.crn) if e.kind == "recycled"
            ]
            assert [e.details["reason"] for e in recycled] == ["request timeout"]
        finally:
            await s.close()

    run(scenario)


FIRST_SERVER = """
import asyncio, json, sys
from pathlib import Path

from modelyard.registry import Registry
from modelyard.runtime import LocalRuntime, SupervisorConfig
from modelyard.serving.controller import Controller, EventRelay
from modelyard.serving.gateway import Gateway
from modelyard.store import BufferedWriter
from modelyard.store.sqlite import SQLiteStore


async def main():
    home, db, code = map(Path, sys.argv[1:4])
    store = SQLiteStore(db)
    writer = BufferedWriter(store, flush_interval_ms=20)
    registry = Registry(store, cache_ttl_s=0)
    relay = EventRelay()
    runtime = LocalRuntime(home, on_event=relay, config=SupervisorConfig(poll_interval_s=0.05))
    gateway = Gateway(writer)
    controller = Controller(home, store, registry, runtime, gateway, events=relay)
    outcome = await controller.deploy("churn", code, "predict.py", "predict", replicas=2)
    assert outcome.ok, outcome.log_tail
    answer = await gateway.invoke("churn", b'{"x": 1}')
    writer.flush()
    # A rollout cut short by the crash below leaves a deploying deployment behind.
    cut = registry.add_deployment("churn", outcome.build.crn, replicas=1)
    pids = [state.pid for state in runtime.replicas()]
    print(json.dumps({"active": outcome.deployment.crn, "cut": cut.crn, "pids": pids,
                      "status": answer.http_status}), flush=True)
    await asyncio.sleep(3600)


asyncio.run(main())
"""


def test_restore_after_a_server_crash_brings_the_active_deployment_back(tmp_path: Path) -> None:
    home, db = tmp_path / "home", tmp_path / "metrics.db"
    code = project(tmp_path / "v1", PREDICT)
    # The first server is a real process, SIGKILLed: its replicas (own sessions) outlive it.
    argv = [sys.executable, "-c", FIRST_SERVER, str(home), str(db), str(code)]
    with subprocess.Popen(argv, stdout=subprocess.PIPE) as server:
        try:
            assert server.stdout is not None
            line = server.stdout.readline()
        finally:
            server.send_signal(signal.SIGKILL)
            server.wait()
    first = orjson.loads(line)
    orphans = [psutil.Process(pid) for pid in first["pids"]]
    try:
        _restore_after_crash(home, db, first, orphans)
    finally:
        # Whatever happened above, no replica of the killed server may outlive the test.
        for orphan in orphans:
            with contextlib.suppress(psutil.NoSuchProcess):
                orphan.kill()


def _restore_after_crash(
    home: Path, db: Path, first: dict[str, Any], orphans: list[psutil.Process]
) -> None:
    assert first["status"] == 200
    assert len(orphans) == 2 and all(p.is_running() for p in orphans)

    async def second_server() -> None:
        s = stack(home, db)
        try:
            assert (await s.call("churn")).http_status == 503  # nothing routes yet
            restored = await s.controller.restore()
            assert restored == {"churn": None}
            _gone, alive = psutil.wait_procs(orphans, timeout=10)
            assert alive == []  # the crashed server's replicas were reaped
            results = await asyncio.gather(*(s.call("churn", x=i) for i in range(6)))
            assert failures(list(results)) == []
            status = s.controller.status("churn")
            assert len(status.replicas) == 2
            assert {v.state.pid for v in status.replicas}.isdisjoint(first["pids"])
            assert s.registry.get_deployment(first["cut"]).state is DeploymentState.FAILED
            assert s.registry.get_deployment(first["active"]).state is DeploymentState.ACTIVE
            assert {r.uuid for r in results} <= {r.uuid for r in s.records(first["active"])}
            assert await s.controller.restore() == {"churn": None}  # already running: kept
            assert len(s.controller.status("churn").replicas) == 2
        finally:
            await s.close()

    run(second_server)


def test_the_example_in_docs_deployments_md_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = Path(__file__).resolve().parents[3] / "docs" / "deployments.md"
    snippet = doc.read_text().split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(snippet, str(doc), "exec"), {"__name__": "docs_deployments"})
    printed = capsys.readouterr().out.splitlines()
    assert printed == ["mya_ active", "200 {'churn': True}"]


@pytest.mark.postgres
def test_rollout_and_restore_on_postgresql(tmp_path: Path, postgres_schema_url: str) -> None:
    home = tmp_path / "home"
    crns: list[str] = []

    async def first_server() -> None:
        s = stack(home, postgres_schema_url)
        try:
            first = await s.controller.deploy(
                "churn", project(tmp_path / "v1", PREDICT), "predict.py", "predict", replicas=2
            )
            load = Load(s, "churn")
            await asyncio.sleep(0.2)
            second = await s.controller.deploy(
                "churn", project(tmp_path / "v2", PREDICT, "v2"), "predict.py", "predict"
            )
            results = await load.stop()
            assert first.ok and second.ok and second.deployment is not None
            assert failures(results) == []
            assert first.deployment is not None
            crns.extend([first.deployment.crn, second.deployment.crn])
            for crn, version in zip(crns, ("v1", "v2"), strict=True):
                records = s.records(crn)
                assert records and {r.metrics["version"] for r in records} == {version}
                assert all(r.identity == identity_of(s, crn) for r in records)
            assert len(s.controller.status("churn").replicas) == 1  # 2 old -> 1 new
        finally:
            await s.close()

    async def second_server() -> None:
        s = stack(home, postgres_schema_url)
        try:
            assert await s.controller.restore() == {"churn": None}
            answer = await s.call("churn")
            assert answer.envelope["response"]["prediction"]["version"] == "v2"
            assert s.registry.get_deployment(crns[0]).state is DeploymentState.REPLACED
            kinds = {e.kind for e in s.registry.events(crns[0])}
            assert {"started", "healthy", "stopped"} <= kinds  # the old replicas' whole life
        finally:
            await s.close()

    run(first_server)
    run(second_server)
