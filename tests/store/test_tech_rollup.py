"""Rollup of the gateway's technical aggregates (``source = "tech"``) on every SQL backend.

Minute records are made by the gateway's own ``IntervalStats`` from generated traffic whose raw
latencies the test keeps, so merged figures are checked against the truth: counts exactly,
percentiles against numpy on the union of raw latencies within the KLL sketch's rank error.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from modelyard.errors import InvalidInput
from modelyard.serving.gateway.techstats import IntervalStats
from modelyard.store import Identity, MetricsStore, Query, RecordKind, sqlrollup, techseries
from modelyard.store.base import DAY_MS, HOUR_MS, MINUTE_MS
from modelyard.store.rollup import bucket_start

NOW = 1_780_000_000_000
PREFIXES = techseries.LATENCY_PREFIXES
IDENTITY = Identity(
    "crn:modelyard:model/tech", "crn:modelyard:build/tech", "crn:modelyard:deployment/tech"
)
AGGREGATES = frozenset({RecordKind.AGGREGATE})


@dataclass
class Minute:
    """One generated interval: its record and the raw values behind it."""

    start_ms: int
    metrics: dict[str, Any]
    raw: dict[str, np.ndarray[Any, Any]] = field(default_factory=dict)
    cpu: float = 0.0
    rss: int = 0


def minute(start_ms: int, rng: np.random.Generator) -> Minute:
    n = int(rng.integers(5, 60))
    total = rng.gamma(2.0, 4.0, n)
    queue = rng.exponential(0.3, n)
    function = rng.gamma(2.0, 1.5, n)
    statuses = rng.choice([200, 200, 200, 200, 500, 429], n)
    stats = IntervalStats(start_ms=start_ms)
    peak = int(rng.integers(1, 9))
    for _ in range(peak):
        stats.enter()
    for _ in range(peak):
        stats.leave()
    for i in range(n):
        stats.add(int(statuses[i]), float(total[i]), "r1" if i % 2 else "r2")
        stats.add_timing(float(queue[i]), [float(function[i])])
    cpu = float(rng.uniform(0, 90))
    rss = int(rng.integers(40_000_000, 90_000_000))
    samples = {
        "r1": {"cpu_percent": cpu, "rss_bytes": rss, "restarts": int(rng.random() < 0.05)},
        "r2": {"restarts": 0},  # a replica that was not running when sampled
    }
    taken = stats.take(start_ms + MINUTE_MS, samples)
    assert taken is not None
    raw = {"tech.latency": total, "tech.latency_queue": queue, "tech.latency_function": function}
    return Minute(start_ms, taken[1], raw, cpu, rss)


def generate(store: MetricsStore, seed: int = 5) -> list[Minute]:
    """Three stretches: 3 hours two days ago (-> hourly), scattered minutes 40 days ago
    (-> hourly -> daily), and the last 30 minutes (left as they are)."""
    rng = np.random.default_rng(seed)
    two_days = NOW - 2 * DAY_MS - 3 * HOUR_MS + 17 * MINUTE_MS
    starts = [two_days + i * MINUTE_MS for i in range(180)]
    starts += [NOW - 40 * DAY_MS + i * 48 * MINUTE_MS for i in range(60)]
    starts += [NOW - 30 * MINUTE_MS + i * MINUTE_MS for i in range(30)]
    store.register_identity(IDENTITY)
    minutes = [minute(start, rng) for start in starts]
    for m in minutes:
        store.replace_aggregate(
            IDENTITY.deployment_crn, m.start_ms, m.start_ms + MINUTE_MS, m.metrics, "tech"
        )
    return minutes


def user_aggregates(store: MetricsStore) -> list[tuple[int, int, dict[str, Any]]]:
    """Old aggregates of other writers, including one with tech.* keys but no source."""
    old = NOW - 45 * DAY_MS
    rows = [
        (old, old + MINUTE_MS, {"tech.requests": 3, "tech.latency_p50_ms": 1.0}),
        (old + MINUTE_MS, old + 2 * MINUTE_MS, {"accuracy": 0.9}),
    ]
    for start, end, metrics in rows:
        store.add_aggregate(IDENTITY.deployment_crn, start, end, metrics)
    store.replace_aggregate(
        IDENTITY.deployment_crn, old, old + HOUR_MS, {"auc": 0.8}, "monitor:churn"
    )
    rows.append((old, old + HOUR_MS, {"auc": 0.8}))
    return rows


def aggregates(store: MetricsStore) -> list[tuple[int, int, dict[str, Any]]]:
    records, _ = store.read(Query(deployment_crn=IDENTITY.deployment_crn, kinds=AGGREGATES))
    return [(r.start_ms, r.end_ms, r.metrics) for r in records]


def expected_buckets(minutes: list[Minute]) -> dict[tuple[int, int], list[Minute]]:
    """The window each generated minute should end up in after rollup at NOW."""
    hour_cutoff = bucket_start(NOW - DAY_MS, HOUR_MS)
    day_cutoff = bucket_start(NOW - 30 * DAY_MS, DAY_MS)
    out: dict[tuple[int, int], list[Minute]] = defaultdict(list)
    for m in minutes:
        if m.start_ms < day_cutoff:
            start = bucket_start(m.start_ms, DAY_MS)
            out[(start, start + DAY_MS)].append(m)
        elif m.start_ms < hour_cutoff:
            start = bucket_start(m.start_ms, HOUR_MS)
            out[(start, start + HOUR_MS)].append(m)
        else:
            out[(m.start_ms, m.start_ms + MINUTE_MS)].append(m)
    return out


def check_merged(window: tuple[int, int], got: dict[str, Any], parts: list[Minute]) -> None:
    """Counts exact; means, maxima and rate right; percentiles within the rank error."""
    summed: dict[str, int] = defaultdict(int)
    for m in parts:
        for key, value in m.metrics.items():
            counted = key.startswith("tech.status_") or key in ("tech.requests", "tech.failures")
            per_replica = key.startswith("tech.replica.") and key.endswith(
                (".requests", ".failures", ".restarts")
            )
            if counted or per_replica:
                summed[key] += value
    for key, value in summed.items():
        assert got[key] == value, key
    seconds = (window[1] - window[0]) / 1000
    assert got["tech.rps"] == pytest.approx(summed["tech.requests"] / seconds)
    assert got["tech.in_flight_max"] == max(m.metrics["tech.in_flight_max"] for m in parts)
    cpus = [m.cpu for m in parts]
    rss = [m.rss for m in parts]
    assert got["tech.replica.r1.cpu_percent"] == pytest.approx(np.mean(cpus))
    assert got["tech.replica.r1.cpu_percent_max"] == pytest.approx(max(cpus))
    assert abs(got["tech.replica.r1.rss_bytes"] - np.mean(rss)) <= 1
    assert got["tech.replica.r1.rss_bytes_max"] == max(rss)
    assert got["tech.replica.r1.samples"] == len(parts)
    assert "tech.replica.r2.cpu_percent" not in got
    eps = techseries.rank_error()
    for prefix in PREFIXES:
        union = np.sort(np.concatenate([m.raw[prefix] for m in parts]))
        sketch = techseries.decode_sketch(got[f"{prefix}_sketch"])
        assert sketch.n == union.size
        for q in techseries.PERCENTILES:
            value = got[f"{prefix}_p{q}_ms"]
            low = np.searchsorted(union, value, side="left") / union.size
            high = np.searchsorted(union, value, side="right") / union.size
            assert low - eps <= q / 100 <= high + eps, (prefix, q, low, high, eps)


def check_rolled_up(store: MetricsStore, minutes: list[Minute], users: list[Any]) -> None:
    stored = aggregates(store)
    tech = {(s, e): m for s, e, m in stored if "tech.latency_sketch" in m}
    expected = expected_buckets(minutes)
    assert sorted(tech) == sorted(expected)
    for window, parts in expected.items():
        if window[1] - window[0] == MINUTE_MS:
            assert tech[window] == parts[0].metrics  # recent minutes are left exactly as written
        else:
            check_merged(window, tech[window], parts)
    others = sorted(
        (s, e, sorted(m.items())) for s, e, m in stored if "tech.latency_sketch" not in m
    )
    assert others == sorted((s, e, sorted(m.items())) for s, e, m in users)


def test_tech_aggregates_roll_up_hourly_then_daily_and_nothing_else_moves(
    store: MetricsStore,
) -> None:
    minutes = generate(store)
    users = user_aggregates(store)
    report = store.rollup(now_ms=NOW)
    expected = expected_buckets(minutes)
    hours_of_old = {bucket_start(m.start_ms, HOUR_MS) for m in minutes[180:240]}
    # 240 minute records merged away, then the old ones' hourly records again into days
    assert report.tech_rolled == 240 + len(hours_of_old)
    assert sum(1 for w in expected if w[1] - w[0] == HOUR_MS) == 4  # 3 h at :17 spans 4 hours
    assert sum(1 for w in expected if w[1] - w[0] == DAY_MS) in (2, 3)
    check_rolled_up(store, minutes, users)
    before = aggregates(store)
    again = store.rollup(now_ms=NOW)
    assert again.tech_rolled == 0  # idempotent: a second run finds nothing to do
    assert aggregates(store) == before


def test_an_interrupted_tech_rollup_loses_and_doubles_nothing(
    store: MetricsStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    minutes = generate(store, seed=9)
    users = user_aggregates(store)
    total = sum(m.metrics["tech.requests"] for m in minutes)
    monkeypatch.setattr(sqlrollup, "TECH_CHUNK", 25)
    real_merge = techseries.merge
    calls = 0

    def failing(parts: Any, seconds: float) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        # The first chunk (the oldest 25 minutes, 48 minutes apart) is 25 merges; the 30th is in
        # the middle of the second chunk, after some of its buckets were written.
        if calls == 30:
            raise RuntimeError("simulated crash in the middle of a chunk")
        return real_merge(parts, seconds)

    monkeypatch.setattr(techseries, "merge", failing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        store.rollup(now_ms=NOW)
    stored = aggregates(store)
    tech = [m for _, _, m in stored if "tech.latency_sketch" in m]
    assert sum(m["tech.requests"] for m in tech) == total  # nothing lost, nothing counted twice
    assert len(tech) < len(minutes)  # the chunks before the failure did commit
    monkeypatch.setattr(techseries, "merge", real_merge)
    store.rollup(now_ms=NOW)
    check_rolled_up(store, minutes, users)


def test_a_merge_refuses_what_is_not_a_sketch() -> None:
    with pytest.raises(InvalidInput, match=r"tech\.latency_sketch='not base64!'"):
        techseries.merge([{"tech.requests": 1, "tech.latency_sketch": "not base64!"}], 60)
    with pytest.raises(InvalidInput, match="seconds=0"):
        techseries.merge([], 0)
