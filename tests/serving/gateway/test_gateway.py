"""Gateway tests against small real HTTP servers on 127.0.0.1 that speak the replica protocol.

The servers (``FakeReplica``) run on the test's event loop over real sockets, so they can do what
a real replica rarely does on cue: hang, close the connection mid-request, answer slowly, count
how many requests they hold at once. Records go to a real SQLite store through a real
``BufferedWriter`` and are read back.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

import _async
from modelyard.errors import Conflict, GatewayTimeout, InvalidInput, NotFound
from modelyard.runtime import free_port
from modelyard.serving.gateway import (
    DeploymentPool,
    Gateway,
    GatewayResult,
    PoolSettings,
    ReplicaEndpoint,
)
from modelyard.store import BufferedWriter, Identity, Query, RecordKind
from modelyard.store.sqlite import SQLiteStore

run = partial(_async.run, timeout_s=30)  # each scenario fails after 30 s


def identity(tag: str = "a") -> Identity:
    return Identity(
        f"crn:modelyard:model/{tag}-{uuid.uuid4()}",
        f"crn:modelyard:build/{uuid.uuid4()}",
        f"crn:modelyard:deployment/{uuid.uuid4()}",
    )


class FakeReplica:
    """A loopback HTTP/1.1 server speaking the replica protocol.

    Input ``{"x": ...}`` -> output ``{"echo": x, "replica": id}``; ``{"sleep": s}`` answers after
    ``s`` seconds; ``{"raise": "msg"}`` answers as a user exception. ``mode="hang"`` never
    answers, ``mode="close"`` closes the connection after reading the request (no byte of an
    answer), ``mode="half"`` sends the first bytes of an answer and then closes,
    ``mode="garbage"`` answers 200 with JSON that is not in the replica protocol. Records carry
    the uuid the gateway sent (``X-Modelyard-Prediction-Uuid``); ``uuids`` lists those received.
    """

    def __init__(self, replica_id: str, mode: str = "ok", chunked: bool = False) -> None:
        self.replica_id = replica_id
        self.mode = mode
        self.chunked = chunked
        self.requests = 0
        self.connections = 0
        self.active = 0
        self.max_active = 0
        self.server: asyncio.Server | None = None
        self.port = 0
        self.writers: set[asyncio.StreamWriter] = set()
        self.uuids: list[str | None] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, port: int = 0) -> FakeReplica:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        writers = list(self.writers)
        for writer in writers:  # Python 3.11 has no Server.close_clients()
            writer.close()
        for writer in writers:
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode().split("\r\n")
                path = lines[0].split(" ")[1]
                length = 0
                given: str | None = None
                for line in lines[1:]:
                    if line.lower().startswith("content-length:"):
                        length = int(line.split(":", 1)[1])
                    elif line.lower().startswith("x-modelyard-prediction-uuid:"):
                        given = line.split(":", 1)[1].strip()
                body = await reader.readexactly(length)
                self.requests += 1
                self.uuids.append(given)
                if self.mode == "close":
                    writer.close()
                    return
                if self.mode == "half":
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-le")
                    await writer.drain()
                    writer.close()
                    return
                if self.mode == "hang":
                    await asyncio.sleep(3600)
                self.active += 1
                self.max_active = max(self.max_active, self.active)
                try:
                    status, answer = await self._answer(path, body, given)
                finally:
                    self.active -= 1
                payload = orjson.dumps(answer)
                if self.chunked:
                    middle = len(payload) // 2
                    writer.write(
                        f"HTTP/1.1 {status} OK\r\ntransfer-encoding: chunked\r\n\r\n".encode()
                        + f"{middle:x}\r\n".encode()
                        + payload[:middle]
                        + f"\r\n{len(payload) - middle:x}\r\n".encode()
                        + payload[middle:]
                        + b"\r\n0\r\n\r\n"
                    )
                else:
                    writer.write(
                        f"HTTP/1.1 {status} OK\r\ncontent-type: application/json\r\n"
                        f"content-length: {len(payload)}\r\n\r\n".encode()
                        + payload
                    )
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            return
        finally:
            self.writers.discard(writer)
            writer.close()

    async def _answer(
        self, path: str, body: bytes, given: str | None = None
    ) -> tuple[int, dict[str, Any]]:
        if self.mode == "garbage":
            return 200, {"unexpected": True}
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return 400, {"ok": False, "error": {"type": "InvalidInput", "message": str(exc)}}
        if path == "/invoke_batch":
            answers = [await self._one(item, len(data)) for item in data]
            return 200, {"results": answers}
        return 200, await self._one(data, 1, given)

    async def _one(
        self, data: Any, batch_size: int = 1, given: str | None = None
    ) -> dict[str, Any]:
        start = time.time_ns() // 1_000_000
        if isinstance(data, dict) and "sleep" in data:
            await asyncio.sleep(data["sleep"])
        record: dict[str, Any] = {
            "predictionUuid": given or str(uuid.uuid4()),
            "startTimeStampMs": start,
            "endTimeStampMs": time.time_ns() // 1_000_000,
            "metrics": {"seen_by": self.replica_id},
        }
        timing = {"queue_ms": 0.0, "function_ms": 1.0, "batch_size": batch_size}
        if isinstance(data, dict) and "raise" in data:
            record["metrics"]["_error"] = {"type": "ValueError", "message": data["raise"]}
            return {
                "ok": False,
                "error": {"type": "ValueError", "message": data["raise"]},
                "record": record,
                "timing": timing,
            }
        output = {"echo": data.get("x") if isinstance(data, dict) else data}
        output["replica"] = self.replica_id
        return {"ok": True, "output": output, "record": record, "timing": timing}


async def replicas(*modes: str) -> list[FakeReplica]:
    return [await FakeReplica(f"r{i + 1}", mode).start() for i, mode in enumerate(modes)]


def pool_of(
    servers: list[FakeReplica],
    capacity: int = 1,
    settings: PoolSettings | None = None,
    on_stuck: Callable[[str], Any] | None = None,
) -> DeploymentPool:
    pool = DeploymentPool(identity(), settings or PoolSettings(), on_stuck=on_stuck)
    for server in servers:
        pool.add_endpoint(ReplicaEndpoint(server.replica_id, server.url, capacity))
    return pool


def body(**data: Any) -> bytes:
    return orjson.dumps(data)


# -- routing ------------------------------------------------------------------------------------
def test_least_busy_routing_spreads_load_over_two_endpoints() -> None:
    async def scenario() -> None:
        servers = await replicas("ok", "ok")
        gateway = Gateway()
        gateway.set_pool("m", pool_of(servers, capacity=4))
        results = await asyncio.gather(
            *(gateway.invoke("m", body(x=i, sleep=0.2)) for i in range(8))
        )
        assert [r.http_status for r in results] == [200] * 8
        assert [s.max_active for s in servers] == [4, 4]
        assert sorted(r.replica_id or "" for r in results) == ["r1"] * 4 + ["r2"] * 4
        # One at a time, ties go round robin.
        one_by_one = [(await gateway.invoke("m", body(x=i))).replica_id for i in range(4)]
        assert one_by_one in (["r1", "r2", "r1", "r2"], ["r2", "r1", "r2", "r1"])
        await gateway.close()
        for server in servers:
            await server.stop()

    run(scenario)


def test_least_busy_weighs_in_flight_by_capacity() -> None:
    async def scenario() -> None:
        big, small = await replicas("ok", "ok")
        pool = DeploymentPool(identity())
        pool.add_endpoint(ReplicaEndpoint("r1", big.url, capacity=3))
        pool.add_endpoint(ReplicaEndpoint("r2", small.url, capacity=1))
        gateway = Gateway()
        gateway.set_pool("m", pool)
        results = await asyncio.gather(*(gateway.invoke("m", body(sleep=0.2)) for _ in range(4)))
        assert [r.http_status for r in results] == [200] * 4
        assert (big.max_active, small.max_active) == (3, 1)
        await gateway.close()
        await big.stop()
        await small.stop()

    run(scenario)


def test_capacity_is_respected_and_the_rest_wait_in_fifo_order() -> None:
    async def scenario() -> None:
        (server,) = await replicas("ok")
        gateway = Gateway()
        pool = pool_of([server], capacity=2)
        gateway.set_pool("m", pool)
        order: list[int] = []

        async def call(i: int) -> GatewayResult:
            result = await gateway.invoke("m", body(x=i, sleep=0.05))
            order.append(i)
            return result

        tasks = [asyncio.create_task(call(i)) for i in range(6)]
        await asyncio.sleep(0.02)
        assert pool.queue_depth == 4
        assert pool.in_flight == 2
        results = await asyncio.gather(*tasks)
        assert [r.http_status for r in results] == [200] * 6
        assert server.max_active == 2
        assert order[2:] == [2, 3, 4, 5]  # the queue is FIFO
        assert pool.queue_depth == 0 and pool.in_flight == 0
        await gateway.close()
        await server.stop()

    run(scenario)


def test_full_queue_is_overloaded_429_with_retry_after() -> None:
    async def scenario() -> None:
        (server,) = await replicas("ok")
        gateway = Gateway()
        gateway.set_pool("m", pool_of([server], settings=PoolSettings(max_queue=1)))
        tasks = [asyncio.create_task(gateway.invoke("m", body(sleep=0.2))) for _ in range(2)]
        await asyncio.sleep(0.05)
        refused = await gateway.invoke("m", body(x=3))
        assert refused.http_status == 429
        assert refused.envelope["success"] is False
        assert refused.envelope["error"]["code"] == "overloaded"
        assert "max_queue=1" in refused.envelope["error"]["message"]
        assert isinstance(refused.retry_after_s, int) and refused.retry_after_s >= 1
        assert refused.envelope["error"]["details"]["retry_after_s"] == refused.retry_after_s
        assert refused.headers() == {"Retry-After": str(refused.retry_after_s)}
        assert [r.http_status for r in await asyncio.gather(*tasks)] == [200, 200]
        assert server.requests == 2
        await gateway.close()
        await server.stop()

    run(scenario)


def test_queue_timeout_is_overloaded_429() -> None:
    async def scenario() -> None:
        (server,) = await replicas("ok")
        gateway = Gateway()
        pool = pool_of([server], settings=PoolSettings(queue_timeout_s=0.1))
        gateway.set_pool("m", pool)
        slow = asyncio.create_task(gateway.invoke("m", body(sleep=0.5)))
        await asyncio.sleep(0.02)
        started = time.perf_counter()
        late = await gateway.invoke("m", body(x=1))
        waited = time.perf_counter() - started
        assert late.http_status == 429
        assert "queue_timeout_s=0.1" in late.envelope["error"]["message"]
        assert late.retry_after_s is not None and late.retry_after_s >= 1
        assert 0.08 <= waited < 0.4
        assert pool.queue_depth == 0  # the timed-out waiter left the queue
        assert (await slow).http_status == 200
        assert server.requests == 1
        await gateway.close()
        await server.stop()

    run(scenario)


def test_request_timeout_is_504_and_reports_the_stuck_replica() -> None:
    async def scenario() -> None:
        (server,) = await replicas("hang")
        stuck: list[str] = []
        gateway = Gateway()
        pool = pool_of(
            [server], settings=PoolSettings(request_timeout_s=0.2), on_stuck=stuck.append
        )
        gateway.set_pool("m", pool)
        started = time.perf_counter()
        result = await gateway.invoke("m", body(x=1))
        assert 0.18 <= time.perf_counter() - started < 1.0
        assert result.http_status == 504
        assert result.envelope["error"]["code"] == "timeout"
        assert result.envelope["ReplicaID"] == "r1"
        assert "request_timeout_s=0.2" in result.envelope["error"]["message"]
        assert stuck == ["r1"]
        assert pool.in_flight == 0  # the slot came back
        await gateway.close()
        await server.stop()

    run(scenario)


def test_async_on_stuck_is_awaited_in_the_background() -> None:
    async def scenario() -> None:
        (server,) = await replicas("hang")
        recycled: list[str] = []

        async def recycle(replica_id: str) -> None:
            await asyncio.sleep(0)
            recycled.append(replica_id)

        gateway = Gateway()
        settings = PoolSettings(request_timeout_s=0.1)
        gateway.set_pool("m", pool_of([server], settings=settings, on_stuck=recycle))
        assert (await gateway.invoke("m", body(x=1))).http_status == 504
        await asyncio.sleep(0.05)
        assert recycled == ["r1"]
        await gateway.close()
        await server.stop()

    run(scenario)


def test_connection_refused_is_retried_on_another_endpoint() -> None:
    async def scenario() -> None:
        (alive,) = await replicas("ok")
        pool = DeploymentPool(identity())
        pool.add_endpoint(ReplicaEndpoint("dead", f"http://127.0.0.1:{free_port()}", 1))
        pool.add_endpoint(ReplicaEndpoint("r1", alive.url, 1))
        gateway = Gateway()
        gateway.set_pool("m", pool)
        results = [await gateway.invoke("m", body(x=i)) for i in range(3)]
        assert [r.http_status for r in results] == [200, 200, 200]
        assert {r.replica_id for r in results} == {"r1"}
        assert alive.requests == 3
        await gateway.close()
        await alive.stop()

    run(scenario)


def test_connection_refused_without_retries_is_503() -> None:
    async def scenario() -> None:
        port = free_port()
        pool = DeploymentPool(identity(), PoolSettings(retries=0))
        pool.add_endpoint(ReplicaEndpoint("dead", f"http://127.0.0.1:{port}", 1))
        gateway = Gateway()
        gateway.set_pool("m", pool)
        result = await gateway.invoke("m", body(x=1))
        assert result.http_status == 503
        assert result.envelope["error"]["code"] == "unavailable"
        assert "dead" in result.envelope["error"]["message"]
        assert str(port) in result.envelope["error"]["message"]
        await gateway.close()

    run(scenario)


def test_a_lone_refusing_replica_is_tried_again_after_its_cooldown() -> None:
    """One replica, refusing (restarting): the request waits out the 1 s cooldown and is
    answered once the replica is back, instead of a 503 at once."""

    async def scenario() -> None:
        port = free_port()
        pool = DeploymentPool(identity())
        pool.add_endpoint(ReplicaEndpoint("r1", f"http://127.0.0.1:{port}", 1))
        gateway = Gateway()
        gateway.set_pool("m", pool)
        call = asyncio.create_task(gateway.invoke("m", body(x=1)))
        await asyncio.sleep(0.3)
        assert not call.done()  # refused once, waiting for the cooldown
        back = await FakeReplica("r1").start(port)
        result = await call
        assert result.http_status == 200 and result.replica_id == "r1"
        await gateway.close()
        await back.stop()

    run(scenario)


def test_connection_closed_before_any_answer_byte_is_resent_once_with_the_same_uuid() -> None:
    async def scenario() -> None:
        closer, healthy = await replicas("close", "ok")
        pool = DeploymentPool(identity())
        pool.add_endpoint(ReplicaEndpoint("r1", closer.url, 1))
        pool.add_endpoint(ReplicaEndpoint("r2", healthy.url, 1))
        gateway = Gateway()
        gateway.set_pool("m", pool)
        result = await gateway.invoke("m", body(x=1))
        assert result.http_status == 200, result.envelope
        assert result.replica_id == "r2"
        assert (closer.requests, healthy.requests) == (1, 1)
        # The uuid the gateway minted went with both attempts and is the answer's uuid.
        assert closer.uuids == healthy.uuids == [result.uuid]
        assert uuid.UUID(str(result.uuid))
        await gateway.close()
        await closer.stop()
        await healthy.stop()

    run(scenario)


def test_a_second_broken_attempt_is_502_not_resent_again() -> None:
    async def scenario() -> None:
        first, second = await replicas("close", "close")
        gateway = Gateway()
        gateway.set_pool("m", pool_of([first, second]))
        result = await gateway.invoke("m", body(x=1))
        assert result.http_status == 502
        assert "resent once already" in result.envelope["error"]["message"]
        assert first.requests + second.requests == 2
        await gateway.close()
        await first.stop()
        await second.stop()

    run(scenario)


def test_a_model_declared_not_resendable_gets_502() -> None:
    async def scenario() -> None:
        closer, healthy = await replicas("close", "ok")
        pool = DeploymentPool(identity(), PoolSettings(resend=False))
        pool.add_endpoint(ReplicaEndpoint("r1", closer.url, 1))
        pool.add_endpoint(ReplicaEndpoint("r2", healthy.url, 1))
        gateway = Gateway()
        gateway.set_pool("m", pool)
        result = await gateway.invoke("m", body(x=1))
        assert result.http_status == 502
        assert result.envelope["error"]["code"] == "replica_failed"
        assert "retry=false" in result.envelope["error"]["message"]
        assert result.replica_id == "r1"
        assert (closer.requests, healthy.requests) == (1, 0)
        await gateway.close()
        await closer.stop()
        await healthy.stop()

    run(scenario)


def test_an_answer_that_had_started_is_never_resent() -> None:
    async def scenario() -> None:
        half, healthy = await replicas("half", "ok")
        pool = DeploymentPool(identity())
        pool.add_endpoint(ReplicaEndpoint("r1", half.url, 1))
        pool.add_endpoint(ReplicaEndpoint("r2", healthy.url, 1))
        gateway = Gateway()
        gateway.set_pool("m", pool)
        result = await gateway.invoke("m", body(x=1))
        assert result.http_status == 502
        assert "its answer had started" in result.envelope["error"]["message"]
        assert (half.requests, healthy.requests) == (1, 0)
        await gateway.close()
        await half.stop()
        await healthy.stop()

    run(scenario)


def test_resend_setting_is_checked() -> None:
    with pytest.raises(InvalidInput, match="resend='no'"):
        PoolSettings(resend="no")  # type: ignore[arg-type]


def test_an_answer_outside_the_protocol_is_502_and_writes_nothing() -> None:
    submitted: list[Any] = []

    class Sink:
        def submit(self, prediction: Any) -> None:
            submitted.append(prediction)

    async def scenario() -> None:
        (server,) = await replicas("garbage")
        gateway = Gateway(Sink())
        gateway.set_pool("m", pool_of([server]))
        single = await gateway.invoke("m", body(x=1))
        batch = await gateway.invoke_batch("m", b"[1, 2]")
        for result in (single, batch):
            assert result.http_status == 502
            assert result.envelope["error"]["code"] == "replica_failed"
            assert "not in the replica protocol" in result.envelope["error"]["message"]
        await gateway.close()
        await server.stop()

    run(scenario)
    assert submitted == []


def test_an_empty_batch_is_an_empty_success() -> None:
    async def scenario() -> None:
        (server,) = await replicas("ok")
        gateway = Gateway()
        gateway.set_pool("m", pool_of([server]))
        result = await gateway.invoke_batch("m", b" []")
        assert result.http_status == 200
        assert result.envelope == {"success": True, "responses": [], "ReplicaID": "r1"}
        assert result.uuids == ()
        await gateway.close()
        await server.stop()

    run(scenario)


def test_drain_waits_for_in_flight_requests_then_removes() -> None:
    async def scenario() -> None:
        servers = await replicas("ok", "ok")
        pool = pool_of(servers, capacity=2)
        gateway = Gateway()
        gateway.set_pool("m", pool)
        first = asyncio.create_task(gateway.invoke("m", body(sleep=0.3)))
        await asyncio.sleep(0.05)
        busy = next(s for s in pool.endpoints() if s.in_flight == 1).replica_id
        drain = asyncio.create_task(pool.remove_endpoint(busy, drain=True))
        await asyncio.sleep(0.05)
        assert not drain.done()
        state = {s.replica_id: s for s in pool.endpoints()}
        assert state[busy].draining and state[busy].in_flight == 1
        # New requests avoid the draining replica.
        others = [await gateway.invoke("m", body(x=i)) for i in range(3)]
        assert {r.replica_id for r in others} == {"r1", "r2"} - {busy}
        await drain
        assert first.done() and (await first).http_status == 200
        assert (await first).replica_id == busy
        assert [s.replica_id for s in pool.endpoints()] == sorted({"r1", "r2"} - {busy})
        with pytest.raises(NotFound, match=busy):
            await pool.remove_endpoint(busy)
        await gateway.close()
        for server in servers:
            await server.stop()

    run(scenario)


def test_added_endpoint_takes_waiting_requests() -> None:
    async def scenario() -> None:
        first, second = await replicas("ok", "ok")
        pool = pool_of([first])
        gateway = Gateway()
        gateway.set_pool("m", pool)
        slow = asyncio.create_task(gateway.invoke("m", body(sleep=0.5)))
        await asyncio.sleep(0.02)
        waiting = asyncio.create_task(gateway.invoke("m", body(x=2)))
        await asyncio.sleep(0.02)
        assert pool.queue_depth == 1
        pool.add_endpoint(ReplicaEndpoint("r2", second.url, 1))
        result = await waiting
        assert result.http_status == 200 and result.replica_id == "r2"
        assert not slow.done()
        with pytest.raises(Conflict, match="r2"):
            pool.add_endpoint(ReplicaEndpoint("r2", second.url, 1))
        await slow
        await gateway.close()
        await first.stop()
        await second.stop()

    run(scenario)


def test_unhealthy_endpoint_gets_no_requests() -> None:
    async def scenario() -> None:
        servers = await replicas("ok", "ok")
        pool = pool_of(servers)
        gateway = Gateway()
        gateway.set_pool("m", pool)
        pool.set_healthy("r1", False)
        results = [await gateway.invoke("m", body(x=i)) for i in range(3)]
        assert {r.replica_id for r in results} == {"r2"}
        pool.set_healthy("r1", True)
        results = [await gateway.invoke("m", body(x=i)) for i in range(2)]
        assert {r.replica_id for r in results} == {"r1", "r2"}
        await gateway.close()
        for server in servers:
            await server.stop()

    run(scenario)


# -- envelopes and records ----------------------------------------------------------------------
def test_records_reach_a_real_sqlite_store_with_identity_and_uuid(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "metrics.db")
    writer = BufferedWriter(store, flush_interval_ms=50)

    async def scenario() -> tuple[Identity, list[GatewayResult]]:
        (server,) = await replicas("ok")
        gateway = Gateway(writer)
        pool = pool_of([server])
        gateway.set_pool("churn", pool)
        results = [await gateway.invoke("churn", body(x=i)) for i in range(3)]
        results.append(await gateway.invoke("churn", body(raise_="x")))
        failed = await gateway.invoke("churn", orjson.dumps({"raise": "tenure must be >= 0"}))
        results.append(failed)
        await gateway.close()
        await server.stop()
        return pool.identity, results

    ident, results = run(scenario)
    writer.flush()
    ok = results[0]
    assert ok.http_status == 200
    assert ok.envelope == {
        "success": True,
        "response": {"echo": 0, "replica": "r1"},
        "ReplicaID": "r1",
        "uuid": ok.uuid,
    }
    failed = results[-1]
    assert failed.http_status == 500
    assert failed.envelope["success"] is False
    assert failed.envelope["error"] == {
        "code": "model_error",
        "message": "tenure must be >= 0",
        "type": "ValueError",
    }
    assert failed.envelope["ReplicaID"] == "r1" and failed.envelope["uuid"] == failed.uuid
    records, _ = store.read(Query(deployment_crn=ident.deployment_crn))
    by_uuid = {r.uuid: r for r in records}
    assert set(by_uuid) == {r.uuid for r in results}
    for record in records:
        assert record.kind is RecordKind.PREDICTION
        assert record.identity == ident
        assert record.start_ms <= record.end_ms
        assert record.metrics["seen_by"] == "r1"
    assert by_uuid[failed.uuid].metrics["_error"] == {
        "type": "ValueError",
        "message": "tenure must be >= 0",
    }
    assert "_error" not in by_uuid[ok.uuid].metrics
    writer.close()
    store.close()


def test_an_endpoint_identity_overrides_the_pool_identity_on_its_records(tmp_path: Path) -> None:
    # A rolling replacement: one pool (the old deployment's identity) holds an old replica and a
    # new one; each record must carry the identity of the replica that answered it.
    store = SQLiteStore(tmp_path / "metrics.db")
    writer = BufferedWriter(store, flush_interval_ms=50)
    old, new = identity("old"), identity("new")

    async def scenario() -> list[GatewayResult]:
        servers = await replicas("ok", "ok")
        gateway = Gateway(writer)
        pool = DeploymentPool(old)
        pool.add_endpoint(ReplicaEndpoint("r1", servers[0].url, 1))
        pool.add_endpoint(ReplicaEndpoint("r2", servers[1].url, 1, identity=new))
        gateway.set_pool("churn", pool)
        results = await asyncio.gather(*(gateway.invoke("churn", body(x=i)) for i in range(6)))
        await gateway.close()
        for server in servers:
            await server.stop()
        return list(results)

    results = run(scenario)
    writer.flush()
    assert {r.replica_id for r in results} == {"r1", "r2"}
    for ident, replica in ((old, "r1"), (new, "r2")):
        records, _ = store.read(Query(deployment_crn=ident.deployment_crn))
        assert {r.uuid for r in records} == {x.uuid for x in results if x.replica_id == replica}
        assert all(r.identity == ident for r in records)
    with pytest.raises(InvalidInput, match="identity="):
        ReplicaEndpoint("r3", "http://127.0.0.1:1", 1, identity="crn:x")  # type: ignore[arg-type]
    writer.close()
    store.close()


def test_pool_writer_takes_precedence_and_missing_error_marker_is_added(tmp_path: Path) -> None:
    class Sink:
        def __init__(self) -> None:
            self.records: list[Any] = []

        def submit(self, prediction: Any) -> None:
            self.records.append(prediction)

    gateway_sink, pool_sink = Sink(), Sink()

    async def scenario() -> None:
        server = FakeReplica("r1")

        async def no_marker(
            data: Any, batch_size: int = 1, given: str | None = None
        ) -> dict[str, Any]:
            return {
                "ok": False,
                "error": {"type": "KeyError", "message": "'tenure'"},
                "record": {
                    "predictionUuid": "u-1",
                    "startTimeStampMs": 1,
                    "endTimeStampMs": 2,
                    "metrics": {"k": 1},
                },
            }

        server._one = no_marker  # type: ignore[method-assign]
        await server.start()
        gateway = Gateway(gateway_sink)  # type: ignore[arg-type]
        pool = DeploymentPool(identity(), writer=pool_sink)  # type: ignore[arg-type]
        pool.add_endpoint(ReplicaEndpoint("r1", server.url))
        gateway.set_pool("m", pool)
        result = await gateway.invoke("m", b"{}")
        assert result.http_status == 500 and result.uuid == "u-1"
        await gateway.close()
        await server.stop()

    run(scenario)
    assert gateway_sink.records == []
    (record,) = pool_sink.records
    assert record.metrics == {"k": 1, "_error": {"type": "KeyError", "message": "'tenure'"}}


def test_body_over_the_limit_is_413_without_reaching_a_replica() -> None:
    async def scenario() -> None:
        (server,) = await replicas("ok")
        gateway = Gateway()
        gateway.set_pool("m", pool_of([server], settings=PoolSettings(max_body_bytes=100)))
        big = body(x="y" * 200)
        result = await gateway.invoke("m", big)
        assert result.http_status == 413
        assert result.envelope["error"]["code"] == "payload_too_large"
        assert str(len(big)) in result.envelope["error"]["message"]
        assert "100" in result.envelope["error"]["message"]
        assert server.requests == 0
        assert (await gateway.invoke("m", body(x="small"))).http_status == 200
        await gateway.close()
        await server.stop()

    run(scenario)


def test_invalid_json_is_400_and_writes_no_record(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "metrics.db")
    writer = BufferedWriter(store, flush_interval_ms=50)

    async def scenario() -> Identity:
        (server,) = await replicas("ok")
        gateway = Gateway(writer)
        pool = pool_of([server])
        gateway.set_pool("m", pool)
        result = await gateway.invoke("m", b"{not json")
        assert result.http_status == 400
        assert result.envelope["error"]["code"] == "invalid_input"
        assert result.envelope["ReplicaID"] == "r1"
        batch = await gateway.invoke_batch("m", b'{"x": 1}')
        assert batch.http_status == 400
        assert "JSON list" in batch.envelope["error"]["message"]
        await gateway.close()
        await server.stop()
        return pool.identity

    ident = run(scenario)
    writer.flush()
    store.register_identity(ident)
    assert store.read(Query(deployment_crn=ident.deployment_crn))[0] == []
    writer.close()
    store.close()


def test_no_active_deployment_is_503() -> None:
    async def scenario() -> None:
        gateway = Gateway()
        result = await gateway.invoke("nope", b"{}")
        assert result.http_status == 503
        assert result.envelope == {
            "success": False,
            "error": {
                "code": "unavailable",
                "message": "model 'nope' has no active deployment; deploy it first "
                "(models with one: none)",
                "details": {"model": "nope"},
            },
        }
        gateway.set_pool("m", DeploymentPool(identity()))
        empty = await gateway.invoke("m", b"{}")
        assert empty.http_status == 503 and "no replicas" in empty.envelope["error"]["message"]

    run(scenario)


def test_batch_answers_each_item_and_writes_every_record(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "metrics.db")
    writer = BufferedWriter(store, flush_interval_ms=50)
    registry = CollectorRegistry()

    async def scenario() -> tuple[Identity, GatewayResult, GatewayResult]:
        (server,) = await replicas("ok")
        gateway = Gateway(writer, registry)
        pool = pool_of([server])
        gateway.set_pool("m", pool)
        good = await gateway.invoke_batch("m", orjson.dumps([{"x": 1}, {"x": 2}, {"x": 3}]))
        mixed = await gateway.invoke_batch("m", orjson.dumps([{"x": 4}, {"raise": "bad"}]))
        await gateway.close()
        await server.stop()
        return pool.identity, good, mixed

    ident, good, mixed = run(scenario)
    assert good.http_status == 200 and good.envelope["success"] is True
    assert [item["response"]["echo"] for item in good.envelope["responses"]] == [1, 2, 3]
    assert [item["uuid"] for item in good.envelope["responses"]] == list(good.uuids)
    assert mixed.http_status == 500 and mixed.envelope["success"] is False
    assert [item["success"] for item in mixed.envelope["responses"]] == [True, False]
    assert mixed.envelope["responses"][1]["error"]["message"] == "bad"
    writer.flush()
    records, _ = store.read(Query(deployment_crn=ident.deployment_crn))
    assert {r.uuid for r in records} == set(good.uuids) | set(mixed.uuids)
    labels = {"model": "m", "deployment": ident.deployment_crn}
    assert registry.get_sample_value("modelyard_batch_size_count", labels) == 2
    assert registry.get_sample_value("modelyard_batch_size_sum", labels) == 5
    writer.close()
    store.close()


# -- metrics ------------------------------------------------------------------------------------
def test_prometheus_exposition_counts_requests_by_status() -> None:
    registry = CollectorRegistry()

    async def scenario() -> Identity:
        (server,) = await replicas("ok")
        gateway = Gateway(registry=registry)
        pool = pool_of([server], settings=PoolSettings(max_body_bytes=50))
        gateway.set_pool("churn", pool)
        for i in range(3):
            assert (await gateway.invoke("churn", body(x=i))).http_status == 200
        assert (await gateway.invoke("churn", body(raise_="no"))).http_status == 200
        assert (await gateway.invoke("churn", body(**{"raise": "no"}))).http_status == 500
        assert (await gateway.invoke("churn", b"x" * 51)).http_status == 413
        text = gateway.metrics_text()
        dep = pool.identity.deployment_crn
        assert (
            f'modelyard_requests_total{{deployment="{dep}",model="churn",replica="r1",'
            f'status="200"}} 4.0' in text
        )
        assert (
            f'modelyard_requests_total{{deployment="{dep}",model="churn",replica="r1",'
            f'status="500"}} 1.0' in text
        )
        assert (
            f'modelyard_requests_total{{deployment="{dep}",model="churn",replica="",'
            f'status="413"}} 1.0' in text
        )
        for phase, count in (("total", 6.0), ("queue", 5.0), ("function", 5.0)):
            labels = {"model": "churn", "deployment": dep, "phase": phase}
            assert registry.get_sample_value("modelyard_request_seconds_count", labels) == count
        function_sum = registry.get_sample_value(
            "modelyard_request_seconds_sum",
            {"model": "churn", "deployment": dep, "phase": "function"},
        )
        assert function_sum == pytest.approx(5 * 0.001)  # the replica reports 1 ms each
        gauges = {"model": "churn", "deployment": dep}
        assert registry.get_sample_value("modelyard_in_flight", gauges) == 0
        assert registry.get_sample_value("modelyard_queue_depth", gauges) == 0
        slow = [asyncio.create_task(gateway.invoke("churn", body(sleep=0.2))) for _ in range(3)]
        await asyncio.sleep(0.05)
        assert registry.get_sample_value("modelyard_in_flight", gauges) == 1
        assert registry.get_sample_value("modelyard_queue_depth", gauges) == 2
        await asyncio.gather(*slow)
        await gateway.close()
        await server.stop()
        return pool.identity

    run(scenario)


def test_tech_aggregates_are_written_per_deployment(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "metrics.db")

    async def scenario() -> tuple[Identity, Identity]:
        (server,) = await replicas("ok")
        gateway = Gateway(store=store, tech_interval_s=0.2)
        await gateway.start()
        old = pool_of([server], settings=PoolSettings(max_body_bytes=30))
        gateway.set_pool("m", old)
        for i in range(4):
            await gateway.invoke("m", body(x=i))
        await gateway.invoke("m", b"[" * 31)
        await asyncio.sleep(0.35)  # one interval passes: the task writes it
        new = pool_of([server])
        assert gateway.swap("m", new) is old
        await gateway.invoke("m", body(x=9))
        assert await gateway.write_tech_aggregates() == 1
        assert await gateway.write_tech_aggregates() == 0  # nothing new: nothing written
        await old.close()  # a swapped-out pool is the caller's to close
        await gateway.close()
        await server.stop()
        return old.identity, new.identity

    old, new = run(scenario)
    aggregates, _ = store.read(
        Query(deployment_crn=old.deployment_crn, kinds=frozenset({RecordKind.AGGREGATE}))
    )
    (first,) = aggregates
    assert first.metrics["tech.requests"] == 5
    assert first.metrics["tech.failures"] == 1
    assert first.metrics["tech.status_200"] == 4 and first.metrics["tech.status_413"] == 1
    assert first.metrics["tech.rps"] > 0
    p50, p95, p99 = (first.metrics[f"tech.latency_p{q}_ms"] for q in (50, 95, 99))
    assert 0 < p50 <= p95 <= p99
    newer, _ = store.read(
        Query(deployment_crn=new.deployment_crn, kinds=frozenset({RecordKind.AGGREGATE}))
    )
    assert [r.metrics["tech.requests"] for r in newer] == [1]
    store.close()


# -- the HTTP client ----------------------------------------------------------------------------
def test_connections_are_kept_alive_and_chunked_answers_are_read() -> None:
    async def scenario() -> None:
        server = await FakeReplica("r1", chunked=True).start()
        gateway = Gateway()
        gateway.set_pool("m", pool_of([server]))
        for i in range(20):
            result = await gateway.invoke("m", body(x=i))
            assert result.envelope["response"] == {"echo": i, "replica": "r1"}
        assert server.connections == 1
        await gateway.close()
        await server.stop()

    run(scenario)


def test_settings_and_endpoints_are_validated() -> None:
    with pytest.raises(InvalidInput, match="max_queue=-1"):
        PoolSettings(max_queue=-1)
    with pytest.raises(InvalidInput, match="request_timeout_s=0"):
        PoolSettings(request_timeout_s=0)
    with pytest.raises(InvalidInput, match="capacity=0"):
        ReplicaEndpoint("r1", "http://127.0.0.1:1", 0)
    with pytest.raises(InvalidInput, match="ftp://x"):
        ReplicaEndpoint("r1", "ftp://x", 1)
    with pytest.raises(InvalidInput, match="identity="):
        DeploymentPool("crn:modelyard:deployment/x")  # type: ignore[arg-type]
    assert PoolSettings(max_queue=0).max_queue == 0


def test_swap_is_atomic_and_retires_the_old_gauges() -> None:
    registry = CollectorRegistry()

    async def scenario() -> None:
        old_server, new_server = await replicas("ok", "ok")
        gateway = Gateway(registry=registry)
        old = pool_of([old_server])
        new = DeploymentPool(identity())
        new.add_endpoint(ReplicaEndpoint("n1", new_server.url))
        assert gateway.set_pool("m", old) is None
        in_old = asyncio.create_task(gateway.invoke("m", body(sleep=0.2)))
        await asyncio.sleep(0.05)
        assert gateway.swap("m", new) is old
        assert gateway.pool("m") is new and gateway.models() == ["m"]
        after = await gateway.invoke("m", body(x=1))
        assert after.replica_id == "n1"
        assert (await in_old).replica_id == "r1"  # finished in the pool it started in
        old_dep, new_dep = old.identity.deployment_crn, new.identity.deployment_crn
        text = gateway.metrics_text()
        assert f'modelyard_in_flight{{deployment="{new_dep}",model="m"}}' in text
        assert f'modelyard_in_flight{{deployment="{old_dep}",model="m"}}' not in text
        old_total = registry.get_sample_value(
            "modelyard_requests_total",
            {"model": "m", "deployment": old_dep, "replica": "r1", "status": "200"},
        )
        assert old_total == 1  # counters keep their totals
        assert gateway.remove_pool("m") is new
        assert (await gateway.invoke("m", b"{}")).http_status == 503
        await old.close()
        await new.close()
        await old_server.stop()
        await new_server.stop()

    run(scenario)


def test_public_surface() -> None:
    import modelyard.serving.gateway as module

    assert sorted(module.__all__) == [
        "DeploymentPool",
        "EndpointState",
        "Gateway",
        "GatewayResult",
        "PoolSettings",
        "RecordSink",
        "ReplicaEndpoint",
    ]
    for name in module.__all__:
        assert getattr(module, name).__module__.startswith("modelyard.serving.")


def test_interval_stats_match_numpy_and_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    from modelyard.serving.gateway import techstats

    stats = techstats.IntervalStats(start_ms=1_000)
    values = [float(v) for v in np.random.default_rng(7).gamma(2.0, 3.0, 1_000)]
    for i, value in enumerate(values):
        stats.add(500 if i % 10 == 0 else 200, value)
    taken = stats.take(end_ms=11_000)
    assert taken is not None
    start_ms, metrics = taken
    assert start_ms == 1_000
    expected = np.percentile(values, [50, 95, 99])
    assert [metrics[f"tech.latency_p{q}_ms"] for q in (50, 95, 99)] == list(expected)
    assert metrics["tech.requests"] == 1_000 and metrics["tech.rps"] == 100.0
    assert metrics["tech.failures"] == metrics["tech.status_500"] == 100
    assert stats.take(end_ms=12_000) is None  # reset, and an idle interval writes nothing
    monkeypatch.setattr(techstats, "MAX_SAMPLES", 10)
    for _ in range(50):
        stats.add(200, 1.0)
    assert len(stats.latencies_ms) == 10
    taken = stats.take(end_ms=13_000)
    assert taken is not None and taken[1]["tech.requests"] == 50


def test_drain_timeout_keeps_the_endpoint_draining_until_forced_out() -> None:
    async def scenario() -> None:
        (server,) = await replicas("ok")
        pool = pool_of([server])
        gateway = Gateway()
        gateway.set_pool("m", pool)
        slow = asyncio.create_task(gateway.invoke("m", body(sleep=0.4)))
        await asyncio.sleep(0.05)
        with pytest.raises(GatewayTimeout, match="r1"):
            await pool.remove_endpoint("r1", timeout_s=0.05)
        (state,) = pool.endpoints()
        assert state.draining and state.in_flight == 1
        await pool.remove_endpoint("r1", drain=False)
        assert pool.endpoints() == []
        assert (await slow).http_status == 200  # the request in flight still finished
        await gateway.close()
        await server.stop()

    run(scenario)


def test_a_caller_cancelled_while_queued_leaves_no_slot_behind() -> None:
    async def scenario() -> None:
        (server,) = await replicas("ok")
        pool = pool_of([server])
        gateway = Gateway()
        gateway.set_pool("m", pool)
        slow = asyncio.create_task(gateway.invoke("m", body(sleep=0.2)))
        await asyncio.sleep(0.02)
        queued = [asyncio.create_task(gateway.invoke("m", body(x=i))) for i in range(3)]
        await asyncio.sleep(0.02)
        assert pool.queue_depth == 3
        queued[0].cancel()  # the HTTP client went away
        await asyncio.sleep(0)
        assert pool.queue_depth == 2
        assert (await slow).http_status == 200
        assert [r.http_status for r in await asyncio.gather(*queued[1:])] == [200, 200]
        assert pool.in_flight == 0 and pool.queue_depth == 0
        assert server.requests == 3
        await gateway.close()
        await server.stop()

    run(scenario)
