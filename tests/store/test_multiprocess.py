"""Several processes writing one SQLite file at once lose nothing and fail nowhere."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from modelyard.store import Query, SQLiteStore
from modelyard.store.schema import SCHEMA_VERSION

PROCESSES = 4
PER_PROCESS = 5000

WRITER = textwrap.dedent(
    """
    import sys, uuid
    from modelyard.store import BufferedWriter, Identity, Prediction, SQLiteStore

    path, index, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    who = Identity("crn:m", "crn:b", f"crn:d/{index % 2}")  # two processes per deployment
    store = SQLiteStore(path)  # every process migrates (or finds it migrated) at the same time
    writer = BufferedWriter(store, flush_interval_ms=5, max_batch=500)
    for i in range(n):
        writer.submit(
            Prediction(f"{index}-{i}-{uuid.uuid4()}", who, i, i, {"p": index, "i": i})
        )
        if i % 1000 == 999:
            writer.flush()  # mix explicit flushes with interval ones
    writer.close()
    store.close()
    """
)


@pytest.mark.slow
def test_four_processes_write_one_file_exactly(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), str(k), str(PER_PROCESS)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for k in range(PROCESSES)
    ]
    errors = []
    try:
        for proc in procs:  # every process's pipes read and closed before anything is asserted
            errors.append(proc.communicate(timeout=240)[1])
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    for proc, err in zip(procs, errors, strict=True):
        assert proc.returncode == 0, err.decode()
        assert b"lost" not in err
    with sqlite3.connect(path) as conn:
        total = conn.execute("SELECT COUNT(*) FROM predictions").fetchone()[0]
        layouts = conn.execute("SELECT COUNT(*) FROM metric_layouts").fetchone()[0]
        migrations = conn.execute("SELECT COUNT(*) FROM schema_migrations").fetchone()[0]
        identities = conn.execute("SELECT COUNT(*) FROM identities").fetchone()[0]
    assert total == PROCESSES * PER_PROCESS
    assert layouts == 1  # the four processes met on one layout: {"p": int, "i": int}
    seen: dict[int, set[int]] = {}
    with SQLiteStore(path) as store:
        for crn in ("crn:d/0", "crn:d/1"):
            for r in store.read(Query(deployment_crn=crn))[0]:
                seen.setdefault(r.metrics["p"], set()).add(r.metrics["i"])
    assert {p: len(values) for p, values in seen.items()} == dict.fromkeys(
        range(PROCESSES), PER_PROCESS
    )
    assert migrations == SCHEMA_VERSION  # applied once, though four processes raced to it
    assert identities == 2


@pytest.mark.slow
def test_opening_waits_out_an_exclusive_lock_longer_than_sqlites_busy_timeout(
    tmp_path: Path,
) -> None:
    """The last connection to close holds the file exclusively while it checkpoints the WAL; a
    process opening the store meanwhile used to fail after SQLite's 5 s busy timeout (with a
    message saying 30 s). Opening and reading now wait up to the store's ``timeout``."""
    import threading
    import time

    path = tmp_path / "held.db"
    SQLiteStore(path).close()
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("SELECT COUNT(*) FROM schema_migrations").fetchall()
    held_s = 6.0  # longer than SQLite's busy timeout (5 s): the duration is what is tested

    def release() -> None:
        time.sleep(held_s)
        holder.execute("COMMIT")
        holder.close()

    thread = threading.Thread(target=release)
    started = time.monotonic()
    thread.start()
    try:
        with SQLiteStore(path, timeout=30) as store:
            assert store.info().schema_version == SCHEMA_VERSION
        assert time.monotonic() - started >= held_s - 0.5
    finally:
        thread.join()
