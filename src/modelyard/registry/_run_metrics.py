"""Metrics tracked inside a job run (``track_metric`` while ``MODELYARD_RUN_ID`` is set).

Each value is one row of ``run_metrics`` (run id, name, JSON value, when), kept in the order it
was tracked; a name tracked twice appears twice. They go when their run is pruned or its job is
deleted (``_runs``, ``_jobs``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from modelyard.errors import InvalidInput
from modelyard.registry._db import Clock, Cursor, Db
from modelyard.registry._experiments import check_experiment_metrics
from modelyard.registry._runs import checked_ms, find_run
from modelyard.specs.checks import check_text, encode_json

__all__ = ["MAX_METRICS", "MAX_METRIC_BYTES", "RunMetric", "RunMetrics"]

MAX_METRICS = 1_000
MAX_METRIC_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class RunMetric:
    """A metric tracked inside a run (``track_metric`` while ``MODELYARD_RUN_ID`` is set)."""

    run_id: str
    key: str
    value: Any = field(hash=False)
    tracked_ms: int


class RunMetrics:
    def __init__(self, db: Db, clock: Clock) -> None:
        self._db = db
        self._now = clock

    def add_metrics(
        self, run_id: str, metrics: Mapping[str, Any], tracked_ms: int | None
    ) -> list[RunMetric]:
        if not isinstance(metrics, Mapping) or len(metrics) > MAX_METRICS:
            raise InvalidInput(
                f"metrics={metrics!r:.200} is not accepted; expected a dict of at most "
                f"{MAX_METRICS} metric name -> JSON value",
                argument="metrics",
            )
        tracked_ms = checked_ms("tracked_ms", tracked_ms, optional=True)
        rows = []
        for key, value in metrics.items():
            check_text("metric name", key, max_len=200)
            encoded = encode_json(f"metric {key}", value)
            if len(encoded) > MAX_METRIC_BYTES:
                raise InvalidInput(
                    f"metric {key!r} is {len(encoded)} bytes as JSON; accepted: at most "
                    f"{MAX_METRIC_BYTES} bytes per value",
                    argument="metrics",
                )
            rows.append((key, encoded, value))

        def insert(cur: Cursor) -> list[RunMetric]:
            run = find_run(self._db, cur, run_id)
            # An experiment run's metrics: scalars, within its limits (a no-op for job runs).
            check_experiment_metrics(self._db, cur, run.id, {k: v for k, _, v in rows})
            when = self._now() if tracked_ms is None else tracked_ms
            for key, encoded, _ in rows:
                self._db.exec(
                    cur,
                    "INSERT INTO run_metrics (run_id, key, value, tracked_ms) VALUES (?, ?, ?, ?)",
                    (run.id, key, encoded, when),
                )
            return [RunMetric(run.id, key, value, when) for key, _, value in rows]

        return self._db.write(insert)

    def metrics(self, run_id: str) -> list[RunMetric]:
        with self._db.read() as cur:
            run = find_run(self._db, cur, run_id)
            rows = self._db.exec(
                cur,
                "SELECT key, value, tracked_ms FROM run_metrics WHERE run_id = ? ORDER BY seq",
                (run.id,),
            ).fetchall()
        return [RunMetric(run.id, row[0], orjson.loads(row[1]), int(row[2])) for row in rows]
