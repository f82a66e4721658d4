"""The model gateway: model name -> active deployment pool -> replica, answered in the reference
envelope, with every answered prediction's record handed to the writer before the reply.

    gateway = Gateway(writer)
    pool = DeploymentPool(identity, PoolSettings(request_timeout_s=10))
    pool.add_endpoint(ReplicaEndpoint("r1", "http://127.0.0.1:8101", capacity=4))
    gateway.set_pool("churn", pool)
    result = await gateway.invoke("churn", b'{"tenure": 3}')
    result.http_status, result.envelope  # 200, {"success": True, "response": ..., ...}

Envelopes (``GatewayResult.envelope``), as the reference platform's ``POST /model`` answers:

- success: ``{"success": true, "response": <output>, "ReplicaID": r, "uuid": u}`` (200);
- the user function raised: ``{"success": false, "error": {"code": "model_error", "message",
  "type", "traceback"?}, "ReplicaID": r, "uuid": u}`` (500), and the record is written with the
  replica's ``_error`` marker;
- anything the gateway refuses: ``{"success": false, "error": {"code", "message", "details"?}}``
  plus ``ReplicaID`` when a replica was involved, with the error's status: invalid JSON 400,
  body too large 413, overloaded 429 (``retry_after_s`` -> the ``Retry-After`` header), replica
  broke off 502, no active deployment or no reachable replica 503, timeout 504.

Records: the replica returns each prediction's record; the gateway submits it with the identity
of the endpoint that answered, which is the pool's unless the endpoint carries its own (a rolling
replacement mixes two builds in one pool): ``Prediction(uuid, identity, start, end, metrics)``.
The record's metrics are the
user's (plus ``_error`` on failure): latencies and statuses go to Prometheus and, when a store is
given, to per-interval ``tech.*`` aggregate records (with per-replica requests, CPU, memory and
restarts when ``replica_stats`` is given).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from prometheus_client import CollectorRegistry

from modelyard.clock import now_ms
from modelyard.errors import (
    InvalidInput,
    ModelyardError,
    PayloadTooLarge,
    ReplicaFailed,
    Unavailable,
    error_body,
)
from modelyard.serving.gateway.pool import (
    DeploymentPool,
    Exchange,
    RecordSink,
)
from modelyard.serving.gateway.prometheus import BoundMetrics, GatewayMetrics
from modelyard.serving.gateway.techstats import IntervalStats, ReplicaSample, replica_metrics
from modelyard.store.base import MetricsStore, Prediction
from modelyard.store.techseries import SOURCE as TECH_SOURCE

__all__ = ["Gateway", "GatewayResult"]

log = logging.getLogger("modelyard.gateway")


@dataclass(frozen=True, slots=True)
class GatewayResult:
    """What the HTTP layer sends back: ``http_status``, ``body()`` and ``headers()``.

    ``uuid`` is the prediction's uuid for a single call that reached user code; ``uuids`` the
    uuids of a batch, in input order.
    """

    http_status: int
    envelope: dict[str, Any]
    replica_id: str | None = None
    uuid: str | None = None
    uuids: tuple[str, ...] = ()
    retry_after_s: int | None = None

    def body(self) -> bytes:
        return orjson.dumps(self.envelope)

    def headers(self) -> dict[str, str]:
        if self.retry_after_s is None:
            return {}
        return {"Retry-After": str(self.retry_after_s)}


@dataclass(slots=True)
class _Outcome:
    """One parsed replica answer."""

    envelope: dict[str, Any]
    uuid: str
    prediction: Prediction
    queue_ms: float
    function_ms: float
    batch_size: int


@dataclass(slots=True)
class _Active:
    """A model's active pool with what the request path needs, swapped as one reference."""

    pool: DeploymentPool
    writer: RecordSink | None
    metrics: BoundMetrics
    stats: IntervalStats | None


class Gateway:
    """Routes a model's requests to its active ``DeploymentPool``.

    ``writer`` receives prediction records of pools that have none of their own. ``store``
    (optional) turns on the per-interval ``tech.*`` aggregates (``source="tech"``), written every
    ``tech_interval_s`` by a task that ``start()`` launches and ``close()`` stops (writing the last
    interval). ``replica_stats`` (optional) returns the runtime's replica states (``cpu_percent``,
    ``rss_bytes``, ``restarts``); each interval samples them for the replicas of each pool.
    """

    def __init__(
        self,
        writer: RecordSink | None = None,
        registry: CollectorRegistry | None = None,
        *,
        store: MetricsStore | None = None,
        tech_interval_s: float = 60.0,
        replica_stats: Callable[[], Iterable[ReplicaSample]] | None = None,
    ) -> None:
        if not tech_interval_s > 0:
            raise InvalidInput(f"tech_interval_s={tech_interval_s!r} must be a positive number")
        self.writer = writer
        self.registry = registry if registry is not None else CollectorRegistry()
        self.store = store
        self.tech_interval_s = tech_interval_s
        self.replica_stats = replica_stats
        self._restarts_seen: dict[str, int] = {}
        self._metrics = GatewayMetrics(self.registry)
        self._active: dict[str, _Active] = {}
        self._retired: list[_Active] = []  # swapped-out pools whose last interval is unwritten
        self._task: asyncio.Task[None] | None = None

    # -- pools ----------------------------------------------------------------------------------
    def set_pool(self, model_name: str, pool: DeploymentPool) -> DeploymentPool | None:
        """Make ``pool`` the active deployment of ``model_name``; the previous pool is returned.

        The swap is one dict assignment: a request sees either the old pool or the new one,
        never a mix. Requests already inside the old pool finish there.
        """
        if not isinstance(model_name, str) or not model_name:
            raise InvalidInput(f"model_name={model_name!r} must be a non-empty string")
        if not isinstance(pool, DeploymentPool):
            raise InvalidInput(f"pool={pool!r} is not a DeploymentPool")
        stats = IntervalStats(now_ms()) if self.store is not None else None
        active = _Active(
            pool, pool.writer or self.writer, self._metrics.bind(model_name, pool), stats
        )
        previous = self._active.get(model_name)
        self._active[model_name] = active
        if previous is None:
            return None
        self._retire(model_name, previous, active)
        return previous.pool

    swap = set_pool

    def remove_pool(self, model_name: str) -> DeploymentPool | None:
        """No active deployment for ``model_name`` any more (requests get 503)."""
        previous = self._active.pop(model_name, None)
        if previous is None:
            return None
        self._retire(model_name, previous, None)
        return previous.pool

    def _retire(self, model_name: str, previous: _Active, successor: _Active | None) -> None:
        if previous.stats is not None:
            self._retired.append(previous)  # its last interval is still to be written
        deployment = previous.pool.identity.deployment_crn
        if successor is None or successor.pool.identity.deployment_crn != deployment:
            self._metrics.unbind(model_name, previous.pool)

    def pool(self, model_name: str) -> DeploymentPool | None:
        active = self._active.get(model_name)
        return None if active is None else active.pool

    def models(self) -> list[str]:
        return sorted(self._active)

    # -- requests -------------------------------------------------------------------------------
    async def invoke(self, model_name: str, body: bytes) -> GatewayResult:
        """Call ``model_name``'s function with ``body`` (its JSON input)."""
        return await self._invoke(model_name, body, batch=False)

    async def invoke_batch(self, model_name: str, body: bytes) -> GatewayResult:
        """Call it with ``body``, a JSON list of inputs; one answer per item, in order.

        The envelope is ``{"success": all ok, "responses": [item, ...], "ReplicaID": r}`` where
        each item is ``{"success": true, "response", "uuid"}`` or ``{"success": false, "error",
        "uuid"}``; the status is 200 when every item succeeded, 500 otherwise.
        """
        return await self._invoke(model_name, body, batch=True)

    async def _invoke(self, model_name: str, body: bytes, batch: bool) -> GatewayResult:
        started = time.perf_counter()
        active = self._active.get(model_name)
        if active is None:
            known = ", ".join(repr(m) for m in self.models()) or "none"
            error = Unavailable(
                f"model {model_name!r} has no active deployment; deploy it first "
                f"(models with one: {known})",
                model=model_name,
            )
            return _refusal(error, None)
        stats = active.stats
        if stats is not None:
            stats.enter()
        try:
            _check_body(body, active.pool.settings.max_body_bytes, batch)
            exchange = await active.pool.call("/invoke_batch" if batch else "/invoke", body)
            result = self._answer(active, exchange, batch)
        except ModelyardError as error:
            result = _refusal(error, error.details.get("replica_id"))
        finally:  # also when the caller is cancelled: the in-flight count must not drift
            if stats is not None:
                stats.leave()
        total_s = time.perf_counter() - started
        active.metrics.count(result.replica_id, result.http_status)
        active.metrics.total.observe(total_s)
        if stats is not None:
            stats.add(result.http_status, total_s * 1000, result.replica_id)
        return result

    def _answer(self, active: _Active, exchange: Exchange, batch: bool) -> GatewayResult:
        replica = exchange.replica_id
        if exchange.status == 400:
            message = _replica_error_message(exchange.payload)
            raise InvalidInput(
                f"the request body was refused by the model's replica: {message}; "
                "send a JSON document" + (" (a list of inputs)" if batch else ""),
                replica_id=replica,
            )
        if exchange.status == 413:  # the replica's own --max-body-bytes is below the pool's
            message = _replica_error_message(exchange.payload)
            raise PayloadTooLarge(
                f"the model's replica refused the body: {message}", replica_id=replica
            )
        if exchange.status != 200:
            raise ReplicaFailed(
                f"replica {replica!r} answered HTTP {exchange.status} "
                f"({exchange.payload[:200]!r}); expected 200 with a replica answer",
                replica_id=replica,
            )
        try:
            answer = orjson.loads(exchange.payload)
            if batch:
                items = answer["results"]
                if not isinstance(items, list):
                    raise TypeError("results is not a list")
                outcomes = [self._item(active, item, exchange) for item in items]
            else:
                outcomes = [self._item(active, answer, exchange)]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ReplicaFailed(
                f"replica {replica!r} sent an answer that is not in the replica protocol "
                f"({exc.__class__.__name__}: {exc}); expected "
                + ('{"results": [...]}' if batch else '{"ok", "output"|"error", "record"}'),
                replica_id=replica,
            ) from exc
        writer = active.writer
        if writer is not None:  # only once the whole answer parsed: all records or none
            # A full journal raises JournalFull (507) here: the answer is refused, never sent
            # without its record. A batch's records go in as one (submit_many: all or none).
            submit_many = getattr(writer, "submit_many", None) if len(outcomes) > 1 else None
            if submit_many is not None:
                submit_many([outcome.prediction for outcome in outcomes])
            else:
                for outcome in outcomes:
                    writer.submit(outcome.prediction)
        metrics = active.metrics
        first = outcomes[0] if outcomes else None
        queue_s = exchange.queue_s + (first.queue_ms / 1000 if first else 0.0)
        metrics.queue.observe(queue_s)
        if active.stats is not None:
            active.stats.add_timing(queue_s * 1000, [o.function_ms for o in outcomes])
        for outcome in outcomes:
            metrics.function.observe(outcome.function_ms / 1000)
        # Items per user-function call that served this request, as the replica reports it (the
        # replica may group concurrent single requests; a batch without a batch function is 1).
        metrics.batch.observe(max((o.batch_size for o in outcomes), default=0))
        if not batch:
            assert first is not None
            first.envelope["ReplicaID"] = replica
            ok = first.envelope["success"]
            return GatewayResult(200 if ok else 500, first.envelope, replica, first.uuid)
        everything_ok = all(o.envelope["success"] for o in outcomes)
        envelope = {
            "success": everything_ok,
            "responses": [o.envelope for o in outcomes],
            "ReplicaID": replica,
        }
        uuids = tuple(o.uuid for o in outcomes)
        return GatewayResult(200 if everything_ok else 500, envelope, replica, None, uuids)

    def _item(self, active: _Active, answer: dict[str, Any], exchange: Exchange) -> _Outcome:
        """One replica answer as an envelope item and the record to submit."""
        record = answer["record"]
        uuid = record["predictionUuid"]
        if not isinstance(uuid, str):
            raise TypeError(f"record.predictionUuid is {uuid!r}, not a string")
        metrics = record.get("metrics") or {}
        if not isinstance(metrics, dict):
            raise TypeError(f"record.metrics is {type(metrics).__name__}, not an object")
        timing = answer.get("timing") or {}
        ok = answer["ok"] is True
        if ok:
            envelope: dict[str, Any] = {"success": True, "response": answer["output"], "uuid": uuid}
        else:
            error = answer["error"]
            kind = str(error.get("type", "Exception"))
            message = str(error.get("message", ""))
            extra = {"traceback": error["traceback"]} if "traceback" in error else {}
            body = error_body("model_error", message, type=kind, **extra)
            envelope = {"success": False, "error": body, "uuid": uuid}
            if "_error" not in metrics:  # the decorator's marker shape
                metrics = {**metrics, "_error": {"type": kind, "message": message[:1000]}}
        prediction = Prediction(
            uuid,
            exchange.identity,
            int(record["startTimeStampMs"]),
            int(record["endTimeStampMs"]),
            metrics,
        )
        return _Outcome(
            envelope,
            uuid,
            prediction,
            float(timing.get("queue_ms", 0.0)),
            float(timing.get("function_ms", exchange.replica_s * 1000)),
            int(timing.get("batch_size", 1)),
        )

    # -- observability --------------------------------------------------------------------------
    def metrics_text(self) -> str:
        """The Prometheus exposition of this gateway's registry."""
        return self._metrics.text()

    async def start(self) -> None:
        """Start writing ``tech.*`` aggregates (a no-op without a store)."""
        if self.store is not None and self._task is None:
            self._task = asyncio.create_task(self._tech_loop(), name="modelyard-gateway-tech")

    async def close(self) -> None:
        """Stop the aggregate task, write the last interval, close replica connections."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.store is not None:
            await self.write_tech_aggregates()
        for active in list(self._active.values()):
            await active.pool.close()

    async def write_tech_aggregates(self) -> int:
        """Write one aggregate per deployment that saw requests since the last call.

        Returns how many were written. Runs the store calls in a thread: they commit.
        """
        store = self.store
        if store is None:
            return 0
        now = now_ms()
        samples: dict[str, dict[str, Any]] = {}
        sample_replicas = self.replica_stats
        if sample_replicas is not None:
            states = await asyncio.to_thread(lambda: list(sample_replicas()))
            samples = replica_metrics(states, self._restarts_seen)
        closed: list[tuple[Any, IntervalStats, dict[str, dict[str, Any]]]] = []
        retired, self._retired = self._retired, []
        for active in [*self._active.values(), *retired]:
            if active.stats is None:
                continue
            ids = {ep.replica_id for ep in active.pool.endpoints()} | set(active.stats.replicas)
            replicas = {rid: samples.pop(rid) for rid in sorted(ids) if rid in samples}
            closed.append((active.pool.identity, active.stats.close(now), replicas))

        def write() -> int:  # percentiles and sketches are computed here, off the event loop
            written = 0
            for identity, interval, replicas in closed:
                taken = interval.take(now, replicas)
                if taken is None:
                    continue
                store.register_identity(identity)
                store.replace_aggregate(
                    identity.deployment_crn, taken[0], now, taken[1], TECH_SOURCE
                )
                written += 1
            return written

        return await asyncio.to_thread(write)

    async def _tech_loop(self) -> None:
        while True:
            await asyncio.sleep(self.tech_interval_s)
            try:
                await self.write_tech_aggregates()
            except Exception:  # a locked store must not stop the loop: next interval retries
                log.exception("writing the gateway's tech.* aggregates failed")


def _check_body(body: bytes, limit: int, batch: bool) -> None:
    if len(body) > limit:
        raise PayloadTooLarge(
            f"the request body is {len(body)} bytes; this model accepts at most {limit} bytes "
            "(send less, or raise the model's max_body_bytes)",
            size=len(body),
            limit=limit,
        )
    if batch and body.lstrip()[:1] != b"[":
        raise InvalidInput(
            f"a batch body must be a JSON list of inputs, got {body[:40]!r}; send [input, ...]"
        )


def _replica_error_message(payload: bytes) -> str:
    try:
        answer = orjson.loads(payload)
        return str(answer["error"]["message"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return payload[:200].decode(errors="replace")


def _refusal(error: ModelyardError, replica_id: Any) -> GatewayResult:
    envelope: dict[str, Any] = {"success": False, "error": error.to_dict()}
    replica = replica_id if isinstance(replica_id, str) else None
    if replica is not None:
        envelope["ReplicaID"] = replica
    retry = error.details.get("retry_after_s")
    return GatewayResult(
        error.status, envelope, replica, retry_after_s=retry if isinstance(retry, int) else None
    )
