"""``IntervalStats``: one interval's technical metrics, checked against numpy on the raw values."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from modelyard.serving.gateway import techstats
from modelyard.serving.gateway.techstats import IntervalStats, replica_metrics
from modelyard.store import techseries


def _rank(sorted_values: np.ndarray, value: float) -> tuple[float, float]:
    """The range of normalised ranks ``value`` occupies in ``sorted_values``."""
    n = sorted_values.size
    low = np.searchsorted(sorted_values, value, side="left") / n
    high = np.searchsorted(sorted_values, value, side="right") / n
    return float(low), float(high)


def test_an_interval_has_every_series_per_replica_counts_and_the_in_flight_peak() -> None:
    rng = np.random.default_rng(11)
    total = rng.gamma(2.0, 3.0, 600)
    queue = rng.exponential(0.5, 600)
    function = rng.gamma(2.0, 2.0, 1_200)  # two items per request: a batch of two
    stats = IntervalStats(start_ms=0)
    for _ in range(5):
        stats.enter()
    for _ in range(3):
        stats.leave()
    for i in range(600):
        stats.add(500 if i % 6 == 0 else 200, float(total[i]), "r1" if i % 3 else "r2")
        stats.add_timing(float(queue[i]), [float(function[2 * i]), float(function[2 * i + 1])])
    start, metrics = stats.take(60_000) or (None, {})
    assert start == 0
    assert metrics["tech.requests"] == 600 and metrics["tech.rps"] == 10.0
    assert metrics["tech.failures"] == metrics["tech.status_500"] == 100
    assert metrics["tech.in_flight_max"] == 5
    assert metrics["tech.replica.r1.requests"] == 400 and metrics["tech.replica.r2.requests"] == 200
    # i % 6 == 0 failed, and those are all multiples of 3: all r2's
    assert metrics["tech.replica.r2.failures"] == 100 and metrics["tech.replica.r1.failures"] == 0
    for prefix, raw in (
        ("tech.latency", total),
        ("tech.latency_queue", queue),
        ("tech.latency_function", function),
    ):
        expected = np.percentile(raw, [50, 95, 99])
        got = [metrics[f"{prefix}_p{q}_ms"] for q in (50, 95, 99)]
        assert got == pytest.approx(list(expected), rel=1e-12)  # exact below MAX_SAMPLES
        sketch = techseries.decode_sketch(metrics[f"{prefix}_sketch"])
        assert sketch.n == raw.size
        assert sketch.get_min_value() == pytest.approx(raw.min(), rel=1e-6)
    # the next interval starts with the two requests still inside
    stats.add(200, 1.0)
    _, second = stats.take(120_000) or (None, {})
    assert second["tech.in_flight_max"] == 2
    assert "tech.replica.r1.requests" not in second  # the answer named no replica
    assert "tech.latency_queue_p50_ms" not in second  # no exchange: no queue sample
    assert stats.take(180_000) is None  # idle, no replica samples: nothing to write


def test_past_max_samples_values_spill_into_the_sketch_within_its_rank_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(techstats, "MAX_SAMPLES", 1_000)
    values = np.random.default_rng(3).lognormal(1.0, 0.8, 25_000)
    stats = IntervalStats(start_ms=0)
    for value in values:
        stats.add(200, float(value))
    assert len(stats.latencies_ms) <= 1_000  # raw values stay bounded
    _, metrics = stats.take(60_000) or (None, {})
    assert metrics["tech.requests"] == 25_000
    assert techseries.decode_sketch(metrics["tech.latency_sketch"]).n == 25_000
    ordered = np.sort(values)
    eps = techseries.rank_error()
    for q in (50, 95, 99):
        low, high = _rank(ordered, metrics[f"tech.latency_p{q}_ms"])
        assert low - eps <= q / 100 <= high + eps, (q, low, high, eps)


@dataclass(frozen=True)
class State:
    replica_id: str
    cpu_percent: float | None
    rss_bytes: int | None
    restarts: int


def test_replica_samples_give_cpu_memory_and_restarts_since_the_last_sample() -> None:
    seen: dict[str, int] = {}
    first = replica_metrics([State("r1", 12.5, 50_000_000, 0), State("r2", None, None, 2)], seen)
    assert first == {
        "r1": {"cpu_percent": 12.5, "rss_bytes": 50_000_000, "restarts": 0},
        "r2": {"restarts": 2},  # not running now: no CPU or memory figure, restarts counted
    }
    stopped = replica_metrics([State("r2", None, None, 2)], dict(seen))
    assert stopped == {}  # stopped and not restarted since: nothing to write
    second = replica_metrics([State("r1", 3.0, 51_000_000, 1), State("r2", 0.0, 1, 2)], seen)
    assert second["r1"]["restarts"] == 1 and second["r2"]["restarts"] == 0
    stats = IntervalStats(start_ms=0)
    _, metrics = stats.take(60_000, second) or (None, {})
    assert metrics["tech.requests"] == 0 and metrics["tech.rps"] == 0.0
    assert metrics["tech.replica.r1.cpu_percent"] == 3.0
    assert metrics["tech.replica.r1.rss_bytes"] == 51_000_000
    assert metrics["tech.replica.r1.restarts"] == 1
    assert not any(key.endswith("_sketch") for key in metrics)  # no request, no latency


def test_close_hands_the_interval_over_and_later_requests_start_the_next() -> None:
    stats = IntervalStats(start_ms=0)
    stats.enter()
    stats.add(200, 5.0, "r1")
    closed = stats.close(60_000)
    stats.add(404, 7.0, "r1")  # arrives while the closed interval is being written
    stats.leave()
    _, first = closed.take(60_000) or (None, {})
    _, second = stats.take(120_000) or (None, {})
    assert (first["tech.requests"], first["tech.failures"], first["tech.latency_p50_ms"]) == (
        1,
        0,
        5.0,
    )
    assert (second["tech.requests"], second["tech.status_404"], second["tech.in_flight_max"]) == (
        1,
        1,
        1,  # the request still inside when the first interval closed
    )
