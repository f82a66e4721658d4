"""SQLite specifics: WAL, migrations, refusing corrupt, locked and newer databases, threads."""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid as uuidlib
from pathlib import Path

import pytest

import modelyard
from _threads import in_threads
from modelyard.errors import InvalidInput, StoreUnavailable
from modelyard.store import Identity, Prediction, Query
from modelyard.store.schema import SCHEMA_VERSION, migrations
from modelyard.store.sqlite import SQLiteStore

WHO = Identity("crn:modelyard:model/m", "crn:modelyard:build/b", "crn:modelyard:deployment/d")
T0 = 1_700_000_000_000


def batch(n: int, start: int = T0) -> list[Prediction]:
    return [
        Prediction(str(uuidlib.uuid4()), WHO, start + i, start + i + 1, {"x": i}) for i in range(n)
    ]


def count(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM predictions").fetchone()[0])


def test_file_store_uses_wal_and_records_its_migrations(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "store.db"  # the folder is created
    with SQLiteStore(path) as store:
        store.write_predictions(batch(3))
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        rows = conn.execute(
            "SELECT version, name, modelyard_version FROM schema_migrations"
        ).fetchall()
    assert rows == [(m.version, m.name, modelyard.__version__) for m in migrations("sqlite")]
    assert rows[0][:2] == (1, "initial")
    assert [m.version for m in migrations("sqlite")] == list(range(1, SCHEMA_VERSION + 1))
    # Reopening applies nothing twice and keeps the data.
    with SQLiteStore(path) as store:
        assert store.info().predictions == 3
    with sqlite3.connect(path) as conn:
        assert (
            conn.execute("SELECT COUNT(*) FROM schema_migrations").fetchone()[0] == SCHEMA_VERSION
        )


def test_a_file_that_is_not_a_database_is_refused_with_advice(tmp_path: Path) -> None:
    path = tmp_path / "modelyard.db"
    path.write_bytes(b"this is a text file, not SQLite\n" * 200)
    with pytest.raises(StoreUnavailable) as info:
        SQLiteStore(path)
    message = str(info.value)
    assert str(path) in message
    assert "is not a SQLite database" in message
    assert "move it aside" in message and "MODELYARD_HOME" in message


def test_a_locked_database_times_out_with_advice(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")  # nobody else may even read
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable) as info:
            SQLiteStore(path, timeout=0.3)
        assert time.monotonic() - started < 10
        assert "locked" in str(info.value) and str(path) in str(info.value)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with SQLiteStore(path, timeout=0.3) as store:  # released: opens fine
        assert store.info().schema_version == SCHEMA_VERSION


def test_writers_wait_for_a_busy_database_instead_of_failing(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    with SQLiteStore(path, timeout=0.3) as impatient, SQLiteStore(path, timeout=10) as patient:
        holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        holder.execute("BEGIN IMMEDIATE")  # holds the write lock
        with pytest.raises(StoreUnavailable, match="locked"):
            impatient.write_predictions(batch(5))
        assert impatient.info().predictions == 0  # reads still work under WAL
        release = threading.Timer(0.5, lambda: holder.execute("COMMIT"))
        release.start()
        try:
            patient.write_predictions(batch(5))  # waits for the lock, then commits
        finally:
            release.join()
            holder.close()
        assert count(path) == 5


def test_memory_store_is_shared_by_threads() -> None:
    store = SQLiteStore(":memory:")
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            for j in range(20):
                store.write_predictions(batch(10, start=T0 + k * 10_000 + j * 100))
                store.read(Query(deployment_crn=WHO.deployment_crn, end_ms=T0 + 10**6, limit=5))
        except BaseException as exc:
            errors.append(exc)

    in_threads(work, 4)
    assert errors == []
    assert store.info().predictions == 800
    store.close()
    with pytest.raises(StoreUnavailable, match="closed"):
        store.info()


def test_file_store_reads_from_other_threads(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "t.db") as store:
        store.write_predictions(batch(10))
        seen: list[int] = []
        thread = threading.Thread(target=lambda: seen.append(store.info().predictions))
        thread.start()
        thread.join()
        assert seen == [10]


def test_timeout_must_be_sane(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="timeout"):
        SQLiteStore(tmp_path / "x.db", timeout=-1)


def test_synchronous_is_full_unless_asked(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "full.db") as full:
        assert full._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    with SQLiteStore(tmp_path / "normal.db", synchronous="NORMAL") as normal:
        assert normal._conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        normal.write_predictions(batch(3))
        assert normal.info().predictions == 3
    with pytest.raises(InvalidInput, match="synchronous='OFF'"):
        SQLiteStore(tmp_path / "off.db", synchronous="OFF")
