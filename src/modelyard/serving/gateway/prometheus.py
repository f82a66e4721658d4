"""The gateway's Prometheus metrics, on an injectable ``CollectorRegistry``.

Label children are looked up once per (model, deployment) and cached: ``labels(...)`` costs a
dict lookup plus a lock, which adds up on a path whose budget is counted in microseconds.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

if TYPE_CHECKING:
    from modelyard.serving.gateway.pool import DeploymentPool

__all__ = ["BoundMetrics", "GatewayMetrics"]

# From half a millisecond (the overhead budget) up to the 30 s default timeout and beyond.
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class GatewayMetrics:
    """The metric families; one instance per ``Gateway`` (and so per registry)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "modelyard_requests",
            "Requests answered by the gateway, by HTTP status of the answer.",
            ["model", "deployment", "replica", "status"],
            registry=registry,
        )
        self.seconds = Histogram(
            "modelyard_request_seconds",
            "Request latency by phase: queue (waiting for a replica slot, in the gateway and in "
            "the replica), function (the user function), total (as seen by the gateway).",
            ["model", "deployment", "phase"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "modelyard_in_flight",
            "Requests being served by replicas right now.",
            ["model", "deployment"],
            registry=registry,
        )
        self.queue_depth = Gauge(
            "modelyard_queue_depth",
            "Requests waiting in the gateway for a free replica slot.",
            ["model", "deployment"],
            registry=registry,
        )
        self.batch_size = Histogram(
            "modelyard_batch_size",
            "Items per call of the user function (1 without batching).",
            ["model", "deployment"],
            buckets=BATCH_BUCKETS,
            registry=registry,
        )

    def bind(self, model: str, pool: DeploymentPool) -> BoundMetrics:
        """Children for one model's deployment; gauges read the pool live when scraped."""
        deployment = pool.identity.deployment_crn
        self.in_flight.labels(model, deployment).set_function(lambda: pool.in_flight)
        self.queue_depth.labels(model, deployment).set_function(lambda: pool.queue_depth)
        return BoundMetrics(
            self,
            model,
            deployment,
            self.seconds.labels(model, deployment, "queue"),
            self.seconds.labels(model, deployment, "function"),
            self.seconds.labels(model, deployment, "total"),
            self.batch_size.labels(model, deployment),
        )

    def unbind(self, model: str, pool: DeploymentPool) -> None:
        """Drop the live gauges of a pool that is no longer active (counters keep their totals)."""
        deployment = pool.identity.deployment_crn
        for gauge in (self.in_flight, self.queue_depth):
            with contextlib.suppress(KeyError):
                gauge.remove(model, deployment)

    def text(self) -> str:
        return generate_latest(self.registry).decode()


@dataclass(slots=True)
class BoundMetrics:
    """The children of one (model, deployment), with a cache of request counters."""

    families: GatewayMetrics
    model: str
    deployment: str
    queue: Histogram
    function: Histogram
    total: Histogram
    batch: Histogram
    _counters: dict[tuple[str, int], Counter] = field(default_factory=dict)

    def count(self, replica: str | None, status: int) -> None:
        key = (replica or "", status)
        counter = self._counters.get(key)
        if counter is None:
            counter = self.families.requests.labels(self.model, self.deployment, key[0], status)
            self._counters[key] = counter
        counter.inc()
