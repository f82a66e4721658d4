"""Operator routes: ``/healthz`` (public: that the server answers, and whether its store does)
and ``/metrics``.

``/healthz`` answers 200 whenever the server answers: ``{"status": "ok", "store": "ok", ...}``,
or ``{"status": "degraded", "store": "unavailable", "since_ms": ..., "pending_records": N}`` while
the store (the database) does not answer. A degraded server still answers predictions (their
records wait and are written once the store is back), so a load balancer keeps it in rotation;
an alert watches ``store``. It reads the last probe of ``web.store_health`` and never waits on the
database itself.

``/metrics`` is the Prometheus text exposition: the gateway's counters and histograms
(``Gateway.metrics_text()``) followed by per-replica gauges read from the runtime at scrape time
(CPU percent, resident memory, restarts, up). It covers every project's models, so it needs a
server administrator's admin key unless the server runs with ``--public-metrics``, for scrapers
that cannot send one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from modelyard.errors import ModelyardError
from modelyard.runtime import ReplicaStatus
from modelyard.version import package_version
from modelyard.web.access import Right, caller_on_loop
from modelyard.web.errors import error_response
from modelyard.web.services import Services, services_of

__all__ = ["ReplicaCollector", "routes"]

_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class ReplicaCollector(Collector):
    """Gauges of every replica the runtime supervises, read when scraped (never stale)."""

    def __init__(self, services: Services) -> None:
        self._services = services

    def collect(self) -> Iterator[GaugeMetricFamily]:
        labels = ["deployment", "replica"]
        cpu = GaugeMetricFamily(
            "modelyard_replica_cpu_percent", "CPU use of a replica's process tree", labels=labels
        )
        rss = GaugeMetricFamily(
            "modelyard_replica_rss_bytes",
            "Resident memory of a replica's process tree",
            labels=labels,
        )
        restarts = GaugeMetricFamily(
            "modelyard_replica_restarts", "Times the supervisor restarted a replica", labels=labels
        )
        up = GaugeMetricFamily(
            "modelyard_replica_up", "1 when a replica is healthy, else 0", labels=labels
        )
        for state in self._services.runtime.replicas():
            values = [state.deployment_id, state.replica_id]
            if state.cpu_percent is not None:
                cpu.add_metric(values, state.cpu_percent)
            if state.rss_bytes is not None:
                rss.add_metric(values, state.rss_bytes)
            restarts.add_metric(values, state.restarts)
            up.add_metric(values, 1.0 if state.status is ReplicaStatus.HEALTHY else 0.0)
        yield from (cpu, rss, restarts, up)


async def healthz(request: Request) -> Response:
    body: dict[str, object] = {"status": "ok", "version": package_version()}
    services = getattr(request.app.state, "services", None)  # set once the server has started
    health = getattr(services, "store_health", None)
    if health is not None:
        report = health.report()
        if report["store"] != "ok":
            body["status"] = "degraded"
        body.update(report)
    return JSONResponse(body)


async def metrics(request: Request) -> Response:
    services = services_of(request)
    if not services.config.public_metrics:
        try:
            authorization = request.headers.get("authorization")
            caller = await caller_on_loop(services.registry, authorization)
            if not caller.server_admin:  # every project's models: server administrators only
                what = "the server's Prometheus metrics (every project's models)"
                await asyncio.to_thread(caller.check, Right.SERVER, None, what)
        except ModelyardError as error:
            return error_response(error)
    registry: CollectorRegistry = request.app.state.replica_metrics
    text = services.gateway.metrics_text() + generate_latest(registry).decode()
    return Response(text, media_type=_CONTENT_TYPE)


def replica_registry(services: Services) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ReplicaCollector(services))
    return registry


def routes() -> list[Route]:
    return [
        Route("/healthz", healthz, methods=["GET"], name="healthz"),
        Route("/metrics", metrics, methods=["GET"], name="metrics"),
    ]
