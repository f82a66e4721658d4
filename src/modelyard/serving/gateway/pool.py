"""One deployment's replicas: least-busy routing, a bounded FIFO wait queue, timeouts, retries.

Everything here runs on one event loop, so the bookkeeping (in-flight counts, the wait queue)
needs no locks: each method runs to its next ``await`` without interruption.

Rules, in the order a request meets them:

1. Pick the routable endpoint (healthy, not draining, not cooling down after a refused
   connection, below its ``capacity``) with the lowest ``in_flight / capacity``; ties go round
   robin. Requests already waiting are served first (FIFO), so a newcomer never overtakes them.
2. Nothing free: wait in the queue, at most ``max_queue`` requests deep and ``queue_timeout_s``
   long; beyond either -> ``Overloaded`` (429) with ``retry_after_s``.
3. Send with ``request_timeout_s``; beyond it -> ``GatewayTimeout`` (504) and ``on_stuck(id)``.
4. Retry connection failures (the connect was refused or timed out: nothing was sent), up to
   ``retries`` times, each time on an endpoint not tried yet; with no other endpoint, on the same
   one once its cooldown ends (or, when the runtime marked it unhealthy, once it is back).
5. Resend once a request whose connection broke or closed before ANY byte of the answer came
   (the replica died with it, ``NoResponse``), on another replica when there is one (else the
   same one once its cooldown ends), unless the model declared itself not safe to resend
   (``resend=False``, the model setting ``retry``; ``--no-retry``): then ``ReplicaFailed`` (502).
   Once any byte of the answer has come, a failure is never resent: ``ReplicaFailed`` (502).
   The request carries the prediction's uuid (``X-Modelyard-Prediction-Uuid``, minted here once
   per request), so a resent request keeps its uuid and its record is written once.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from modelyard.errors import (
    Conflict,
    GatewayTimeout,
    InvalidInput,
    NotFound,
    Overloaded,
    ReplicaFailed,
    Unavailable,
)
from modelyard.ids import new_prediction_uuid
from modelyard.serving.gateway.replica_client import (
    ConnectFailed,
    ExchangeFailed,
    NoResponse,
    ReplicaClient,
)
from modelyard.store.base import Identity, Prediction

__all__ = [
    "DeploymentPool",
    "EndpointState",
    "Exchange",
    "PoolSettings",
    "RecordSink",
    "ReplicaEndpoint",
]

log = logging.getLogger("modelyard.gateway")

# After a refused connection an endpoint is skipped this long (the runtime restarts it or the
# controller removes it); without it every request would pay a refused connect first.
CONNECT_COOLDOWN_S = 1.0
UUID_HEADER = b"X-Modelyard-Prediction-Uuid"


class RecordSink(Protocol):
    """Where prediction records go: a ``BufferedWriter`` (only ``submit`` is used)."""

    def submit(self, prediction: Prediction) -> None: ...


def _positive(name: str, value: object, integer: bool = False, zero: bool = False) -> None:
    kinds: tuple[type, ...] = (int,) if integer else (int, float)
    ok = isinstance(value, kinds) and not isinstance(value, bool)
    if ok and not (value >= 0 if zero else value > 0):  # type: ignore[operator]
        ok = False
    if ok and isinstance(value, float) and not math.isfinite(value):
        ok = False
    if not ok:
        what = "integer" if integer else "number"
        bound = ">= 0" if zero else "> 0"
        raise InvalidInput(f"{name}={value!r} is not valid; expected a finite {what} {bound}")


@dataclass(frozen=True, slots=True)
class PoolSettings:
    """Limits of one deployment. Defaults follow the reference platform (30 s, 5 MB)."""

    max_queue: int = 100
    queue_timeout_s: float = 30.0
    request_timeout_s: float = 30.0
    max_body_bytes: int = 5 * 1024 * 1024
    retries: int = 1
    resend: bool = True  # resend once a request a dying replica never answered (rule 5)

    def __post_init__(self) -> None:
        if not isinstance(self.resend, bool):
            raise InvalidInput(f"resend={self.resend!r} is not accepted; expected True or False")
        _positive("max_queue", self.max_queue, integer=True, zero=True)
        _positive("queue_timeout_s", self.queue_timeout_s)
        _positive("request_timeout_s", self.request_timeout_s)
        _positive("max_body_bytes", self.max_body_bytes, integer=True)
        _positive("retries", self.retries, integer=True, zero=True)


def _client(url: str) -> ReplicaClient:
    """The client for a replica url: ``ray://`` (a Ray Serve replica) or HTTP (``unix:``,
    ``http://``). Ray is imported only for a Ray replica."""
    if url.startswith("ray://"):
        from modelyard.serving.gateway.ray_client import RayReplicaClient

        return RayReplicaClient(url)  # type: ignore[return-value]  # the same interface
    return ReplicaClient(url)


@dataclass(eq=False)
class ReplicaEndpoint:
    """A replica the pool may route to: ``capacity`` requests at once.

    The controller sets it to what the replica can work on at once: its ``--concurrency``, or
    ``concurrency x max_batch_size`` when it serves a batch function, so batches can fill
    (``serving.controller.replica_specs.capacity`` says why).

    ``identity`` (optional) overrides the pool's identity on the records of requests this
    replica served: during a one-at-a-time rolling replacement one pool holds replicas of the old
    and the new build, and each record must name the build that actually answered.
    """

    replica_id: str
    url: str
    capacity: int = 1
    identity: Identity | None = None
    in_flight: int = field(default=0, init=False)
    healthy: bool = field(default=True, init=False)
    draining: bool = field(default=False, init=False)
    served: int = field(default=0, init=False)
    unreachable_until: float = field(default=0.0, init=False)
    client: ReplicaClient = field(init=False, repr=False)  # or a RayReplicaClient (ray://)
    _idle: asyncio.Event | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.replica_id, str) or not self.replica_id:
            raise InvalidInput(f"replica_id={self.replica_id!r} must be a non-empty string")
        _positive("capacity", self.capacity, integer=True)
        if self.identity is not None and not isinstance(self.identity, Identity):
            raise InvalidInput(
                f"identity={self.identity!r} is not a modelyard.store.Identity (or None for the "
                "pool's identity)"
            )
        self.client = _client(self.url)

    def routable(self, now: float) -> bool:
        return self.healthy and not self.draining and now >= self.unreachable_until


@dataclass(frozen=True, slots=True)
class EndpointState:
    """A snapshot of one endpoint for ``DeploymentPool.endpoints()``."""

    replica_id: str
    url: str
    capacity: int
    in_flight: int
    healthy: bool
    draining: bool
    served: int


@dataclass(slots=True)
class Exchange:
    """One answered request: who answered, what, and how long the gateway waited for a slot.

    ``identity`` is what the records of this answer carry (the endpoint's, else the pool's).
    """

    replica_id: str
    status: int
    payload: bytes
    queue_s: float
    replica_s: float
    identity: Identity
    prediction_uuid: str = ""  # what the request carried (a batch: the base of its items')


@dataclass(slots=True)
class _Waiter:
    future: asyncio.Future[ReplicaEndpoint]
    exclude: frozenset[str]


class DeploymentPool:
    """The replicas of one deployment (``identity``) and the rules above.

    ``writer`` receives this deployment's prediction records (the ``Gateway`` fills in its own
    writer when none is given); ``on_stuck(replica_id)`` is called when a replica exceeds
    ``request_timeout_s`` (it may be a coroutine function; it must not block).
    """

    def __init__(
        self,
        identity: Identity,
        settings: PoolSettings | None = None,
        writer: RecordSink | None = None,
        on_stuck: Callable[[str], Any] | None = None,
    ) -> None:
        if not isinstance(identity, Identity):
            raise InvalidInput(f"identity={identity!r} is not a modelyard.store.Identity")
        self.identity = identity
        self.settings = settings if settings is not None else PoolSettings()
        self.writer = writer
        self.on_stuck = on_stuck
        self._endpoints: list[ReplicaEndpoint] = []
        self._waiters: deque[_Waiter] = deque()
        self._rr = 0
        self._latency_ewma_s = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- membership -----------------------------------------------------------------------------
    def add_endpoint(self, endpoint: ReplicaEndpoint) -> None:
        """Start routing to ``endpoint``; waiting requests may go to it at once."""
        if any(ep.replica_id == endpoint.replica_id for ep in self._endpoints):
            raise Conflict(
                f"replica {endpoint.replica_id!r} is already in the pool of "
                f"{self.identity.deployment_crn}; remove it first or use another replica id"
            )
        self._endpoints.append(endpoint)
        self._dispatch()

    async def remove_endpoint(
        self, replica_id: str, drain: bool = True, timeout_s: float | None = None
    ) -> None:
        """Stop routing to a replica; with ``drain`` wait for its in-flight requests first.

        ``timeout_s`` bounds the wait (``GatewayTimeout`` when exceeded; the endpoint stays in
        the pool, draining, so the caller may wait again or remove it with ``drain=False``).
        """
        endpoint = self._find(replica_id)
        endpoint.draining = True
        if drain and endpoint.in_flight:
            endpoint._idle = endpoint._idle or asyncio.Event()
            try:
                async with asyncio.timeout(timeout_s):
                    await endpoint._idle.wait()
            except TimeoutError:
                raise GatewayTimeout(
                    f"replica {replica_id!r} still has {endpoint.in_flight} requests in flight "
                    f"after {timeout_s}s of draining; wait longer or pass drain=False",
                    replica_id=replica_id,
                ) from None
        with contextlib.suppress(ValueError):
            self._endpoints.remove(endpoint)
        await endpoint.client.close()
        self._dispatch()

    def set_healthy(self, replica_id: str, healthy: bool) -> None:
        """The runtime's health verdict; an unhealthy endpoint gets no new requests."""
        endpoint = self._find(replica_id)
        endpoint.healthy = healthy
        if healthy:
            endpoint.unreachable_until = 0.0
            self._dispatch()

    def endpoints(self) -> list[EndpointState]:
        return [
            EndpointState(
                ep.replica_id, ep.url, ep.capacity, ep.in_flight, ep.healthy, ep.draining, ep.served
            )
            for ep in self._endpoints
        ]

    @property
    def queue_depth(self) -> int:
        return len(self._waiters)

    @property
    def in_flight(self) -> int:
        return sum(ep.in_flight for ep in self._endpoints)

    async def close(self) -> None:
        """Close idle connections to every replica (in-flight requests finish on their own)."""
        if self._timer is not None:
            self._timer.cancel()
        for endpoint in self._endpoints:
            await endpoint.client.close()

    def _find(self, replica_id: str) -> ReplicaEndpoint:
        for endpoint in self._endpoints:
            if endpoint.replica_id == replica_id:
                return endpoint
        known = ", ".join(repr(ep.replica_id) for ep in self._endpoints) or "none"
        raise NotFound(
            f"replica {replica_id!r} is not in the pool of {self.identity.deployment_crn}; "
            f"known replicas: {known}"
        )

    # -- a request ------------------------------------------------------------------------------
    async def call(self, path: str, body: bytes, prediction_uuid: str | None = None) -> Exchange:
        """Send ``body`` to ``path`` of the least busy replica, following the module's rules.

        ``prediction_uuid`` (None: a new one) goes with the request, the same on a resend."""
        settings = self.settings
        tried: set[str] = set()
        queue_s = 0.0
        attempt = 0
        resent = False
        uid = prediction_uuid or new_prediction_uuid()
        headers = UUID_HEADER + b": " + uid.encode() + b"\r\n"
        while True:
            waited = time.perf_counter()
            endpoint = await self._acquire(frozenset(tried))
            queue_s += time.perf_counter() - waited
            started = time.perf_counter()
            try:
                async with asyncio.timeout(settings.request_timeout_s):
                    status, payload = await endpoint.client.post(path, body, headers)
            except ConnectFailed as exc:
                endpoint.unreachable_until = time.monotonic() + CONNECT_COOLDOWN_S
                self._release(endpoint)
                if attempt < settings.retries:
                    attempt += 1
                    self._retrying(endpoint, tried, exc)
                    continue
                tried.add(endpoint.replica_id)
                raise Unavailable(
                    f"no replica of {self.identity.deployment_crn} accepted a connection "
                    f"(tried {', '.join(sorted(tried))}): {exc}",
                    tried=sorted(tried),
                ) from exc
            except TimeoutError:
                self._release(endpoint)
                self._stuck(endpoint.replica_id)
                raise GatewayTimeout(
                    f"replica {endpoint.replica_id!r} did not answer within "
                    f"request_timeout_s={settings.request_timeout_s}; raise the model's timeout "
                    "or move long work into a job",
                    replica_id=endpoint.replica_id,
                    timeout_s=settings.request_timeout_s,
                ) from None
            except NoResponse as exc:
                self._release(endpoint)
                if settings.resend and not resent:
                    resent = True
                    self._resending(endpoint, tried, exc)
                    continue
                raise self._not_resent(endpoint, exc) from exc
            except ExchangeFailed as exc:
                self._release(endpoint)
                raise ReplicaFailed(
                    f"replica {endpoint.replica_id!r} broke off the request: {exc}; "
                    "it was not resent because its answer had started",
                    replica_id=endpoint.replica_id,
                ) from exc
            except BaseException:
                self._release(endpoint)
                raise
            replica_s = time.perf_counter() - started
            endpoint.served += 1
            self._latency_ewma_s += 0.1 * (replica_s - self._latency_ewma_s)
            self._release(endpoint)
            return Exchange(
                endpoint.replica_id,
                status,
                payload,
                queue_s,
                replica_s,
                endpoint.identity or self.identity,
                uid,
            )

    def _retrying(self, endpoint: ReplicaEndpoint, tried: set[str], exc: ConnectFailed) -> None:
        """Before a connect retry: on another replica if there is one; else on this one once
        its cooldown ends (a lone replica the runtime restarts, or marks unhealthy until it is
        back, meanwhile the request waits in the queue)."""
        if any(ep.replica_id not in tried and ep is not endpoint for ep in self._endpoints):
            tried.add(endpoint.replica_id)
            log.warning("%s; retrying on another replica", exc)
        else:
            log.warning("%s; retrying on it after %gs (no other replica)", exc, CONNECT_COOLDOWN_S)

    def _resending(self, endpoint: ReplicaEndpoint, tried: set[str], exc: NoResponse) -> None:
        """Before a resend: the replica likely died, so skip it for the cooldown and prefer
        another (it stays eligible when it is the only one: it may come back)."""
        endpoint.unreachable_until = time.monotonic() + CONNECT_COOLDOWN_S
        if any(ep.replica_id not in tried and ep is not endpoint for ep in self._endpoints):
            tried.add(endpoint.replica_id)
        log.warning("%s; resending it once (same prediction uuid)", exc)

    def _not_resent(self, endpoint: ReplicaEndpoint, exc: NoResponse) -> ReplicaFailed:
        why = (
            "the model is declared not safe to resend (retry=false)"
            if not self.settings.resend
            else "it was resent once already"
        )
        return ReplicaFailed(
            f"replica {endpoint.replica_id!r} broke off the request before answering: {exc}; "
            f"it was not resent because {why}",
            replica_id=endpoint.replica_id,
        )

    def retry_after_s(self) -> int:
        """Whole seconds until the queue ahead would likely drain (at least 1)."""
        capacity = sum(ep.capacity for ep in self._endpoints if ep.healthy) or 1
        estimate = self._latency_ewma_s * (len(self._waiters) + 1) / capacity
        return max(1, math.ceil(min(estimate, self.settings.queue_timeout_s)))

    # -- slots ----------------------------------------------------------------------------------
    def _pick(self, exclude: frozenset[str], now: float) -> ReplicaEndpoint | None:
        endpoints = self._endpoints
        count = len(endpoints)
        best: ReplicaEndpoint | None = None
        best_at = 0
        best_load = 0.0
        start = self._rr
        for step in range(count):
            at = (start + step) % count
            ep = endpoints[at]
            if ep.in_flight >= ep.capacity or not ep.routable(now) or ep.replica_id in exclude:
                continue
            load = ep.in_flight / ep.capacity
            if best is None or load < best_load:
                best, best_at, best_load = ep, at, load
        if best is not None:
            self._rr = (best_at + 1) % count
        return best

    async def _acquire(self, exclude: frozenset[str]) -> ReplicaEndpoint:
        if not self._waiters:
            endpoint = self._pick(exclude, time.monotonic())
            if endpoint is not None:
                endpoint.in_flight += 1
                return endpoint
        if not self._endpoints:
            raise Unavailable(
                f"deployment {self.identity.deployment_crn} has no replicas; start or scale it "
                "to at least one replica"
            )
        if len(self._waiters) >= self.settings.max_queue:
            retry = self.retry_after_s()
            raise Overloaded(
                f"all replicas of {self.identity.deployment_crn} are busy and "
                f"{len(self._waiters)} requests are already waiting (max_queue="
                f"{self.settings.max_queue}); retry after {retry}s or add replicas",
                retry_after_s=retry,
            )
        waiter = _Waiter(asyncio.get_running_loop().create_future(), exclude)
        self._waiters.append(waiter)
        self._arm_cooldown_timer()
        try:
            async with asyncio.timeout(self.settings.queue_timeout_s):
                return await waiter.future
        except TimeoutError:
            got = self._granted(waiter)
            if got is not None:  # the slot came in the same loop turn as the timeout
                return got
            retry = self.retry_after_s()
            raise Overloaded(
                f"no replica of {self.identity.deployment_crn} became free within "
                f"queue_timeout_s={self.settings.queue_timeout_s}; retry after {retry}s "
                "or add replicas",
                retry_after_s=retry,
            ) from None
        except BaseException:  # cancelled by the caller: give back a slot granted meanwhile
            got = self._granted(waiter)
            if got is not None:
                self._release(got)
            raise

    def _granted(self, waiter: _Waiter) -> ReplicaEndpoint | None:
        with contextlib.suppress(ValueError):
            self._waiters.remove(waiter)
        future = waiter.future
        if future.done() and not future.cancelled() and future.exception() is None:
            return future.result()
        return None

    def _release(self, endpoint: ReplicaEndpoint) -> None:
        endpoint.in_flight -= 1
        if endpoint.in_flight == 0 and endpoint._idle is not None:
            endpoint._idle.set()
        if self._waiters:
            self._dispatch()

    def _dispatch(self) -> None:
        """Hand free slots to waiting requests, oldest first."""
        now = time.monotonic()
        for waiter in list(self._waiters):
            if waiter.future.done():
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
                continue
            endpoint = self._pick(waiter.exclude, now)
            if endpoint is None:
                if not waiter.exclude:
                    break  # nothing free for anyone
                continue
            endpoint.in_flight += 1
            self._waiters.remove(waiter)
            waiter.future.set_result(endpoint)
        self._arm_cooldown_timer()

    def _arm_cooldown_timer(self) -> None:
        """If requests wait while an endpoint cools down, look again when the cooldown ends."""
        if not self._waiters or self._timer is not None:
            return
        now = time.monotonic()
        until = [ep.unreachable_until for ep in self._endpoints if ep.unreachable_until > now]
        if until:

            def fire() -> None:
                self._timer = None
                self._dispatch()

            self._timer = asyncio.get_running_loop().call_later(min(until) - now, fire)

    def _stuck(self, replica_id: str) -> None:
        if self.on_stuck is None:
            return
        try:
            outcome = self.on_stuck(replica_id)
            if inspect.isawaitable(outcome):
                task = asyncio.ensure_future(outcome)
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        except Exception:  # the controller's problem must not turn a 504 into a 500
            log.exception("on_stuck(%r) failed", replica_id)
