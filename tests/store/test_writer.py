"""BufferedWriter: enqueue fast, write in batches, durable on flush, errors reach the caller."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid as uuidlib
from collections.abc import Sequence
from pathlib import Path

import pytest

from _threads import in_threads
from modelyard.errors import Conflict, InvalidInput, StoreUnavailable
from modelyard.store import BufferedWriter, Identity, Prediction
from modelyard.store.sqlite import SQLiteStore

WHO = Identity("crn:modelyard:model/m", "crn:modelyard:build/b", "crn:modelyard:deployment/d")
T0 = 1_700_000_000_000


def records(n: int) -> list[Prediction]:
    return [
        Prediction(str(uuidlib.uuid4()), WHO, T0 + i, T0 + i + 1, {"x": float(i)}) for i in range(n)
    ]


def stored(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {row[0] for row in conn.execute("SELECT uuid FROM predictions")}


class CountingStore(SQLiteStore):
    """A real SQLite store that also remembers the size of every batch it was given."""

    def __init__(self, path: Path, **kwargs: float) -> None:
        super().__init__(path, **kwargs)
        self.batches: list[int] = []

    def write_predictions(self, predictions: Sequence[Prediction]) -> None:
        self.batches.append(len(predictions))
        super().write_predictions(predictions)


def test_flush_makes_everything_submitted_durable(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    with SQLiteStore(path) as store:
        writer = BufferedWriter(store, flush_interval_ms=60_000)
        batch = records(2500)
        for p in batch:
            writer.submit(p)
        writer.flush(timeout=30)
        assert stored(path) == {p.uuid for p in batch}  # seen by another connection
        assert writer.pending == 0
        writer.close()


def test_batches_are_capped_and_the_interval_flushes_without_asking(tmp_path: Path) -> None:
    with CountingStore(tmp_path / "w.db") as store:
        writer = BufferedWriter(store, flush_interval_ms=50, max_batch=100)
        for p in records(1000):
            writer.submit(p)
        deadline = time.monotonic() + 20
        while writer.pending and time.monotonic() < deadline:
            time.sleep(0.02)
        assert writer.pending == 0  # written by the background thread, no flush called
        assert sum(store.batches) == 1000
        assert max(store.batches) <= 100
        writer.close()


def test_a_refused_record_is_dropped_the_rest_written_and_the_error_raised(
    tmp_path: Path,
) -> None:
    path = tmp_path / "w.db"
    with SQLiteStore(path) as store:
        old = records(1)
        store.write_predictions(old)
        writer = BufferedWriter(store, flush_interval_ms=60_000)
        fresh = records(300)
        fresh[123].uuid = old[0].uuid  # already stored
        for p in fresh:
            writer.submit(p)
        with pytest.raises(Conflict, match=old[0].uuid):
            writer.flush(timeout=30)
        writer.flush(timeout=30)  # the error was reported once
        assert stored(path) == {p.uuid for p in fresh}  # 299 new + the old one
        assert len(stored(path)) == 300
        writer.close()


def test_an_unavailable_store_keeps_records_and_retries(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    with SQLiteStore(path, timeout=0.2) as store:
        store.register_identity(WHO)
        writer = BufferedWriter(store, flush_interval_ms=20)
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        batch = records(50)
        for p in batch:
            writer.submit(p)
        with pytest.raises(StoreUnavailable, match="locked"):
            writer.flush(timeout=10)
        assert writer.pending == 50
        holder.execute("COMMIT")
        holder.close()
        writer.flush(timeout=30)
        assert stored(path) == {p.uuid for p in batch}
        writer.close()


def test_close_flushes_and_refuses_more(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    with SQLiteStore(path) as store:
        with BufferedWriter(store, flush_interval_ms=60_000) as writer:
            for p in records(10):
                writer.submit(p)
        assert len(stored(path)) == 10
        with pytest.raises(StoreUnavailable, match="closed"):
            writer.submit(records(1)[0])


def test_bad_arguments(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "w.db") as store:
        with pytest.raises(InvalidInput, match="flush_interval_ms=0"):
            BufferedWriter(store, flush_interval_ms=0)
        with pytest.raises(InvalidInput, match="max_batch=0"):
            BufferedWriter(store, max_batch=0)
        with BufferedWriter(store) as writer, pytest.raises(InvalidInput):
            writer.submit({"uuid": "x"})  # type: ignore[arg-type]


def test_normal_interpreter_exit_flushes(tmp_path: Path) -> None:
    path = tmp_path / "exit.db"
    script = textwrap.dedent(
        f"""
        import uuid
        from modelyard.store import BufferedWriter, Identity, Prediction, SQLiteStore
        who = Identity("crn:m", "crn:b", "crn:d")
        writer = BufferedWriter(SQLiteStore({str(path)!r}), flush_interval_ms=600_000)
        for i in range(777):
            writer.submit(Prediction(str(uuid.uuid4()), who, i, i, {{"i": i}}))
        # no flush, no close: the atexit hook must write them
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    assert len(stored(path)) == 777


def test_many_threads_submit_and_each_flush_covers_its_own_records(tmp_path: Path) -> None:

    path = tmp_path / "threads.db"
    with SQLiteStore(path) as store, BufferedWriter(store, flush_interval_ms=10, max_batch=64) as w:
        problems: list[str] = []

        def producer(_: int) -> None:
            mine = records(500)
            for p in mine:
                w.submit(p)
            w.flush(timeout=60)
            missing = {p.uuid for p in mine} - stored(path)
            if missing:
                problems.append(f"{len(missing)} records not durable after flush")

        in_threads(producer, 6)
        assert problems == []
    assert len(stored(path)) == 3000
