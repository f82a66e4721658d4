"""Ingest that does not slow down as the store grows: what a batch writes to disk.

Every prediction uuid stays in one index forever (``prediction_uuids``). A batch of random
(uuid4) ids lands on a random page of that index per record, so once the index is larger than
the batch, each record dirties a page of its own and a commit writes about one page per record
whatever the store's size; a batch of time-ordered ids (``ids.new_prediction_uuid``) lands on a
few pages at one spot. The rates this gives at 1M..10M records are in
``benchmarks/store_growth.py`` (docs/store.md); here the cause is checked where it can be
counted exactly: the pages SQLite writes to its WAL for one commit.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelyard.ids import new_prediction_uuid
from modelyard.store.base import Identity, MetricsStore, Prediction, Query
from modelyard.store.sqlite import SQLiteStore

WHO = Identity(
    model_crn="crn:modelyard:model/growth",
    build_crn="crn:modelyard:build/growth",
    deployment_crn="crn:modelyard:deployment/growth",
)
T0 = 1_790_000_000_000
METRICS = {f"m{i}": i / 7 for i in range(10)}


def batch(first: int, n: int, make_id: Callable[[], str]) -> list[Prediction]:
    return [
        Prediction(make_id(), WHO, T0 + (first + i) * 100, T0 + (first + i) * 100 + 3, METRICS)
        for i in range(n)
    ]


def uuid4() -> str:
    return str(uuid.uuid4())


def wal_pages_of_one_commit(path: Path, records: list[Prediction]) -> int:
    """The pages the commit of ``records`` appended to the WAL (a checkpoint empties it first)."""
    store = SQLiteStore(path)
    try:
        store.write_predictions(records[:1])  # any migration or identity row: not counted
        with sqlite3.connect(path) as probe:
            probe.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            store.write_predictions(records[1:])
            _, frames, _ = probe.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        probe.close()
    finally:
        store.close()
    return int(frames)


def test_time_ordered_ids_write_a_fraction_of_the_pages_random_ids_write(tmp_path: Path) -> None:
    # A store of 40,000 records with random ids (what clients may send), copied twice.
    base = tmp_path / "base.db"
    store = SQLiteStore(base)
    try:
        for first in range(0, 40_000, 10_000):
            store.write_predictions(batch(first, 10_000, uuid4))
    finally:
        store.close()
    pages: dict[str, int] = {}
    for name, make_id in (("uuid4", uuid4), ("minted", new_prediction_uuid)):
        copy = tmp_path / f"{name}.db"
        copy.write_bytes(base.read_bytes())
        pages[name] = wal_pages_of_one_commit(copy, batch(40_000, 2_001, make_id))
    # 2,000 records of ~250 bytes fill about 130 table pages; the uuid index adds about 30
    # pages of new entries for time-ordered ids, and one page per record's random spot (most of
    # its ~600 leaves) for uuid4.
    assert pages["minted"] < 400, pages
    assert pages["uuid4"] > 2.5 * pages["minted"], pages


def test_a_batch_of_time_ordered_ids_mixed_with_client_ids_is_stored_and_found(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(tmp_path / "mixed.db")
    try:
        records = batch(0, 100, new_prediction_uuid) + batch(100, 100, uuid4)
        store.write_predictions(records)
        assert store.info().predictions == 200
        for record in (records[0], records[150]):
            assert store.find_prediction(record.uuid).uuid == record.uuid
    finally:
        store.close()


def test_every_kind_of_value_survives_the_bulk_insert(store: MetricsStore) -> None:
    """The bulk route (PostgreSQL: binary COPY) carries text with tabs, newlines, backslashes
    and non-ASCII as it is, numbers exactly, and records with and without numeric metrics."""
    metrics: list[dict[str, Any]] = [
        {f"m{i}": i / 7 for i in range(10)},
        {"text": "tab\there\nnewline \\N back\\slash 'quote' \"dq\" é 😀", "n": 2**62},
        {"big": -(2**63), "none": None, "flag": True, "nested": {"a": [1, "b", None]}},
        {},
    ]
    records = [
        Prediction(new_prediction_uuid(), WHO, T0 + i, T0 + i + 3, m) for i, m in enumerate(metrics)
    ]
    store.write_predictions(records)
    got = {r.uuid: r.metrics for r in store.read(Query(deployment_crn=WHO.deployment_crn))[0]}
    assert got == {r.uuid: r.metrics for r in records}
