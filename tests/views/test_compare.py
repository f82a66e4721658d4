"""``views.compare`` on a real SQLite store: the latency differences' bootstrap intervals, and
each deployment's aggregate records read once per answer whatever the sides."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

from modelyard.store.base import Query, RecordKind
from modelyard.views import compare as compare_view

from .conftest import Ui

HOUR = 3_600_000
DAY = 24 * HOUR


def _deployment(ui: Ui) -> str:
    registry = ui.services.registry
    registry.create_model("churn")
    build = registry.add_build(
        "churn",
        digest="d" * 64,
        file="predict.py",
        function="predict",
        python="python",
        env_key="base",
        ok=True,
    )
    deployment = registry.add_deployment("churn", build.crn)
    return registry.set_deployment_state(deployment.crn, "active").crn


def _tech(ui: Ui, crn: str, start: int, hours: int, p99: float, seed: int) -> None:
    """Ten-minute gateway intervals; p50 the same on both sides, p99 around ``p99``."""
    rng = np.random.default_rng(seed)
    for i in range(hours * 6):
        s = start + i * 600_000
        ui.services.store.add_aggregate(
            crn,
            s,
            s + 600_000,
            {
                "tech.requests": int(rng.integers(50, 150)),
                "tech.failures": 0,
                "tech.latency_p50_ms": float(rng.normal(10, 1)),
                "tech.latency_p99_ms": float(rng.normal(p99, 2)),
            },
        )


def test_latency_differences_carry_a_bootstrap_interval_over_hours(with_ui: Any) -> None:
    async def scenario(ui: Ui) -> None:
        crn = _deployment(ui)
        now = time.time_ns() // 1_000_000
        a0, b0 = now - 2 * DAY, now - DAY
        _tech(ui, crn, a0, 24, 40.0, 1)
        _tech(ui, crn, b0, 24, 46.0, 2)
        a, b = f"period:{a0}-{b0 - 1}", f"period:{b0}-{now}"
        diff = compare_view.compare(ui.services, "churn", a, b, now)["difference"]
        p99, p50 = diff["p99_ms"], diff["p50_ms"]
        assert 0 < p99["low"] < 6.0 < p99["high"], p99  # clearly slower, the truth inside
        assert p50["low"] < 0 < p50["high"], p50  # the same: no difference excluded
        assert "bootstrap over hours" in diff["latency_method"]
        again = compare_view.compare(ui.services, "churn", a, b, now)["difference"]
        assert again["p99_ms"] == p99  # a fixed seed: the same answer for the same data

        # Three hours on a side are too few for an interval: the difference alone.
        short = f"period:{b0}-{b0 + 3 * HOUR - 1}"
        diff = compare_view.compare(ui.services, "churn", a, short, now)["difference"]
        assert diff["p99_ms"]["value"] is not None
        assert (diff["p99_ms"]["low"], diff["p99_ms"]["high"]) == (None, None), diff

    with_ui(scenario)


def test_each_deployment_is_read_once_for_the_default_sides(
    with_ui: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario(ui: Ui) -> None:
        crn = _deployment(ui)
        now = time.time_ns() // 1_000_000
        _tech(ui, crn, now - DAY, 24, 40.0, 3)
        for h in range(24):  # hourly monitor windows, ROC AUC lower in the second half
            s = now - DAY + h * HOUR
            metrics = {"n": 500, "roc_auc": 0.85 if h < 12 else 0.75}
            ui.services.store.replace_aggregate(crn, s, s + HOUR, metrics, "monitor:churn")
        store = ui.services.store
        reads: list[Query] = []
        scan = store.scan

        def counted(query: Query, *args: Any, **kwargs: Any) -> Any:
            if query.kinds == frozenset({RecordKind.AGGREGATE}):
                reads.append(query)
            return scan(query, *args, **kwargs)

        monkeypatch.setattr(store, "scan", counted)
        monkeypatch.setattr(store, "read", None)  # no record objects: one scan, split once
        answer = compare_view.compare(ui.services, "churn", now_ms=now)
        assert len(reads) == 1, reads
        assert answer["a"]["windows"] + answer["b"]["windows"] == 24, answer
        assert answer["a"]["tech"]["requests"] + answer["b"]["tech"]["requests"] > 0

    with_ui(scenario)
