"""SQLite ingest inserts rows a group at a time (``sqlite._ROWS_PER_INSERT``), the uuid index in
uuid order: batches around the group size store and refuse exactly what one row at a time did."""

from __future__ import annotations

import random
import sqlite3
import uuid as uuidlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from modelyard.errors import Conflict
from modelyard.store import Identity, MetricsStore, Prediction, Query, RecordKind
from modelyard.store.sqlite import _ROWS_PER_INSERT, SQLiteStore

WHO = Identity("crn:modelyard:model/m", "crn:modelyard:build/b", "crn:modelyard:deployment/d")
OTHER = Identity("crn:modelyard:model/m", "crn:modelyard:build/b", "crn:modelyard:deployment/e")
T0 = 1_700_000_000_000


def _records(n: int, seed: int) -> list[Prediction]:
    """Mostly one all-float layout, some other layouts and JSON values, two deployments, and
    start times out of order (the uuid index and the records table see different orders)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        pick = rng.random()
        metrics: dict[str, Any]
        if pick < 0.7:
            metrics = {f"m{k}": rng.random() for k in range(10)}
        elif pick < 0.8:
            metrics = {"n": rng.randint(-5, 5), "ok": i % 2 == 0, "label": "ab"[i % 2]}
        elif pick < 0.9:
            metrics = {"m0": float("nan"), "big": 2**63 + 5, "list": [1, 2]}
        else:
            metrics = {}
        start = T0 + rng.randint(0, 10 * n)
        who = WHO if rng.random() < 0.8 else OTHER
        out.append(
            Prediction(
                str(uuidlib.UUID(int=rng.getrandbits(128), version=4)),
                who,
                start,
                start + 1,
                metrics,
            )
        )
    return out


def _stored(store: MetricsStore) -> list[tuple[str, int, bytes]]:
    """Every record of the model, (uuid, start, metrics JSON), sorted by uuid."""
    query = Query(model_crn=WHO.model_crn, kinds=frozenset({RecordKind.PREDICTION}))
    out = []
    while True:
        records, after = store.read(query)
        out += [(str(r.uuid), r.start_ms, orjson.dumps(r.metrics)) for r in records]
        if after is None:
            return sorted(out)
        query = replace(query, after=after)


@pytest.mark.parametrize(
    "n", [1, _ROWS_PER_INSERT - 1, _ROWS_PER_INSERT, 2 * _ROWS_PER_INSERT + 51]
)
def test_batches_around_the_group_size_read_back_as_written(tmp_path: Path, n: int) -> None:
    records = _records(n, seed=n)
    with SQLiteStore(tmp_path / "s.db") as store:
        store.write_predictions(records)
        expected = sorted(
            (p.uuid, p.start_ms, orjson.dumps(p.metrics).replace(b"NaN", b"null")) for p in records
        )
        assert _stored(store) == expected
        for p in records[:: max(1, n // 7)]:  # the uuid index points at each record
            assert store.find_prediction(p.uuid).start_ms == p.start_ms
    with sqlite3.connect(tmp_path / "s.db") as conn:
        assert conn.execute("SELECT count(*) FROM prediction_uuids").fetchone()[0] == n
    conn.close()


@pytest.mark.parametrize("where", [3, 2 * _ROWS_PER_INSERT + 7])  # in a group; in the remainder
def test_a_stored_uuid_anywhere_in_a_batch_refuses_all_of_it(tmp_path: Path, where: int) -> None:
    first = _records(50, seed=1)
    batch = _records(2 * _ROWS_PER_INSERT + 51, seed=2)
    taken = first[10]
    batch[where] = Prediction(taken.uuid, WHO, T0, T0 + 1, {"x": 1.0})
    with SQLiteStore(tmp_path / "s.db") as store:
        store.write_predictions(first)
        before = _stored(store)
        with pytest.raises(Conflict, match=taken.uuid):
            store.write_predictions(batch)
        assert _stored(store) == before
        store.write_predictions(batch[:where] + batch[where + 1 :])  # the rest goes in
        assert len(_stored(store)) == len(first) + len(batch) - 1
