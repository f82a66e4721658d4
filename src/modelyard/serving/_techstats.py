"""Technical metrics of a deployment per interval, written to the store as aggregate records.

Prometheus keeps counters for scrapers; the dashboard charts history from the store, so once per
interval the gateway folds what it saw into one aggregate record per deployment with keys
prefixed ``tech.``. Intervals without traffic write nothing: aggregates are never rolled up or
expired, so an idle deployment must not grow the store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["MAX_SAMPLES", "IntervalStats"]

# Latency samples kept per interval: 10 s at 20k req/s. Beyond it the percentiles describe the
# interval's first MAX_SAMPLES requests; the counts stay exact.
MAX_SAMPLES = 200_000


@dataclass(slots=True)
class IntervalStats:
    """Requests, statuses and latencies since ``start_ms``; ``take`` returns them and resets."""

    start_ms: int
    statuses: dict[int, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    requests: int = 0

    def add(self, status: int, latency_ms: float) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1
        self.requests += 1
        if len(self.latencies_ms) < MAX_SAMPLES:  # bounded even if nobody takes the interval
            self.latencies_ms.append(latency_ms)

    def take(self, end_ms: int) -> tuple[int, dict[str, Any]] | None:
        """The interval's start and ``tech.*`` metrics (None without requests); starts anew."""
        statuses, latencies, start_ms = self.statuses, self.latencies_ms, self.start_ms
        requests = self.requests
        seconds = max(end_ms - start_ms, 1) / 1000
        self.start_ms = end_ms
        self.statuses, self.latencies_ms, self.requests = {}, [], 0
        if not requests:
            return None
        p50, p95, p99 = np.percentile(np.asarray(latencies), [50, 95, 99])
        metrics: dict[str, Any] = {
            "tech.requests": requests,
            "tech.failures": sum(n for status, n in statuses.items() if status >= 400),
            "tech.rps": requests / seconds,
            "tech.latency_p50_ms": float(p50),
            "tech.latency_p95_ms": float(p95),
            "tech.latency_p99_ms": float(p99),
        }
        for status, count in sorted(statuses.items()):
            metrics[f"tech.status_{status}"] = count
        return start_ms, metrics
