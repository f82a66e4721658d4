"""Technical metrics of a deployment per interval, written to the store as aggregate records.

Prometheus keeps counters for scrapers; the dashboard charts history from the store, so once per
interval (a minute by default) the gateway folds what it saw into one aggregate record per
deployment with keys prefixed ``tech.`` and ``source = "tech"``, which the store's rollup merges
into hourly, then daily records (``modelyard.store.techseries`` says how each key merges).

Latencies: each series (total, queue, function) keeps its raw values up to ``MAX_SAMPLES`` per
interval, so an ordinary interval's percentiles are exact (numpy, as before); beyond that the
values spill into the series' KLL sketch and the interval's percentiles come from it. Every
interval's record carries the sketch of each series, so coarser intervals are built by merging
sketches, never by averaging percentiles. Memory stays bounded at any request rate.

An interval with no request and no replica sample writes nothing.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from datasketches import kll_floats_sketch

from modelyard.store import techseries

__all__ = ["MAX_SAMPLES", "IntervalStats", "LatencySeries", "ReplicaSample", "replica_metrics"]

# Raw latency values kept per series and interval before they spill into the sketch.
MAX_SAMPLES = 200_000


class ReplicaSample(Protocol):
    """What the runtime reports of a replica (``modelyard.runtime.ReplicaState`` fits)."""

    @property
    def replica_id(self) -> str: ...

    @property
    def cpu_percent(self) -> float | None: ...

    @property
    def rss_bytes(self) -> int | None: ...

    @property
    def restarts(self) -> int: ...


class LatencySeries:
    """One latency series of an interval: raw values (bounded) and the sketch they spill into."""

    __slots__ = ("sketch", "values")

    def __init__(self) -> None:
        self.values = array("d")
        self.sketch: kll_floats_sketch | None = None

    def __len__(self) -> int:
        return len(self.values)

    def add(self, value_ms: float) -> None:
        if len(self.values) >= MAX_SAMPLES:  # bounded even if nobody takes the interval
            self._spill()
        self.values.append(value_ms)

    def _spill(self) -> kll_floats_sketch:
        if self.sketch is None:
            self.sketch = techseries.new_sketch()
        if self.values:
            self.sketch.update(np.frombuffer(self.values, dtype=np.float64).astype(np.float32))
            self.values = array("d")
        return self.sketch

    def metrics(self, prefix: str) -> dict[str, Any]:
        """Percentile keys and the sketch of this series (nothing if it saw no value)."""
        if self.sketch is None:
            if not self.values:
                return {}
            raw = np.frombuffer(self.values, dtype=np.float64)
            percentiles = np.percentile(raw, techseries.PERCENTILES)
            out: dict[str, Any] = {
                techseries.percentile_key(prefix, q): float(v)
                for q, v in zip(techseries.PERCENTILES, percentiles, strict=True)
            }
            sketch = techseries.sketch_of(raw)
        else:
            sketch = self._spill()
            out = techseries.percentiles_of(prefix, sketch)
        out[techseries.sketch_key(prefix)] = techseries.encode_sketch(sketch)
        return out


def _series() -> dict[str, LatencySeries]:
    return {prefix: LatencySeries() for prefix in techseries.LATENCY_PREFIXES}


@dataclass(slots=True)
class IntervalStats:
    """Requests, statuses, latencies and in-flight peak since ``start_ms``; ``take`` returns them
    and starts a new interval."""

    start_ms: int
    statuses: dict[int, int] = field(default_factory=dict)
    requests: int = 0
    series: dict[str, LatencySeries] = field(default_factory=_series)
    replicas: dict[str, list[int]] = field(default_factory=dict)  # id -> [requests, failures]
    in_flight: int = 0
    in_flight_max: int = 0

    @property
    def latencies_ms(self) -> LatencySeries:
        """The total-latency series (its raw values are what ``len`` counts)."""
        return self.series["tech.latency"]

    def enter(self) -> None:
        """A request arrived (pair with ``leave``)."""
        self.in_flight += 1
        if self.in_flight > self.in_flight_max:
            self.in_flight_max = self.in_flight

    def leave(self) -> None:
        self.in_flight -= 1

    def add(self, status: int, latency_ms: float, replica_id: str | None = None) -> None:
        """One answered request: its status, total latency and the replica that answered."""
        self.statuses[status] = self.statuses.get(status, 0) + 1
        self.requests += 1
        self.series["tech.latency"].add(latency_ms)
        if replica_id is not None:
            counts = self.replicas.get(replica_id)
            if counts is None:
                counts = self.replicas[replica_id] = [0, 0]
            counts[0] += 1
            counts[1] += status >= 400

    def add_timing(self, queue_ms: float, function_ms: Iterable[float]) -> None:
        """Queue wait of one request and its user-function time per item."""
        self.series["tech.latency_queue"].add(queue_ms)
        function = self.series["tech.latency_function"]
        for value in function_ms:
            function.add(value)

    def close(self, end_ms: int) -> IntervalStats:
        """The interval so far, handed over, and a new one started at ``end_ms``.

        Cheap (a few reassignments), so the event loop can call it; the returned interval's
        ``take`` does the numeric work and may run in a thread.
        """
        closed = IntervalStats(
            self.start_ms,
            self.statuses,
            self.requests,
            self.series,
            self.replicas,
            0,
            self.in_flight_max,
        )
        self.start_ms = end_ms
        self.statuses, self.series, self.requests, self.replicas = {}, _series(), 0, {}
        self.in_flight_max = self.in_flight  # requests still inside count in the next interval
        return closed

    def take(
        self, end_ms: int, replicas: Mapping[str, dict[str, Any]] | None = None
    ) -> tuple[int, dict[str, Any]] | None:
        """The interval's start and ``tech.*`` metrics, ``replicas`` (per-replica keys from
        ``replica_metrics``) included; None without requests or replicas. Starts anew."""
        closed = self.close(end_ms)
        statuses, series, start_ms = closed.statuses, closed.series, closed.start_ms
        requests, per_replica, peak = closed.requests, closed.replicas, closed.in_flight_max
        seconds = max(end_ms - start_ms, 1) / 1000
        if not requests and not replicas:
            return None
        metrics: dict[str, Any] = {
            "tech.requests": requests,
            "tech.failures": sum(n for status, n in statuses.items() if status >= 400),
            "tech.rps": requests / seconds,
            "tech.in_flight_max": peak,
        }
        for status, count in sorted(statuses.items()):
            metrics[f"tech.status_{status}"] = count
        for prefix, values in series.items():
            metrics.update(values.metrics(prefix))
        for replica_id, (answered, failed) in sorted(per_replica.items()):
            metrics[f"tech.replica.{replica_id}.requests"] = answered
            metrics[f"tech.replica.{replica_id}.failures"] = failed
        for replica_id, keys in sorted((replicas or {}).items()):
            for name, value in keys.items():
                metrics[f"tech.replica.{replica_id}.{name}"] = value
        return start_ms, metrics


def replica_metrics(
    samples: Iterable[ReplicaSample], seen_restarts: dict[str, int]
) -> dict[str, dict[str, Any]]:
    """Per replica: ``cpu_percent`` and ``rss_bytes`` now (when running) and ``restarts`` since
    the previous call (``seen_restarts`` remembers the runtime's running totals)."""
    out: dict[str, dict[str, Any]] = {}
    for sample in samples:
        keys: dict[str, Any] = {}
        if sample.cpu_percent is not None:
            keys["cpu_percent"] = float(sample.cpu_percent)
        if sample.rss_bytes is not None:
            keys["rss_bytes"] = int(sample.rss_bytes)
        previous = seen_restarts.get(sample.replica_id, 0)
        restarts = max(0, sample.restarts - previous)
        seen_restarts[sample.replica_id] = sample.restarts
        if keys or restarts:  # a stopped replica that did not restart has nothing to report
            out[sample.replica_id] = {**keys, "restarts": restarts}
    return out
