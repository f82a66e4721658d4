"""The predict loop never waits on the database: while another connection holds the registry's
SQLite file locked for writing, control-plane calls that write (creating a key, rotating a
model's access key) wait for the lock, and predictions, served on the same event loop, do not.

The lock is a second ``sqlite3`` connection in ``BEGIN EXCLUSIVE`` on the server's database for
``HOLD_S`` seconds (in WAL mode it blocks writers, not readers). Before control-plane routes ran
off the loop, ``rotate-key`` wrote on the event loop and every prediction in flight waited the
whole hold. The hold is longer than the registry's 2-second key caches, so the predict path's
cache misses happen during it too: they read on a worker thread, and such a read can wait behind
the blocked writer (see the assertion below).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from .conftest import Api

pytestmark = pytest.mark.slow  # deploys a model: a build and a replica process

HOLD_S = 3.0


def _hold_database(path: Path, held: threading.Event, release: threading.Event) -> None:
    """Lock the database for writing until ``release`` is set (at most ``HOLD_S`` seconds)."""
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        held.set()
        release.wait(HOLD_S)
        conn.execute("ROLLBACK")
    finally:
        conn.close()


async def _timed(call: Any) -> float:
    t0 = time.perf_counter()
    answer = await call
    assert answer.status_code < 300, answer.text
    return time.perf_counter() - t0


def test_predictions_do_not_wait_for_a_locked_registry(
    with_api: Any, project: Path, modelyard_home: Path
) -> None:
    async def scenario(api: Api) -> None:
        c = api.client
        deployed = await c.post(
            "/api/v1/models/churn/deploy",
            json={"project": str(project), "example": {"x": 1}},
            headers=api.auth(),
        )
        assert deployed.status_code == 201, deployed.text
        await asyncio.to_thread(api.services.registry.create_model, "other")
        predict = "/api/v1/models/churn/predict"
        for _ in range(20):  # warm: connections, caches, the replica
            assert (await c.post(predict, json={"x": 1}, headers=api.auth())).status_code == 200

        held, release = threading.Event(), threading.Event()
        holder = threading.Thread(
            target=_hold_database, args=(modelyard_home / "modelyard.db", held, release)
        )
        holder.start()
        try:
            assert await asyncio.to_thread(held.wait, 10), "could not lock the database"
            locked_at = time.perf_counter()
            admin = asyncio.gather(
                _timed(c.post("/api/v1/keys", json={"name": "during"}, headers=api.auth())),
                _timed(c.post("/api/v1/models/other/rotate-key", headers=api.auth())),
            )
            latencies: list[float] = []
            while time.perf_counter() - locked_at < HOLD_S - 0.3:
                latencies.append(await _timed(c.post(predict, json={"x": 2}, headers=api.auth())))
            waited = await admin
        finally:
            release.set()
            await asyncio.to_thread(holder.join, 30)
        # The admin calls waited for the lock (they started just after it was taken)...
        assert min(waited) >= HOLD_S - 0.5, (waited, HOLD_S)
        # ...while predictions went on, far quicker than the hold. Up to two of them (one per
        # cached lookup: the caller's key and the model) may meet an expired cache entry; its
        # read on a worker thread then queues behind the blocked writer for the registry's one
        # connection and waits (a CI run saw one such 1.5 s call). That limit is known and in
        # docs/server.md; the loop itself never waits (with rotate-key on it, 1 call got through).
        assert len(latencies) >= 10, latencies
        assert sorted(latencies)[-3] < HOLD_S / 3, sorted(latencies)[-5:]

    with_api(scenario)
